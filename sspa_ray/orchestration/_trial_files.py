"""A trial's files and storage: its stored checkpoints put back into the run folder on restore, its
outputs and log published beside its results, and a write that storage refuses turned into
StorageFull (trial.py runs the trial)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs

from sspa_ray.orchestration.storage import StorageFull, storage_errno, storage_filesystem
from sspa_ray.outputs import CHECKPOINTS_DIR, LOG_FILE, RUN_OUTPUTS


def restore(checkpoint, run_dir: Path, trial_uri: str | None) -> tuple[bool, str | None, list]:
    """Put the trial's stored checkpoints back into run_dir/checkpoints.

    Returns whether there was one, a line for the terminal when a corrupt one was skipped, and the
    (metrics, checkpoint folder) reports of checkpointed epochs newer than Tune's checkpoint.
    Each reported directory holds one ``epoch_NNNN/`` folder; all of them are copied, not only the
    one Tune names as the latest: Tune's saved state can lag behind a checkpoint uploaded just
    before a kill, and a corrupt newest one falls back to the one before it (trial.CHECKPOINTS_KEPT).
    The engine resumes from the newest valid one. Local checkpoints of an earlier attempt are replaced:
    storage holds what the experiment knows about, and the trial may now run on another node.
    """
    from sspa_ray.engine.checkpoint import latest_checkpoint  # torch: in the trial process only

    run_dir.mkdir(parents=True, exist_ok=True)
    found = _stored_checkpoints(checkpoint, trial_uri)
    if trial_uri:
        keep_log(trial_uri, run_dir)
    if not found:
        return False, None, []
    checkpoints = run_dir / CHECKPOINTS_DIR
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir()
    for filesystem, path in found:  # oldest checkpoint first: a newer copy of an epoch wins
        target = checkpoints / Path(path).name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        pyarrow.fs.copy_files(path, str(target), source_filesystem=filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    skipped: list[str] = []
    valid = latest_checkpoint(checkpoints, log=skipped.append)
    backlog = []
    if valid is not None:
        known = max((int(Path(p).name.split("_")[1]) for p in
                     _subdirs(checkpoint.filesystem, checkpoint.path, "epoch_")), default=0) if checkpoint else 0
        newer = [dict(r) for r in valid[1]["history"] if r["epoch"] > known]
        backlog = [(r, valid[0] if r is newer[-1] else None) for r in newer]
    if not skipped:
        return True, None, backlog
    resumed = f"resuming from {valid[0].name}" if valid else "no valid checkpoint left; starting from epoch 1"
    return True, "; ".join(skipped) + f"; {resumed}", backlog


def _stored_checkpoints(checkpoint, trial_uri: str | None) -> list[tuple[pyarrow.fs.FileSystem, str]]:
    """The ``epoch_NNNN`` folders in the trial's checkpoint directories, oldest directory first."""
    places = []
    if checkpoint is not None:
        # The reported one and its siblings: Tune names them checkpoint_NNNNNN, a TorchTrainer run
        # folder epoch_NNNN (the checkpoint_dir_name it is given); either way they sort by age.
        places.append((checkpoint.filesystem, str(Path(checkpoint.path).parent), ""))
    if trial_uri:
        places.append((*storage_filesystem(trial_uri), "checkpoint_"))
    seen, folders = set(), []
    for filesystem, root, prefix in places:
        for ckpt in sorted(_subdirs(filesystem, root, prefix)):
            for epoch in _subdirs(filesystem, ckpt, "epoch_"):
                if epoch not in seen:
                    seen.add(epoch)
                    folders.append((filesystem, epoch))
    return folders


def _subdirs(filesystem: pyarrow.fs.FileSystem, root: str, prefix: str) -> list[str]:
    try:
        infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except OSError:
        return []
    return [i.path for i in infos if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith(prefix)]


def keep_log(trial_uri: str, run_dir: Path) -> None:
    """A resumed or retried trial's log goes on after its earlier lines, on whatever node it runs."""
    if not (run_dir / LOG_FILE).exists():
        _fetch(trial_uri, LOG_FILE, run_dir)


def _fetch(uri: str, name: str, run_dir: Path) -> None:
    filesystem, root = storage_filesystem(uri)
    if filesystem.get_file_info(f"{root}/{name}").type == pyarrow.fs.FileType.File:
        pyarrow.fs.copy_files(f"{root}/{name}", str(run_dir / name), source_filesystem=filesystem,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())


@contextlib.contextmanager
def storage_errors(uri: str, checkpoint_dir: Path | None = None):
    """Turn a write that storage refuses into StorageFull, with the size of one checkpoint."""
    try:
        yield
    except OSError as exc:
        code = storage_errno(exc)
        if code is None:
            raise
        size = sum(f.stat().st_size for f in Path(checkpoint_dir).rglob("*") if f.is_file()) if checkpoint_dir else 0
        raise StorageFull(uri, os.strerror(code), size) from None


class Staged:
    """A temporary directory holding hard links to one epoch's checkpoint folder, for reporting.

    Reporting copies the directory to storage before it returns, so the links live only that long
    and cost no extra disk space.
    """

    def __init__(self, checkpoint_dir: Path):
        self.source = Path(checkpoint_dir)

    def __enter__(self) -> str:
        self.tmp = tempfile.mkdtemp(prefix=".report-", dir=self.source.parent.parent)
        try:
            shutil.copytree(self.source, Path(self.tmp) / self.source.name, copy_function=os.link)
        except OSError:  # a file system without hard links
            shutil.rmtree(self.tmp, ignore_errors=True)
            os.makedirs(self.tmp)
            shutil.copytree(self.source, Path(self.tmp) / self.source.name)
        return self.tmp

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def publish(run_dir: Path, outputs_uri: str, names: tuple[str, ...] = RUN_OUTPUTS) -> None:
    """Copy the run's metrics.json, selection.csv and log next to the trial's results in storage."""
    filesystem, root = storage_filesystem(outputs_uri)
    filesystem.create_dir(root, recursive=True)
    for name in names:
        source = run_dir / name
        if source.is_file():
            pyarrow.fs.copy_files(str(source), f"{root}/{name}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                                  destination_filesystem=filesystem)
