"""The chip's RTL (routers, GALS tiles, tick barrier) on Verilator, against the golden chip.

Each mesh layout is built once; every run plays three random networks on it (feed-forward,
recurrent with self-loops and multicast, and hot-spot: every route into one core) for 100
ticks of random host events, some addressed to tiles or axons that do not exist. Each run
fixes the clock periods of the mesh and of every core (GALS); the three scenarios of a run see
no, deterministic and random backpressure at the host output, random idle gaps at the host
input, and (recurrent, hot-spot) routers frozen at random cycles through the chip's test hook. Per tick, the output events must equal the golden model's as multisets; at the end,
every membrane, every core counter and the mesh's drop count. A tick that does not start within
200,000 mesh cycles fails the run (deadlock).
"""

import numpy as np
import pytest

from spikefab.sim.chip_rtl import (ChipScenario, compare_chip, expected_chip, random_chip_layout,
                                   random_chip_program, random_host_events, simulate_chip)
from spikefab.sim.scenario import Pattern

from conftest import BASE_SEED, record_checked

MESH = 10_000  # ps


def periods(kind, layout, seed):
    tiles = list(layout.sizes)
    if kind == "1:1":
        return {}
    if kind == "1:1.7":
        return {t: 17_000 for t in tiles}
    if kind == "3:1":
        return {t: 3_334 for t in tiles}
    rng = np.random.default_rng(seed)
    return {t: 2 * int(rng.integers(1_250, 15_000)) for t in tiles}  # even: a 50% duty cycle


RUNS = [((1, 4), "1:1"), ((1, 4), "1:1.7"), ((2, 2), "3:1"), ((2, 2), "random"),
        ((3, 3), "random"), ((3, 3), "1:1.7")]


@pytest.mark.parametrize("mesh, clocks", RUNS, ids=[f"{c}x{r}-{k}" for (c, r), k in RUNS])
def test_chip_matches_golden_model(mesh, clocks):
    cols, rows = mesh
    seed = BASE_SEED + 100 * cols + 10 * rows
    layout = random_chip_layout(cols, rows, seed)
    clock_seed = seed + len(clocks)
    core_periods = periods(clocks, layout, clock_seed)
    patterns = [Pattern(), Pattern("cycle", cycle=(1, 0, 0)),
                Pattern("random", p=0.3, seed=seed)]
    scenarios = []
    for k, topology in enumerate(["feed-forward", "recurrent", "hot-spot"]):
        program = random_chip_program(layout, seed + k, topology=topology)
        scenarios.append(ChipScenario(
            layout=layout, program=program,
            host_events=random_host_events(program, 100, seed + 7 * k),
            mesh_period_ps=MESH, core_periods_ps=core_periods,
            gaps=Pattern("random", p=0.6, seed=seed + k), backpressure=patterns[k],
            mesh_stalls=(0.0, 0.2, 0.1)[k],
            name=f"{cols}x{rows}-{clocks.replace(':', 'to')}-{topology}-seed{seed + k}",
            seed=seed + k))
    results = simulate_chip(scenarios, run_name=f"{cols}x{rows}-{clocks.replace(':', 'to')}")
    problems = []
    for scenario, result in zip(scenarios, results):
        problems += compare_chip(expected_chip(scenario), result,
                                 label=f"{scenario.name} (clocks {clocks}: {core_periods})")
    assert not problems, "\n".join(problems)
    record_checked(f"chip-{cols}x{rows}-{clocks}", chip_scenarios=len(scenarios),
                   chip_ticks=sum(s.ticks for s in scenarios),
                   chip_events=sum(c["events"] for r in results for c in r.counters.values()),
                   chip_synaptic_ops=sum(c["sops"] for r in results
                                         for c in r.counters.values()),
                   chip_outputs=sum(len(r.outputs) for r in results),
                   chip_mesh_drops=sum(r.mesh_drops for r in results))
