"""The demo: one core on a small random network, in RTL and in the golden model, side by side."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .core_rtl import simulate_core
from .encoding import rate_encode
from .golden import CoreShape, NeuronConfig, ResetMode
from .scenario import CoreScenario, CoreTrace, Pattern, compare_traces

__all__ = ["DemoResult", "demo_scenario", "run_demo", "raster"]


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
