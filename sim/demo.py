"""The demos: RTL and golden model side by side.

:func:`run_mnist_demo` (``make demo``, ``spikefab demo``) streams bundled MNIST images through
the RTL simulation of the iCEBreaker chip loaded with a shipped model, over the host link, and
through the golden model; :func:`run_demo` (``spikefab demo --core``) runs one core on a small
random network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..firmware.driver import RunResult
from ..hdl.abi import CoreShape, ResetMode
from .core_rtl import simulate_core
from .encoding import chip_inputs, rate_encode
from .golden import NeuronConfig
from .scenario import CoreScenario, CoreTrace, Pattern, compare_traces

__all__ = ["DemoResult", "demo_scenario", "run_demo", "raster", "MnistDemo", "run_mnist_demo"]


def demo_scenario(*, axons: int, neurons: int, ticks: int, seed: int) -> CoreScenario:
    """A rate-encoded random 'image' into a random excitatory/inhibitory layer of one core."""
    rng = np.random.default_rng(seed)
    shape = CoreShape(axons=axons, neurons=neurons, w_bits=8)
    image = rng.integers(0, 256, size=(1, axons), dtype=np.uint8)
    spikes = rate_encode(image, steps=ticks, seed=seed)[:, 0, :]
    # Each neuron gets its own mean drive, from inhibited to eager, so the raster has texture.
    mean = np.linspace(-6, 12, neurons)
    weights = np.clip(np.round(rng.normal(mean, 45, size=(axons, neurons))), -128, 127)
    return CoreScenario(
        shape=shape, config=NeuronConfig(threshold=600, leak=3, reset=ResetMode.SUBTRACT),
        weights=weights.astype(np.int64), bias=rng.integers(-20, 21, size=neurons),
        v0=np.zeros(neurons, np.int64), events=[np.flatnonzero(s) for s in spikes],
        gaps=Pattern("random", p=0.7, seed=seed), backpressure=Pattern("random", p=0.5,
                                                                      seed=seed + 1),
        name=f"demo-seed{seed}", seed=seed)


def raster(spikes: list[np.ndarray], neurons: int, ticks: int) -> list[str]:
    """Text spike raster: one row per neuron, one column per tick, '|' for a spike."""
    grid = np.full((neurons, ticks), ".")
    for t, fired in enumerate(spikes):
        grid[fired, t] = "|"
    width = len(str(neurons - 1))
    return [f"n{n:0{width}d} " + "".join(row) for n, row in enumerate(grid)]


@dataclass
class DemoResult:
    scenario: CoreScenario
    expected: CoreTrace
    observed: CoreTrace
    problems: list[str]
    lanes: int
    seconds: float

    @property
    def agree(self) -> bool:
        return not self.problems

    def report(self) -> str:
        s, o = self.scenario, self.observed
        shape = s.shape
        rows = math.ceil(shape.neurons / self.lanes)
        spikes = sum(len(x) for x in o.spikes)
        lines = [
            f"one LIF core: {shape.axons} axons x {shape.neurons} neurons, {shape.w_bits}-bit "
            f"weights, {self.lanes} lanes; {s.ticks} ticks of rate-encoded input (seed {s.seed})",
            f"theta={s.config.threshold} leak k={s.config.leak} reset={s.config.reset.name.lower()}"
            f"; random idle gaps on events, random backpressure on spikes",
            "",
            "spike raster from the RTL (rows: neurons, columns: ticks, '|' = spike):",
            *raster(o.spikes, shape.neurons, s.ticks),
            "",
        ]
        if self.agree:
            lines.append(f"RTL (Verilator) == golden model: all {spikes} spikes in every tick, "
                         f"all {shape.neurons} final membranes, all counters")
        else:
            lines.append("RTL and golden model DISAGREE:")
            lines += ["  " + p for p in self.problems]
        c = o.counters
        lines.append(f"events {c['events']}, synaptic ops {c['sops']}, "
                     f"RTL cycles {int(o.cycles.sum())} for {s.ticks} ticks "
                     f"(ceil(N/P) = {rows} cycles per event), {self.seconds:.1f} s")
        return "\n".join(lines)


def run_demo(*, axons: int = 64, neurons: int = 32, ticks: int = 48, lanes: int = 8,
             seed: int = 1) -> DemoResult:
    scenario = demo_scenario(axons=axons, neurons=neurons, ticks=ticks, seed=seed)
    start = time.perf_counter()
    observed, = simulate_core(scenario.shape, [scenario], lanes=lanes, run_name="demo")
    seconds = time.perf_counter() - start
    expected = scenario.expected()
    problems = compare_traces(expected, observed, label="demo")
    return DemoResult(scenario, expected, observed, problems, lanes, seconds)


@dataclass
class MnistDemo:
    model: str
    profile: str
    steps: int
    labels: np.ndarray
    indices: np.ndarray
    rtl: RunResult
    golden: RunResult
    build_seconds: float
    sizes: list | None = None     #: the network's layer sizes, e.g. [784, 128, 10]
    held_out: bool = False        #: a shipped model, never trained on the bundled images

    @property
    def disagreements(self) -> list[str]:
        """Every way in which the RTL's run differs from the golden model's."""
        problems = []
        for b in range(len(self.labels)):
            rtl = sorted(self.rtl.outputs[b])
            golden = sorted(self.golden.outputs[b])
            if rtl != golden:
                extra, missing = set(rtl) - set(golden), set(golden) - set(rtl)
                problems.append(f"image {b}: output spikes differ (RTL only: {sorted(extra)[:4]}, "
                                f"golden only: {sorted(missing)[:4]})")
            if not np.array_equal(self.rtl.final_v[b], self.golden.final_v[b]):
                problems.append(f"image {b}: final output membranes {self.rtl.final_v[b]} != "
                                f"{self.golden.final_v[b]}")
        if self.rtl.sops != self.golden.sops:
            problems.append(f"synaptic ops {self.rtl.sops} != {self.golden.sops}")
        return problems

    def report(self) -> str:
        count = len(self.labels)
        rtl_ok = int((self.rtl.predictions == self.labels).sum())
        golden_ok = int((self.golden.predictions == self.labels).sum())
        events = sum(len(e) for e in self.rtl.outputs)
        shape = f"{'-'.join(map(str, self.sizes))}, " if self.sizes else ""
        model = self.model + (" (untrained: chance accuracy)" if self.model == "random" else "")
        lines = [
            f"MNIST on the {self.profile} chip ({shape}host link), model {model}, "
            f"T = {self.steps}, {count} bundled images (training-file images "
            f"{int(self.indices[0])}..{int(self.indices[-1])}"
            f"{', never trained on' if self.held_out else ''})",
            "",
            "image  label  RTL  golden   output spikes per class (RTL)",
        ]
        for b in range(count):
            lines.append(f"{int(self.indices[b]):5d}  {int(self.labels[b]):5d}  "
                         f"{int(self.rtl.predictions[b]):3d}  {int(self.golden.predictions[b]):6d}"
                         f"   {' '.join(f'{int(c):2d}' for c in self.rtl.counts[b])}")
        lines += [
            "",
            f"accuracy: RTL {rtl_ok / count:.1%} ({rtl_ok}/{count}), "
            f"golden model {golden_ok / count:.1%} ({golden_ok}/{count})",
        ]
        problems = self.disagreements
        if problems:
            lines.append("RTL and golden model DISAGREE:")
            lines += ["  " + p for p in problems[:20]]
        else:
            lines.append(f"RTL (Verilator) == golden model: all {events} output spikes (neuron and "
                         f"tick), all final output membranes, all {self.rtl.sops:,} synaptic ops")
        lines.append(f"RTL: {self.rtl.cycles / count:,.0f} mesh cycles per image, "
                     f"{count / max(self.rtl.seconds, 1e-9):.1f} images/s simulated "
                     f"(build {self.build_seconds:.0f} s); golden model "
                     f"{count / max(self.golden.seconds, 1e-9):,.0f} images/s")
        return "\n".join(lines)


def run_mnist_demo(*, model: str = "mnist-accurate", count: int = 20, seed: int = 0,
                   profile: str | None = None, board: str | None = None, progress=None,
                   starting=None) -> MnistDemo:
    """Run ``count`` bundled MNIST images through the RTL simulation of the model's chip (an
    image's own; for a model, ``profile``'s or the one generated for ``board``, see
    :func:`~spikefab.firmware.run.load_network`) and through the golden model. ``starting``,
    if given, is called with the chip's profile before its simulation is built or started."""
    from ..firmware.targets import open_chip
    from ..firmware.mnist import bundled_slice
    from ..firmware.run import load_network
    dataset = bundled_slice()
    if not 1 <= count <= len(dataset.labels):
        raise ValueError(f"count must be in [1, {len(dataset.labels)}], not {count}")
    image, steps = load_network(model, profile=profile, seed=seed, board=board)
    if starting is not None:
        starting(image.chip_profile())
    spikes = chip_inputs(dataset.images[:count], steps, seed, dataset.indices[:count],
                         encoder=image.encoder)
    results = {}
    for target in ("golden", "sim"):
        start = time.perf_counter()
        with open_chip(target, profile=image.chip_profile()) as chip:
            build_seconds = time.perf_counter() - start
            chip.load(image)
            results[target] = chip.run(spikes, progress=progress if target == "sim" else None)
    return MnistDemo(model, image.profile, steps, dataset.labels[:count], dataset.indices[:count],
                     results["sim"], results["golden"], build_seconds,
                     sizes=image.meta.get("sizes") or [image.inputs, image.classes],
                     held_out=_shipped(image))


def _shipped(image) -> bool:
    """Whether ``image`` holds a shipped model: those were trained on training-file images
    0-54999 only (firmware/models/README.md), so the bundled slice (59000-59999) is held out."""
    from ..firmware.model import Model
    from ..firmware.run import BUNDLED_MODELS, model_path
    digest = image.meta.get("sha256")
    return bool(digest) and any(Model.load(model_path(name)).digest() == digest
                                for name in BUNDLED_MODELS)
