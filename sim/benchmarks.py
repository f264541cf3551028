"""The figures in BENCHMARKS.md, measured: ``spikefab bench`` prints them as Markdown tables."""

from __future__ import annotations

import math
import platform
import time

import numpy as np

from .core_rtl import core_build, simulate_core
from .encoding import rate_encode
from .golden import CoreModel, CoreShape, NeuronConfig, ResetMode
from .scenario import CoreScenario

__all__ = ["event_cost", "golden_throughput", "run_benchmarks"]

EVENT_COUNTS = (0, 1, 2, 4, 8, 16, 32, 64)


def _cost_scenario(shape: CoreShape, ticks: int, seed: int) -> CoreScenario:
    rng = np.random.default_rng(seed)
    counts = [EVENT_COUNTS[t % len(EVENT_COUNTS)] for t in range(ticks)]
    return CoreScenario(
        shape=shape, config=NeuronConfig(threshold=2000, leak=2, reset=ResetMode.SUBTRACT),
        weights=rng.integers(-20, 40, size=(shape.axons, shape.neurons)),
        bias=np.zeros(shape.neurons, np.int64), v0=np.zeros(shape.neurons, np.int64),
        events=[rng.integers(0, shape.axons, size=min(c, shape.events_per_tick))
                for c in counts],
        name=f"cost-seed{seed}", seed=seed)


def event_cost(shape: CoreShape, lanes: int, *, ticks: int = 64, seed: int = 7) -> dict:
    """Cycles per event (slope of tick cycles over events), cycles per update, sim speed."""
    core_build(shape, lanes=lanes).build()
    scenario = _cost_scenario(shape, ticks, seed)
    trace, = simulate_core(shape, [scenario], lanes=lanes, run_name=f"bench-cost-{seed}")
    events = np.array([len(e) for e in scenario.events])
    total = trace.cycles.sum(axis=1)
    slope, intercept = np.polyfit(events, total, 1)
    return {
        "shape": shape, "lanes": lanes, "bound": math.ceil(shape.neurons / lanes),
        "cycles_per_event": float(slope),
        "cycles_per_update": float(np.median(trace.cycles[events == 0, 1])),
        "sim_cycles_per_second": trace.sim_cycles / trace.sim_seconds,
    }


def golden_throughput(batch: int, *, steps: int = 25, repeats: int = 3, seed: int = 0) -> dict:
    """Neuron updates per second of the golden model for a 784-input, 128-neuron core."""
    shape = CoreShape(axons=784, neurons=128, w_bits=8)
    rng = np.random.default_rng(seed)
    weights = rng.integers(-128, 128, size=(784, 128))
    images = rng.integers(0, 256, size=(batch, 784), dtype=np.uint8)
    t0 = time.perf_counter()
    spikes = rate_encode(images, steps, seed)
    encode_seconds = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        model = CoreModel(shape, weights, NeuronConfig(500, 4), batch=batch)
        t0 = time.perf_counter()
        model.run(spikes)
        best = min(best, time.perf_counter() - t0)
    return {"batch": batch, "steps": steps,
            "neuron_updates_per_second": batch * steps * 128 / best,
            "images_per_second": batch / best,
            "encode_images_per_second": batch / encode_seconds}


def run_benchmarks(*, quick: bool = False) -> str:
    lines = [f"machine: {platform.machine()}, {platform.python_implementation()} "
             f"{platform.python_version()}, numpy {np.__version__}", ""]
    configs = [(CoreShape(1024, 128, w_bits=8), 8), (CoreShape(256, 256, w_bits=4), 16),
               (CoreShape(100, 37, w_bits=4), 4), (CoreShape(64, 32, w_bits=8), 8),
               (CoreShape(24, 5, w_bits=8), 1)]
    if quick:
        configs = configs[-2:]
    lines += ["| core (A x N, w_bits, P) | ceil(N/P) | cycles/event | over bound | "
              "cycles/update | RTL sim cycles/s |", "|---|---|---|---|---|---|"]
    for shape, lanes in configs:
        r = event_cost(shape, lanes, ticks=32 if quick else 64)
        lines.append(f"| {shape.axons} x {shape.neurons}, {shape.w_bits}, {lanes} | "
                     f"{r['bound']} | {r['cycles_per_event']:.2f} | "
                     f"{r['cycles_per_event'] - r['bound']:+.2f} | "
                     f"{r['cycles_per_update']:.0f} | {r['sim_cycles_per_second']:,.0f} |")
    lines += ["", "| golden model, 784 x 128, T = 25 | neuron updates/s | images/s | "
              "encoder images/s |", "|---|---|---|---|"]
    for batch in ((1, 100) if quick else (1, 100, 1000)):
        r = golden_throughput(batch)
        lines.append(f"| batch {batch} | {r['neuron_updates_per_second']:,.0f} | "
                     f"{r['images_per_second']:,.0f} | {r['encode_images_per_second']:,.0f} |")
    return "\n".join(lines)
