"""Experiment storage that a full or unwritable disk cannot corrupt.

- :func:`storage_filesystem` gives the pyarrow filesystem of a storage location. A local path gets
  :class:`AtomicLocalFS`: every file Ray or a trial writes there (experiment state, searcher and
  callback state, ``tuner.pkl``, results, checkpoints) is written under a temporary name and renamed
  into place once complete, so a write cut short by a full disk or a kill leaves the previous
  version, never a truncated one. Object stores (``s3://``, ``gs://``) replace objects whole already.
- :class:`StorageFull` is what a trial raises when storage refuses a write, and
  :func:`storage_error` recognises such an error inside Ray's wrappers.
- A URI may carry pyarrow's query parameters (``s3://bucket/exp?endpoint_override=HOST:PORT&scheme=http``);
  :func:`storage_join` puts a folder name into the path part, before the query. Without them, pyarrow
  takes the endpoint from the AWS SDK's variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``).
- :func:`check_storage` tries an object store once before any trial starts: a missing bucket, refused
  credentials or an unreachable endpoint is one line naming the URI and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from pathlib import Path

import pyarrow
import pyarrow.fs

from sspa_ray.errors import UserError

# Errors a user fixes by freeing space or choosing another place; never retried.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# pyarrow puts the errno only in its message: "... [errno 28] No space left on device".
_ARROW_ERRNO = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


class StorageFull(Exception):
    """Storage refused a write. Raised in a trial; the driver stops the experiment on it."""

    def __init__(self, path: str, reason: str, checkpoint_bytes: int = 0):
        super().__init__(path, reason, checkpoint_bytes)
        self.path, self.reason, self.checkpoint_bytes = path, reason, checkpoint_bytes

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


def storage_errno(exc: BaseException) -> int | None:
    """The storage errno of an OSError (also pyarrow's), or None for any other error."""
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    if code is None and (match := _ARROW_ERRNO.search(str(exc))):
        code = int(match.group(1))
    return code if code in STORAGE_ERRNOS else None


def storage_error(exc: BaseException | None) -> StorageFull | OSError | None:
    """The StorageFull or storage OSError inside `exc`: its causes, contexts and Ray's ``cause``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageFull) or storage_errno(exc) is not None:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def is_uri(location: str) -> bool:
    """True for an object store URI (s3://, gs://), False for a local path."""
    return "://" in location


def storage_filesystem(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem and path of a storage location: a local path or a URI (s3://, gs://).

    The path of a URI is what pyarrow's filesystem takes: ``bucket/key``, without scheme or query."""
    if is_uri(uri):
        return pyarrow.fs.FileSystem.from_uri(uri)
    return pyarrow.fs.PyFileSystem(AtomicLocalFS()), uri


def storage_join(location: str, *names: str) -> str:
    """`location` with `names` appended to its path: a URI's query string stays at its end."""
    base, sep, query = location.partition("?") if is_uri(location) else (location, "", "")
    return "/".join([base.rstrip("/"), *names]) + sep + query


def put_text(uri: str, text: str) -> None:
    """Write a small text file at a storage location (local path or URI)."""
    filesystem, path = storage_filesystem(uri)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode("utf-8"))


def get_text(uri: str) -> str | None:
    """The text file at a storage location; None when it is missing or the store cannot be read."""
    try:
        filesystem, path = storage_filesystem(uri)
        if filesystem.get_file_info(path).type != pyarrow.fs.FileType.File:
            return None
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")
    except (OSError, pyarrow.ArrowInvalid):
        return None


def has_checkpoints(experiment_uri: str) -> bool:
    """Whether any trial of the experiment stored a checkpoint (locally or in an object store)."""
    filesystem, root = storage_filesystem(experiment_uri)
    try:
        trials = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
        return any(info.base_name.startswith("checkpoint_")
                   for trial in trials if trial.type == pyarrow.fs.FileType.Directory
                   for info in filesystem.get_file_info(pyarrow.fs.FileSelector(trial.path)))
    except OSError:
        return False


# Words of the AWS SDK's errors (as pyarrow words them) that say what went wrong.
_REFUSED = ("ACCESS_DENIED", "HTTP status 403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "credentials")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not resolve", "timed out")
WRITE_CHECK = ".sspa-ray-write-check"


def check_storage(storage: str, experiment_uri: str) -> None:
    """Reach an object store once, before any trial starts: the URI parses, the bucket exists, and
    the credentials may write there (a small object is written under the experiment and deleted).
    Local paths are left to the full-disk handling of the run itself."""
    if not is_uri(storage):
        return
    try:
        filesystem, path = storage_filesystem(experiment_uri)
    except (pyarrow.ArrowInvalid, ValueError) as exc:
        raise UserError(f"--storage {storage}: pyarrow cannot read this URI ({_first_line(exc)}); give "
                        "s3://BUCKET/PATH, with the endpoint in AWS_ENDPOINT_URL or in the URI's query "
                        "(?endpoint_override=HOST:PORT&scheme=http), gs://BUCKET/PATH, or a local path") from None
    bucket = path.split("/", 1)[0]
    where = _endpoint(filesystem)
    try:
        if filesystem.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
            raise UserError(f"--storage {storage}: the bucket '{bucket}' does not exist at {where}; create it "
                            f"(aws s3 mb s3://{bucket}) or name an existing bucket")
        probe = f"{path}/{WRITE_CHECK}"
        with filesystem.open_output_stream(probe) as stream:
            stream.write(b"sspa-ray")
        filesystem.delete_file(probe)
    except OSError as exc:
        text = str(exc)
        if any(word in text for word in _UNREACHABLE):
            raise UserError(f"--storage {storage}: cannot reach {where} ({_aws_reason(text)}); check that the "
                            "store runs and that AWS_ENDPOINT_URL (or ?endpoint_override=HOST:PORT&scheme=http "
                            "in the URI) names it") from None
        if any(word in text for word in _REFUSED):
            raise UserError(f"--storage {storage}: {where} refused the credentials ({_aws_reason(text)}); give keys "
                            f"that may read and write '{bucket}': AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                            "AWS_PROFILE or ~/.aws/credentials, on every node") from None
        raise UserError(f"--storage {storage}: {where} failed ({_aws_reason(text)}); check the URI, the "
                        "endpoint and the credentials") from None


def _endpoint(filesystem: pyarrow.fs.FileSystem) -> str:
    """The endpoint an S3 filesystem talks to, for messages."""
    if isinstance(filesystem, pyarrow.fs.S3FileSystem):
        options = filesystem.__reduce__()[1][0]  # the options it pickles with: the resolved endpoint
        endpoint = options.get("endpoint_override") or ""
        if endpoint and "://" not in endpoint:
            endpoint = f"{options.get('scheme') or 'https'}://{endpoint}"
        return endpoint or f"AWS S3 ({filesystem.region or 'default region'})"
    return filesystem.type_name


def _aws_reason(text: str) -> str:
    """The AWS SDK's error words from pyarrow's message: 'AWS Error X during Y operation: detail'."""
    match = re.search(r"AWS Error (.*?) during (\w+) operation(?:: (.*))?", text)
    if not match:
        return _first_line(text)
    detail = (match.group(3) or "").split(";")[0].strip().rstrip(".")
    return match.group(1) if detail in ("", "No response body") else f"{match.group(1)}: {detail}"


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def free_bytes(path: str) -> int | None:
    """Free space at a local path (or its nearest existing parent); None for URIs."""
    if is_uri(path):
        return None
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


class _AtomicFile:
    """A file written under a temporary name, renamed to its final name on a clean close."""

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.getpid()}"
        self.file = open(self.tmp, "wb", buffering=0)
        self.failed = False

    def write(self, data) -> int:
        # An unbuffered write to a nearly full disk writes part of the data and returns the count;
        # the next one raises ENOSPC. Callers such as pyarrow do not check the count.
        view = memoryview(data).cast("B")
        try:
            while view:
                view = view[self.file.write(view):]
        except BaseException:
            # Free the space at once: pyarrow does not always close a stream after a failed write.
            self.failed = True
            self.file.close()
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            raise
        return len(data)

    def flush(self) -> None:
        self.file.flush()

    def tell(self) -> int:
        return self.file.tell()

    @property
    def closed(self) -> bool:
        return self.file.closed

    def close(self) -> None:
        if self.file.closed:
            return
        try:
            if not self.failed:
                os.fsync(self.file.fileno())
        except OSError:
            self.failed = True
            raise
        finally:
            self.file.close()
            if self.failed:
                with contextlib.suppress(OSError):
                    os.unlink(self.tmp)
        if not self.failed:
            os.replace(self.tmp, self.path)


class AtomicLocalFS(pyarrow.fs.FileSystemHandler):
    """The local file system, except that a written file appears only once it is complete."""

    def __init__(self):
        self.local = pyarrow.fs.LocalFileSystem()

    def __reduce__(self):
        return AtomicLocalFS, ()

    def __eq__(self, other) -> bool:
        return isinstance(other, AtomicLocalFS)

    def __hash__(self) -> int:
        return hash(AtomicLocalFS)

    def get_type_name(self) -> str:
        return "sspa-atomic-local"

    def normalize_path(self, path):
        return self.local.normalize_path(path)

    def get_file_info(self, paths):
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.local.get_file_info(selector)

    def create_dir(self, path, recursive):
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.local.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise OSError(errno.EPERM, "refusing to delete the root directory's contents")

    def delete_file(self, path):
        self.local.delete_file(path)

    def move(self, src, dest):
        self.local.move(src, dest)

    def copy_file(self, src, dest):
        with self.local.open_input_stream(src) as source, self.open_output_stream(dest, None) as sink:
            while chunk := source.read(1 << 20):
                sink.write(chunk)

    def open_input_stream(self, path):
        return self.local.open_input_stream(path)

    def open_input_file(self, path):
        return self.local.open_input_file(path)

    def open_output_stream(self, path, metadata):
        return pyarrow.PythonFile(_AtomicFile(path), mode="w")

    def open_append_stream(self, path, metadata):
        return self.local.open_append_stream(path)
