"""Drawing the synthetic faces: in chunks of CHUNK, each from its own random stream, by a pool of
worker processes, so the pixels are the same whatever the number of workers."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sspa_ray.data._progress import Progress
from sspa_ray.data.synthetic._render import Style, render

CHUNK = 512  # faces per rendering job, drawn from the job's own stream
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@dataclass(frozen=True)
class Job:
    """One chunk of faces to draw: written as JPEG files, or returned (resized to `size`) when there are none."""

    seed: np.random.SeedSequence
    params: np.ndarray
    looks: dict[str, np.ndarray]
    style: Style
    blank: np.ndarray | None = None   # bool [n]: rows drawn as a flat patch (AffectNet's non-face rows)
    files: tuple[Path, ...] = ()
    size: int = 0                     # side of the returned faces; 0 keeps the canvas

    def __len__(self) -> int:
        return len(self.params)


def chunks(seed: np.random.SeedSequence, params: np.ndarray, looks: dict[str, np.ndarray], style: Style, *,
            blank: np.ndarray | None = None, files: list[Path] | None = None, size: int = 0) -> list[Job]:
    """The chunks of one split; chunk i draws from the i-th child of `seed`, whoever draws it."""
    jobs = []
    for i, start in enumerate(range(0, len(params), CHUNK)):
        part = slice(start, start + CHUNK)
        jobs.append(Job(
            seed=np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, i)),
            params=params[part], looks={k: v[part] for k, v in looks.items()}, style=style,
            blank=None if blank is None else blank[part], files=tuple(files[part]) if files else (), size=size,
        ))
    return jobs


def _draw(job: Job) -> tuple[np.ndarray | None, np.ndarray]:
    """Render one chunk: (its faces, or None when they were written to its files; face boxes [n, 4])."""
    images, boxes = render(np.random.default_rng(job.seed), job.params, job.looks, job.style)
    if job.blank is not None:
        images[job.blank] = images[job.blank, :1, :1, :]  # a "non-face" row is a flat patch of colour
    if job.files:
        for path, image in zip(job.files, images, strict=True):
            Image.fromarray(image).save(path, format="JPEG", quality=job.style.quality)
        return None, boxes
    if job.size and job.size != job.style.canvas:
        images = np.stack([np.asarray(Image.fromarray(image).resize((job.size, job.size), Image.Resampling.BILINEAR))
                           for image in images])
    return images, boxes


def _default_workers(jobs: int) -> int:
    """Drawing processes for `jobs` chunks: one per core this process may use, up to 8. A worker
    costs about a second to start (it imports numpy and PIL), as much as drawing two chunks, so
    there are at least two chunks per worker."""
    return max(1, min(8, len(os.sched_getaffinity(0)), jobs // 2))


def _keep_freed_memory() -> None:
    """Pool initializer: let glibc keep freed drawing buffers in the worker's heap. By default it
    maps each buffer of more than 128 KB afresh and unmaps it on free, and faulting the pages back
    in cost a third of the drawing time (1024 aux faces: 1.25 s of CPU, 0.75 s with this)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return  # not glibc: its own defaults
    mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def draw_all(jobs: list[Job], workers: int | None, bar: Progress | None = None) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """Every job's result, in order; drawn by `workers` processes (_default_workers when None)."""
    workers = min(workers or _default_workers(len(jobs)), len(jobs))
    if workers <= 1:
        results = map(_draw, jobs)
        pool = None
    else:
        # Spawned, not forked: the caller may be a threaded process (a Ray worker, a Tune driver).
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_keep_freed_memory)
        results = pool.map(_draw, jobs)
    try:
        done = []
        for job, result in zip(jobs, results, strict=True):
            done.append(result)
            if bar is not None:
                bar.update(len(job))
        return done
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

