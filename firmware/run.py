"""``spikefab run``: stream rate-encoded MNIST images through a target and report.

The same images, seed and model give the same spikes on every target (the encoder draws each
image's spikes from ``(seed, index of the image in its file)``), so ``golden`` and ``sim``
must give identical predictions. The encoder is the model's (``sim.encoding.ENCODERS``): with
the chip's own, ``xorshift32``, the images go as pixels (``sim.encoding.Pixels``), which a chip
with the encoder turns into spikes itself.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sim.encoding import Pixels

__all__ = ["BUNDLED_MODELS", "model_path", "load_network", "Workload", "prepare", "simulated",
           "run_images", "run_mnist"]

#: Models shipped with spikefab (firmware/models/), addressable by name in every command.
BUNDLED_MODELS = ("mnist-accurate", "mnist-fast", "mnist-wide")

#: Ticks per image where neither ``--steps`` nor the model says (``--model random``, a model or
#: image without ``steps``).
DEFAULT_STEPS = 25


def model_path(model: str) -> Path:
    """The file for ``--model``: a bundled model's name, or a path."""
    if model in BUNDLED_MODELS:
        from importlib.resources import files
        path = Path(str(files("spikefab.firmware") / "models" / f"{model}.npz"))
        if not path.exists():
            raise ValueError(f"--model {model}: this installation does not include it "
                             f"(expected {path})")
        return path
    path = Path(model)
    if not path.exists():
        raise ValueError(f"--model {model!r}: no such file (give a model .npz, a compiled "
                         f"image, one of {', '.join(BUNDLED_MODELS)}, or 'random')")
    if path.is_dir():
        raise ValueError(f"--model {model!r} is a folder; give a file in it (a model .npz or a "
                         f"compiled image), one of {', '.join(BUNDLED_MODELS)}, or 'random'")
    return path


def load_network(model: str, *, profile: str | None, seed: int, board: str | None = None):
    """``(image, steps)`` for ``--model``: a compiled image, a native model ``.npz`` (compiled
    here for ``profile``, see :func:`~spikefab.firmware.compiler.compile_for`), or ``random``
    (a seeded random 784-128-10 network; its accuracy is chance). ``steps`` is the model's (or
    image's), else :data:`DEFAULT_STEPS`."""
    from .compiler import compile_for
    from .image import ChipImage
    from .model import Model, random_model
    if model == "random":
        network = random_model([784, 128, 10], seed=seed)
    else:
        path = model_path(model)
        if path.read_bytes()[:8] == b"SPKFIMG\x00":
            image = ChipImage.load(path)
            if board is not None:
                raise ValueError(f"--model {model} is an image, compiled already: leave out "
                                 f"--board, or give the model (.npz) to compile for it")
            if profile is not None and profile != image.profile:
                raise ValueError(f"--model {model} is an image compiled for chip "
                                 f"{image.profile!r}, not {profile!r}: leave out --profile, "
                                 f"or compile the model for {profile!r}")
            return image, image.steps or DEFAULT_STEPS
        network = Model.load(path)
    return compile_for(network, profile, board=board), network.steps or DEFAULT_STEPS


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < 2:
            return
        width = 30
        filled = width * done // total
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
              f"({rate:.1f} images/s)", end="" if done < total else "\n", file=sys.stderr,
              flush=True)


@dataclass
class Workload:
    """MNIST images ready for a target: the compiled network and the images' spikes."""
    image: object               #: the ChipImage
    steps: int
    spikes: object              #: (steps, images, inputs) array, or sim.encoding.Pixels
    labels: np.ndarray
    indices: np.ndarray         #: each image's index in its file (the encoder's key)
    data: str                   #: the data set's name
    encode_seconds: float


def prepare(*, model: str, data: str | None, split: str, first: int, count: int | None,
            steps: int | None, seed: int, profile: str | None,
            board: str | None) -> Workload:
    """``count`` MNIST images (``None``: all) from position ``first`` of a split in ``data``
    (or of the bundled slice), rate-encoded with ``seed``, and ``model`` compiled for its
    chip."""
    from ..sim.encoding import chip_inputs
    from .mnist import bundled_slice, load_mnist
    dataset = bundled_slice() if data is None else load_mnist(data, split=split)
    if count is None:
        count = len(dataset.labels) - first
    if first < 0 or first + count > len(dataset.labels):
        raise ValueError(f"--first {first} --count {count}: {dataset.name} has "
                         f"{len(dataset.labels)} images")
    image, model_steps = load_network(model, profile=profile, seed=seed, board=board)
    steps = steps or model_steps
    chosen = slice(first, first + count)
    indices = dataset.indices[chosen]
    encode_start = time.perf_counter()
    spikes = chip_inputs(dataset.images[chosen], steps, seed, indices, encoder=image.encoder)
    return Workload(image, steps, spikes, dataset.labels[chosen], indices, dataset.name,
                    time.perf_counter() - encode_start)


def simulated(target) -> bool:
    """Whether ``target`` is an RTL simulation (the targets ``--workers`` shards)."""
    from .targets import Target
    return Target.parse(target).simulated


def run_images(target, workload: Workload, *, workers: int | str | None = None,
               baudrate: int = 3_000_000, timeout: float = 2.0, progress: bool = True):
    """The :class:`~spikefab.firmware.driver.RunResult` of ``workload`` on ``target``. An RTL
    simulation runs on ``workers`` (:func:`~spikefab.firmware.shard.parse_workers`: a number
    of local processes, default one per core, or a Ray cluster) and counts synaptic ops and
    cycles image by image, so that the result does not depend on ``workers``; other targets
    take no ``workers``."""
    from .shard import default_workers, parse_workers, run_on_ray, run_sharded
    from .targets import open_chip
    show = _Progress(progress)
    if not simulated(target):
        if workers is not None:
            raise ValueError(f"--workers shards RTL simulations only; the {target} target "
                             f"runs in one process (leave out --workers)")
        with open_chip(target, profile=workload.image.chip_profile(), baudrate=baudrate,
                       timeout=timeout) as chip:
            chip.load(workload.image)
            return chip.run(workload.spikes, progress=show, outputs=False)
    workers = default_workers() if workers is None else parse_workers(workers)
    if isinstance(workers, str):
        return run_on_ray(workers, str(target), workload.image, workload.spikes,
                          progress=show)
    if workers == 1:
        with open_chip(target, profile=workload.image.chip_profile()) as chip:
            chip.load(workload.image)
            return chip.run(workload.spikes, progress=show, per_image=True)
    return run_sharded(str(target), workload.image, workload.spikes, workers=workers,
                       progress=show)


def run_mnist(*, target: str, model: str = "mnist-accurate", data: str | None = None,
              split: str = "test", first: int = 0, count: int = 100,
              steps: int | None = None, seed: int = 0, profile: str | None = None,
              board: str | None = None,
              progress: bool = True, baudrate: int = 3_000_000, plot: str | None = None,
              on_chip=None, timeout: float = 2.0, workers: int | str | None = None) -> dict:
    """Run ``count`` MNIST images from position ``first`` of a split in ``data`` (or of the
    bundled slice) and return the report dict. ``on_chip``, if given, is called with the chip
    (:class:`~spikefab.hdl.profiles.ChipProfile`) before the target is opened; ``workers``:
    see :func:`run_images`."""
    from .targets import Target, TargetKind
    work = prepare(model=model, data=data, split=split, first=first, count=count,
                   steps=steps, seed=seed, profile=profile, board=board)
    image, steps, spikes, labels = work.image, work.steps, work.spikes, work.labels
    indices, encode_seconds = work.indices, work.encode_seconds
    golden_target = Target.parse(target).kind is TargetKind.GOLDEN
    chip_profile = image.chip_profile()
    if on_chip:
        on_chip(chip_profile)
    result = run_images(target, work, workers=workers, baudrate=baudrate, timeout=timeout,
                        progress=progress)
    correct = int((result.predictions == labels).sum())
    plotted = None
    if plot:
        # Drawn from the golden model whatever the target: a chip's inner layers cannot be
        # read back (the golden model equals the RTL and the boards spike for spike).
        from ..sim.golden_chip import GoldenChip
        from .plot import layer_spikes, plot_raster
        golden = GoldenChip(chip_profile.info())
        golden.load(image)
        first = spikes.image_spikes(0) if isinstance(spikes, Pixels) else spikes[:, 0]
        plot_raster(layer_spikes(image, golden.program, first), plot,
                    title=f"{work.data} image {int(indices[0])}, T = {steps}, "
                          f"predicted {int(result.predictions[0])}", label=int(labels[0]))
        plotted = {"path": str(plot), "image": int(indices[0]), "spikes_from": "golden model"}
    from .energy import operations_report
    sizes = image.meta.get("sizes") or [image.inputs, image.classes]
    operations = operations_report(
        sizes, result.sops / count,
        counted_by="golden model" if golden_target else "hardware counters")
    return {
        "target": target,
        "model": model,
        "chip": image.profile,
        "data": work.data,
        "first_index": int(indices[0]),
        "images": count,
        "steps": steps,
        "seed": seed,
        "correct": correct,
        "accuracy": correct / count,
        "predictions": [int(p) for p in result.predictions],
        "sops_per_image": result.sops / count,
        "cycles_per_image": None if result.cycles is None else result.cycles / count,
        "seconds": result.seconds,
        "images_per_second": count / result.seconds if result.seconds else None,
        "encode_seconds": encode_seconds,
        "link": result.link,
        "operations": operations.as_dict(),
        "plot": plotted,
    }


def format_report(report: dict) -> str:
    cycles = report["cycles_per_image"]
    return "\n".join([
        f"target {report['target']}: {report['images']} images of {report['data']} "
        f"(from index {report['first_index']}), "
        f"T = {report['steps']}, seed {report['seed']}, model {report['model']} on chip "
        f"{report['chip']}",
        f"accuracy: {report['accuracy']:.2%} ({report['correct']}/{report['images']})",
        f"images/s: {report['images_per_second']:.1f} on the target; "
        f"{report['images'] / (report['seconds'] + report['encode_seconds']):.1f} "
        f"with rate encoding",
        f"cycles per image: {'n/a' if cycles is None else f'{cycles:,.0f}'}",
        *_link_line(report),
        str(_operations(report["operations"])),
        *_plot_line(report),
    ])


def _link_line(report: dict) -> list[str]:
    """What the host link needed to get through, when it needed anything."""
    link = report.get("link")
    if not link or not (link["retries"] or link["stray"] or link["splits"]):
        return []
    return [f"host link: {link['requests']:,} requests, {link['retries']:,} sent again, "
            f"{link['resyncs']:,} resyncs, {link['stray']:,} stray answers skipped, "
            f"{link['splits']:,} split for the line"]


def _plot_line(report: dict) -> list[str]:
    """Where ``--plot`` wrote the raster, and whose spikes it shows."""
    plot = report.get("plot")
    if not plot:
        return []
    from .targets import Target, TargetKind
    golden_target = Target.parse(report["target"]).kind is TargetKind.GOLDEN
    source = ("the golden model's spikes" if golden_target else
              f"the golden model's spikes, not the {report['target']} target's: a chip's inner "
              f"layers cannot be read back")
    return [f"spike raster of image {plot['image']}: {plot['path']} ({source})"]


def _operations(d: dict):
    from .energy import OperationsReport
    return OperationsReport(d["sops_per_image"], d["ann_macs_per_image"], d["counted_by"])
