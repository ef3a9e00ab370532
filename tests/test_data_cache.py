"""The decode-once cache: hits do not decode, changes invalidate, concurrent builders are safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _layouts import make_rafdb

from sspa_ray.data import cache, load_split, read_listing
from sspa_ray.errors import DataError


@pytest.fixture()
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    make_rafdb(tmp_path / "data")
    return tmp_path / "data"


def _cache_files(tmp_path):
    return sorted((tmp_path / "cache" / "images").glob("*"))


def test_second_load_is_a_cache_hit(root, tmp_path):
    before = cache.decoded_images
    first = load_split("rafdb", "train", root, 16, progress=False)
    assert cache.decoded_images - before == 35
    npy = [p for p in _cache_files(tmp_path) if p.suffix == ".npy"]
    assert len(npy) == 1
    mtime = npy[0].stat().st_mtime_ns
    second = load_split("rafdb", "train", root, 16, progress=False)
    assert cache.decoded_images - before == 35  # nothing decoded again
    assert npy[0].stat().st_mtime_ns == mtime
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    assert np.array_equal(first.images, second.images)


def test_key_covers_size_and_file_changes(root, tmp_path):
    listing = read_listing("rafdb", "train", root)
    key = cache.cache_key(listing, 16)
    assert cache.cache_key(listing, 24) != key
    image = root / "rafdb" / "Image" / "aligned" / "train_00002_aligned.jpg"
    os.utime(image, ns=(0, image.stat().st_mtime_ns + 10**9))
    assert cache.cache_key(listing, 16) != key


def test_torn_cache_file_is_rebuilt(root, tmp_path):
    load_split("rafdb", "test", root, 16, progress=False)
    [npy] = [p for p in _cache_files(tmp_path) if p.suffix == ".npy"]
    npy.write_bytes(npy.read_bytes()[:200])
    before = cache.decoded_images
    again = load_split("rafdb", "test", root, 16, progress=False)
    assert cache.decoded_images - before == 28
    assert again.images.shape == (28, 16, 16, 3)


def test_corrupt_image_fails_the_build_and_leaves_no_cache(root, tmp_path):
    bad = root / "rafdb" / "Image" / "aligned" / "train_00010_aligned.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"corrupt image {bad}"):
        load_split("rafdb", "train", root, 16, progress=False)
    assert not [p for p in _cache_files(tmp_path) if p.suffix != ".lock"]


_BUILDER = textwrap.dedent(
    """
    import json, sys, time
    from sspa_ray.data import cache, load_split
    from sspa_ray.data import _decode

    slow = _decode.decode_face
    def decode_slowly(*args):  # widen the race window: both processes must overlap
        time.sleep(0.02)
        return slow(*args)
    _decode.decode_face = decode_slowly
    while time.time() < float(sys.argv[2]):
        time.sleep(0.005)
    split = load_split("rafdb", "train", sys.argv[1], 16, progress=False)
    print(json.dumps({"decoded": cache.decoded_images, "sum": int(split.images.astype(int).sum())}))
    """
)


def test_concurrent_builders_decode_once(root, tmp_path):
    import time

    start = str(time.time() + 2.0)  # both processes start decoding at the same moment
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUILDER, str(root), start], stdout=subprocess.PIPE, text=True, env=os.environ)
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["decoded"] for r in results) == [0, 35]  # one built it, the other waited and mapped it
    assert results[0]["sum"] == results[1]["sum"]
    files = _cache_files(tmp_path)
    assert len([p for p in files if p.suffix == ".npy"]) == 1
    assert not [p for p in files if ".tmp-" in p.name]
