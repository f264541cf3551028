"""Images split over worker processes, each with its own chip, merged back in image order.

``spikefab run --workers N`` and ``spikefab verify`` run the RTL simulation this way: every
worker opens the target (its own simulator), loads the image once and then runs the shards it
is given; the parent merges the :class:`~spikefab.firmware.driver.RunResult` of each shard in
image order. The workers are local processes (:func:`run_sharded`) or the workers of a Ray
cluster (:func:`run_on_ray`, ``--workers ray`` or ``ray://HOST:PORT``; Ray is the optional
extra ``spikefab[ray]``), which run a shard again elsewhere when its worker dies.

Each image's synaptic ops and cycles are counted per image (``LinkChip.run(per_image=True)``),
so the merged result is the same for any number of workers, but for a few cycles per image:
an image's cycles include the link's bytes, and some of those (sequence numbers, tick stamps,
counters, each SLIP-escaped when it holds END or ESC) depend on the images the same chip ran
before. A merged result's ``seconds`` is the wall time of the whole run, workers' start-up
and image loading included.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..sim.encoding import Pixels
from .driver import RunResult

__all__ = ["ShardError", "default_workers", "shards", "merge", "run_sharded", "parse_workers",
           "run_on_ray", "RAY_RETRIES"]


class ShardError(RuntimeError):
    """A worker failed; the message names its images and the cause."""


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


def shards(count: int, workers: int, *, per_worker: int = 4) -> list[range]:
    """``count`` images in contiguous ranges, about ``per_worker`` per worker (so that a
    worker whose images are slow does not hold up the end alone), none empty."""
    if count <= 0:
        return []
    n = min(count, max(1, workers) * per_worker)
    bounds = [count * k // n for k in range(n + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def merge(results: list[RunResult], *, target: str, seconds: float) -> RunResult:
    """The results of consecutive shards as one run (in the order given)."""
    def cat(name):
        parts = [getattr(r, name) for r in results]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    sops_each, cycles_each = cat("sops_per_image"), cat("cycles_per_image")
    links = [r.link for r in results if r.link]
    link = ({k: sum(d[k] for d in links) for k in links[0]} if links else None)
    return RunResult(
        target, np.concatenate([r.predictions for r in results]),
        np.concatenate([r.counts for r in results]),
        np.concatenate([r.final_v for r in results]),
        [events for r in results for events in r.outputs],
        int(sops_each.sum()) if sops_each is not None else sum(r.sops for r in results),
        (int(cycles_each.sum()) if cycles_each is not None else
         None if any(r.cycles is None for r in results) else sum(r.cycles for r in results)),
        seconds, link, sops_each, cycles_each)


# ---- the worker side: one chip per process, opened by its first shard ----

_chip = None
_chip_key = None


def _run(target: str, image_bytes: bytes, baudrate: int, timeout: float,
         spikes: np.ndarray) -> RunResult:
    """One shard, in a worker process (a local pool's or a Ray worker's): the process keeps its
    chip open for the next shard of the same target and image."""
    global _chip, _chip_key
    key = (target, hashlib.sha256(image_bytes).hexdigest(), baudrate, timeout)
    if _chip_key != key:
        # Opened here rather than in a pool initializer, so that a failure to open (a
        # simulator that does not build, a board that is not there) comes back as this
        # shard's exception, with its message, instead of a broken pool.
        from multiprocessing.util import Finalize
        from .image import ChipImage
        from .targets import open_chip
        if _chip is None:
            # Pool workers leave through os._exit, which skips atexit: this runs before it.
            Finalize(None, _close, exitpriority=10)
        _close()
        image = ChipImage.from_bytes(image_bytes)
        chip = open_chip(target, profile=image.chip_profile(), baudrate=baudrate,
                         timeout=timeout)
        chip.load(image)
        _chip, _chip_key = chip, key
    return _chip.run(spikes, outputs=True, per_image=True)


def _close() -> None:
    """Close this worker's chip, if it has one open."""
    global _chip, _chip_key
    if _chip is not None:
        chip, _chip, _chip_key = _chip, None, None
        chip.close()


def image_count(spikes) -> int:
    """The images of a run's input: spikes ``(steps, images, inputs)``, or ``Pixels``."""
    return len(spikes) if isinstance(spikes, Pixels) else spikes.shape[1]


def image_part(spikes, part: range):
    """The images ``part`` of a run's input (a shard's)."""
    if isinstance(spikes, Pixels):
        return spikes.part(part.start, part.stop)
    return spikes[:, part.start:part.stop]


def _failed(part: range, target: str, exc: BaseException) -> ShardError:
    return ShardError(f"images {part.start} to {part.stop - 1} failed on {target}: {exc}")


def run_sharded(target: str, image, spikes: np.ndarray, *, workers: int,
                baudrate: int = 3_000_000, timeout: float = 2.0,
                progress=None) -> RunResult:
    """Run ``spikes`` (``(steps, images, inputs)``) on ``workers`` local processes, each with
    its own chip of ``target`` loaded with ``image``; the result in image order, with each
    image's synaptic ops and cycles. ``progress(done, total)`` is called as shards finish."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    count = image_count(spikes)
    parts = shards(count, workers)
    start = time.perf_counter()
    # Spawned, not forked: a worker runs a simulator in threads of its own, and a fork of a
    # process with threads copies their locks in whatever state they were.
    context = multiprocessing.get_context("spawn")
    results: dict[int, RunResult] = {}
    done = 0
    image_bytes = image.to_bytes()
    pool = ProcessPoolExecutor(max_workers=min(workers, len(parts)), mp_context=context)
    futures = {pool.submit(_run, target, image_bytes, baudrate, timeout,
                           image_part(spikes, part)): k
               for k, part in enumerate(parts)}
    try:
        for future in as_completed(futures):
            k = futures[future]
            try:
                results[k] = future.result()
            except BrokenProcessPool as exc:
                raise ShardError(f"a worker process died (images {parts[k].start} to "
                                 f"{parts[k].stop - 1} among others were not run): "
                                 f"{exc}") from None
            except Exception as exc:
                raise _failed(parts[k], target, exc) from exc
            done += len(parts[k])
            if progress:
                progress(done, count)
    except BaseException:
        # Nothing more is started; the shards already running finish in their workers.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return merge([results[k] for k in range(len(parts))], target=target,
                 seconds=time.perf_counter() - start)


#: How often Ray runs a shard again whose worker died (Ray's own retry of system failures).
RAY_RETRIES = 3


def parse_workers(text) -> int | str:
    """``--workers``: a number of local processes, ``ray`` (a Ray cluster started for this
    run, one worker per core) or ``ray://HOST:PORT`` (an existing cluster's Ray client
    address); ``ValueError`` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and (text == "ray" or text.startswith("ray://")):
        if text == "ray://":
            raise ValueError("--workers ray:// needs the cluster's address, e.g. "
                             "ray://10.0.0.5:10001")
        return text
    else:
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"--workers {text!r}: give a number of worker processes, 'ray' "
                             f"(a local Ray cluster) or ray://HOST:PORT (a running one)") \
                from None
    if value < 1:
        raise ValueError(f"--workers must be at least 1, not {value}")
    return value


def run_on_ray(address: str, target: str, image, spikes: np.ndarray, *,
               baudrate: int = 3_000_000, timeout: float = 2.0, progress=None) -> RunResult:
    """As :func:`run_sharded`, with the shards as tasks on a Ray cluster: ``"ray"`` starts one
    on this machine for the run, ``"ray://HOST:PORT"`` connects to a running one (whose
    workers must have spikefab installed). A task whose worker dies is run again on another
    worker (Ray retries it, :data:`RAY_RETRIES` times at most); each shard's result is taken
    once, so no image is lost or counted twice."""
    try:
        import ray
    except ImportError:
        raise ShardError("--workers ray needs Ray: pip install 'spikefab[ray]'") from None
    count = image_count(spikes)
    start = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "ray" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        parts = shards(count, workers)
        task = ray.remote(max_retries=RAY_RETRIES, num_cpus=1)(_run)
        image_ref = ray.put(image.to_bytes())
        refs = {task.remote(target, image_ref, baudrate, timeout,
                            image_part(spikes, part)): k
                for k, part in enumerate(parts)}
        results: dict[int, RunResult] = {}
        waiting, done = list(refs), 0
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            k = refs[ready[0]]
            try:
                results[k] = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                for ref in waiting:
                    ray.cancel(ref)
                cause = getattr(exc, "cause", None) or exc
                raise _failed(parts[k], target, cause) from None
            done += len(parts[k])
            if progress:
                progress(done, count)
    finally:
        if started:
            ray.shutdown()
    return merge([results[k] for k in range(len(parts))], target=target,
                 seconds=time.perf_counter() - start)
