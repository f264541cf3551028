"""Chip scenarios: a program, host events per tick, clocks and patterns; run on RTL and golden.

The bench (``sim/benches/chip_bench.py``) and the test process exchange a scenario and its
observed result as pickle files written and read by this module only.
"""

from __future__ import annotations

import collections
import os
import pickle
from dataclasses import dataclass, field

import numpy as np

from .chip import ChipModel, ChipProgram, CoreProgram
from .golden import NeuronConfig
from ..hdl.abi import CoreShape, ResetMode
from .runner import RTLBuild
from .scenario import Pattern

__all__ = ["ChipLayout", "ChipScenario", "ChipResult", "random_chip_layout",
           "random_chip_program", "random_host_events", "tile_configs",
           "chip_build", "simulate_chip",
           "expected_chip", "compare_chip"]


@dataclass
class ChipScenario:
    layout: "ChipLayout"
    program: ChipProgram
    host_events: list[list[tuple[int, int, int]]]  # per tick
    mesh_period_ps: int = 10_000
    core_periods_ps: dict = field(default_factory=dict)  # (x, y) -> period; default: mesh's
    gaps: Pattern = field(default_factory=Pattern)
    backpressure: Pattern = field(default_factory=Pattern)
    mesh_stalls: float = 0.0          # probability per cycle that a router is frozen
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
    seconds: float = 0.0                       # wall time of the run phase


@dataclass(frozen=True)
class ChipLayout:
    """What a chip is built with (the RTL's generics): mesh, core sizes, lanes, host tile.
    Everything else (weights, parameters, routes) is loaded at run time."""
    cols: int
    rows: int
    sizes: dict            # (x, y) -> (axons, neurons)
    lanes: dict            # (x, y) -> P
    host: tuple
    events_per_tick: int = 1024
    destinations: int = 128

    def shape(self, tile) -> CoreShape:
        axons, neurons = self.sizes[tile]
        return CoreShape(axons, neurons, w_bits=8, events_per_tick=self.events_per_tick)


def random_chip_layout(cols: int, rows: int, seed: int) -> ChipLayout:
    rng = np.random.default_rng(seed)
    tiles = [(x, y) for y in range(rows) for x in range(cols)]
    return ChipLayout(cols, rows,
                      sizes={t: (int(rng.integers(4, 33)), int(rng.integers(2, 17)))
                             for t in tiles},
                      lanes={t: int(rng.choice([1, 2, 4, 8])) for t in tiles},
                      host=tiles[int(rng.integers(0, len(tiles)))])


def random_chip_program(layout: ChipLayout, seed: int, *,
                        topology: str = "recurrent") -> ChipProgram:
    """A random network on a layout: ``feed-forward`` (routes only to later tiles),
    ``recurrent`` (anywhere, self-loops included) or ``hot-spot`` (every route into one core);
    multicast fan-out of up to four destinations per neuron, a few of them to axons the target
    core lacks (dropped in the mesh)."""
    if topology not in ("feed-forward", "recurrent", "hot-spot"):
        raise ValueError(f"topology must be feed-forward, recurrent or hot-spot, "
                         f"not {topology!r}")
    rng = np.random.default_rng(seed)
    tiles = [(x, y) for y in range(layout.rows) for x in range(layout.cols)]
    hot = tiles[int(rng.integers(0, len(tiles)))]
    cores = {}
    for k, tile in enumerate(tiles):
        shape = layout.shape(tile)
        routes = []
        for n in range(shape.neurons):
            dests = []
            for _ in range(int(rng.integers(0, 5))):
                if topology == "hot-spot":
                    target = hot
                elif topology == "feed-forward":
                    if k == len(tiles) - 1:
                        break
                    target = tiles[int(rng.integers(k + 1, len(tiles)))]
                else:
                    target = tiles[int(rng.integers(0, len(tiles)))]
                axons = layout.sizes[target][0]
                bad = rng.random() < 0.05
                dests.append((target[0], target[1],
                              int(rng.integers(axons, 1024) if bad else rng.integers(0, axons))))
            routes.append(dests)
        cores[tile] = CoreProgram(
            shape=shape,
            config=NeuronConfig(int(rng.integers(20, 200)), int(rng.integers(0, 5)),
                                ResetMode(int(rng.integers(0, 2)))),
            weights=rng.integers(-40, 90, size=(shape.axons, shape.neurons)),
            bias=rng.integers(-3, 6, size=shape.neurons),
            routes=routes, to_host=rng.random(shape.neurons) < 0.4)
    program = ChipProgram(layout.cols, layout.rows, cores, host=layout.host)
    if any(sum(len(d) for d in p.routes) > layout.destinations for p in cores.values()):
        raise ValueError("the routes do not fit the layout's route tables")
    return program


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


def tile_configs(layout: "ChipLayout") -> dict:
    from ..hdl.chip import TileConfig
    return {t: TileConfig(layout.shape(t), lanes=layout.lanes[t],
                          destinations=layout.destinations) for t in layout.sizes}


def chip_build(layout: "ChipLayout") -> RTLBuild:
    """The layout's chip, with the mesh-stall test hook."""
    from ..hdl.chip import Chip
    chip = Chip(cols=layout.cols, rows=layout.rows, tiles=tile_configs(layout),
                host=layout.host, test_hooks=True)
    return RTLBuild(chip, f"chip-{layout.cols}x{layout.rows}")


def simulate_chip(scenarios: list[ChipScenario], *, run_name: str) -> list[ChipResult]:
    """Run scenarios that share one program shape (one build) on the RTL."""
    layout = scenarios[0].layout
    if any(s.layout != layout for s in scenarios):
        raise ValueError("scenarios of one run must share their layout (one build)")
    build = chip_build(layout).build()
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
                          "drop_range": c.drop_range, "over_budget": c.over_budget}
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
