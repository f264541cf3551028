"""Chip scenarios: a program, host events per tick, clocks and patterns; run on RTL and golden.

The bench (``sim/benches/chip_bench.py``) and the test process exchange a scenario and its
observed result as pickle files written and read by this module only.
"""

from __future__ import annotations

import collections
import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chip import ChipModel, ChipProgram, CoreProgram
from .golden import CoreShape, NeuronConfig, ResetMode
from .runner import RTLBuild
from .scenario import Pattern

__all__ = ["ChipScenario", "ChipResult", "random_chip_program", "random_host_events",
           "chip_build", "simulate_chip",
           "expected_chip", "compare_chip"]


@dataclass
class ChipScenario:
    program: ChipProgram
    lanes: dict                       # (x, y) -> P
    host_events: list[list[tuple[int, int, int]]]  # per tick
    mesh_period_ps: int = 10_000
    core_periods_ps: dict = field(default_factory=dict)  # (x, y) -> period; default: mesh's
    gaps: Pattern = field(default_factory=Pattern)
    backpressure: Pattern = field(default_factory=Pattern)
    name: str = "chip"
    seed: int = 0

    @property
    def ticks(self) -> int:
        return len(self.host_events)


@dataclass
class ChipResult:
    outputs: list[tuple[int, int, int, int]]   # (x, y, neuron, tick) in arrival order
    v: dict                                    # (x, y) -> final membranes
    counters: dict                             # (x, y) -> {events, sops, ticks, drops...}
    mesh_drops: int
    cycles: int = 0                            # mesh-clock cycles of the run phase


def random_chip_program(cols: int, rows: int, seed: int, *, topology: str = "recurrent",
                        hot_spot: bool = False, max_host_events: int = 8) -> ChipProgram:
    """A random network on a mesh: ``feed-forward`` (routes only to later tiles) or
    ``recurrent`` (anywhere, self-loops included); multicast fan-out of up to four
    destinations per neuron, some to other cores' missing axons (dropped in the mesh);
    ``hot_spot`` sends every route to one core."""
    rng = np.random.default_rng(seed)
    tiles = [(x, y) for y in range(rows) for x in range(cols)]
    sizes = {t: (int(rng.integers(4, 33)), int(rng.integers(2, 17))) for t in tiles}
    hot = tiles[int(rng.integers(0, len(tiles)))]
    routes = {}
    for k, tile in enumerate(tiles):
        neurons = sizes[tile][1]
        per_neuron = []
        for n in range(neurons):
            dests = []
            for _ in range(int(rng.integers(0, 5))):
                if hot_spot:
                    target = hot
                elif topology == "feed-forward":
                    if k == len(tiles) - 1:
                        break
                    target = tiles[int(rng.integers(k + 1, len(tiles)))]
                else:
                    target = tiles[int(rng.integers(0, len(tiles)))]
                axons = sizes[target][0]
                bad = rng.random() < 0.05  # a route to an axon that core lacks
                dests.append((target[0], target[1],
                              int(rng.integers(axons, 1024) if bad else rng.integers(0, axons))))
            per_neuron.append(dests)
        routes[tile] = per_neuron
    # The budget must cover the worst tick: every host event and every route into the core.
    incoming = collections.Counter()
    for tile in tiles:
        for dests in routes[tile]:
            for x, y, axon in dests:
                if axon < sizes[x, y][0]:
                    incoming[x, y] += 1
    cores = {}
    for tile in tiles:
        axons, neurons = sizes[tile]
        budget = max(axons, incoming[tile] + max_host_events)
        shape = CoreShape(axons, neurons, w_bits=8, events_per_tick=budget)
        cores[tile] = CoreProgram(
            shape=shape,
            config=NeuronConfig(int(rng.integers(20, 200)), int(rng.integers(0, 5)),
                                ResetMode(int(rng.integers(0, 2)))),
            weights=rng.integers(-40, 90, size=(axons, neurons)),
            bias=rng.integers(-3, 6, size=neurons),
            routes=routes[tile], to_host=rng.random(neurons) < 0.4)
    return ChipProgram(cols, rows, cores, host=tiles[int(rng.integers(0, len(tiles)))])


def random_host_events(program: ChipProgram, ticks: int, seed: int, *,
                       max_events: int = 8) -> list[list[tuple[int, int, int]]]:
    """Host events per tick, a few of them addressed to tiles or axons that do not exist."""
    rng = np.random.default_rng(seed)
    tiles = program.tiles()
    out = []
    for _ in range(ticks):
        tick = []
        for _ in range(int(rng.integers(0, max_events + 1))):
            x, y = tiles[int(rng.integers(0, len(tiles)))]
            axons = program.cores[x, y].shape.axons
            if rng.random() < 0.05:
                tick.append((int(rng.integers(0, 8)), int(rng.integers(program.rows, 8)), 0))
            elif rng.random() < 0.05:
                tick.append((x, y, int(rng.integers(axons, 1024))))
            else:
                tick.append((x, y, int(rng.integers(0, axons))))
        out.append(tick)
    return out


def chip_build(program: ChipProgram, lanes: dict) -> RTLBuild:
    from ..hdl.chip import Chip, TileConfig
    tiles = {t: TileConfig(p.shape, lanes=lanes[t],
                           destinations=max(2, sum(len(d) for d in p.routes)))
             for t, p in program.cores.items()}
    chip = Chip(cols=program.cols, rows=program.rows, tiles=tiles, host=program.host)
    return RTLBuild(chip, f"chip-{program.cols}x{program.rows}")


def simulate_chip(scenarios: list[ChipScenario], *, run_name: str) -> list[ChipResult]:
    """Run scenarios that share one program shape (one build) on the RTL."""
    build = chip_build(scenarios[0].program, scenarios[0].lanes).build()
    directory = build.directory / "runs" / run_name
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, scenario in enumerate(scenarios):
        path = directory / f"{k:03d}-{scenario.name}.pickle"
        path.write_bytes(pickle.dumps(scenario))
        path.with_suffix(".result").unlink(missing_ok=True)
        paths.append(path)
    build.run("spikefab.sim.benches.chip_bench", name=run_name,
              env={"SPIKEFAB_SCENARIOS": os.pathsep.join(str(p) for p in paths)})
    return [pickle.loads(p.with_suffix(".result").read_bytes()) for p in paths]


def expected_chip(scenario: ChipScenario) -> ChipResult:
    model = ChipModel(scenario.program)
    outputs = []
    for tick in scenario.host_events:
        outputs += model.step([tick])[0]
    model.deliver_pending()
    counters = {}
    for tile, core in model.cores.items():
        c = core.counters
        counters[tile] = {"events": c.events, "sops": c.sops, "ticks": c.ticks,
                          "drop_range": c.drop_range, "drop_budget": c.drop_budget}
    return ChipResult(outputs=outputs, v={t: c.v[0].copy() for t, c in model.cores.items()},
                      counters=counters, mesh_drops=model.mesh_drops)


def compare_chip(expected: ChipResult, observed: ChipResult, *, label: str) -> list[str]:
    """Differences: outputs compared as a multiset per tick (arrival order is free)."""
    problems = []

    def by_tick(outputs):
        ticks = collections.defaultdict(collections.Counter)
        for x, y, n, t in outputs:
            ticks[t & 0xFFFF][x, y, n] += 1
        return ticks

    e, o = by_tick(expected.outputs), by_tick(observed.outputs)
    for t in sorted(set(e) | set(o)):
        if e[t] != o[t]:
            problems.append(f"{label}: tick {t}: outputs {sorted(o[t].elements())} != expected "
                            f"{sorted(e[t].elements())}")
            break
    for tile, v in expected.v.items():
        if not np.array_equal(v, observed.v.get(tile)):
            problems.append(f"{label}: core {tile}: final V {observed.v.get(tile)} != "
                            f"expected {v}")
    for tile, counters in expected.counters.items():
        if counters != observed.counters.get(tile):
            problems.append(f"{label}: core {tile}: counters {observed.counters.get(tile)} != "
                            f"expected {counters}")
    if expected.mesh_drops != observed.mesh_drops:
        problems.append(f"{label}: mesh drops {observed.mesh_drops} != expected "
                        f"{expected.mesh_drops}")
    return problems
