"""The data path: the decode-once cache (build, hit, a trial that decodes nothing) and augmentation.

    python -m benchmarks.data [--images 2000] [--source-size 384] [--size 224]
                              [--aug-batch 128] [--loader-workers 0 2]

It writes an AffectNet-layout folder of photo-sized JPEGs (synthetic faces upscaled to
--source-size, with a face box), then measures in one run, on one machine:
  - the cold cache build (decode + crop + resize + write), with 1 decoder thread and with the
    default count, in images per second;
  - a cache hit (read the listing, stat every file, memory-map, read every pixel) against decoding;
  - a second "trial" in a new process: how many images it decodes (should be 0) and its load time;
  - augmentation of the cached images: the engine's batched path (sspa_ray.data.augment on a
    uint8 tensor resident on the device: CUDA when present, else the CPU, 1 torch thread)
    against a torch DataLoader with per-sample torchvision transforms (RandomCrop with padding,
    RandomHorizontalFlip, Normalize) and 0 or more worker processes, copying each batch to the
    device; img/s, interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_photos(root: Path, n: int, source_size: int) -> None:
    """AffectNet layout with n JPEGs of source_size^2: drawn faces upscaled, a box around each."""
    from sspa_ray.data import synthetic

    synthetic.generate(root / "small", seed=0, scale=n / synthetic.BASE_SIZES["affectnet/train"])
    small = root / "small" / "affectnet"
    lines = (small / "Manually_Annotated_file_lists" / "training.csv").read_text().splitlines()
    out = root / "affectnet"
    (out / "Manually_Annotated_file_lists").mkdir(parents=True)
    rows = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        k = source_size / 80  # the drawn aux images are 80x80
        with Image.open(small / "Manually_Annotated_Images" / fields[0]) as img:
            big = img.resize((source_size, source_size), Image.Resampling.BICUBIC)
        (out / "Manually_Annotated_Images" / Path(fields[0]).parent).mkdir(parents=True, exist_ok=True)
        big.save(out / "Manually_Annotated_Images" / fields[0], quality=90)
        fields[1:5] = [str(round(int(v) * k)) for v in fields[1:5]]
        rows.append(",".join(fields))
    (out / "Manually_Annotated_file_lists" / "training.csv").write_text("\n".join(rows) + "\n")


def cold_build(root: Path, size: int, threads: int | None, cache: Path) -> tuple[float, int]:
    from sspa_ray.data import cache as cache_module
    from sspa_ray.data import load_split

    os.environ["SSPA_CACHE_DIR"] = str(cache)
    if threads:
        os.environ["SSPA_DECODE_THREADS"] = str(threads)
    else:
        os.environ.pop("SSPA_DECODE_THREADS", None)
    before = cache_module.decoded_images
    start = time.perf_counter()
    split = load_split("affectnet", "train", root, size, progress=False)
    elapsed = time.perf_counter() - start
    assert cache_module.decoded_images - before == len(split)
    return elapsed, len(split)


_SECOND_TRIAL = """
import json, sys, time
import numpy as np
from sspa_ray.data import cache, load_split
start = time.perf_counter()
split = load_split("affectnet", "train", sys.argv[1], int(sys.argv[2]), progress=False)
pixels = np.array(split.images)
print(json.dumps({"decoded": cache.decoded_images, "seconds": time.perf_counter() - start}))
"""


class _PerSampleImages(torch.utils.data.Dataset):
    """The cached images one at a time, as a DataLoader pipeline reads them."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1))


def augmentation_paths(images: np.ndarray, batch: int, workers: list[int], rounds: int = 3) -> None:
    """img/s of the device path against DataLoader paths, on the same images and the same crop."""
    from torchvision.transforms import v2

    from benchmarks._engine import interleaved
    from sspa_ray.data.augment import IMAGENET_MEAN, IMAGENET_STD, augment

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared machine; DataLoader workers use 1 each too
    n, size = len(images), images.shape[1]
    padding = size // 8  # data.crop_padding = -1
    resident = torch.from_numpy(np.array(images)).to(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)

    def device_path() -> None:
        order = torch.randperm(n, generator=generator, device=device)
        for a in range(0, n - batch + 1, batch):
            augment(resident[order[a : a + batch]], generator, padding)

    transform = v2.Compose([
        v2.RandomCrop(size, padding=padding),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])

    def loader_path(loader) -> None:
        for x in loader:
            x.to(device, non_blocking=True)

    runs = {f"{device.type} tensors, batched (sspa_ray.data.augment)": device_path}
    for w in workers:
        loader = torch.utils.data.DataLoader(
            _PerSampleImages(images, transform), batch_size=batch, shuffle=True, drop_last=True,
            num_workers=w, persistent_workers=w > 0, pin_memory=device.type == "cuda",
        )
        runs[f"DataLoader, torchvision, {w} workers"] = lambda loader=loader: loader_path(loader)
    seconds = interleaved(runs, rounds, device)
    torch.set_num_threads(threads)
    per_s = {name: (n // batch) * batch / float(np.median(values)) for name, values in seconds.items()}
    base = next(iter(per_s.values()))
    print(f"augmentation of {n} cached {size}x{size} images, batch {batch}, pad {padding}, crop + flip + "
          f"normalise, then on {device}; median of {rounds} interleaved rounds:")
    for name, rate in per_s.items():
        print(f"  {name:52} {rate:8.0f} img/s {rate / base:6.2f}x the batched path")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source-size", type=int, default=384, help="side of the JPEGs on disk")
    parser.add_argument("--size", type=int, default=224, help="data.image_size of the cache")
    parser.add_argument("--aug-batch", type=int, default=128, help="batch of the augmentation comparison")
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, min(8, os.cpu_count() or 1)],
                        help="DataLoader worker counts to compare")
    args = parser.parse_args()

    from sspa_ray.data import _decode, load_split
    from sspa_ray.data import cache as cache_module

    with tempfile.TemporaryDirectory(prefix="sspa-bench-data-") as tmp:
        tmp = Path(tmp)
        make_photos(tmp, args.images, args.source_size)
        default_threads = _decode.decode_threads()
        one_s, n = cold_build(tmp, args.size, 1, tmp / "cache-1")
        many_s, _ = cold_build(tmp, args.size, None, tmp / "cache-n")
        print(f"images: {n} JPEGs of {args.source_size}x{args.source_size}, cached at {args.size}x{args.size}")
        print(f"cold build, 1 decoder thread:  {n / one_s:8.0f} img/s ({one_s:.2f} s)")
        print(f"cold build, {default_threads} decoder threads: {n / many_s:8.0f} img/s ({many_s:.2f} s); "
              f"threads speed-up {one_s / many_s:.2f}x")

        before = cache_module.decoded_images
        hits = []
        for _ in range(5):  # the median of five: a shared machine makes single timings noisy
            start = time.perf_counter()
            hit = load_split("affectnet", "train", tmp, args.size, progress=False)
            pixels = np.array(hit.images)  # read every byte, as a trial copying to its device would
            hits.append(time.perf_counter() - start)
        hit_s = float(np.median(hits))
        assert cache_module.decoded_images == before and pixels.shape[0] == n
        print(f"cache hit (listing + stat + mmap + read all {pixels.nbytes / 2**20:.0f} MiB): {hit_s:.3f} s; "
              f"{many_s / hit_s:.0f}x faster than the threaded build, {one_s / hit_s:.0f}x faster than 1 thread")

        trials = []
        for _ in range(3):
            second = subprocess.run(
                [sys.executable, "-c", _SECOND_TRIAL, str(tmp), str(args.size)],
                capture_output=True, text=True, check=True, env=os.environ,
            )
            trials.append(json.loads(second.stdout))
        decoded = max(trial["decoded"] for trial in trials)
        trial_s = float(np.median([trial["seconds"] for trial in trials]))
        print(f"second trial (new process, median of 3): decoded {decoded} images; load {trial_s:.3f} s "
              f"(after imports); {many_s / trial_s:.0f}x faster than decoding")

        augmentation_paths(hit.images, args.aug_batch, args.loader_workers)


if __name__ == "__main__":
    main()
