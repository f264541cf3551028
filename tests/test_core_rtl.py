"""The LIF core's RTL on Verilator (cocotb), bit for bit against the golden model.

Each hardware configuration is built once and runs several seeded random scenarios of 200 ticks
(see :func:`spikefab.sim.scenario.random_scenario` for the corners they reach), each under its
own idle pattern on the event input and backpressure pattern on the spike output. Per tick, the
spiking neurons must equal the golden model's, in order; at the end, every membrane, every
accumulator and every counter.
"""

import dataclasses
import zlib

import numpy as np
import pytest

from spikefab.sim.core_rtl import simulate_core
from spikefab.hdl.abi import CoreShape
from spikefab.sim.scenario import Pattern, compare_traces, corner_scenarios, random_scenario

from conftest import BASE_SEED, record_checked

# (label, shape, lanes, memory, scenarios)
CORNERS = [
    ("up5k-layer1", CoreShape(1024, 128, w_bits=8), 8, "spram", 3),
    ("one-row-budget", CoreShape(16, 8, w_bits=8, events_per_tick=10), 8, "block", 5),
    ("w4-ragged-row", CoreShape(100, 37, w_bits=4), 4, "block", 4),
    ("one-lane-v12", CoreShape(24, 5, w_bits=8, v_bits=12), 1, "block", 4),
    ("wide-w4", CoreShape(256, 256, w_bits=4), 16, "block", 3),
    ("two-lanes-v20", CoreShape(300, 19, w_bits=8, v_bits=20, events_per_tick=600), 2,
     "block", 4),
]


def random_configs(seed, count):
    rng = np.random.default_rng(seed)
    configs = []
    for k in range(count):
        axons = int(np.exp(rng.uniform(0, np.log(1024)))) or 1
        shape = CoreShape(
            axons=axons, neurons=int(rng.integers(1, 257)), w_bits=int(rng.choice([4, 8])),
            v_bits=int(rng.choice([16, 16, int(rng.integers(8, 25))])),
            events_per_tick=None if rng.random() < 0.6 else int(rng.integers(1, 2 * axons + 1)))
        configs.append((f"random{k}-seed{seed}", shape, int(rng.choice([1, 2, 4, 8, 16])),
                        str(rng.choice(["block", "spram"])), 3))
    return configs


PATTERNS = [
    (Pattern(), Pattern()),
    (Pattern("cycle", cycle=(1, 1, 1, 0)), Pattern("cycle", cycle=(1, 0, 0))),
    (Pattern("random", p=0.5, seed=BASE_SEED), Pattern("random", p=0.3, seed=BASE_SEED + 1)),
]

# The same cores with the synapse register (LIFCore(register_reads=True)), block RAM as on ECP5.
REGISTERED = [("ulx3s-layer1-reg", CoreShape(1024, 128, w_bits=8), 16, "block", 3),
              ("one-row-budget-reg", CoreShape(16, 8, w_bits=8, events_per_tick=10), 8,
               "block", 3),
              ("one-lane-v12-reg", CoreShape(24, 5, w_bits=8, v_bits=12), 1, "block", 3),
              ("w4-ragged-row-reg", CoreShape(100, 37, w_bits=4), 4, "spram", 3),
              # A hidden core of mnist-wide's ULX3S chip: 32 lanes of 4-bit weights.
              ("ulx3s-85f-w4-reg", CoreShape(784, 250, w_bits=4), 32, "block", 2)]

CONFIGS = CORNERS + random_configs(BASE_SEED, 6) + REGISTERED


def _check_corners_are_reached(shape, expected):
    """The corner scenarios must really reach their corner, or comparing them proves little."""
    high = expected["saturate-high"]
    # Only a clamp to v_max = theta makes every neuron spike each tick and land on exactly 0.
    assert all(len(s) == shape.neurons for s in high.spikes) and not high.v.any()
    assert (expected["saturate-low"].v == shape.v_min).all()
    if shape.axons < 1024:
        assert expected["out-of-range"].counters["drop_range"] > 0
    if "over-budget-wrap" in expected:
        assert expected["over-budget-wrap"].counters["over_budget"] > 0


@pytest.mark.parametrize("label, shape, lanes, memory, count", CONFIGS,
                         ids=[c[0] for c in CONFIGS])
def test_core_matches_golden_model(label, shape, lanes, memory, count):
    seeds = [BASE_SEED * 1000 + zlib.crc32(label.encode()) % 997 * 10 + k for k in range(count)]
    scenarios = [random_scenario(shape, seed, ticks=200, name=f"{label}-seed{seed}")
                 for seed in seeds]
    # Every configuration sees no stalls, deterministic stalls and random stalls on both sides.
    for k, (gaps, backpressure) in enumerate(PATTERNS[:count]):
        scenarios[k] = dataclasses.replace(scenarios[k], gaps=gaps, backpressure=backpressure)
    corners = corner_scenarios(shape, seeds[0])
    _check_corners_are_reached(shape, {c.name: c.expected() for c in corners})
    scenarios += corners
    traces = simulate_core(shape, scenarios, lanes=lanes, memory=memory,
                           register_reads=label.endswith("-reg"), run_name=label)
    problems = []
    for scenario, trace in zip(scenarios, traces):
        problems += compare_traces(scenario.expected(), trace,
                                   label=f"{label} (lanes={lanes}, {memory}) seed {scenario.seed}"
                                         f" [{scenario.gaps.kind.value}/"
                                         f"{scenario.backpressure.kind.value}]")
    assert not problems, "\n".join(problems)
    events = sum(t.counters["events"] for t in traces)
    record_checked(label, scenarios=len(scenarios), ticks=sum(s.ticks for s in scenarios),
                   events=events, synaptic_ops=sum(t.counters["sops"] for t in traces),
                   dropped_events=sum(t.counters["drop_range"] for t in traces),
                   over_budget_events=sum(t.counters["over_budget"] for t in traces),
                   spikes=sum(sum(len(s) for s in t.spikes) for t in traces))
