"""Core scenarios: one stimulus, run by the golden model and by the RTL bench, compared as traces.

A :class:`CoreScenario` holds everything one run of one core needs (parameters, memories,
events per tick, and the idle/backpressure patterns the bench applies). The golden model turns it
into the expected :class:`CoreTrace`; the cocotb bench (``sim/benches/core_bench.py``) drives the
RTL with it and records the observed one. Both are files (``.npz``), so the bench process and the
test process share nothing but data.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..hdl.abi import AXON_LIMIT, CoreShape, ResetMode
from .golden import CoreModel, NeuronConfig

__all__ = ["PatternKind", "Pattern", "CoreScenario", "CoreTrace", "random_scenario",
           "corner_scenarios", "compare_traces"]


class PatternKind(enum.Enum):
    ALWAYS = "always"
    CYCLE = "cycle"
    RANDOM = "random"


@dataclass(frozen=True)
class Pattern:
    """When a bench drives ``valid`` (idle gaps) or ``ready`` (backpressure), cycle by cycle.

    ``kind`` is a :class:`PatternKind` (or its name): ALWAYS, CYCLE (repeat ``cycle``, a list
    of 0/1) or RANDOM (1 with probability ``p``, drawn from ``PCG64(seed)``).
    """
    kind: PatternKind = PatternKind.ALWAYS
    cycle: tuple[int, ...] = (1,)
    p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        try:
            object.__setattr__(self, "kind", PatternKind(self.kind))
        except ValueError:
            raise ValueError(f"pattern kind must be always, cycle or random, "
                             f"not {self.kind!r}") from None
        if self.kind is PatternKind.CYCLE and (not self.cycle or 1 not in self.cycle):
            raise ValueError(f"a cycle pattern needs at least one 1, got {self.cycle!r}")
        if self.kind is PatternKind.RANDOM and not 0 < self.p <= 1:
            raise ValueError(f"a random pattern needs 0 < p <= 1, got {self.p!r}")

    def to_dict(self) -> dict:
        """The pattern as JSON values (what :func:`_pattern` reads back)."""
        return {**asdict(self), "kind": self.kind.value}

    def bits(self):
        """An endless iterator of 0/1."""
        if self.kind is PatternKind.ALWAYS:
            while True:
                yield 1
        elif self.kind is PatternKind.CYCLE:
            while True:
                yield from self.cycle
        else:
            rng = np.random.Generator(np.random.PCG64(self.seed))
            while True:
                for x in rng.random(4096) < self.p:
                    yield int(x)


@dataclass
class CoreScenario:
    """One run of one core: parameters, initial memories, events of every tick, patterns."""
    shape: CoreShape
    config: NeuronConfig
    weights: np.ndarray            # (A, N)
    bias: np.ndarray               # (N,)
    v0: np.ndarray                 # (N,) initial membranes
    events: list[np.ndarray]       # per tick: axon indices in delivery order (may be >= A)
    gaps: Pattern = field(default_factory=Pattern)          # on the event input's valid
    backpressure: Pattern = field(default_factory=Pattern)  # on the spike output's ready
    name: str = "scenario"
    seed: int = 0

    @property
    def ticks(self) -> int:
        return len(self.events)

    def expected(self) -> "CoreTrace":
        """What the golden model says this scenario produces."""
        model = CoreModel(self.shape, self.weights, self.config, self.bias)
        model.v[0] = self.v0
        spikes = []
        for tick_events in self.events:
            model.deliver(tick_events)
            spikes.append(np.flatnonzero(model.update()[0]))
        counters = asdict(model.counters)
        return CoreTrace(spikes=spikes, v=model.v[0].copy(), i=model.i[0].copy(),
                         counters=counters)

    def save(self, path: Path) -> None:
        meta = {
            "shape": asdict(self.shape),
            "config": {"threshold": self.config.threshold, "leak": self.config.leak,
                       "reset": int(self.config.reset)},
            "gaps": self.gaps.to_dict(), "backpressure": self.backpressure.to_dict(),
            "name": self.name, "seed": self.seed,
        }
        lengths = np.array([len(e) for e in self.events], dtype=np.int64)
        flat = (np.concatenate(self.events).astype(np.int64) if self.events
                else np.zeros(0, np.int64))
        np.savez(path, meta=json.dumps(meta), weights=self.weights, bias=self.bias, v0=self.v0,
                 event_lengths=lengths, events=flat)

    @classmethod
    def load(cls, path: Path) -> "CoreScenario":
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            splits = np.cumsum(f["event_lengths"])[:-1]
            events = list(np.split(f["events"], splits)) if len(f["event_lengths"]) else []
            config = meta["config"]
            return cls(
                shape=CoreShape(**meta["shape"]),
                config=NeuronConfig(config["threshold"], config["leak"],
                                    ResetMode(config["reset"])),
                weights=f["weights"], bias=f["bias"], v0=f["v0"], events=events,
                gaps=_pattern(meta["gaps"]), backpressure=_pattern(meta["backpressure"]),
                name=meta["name"], seed=meta["seed"])


def _pattern(d: dict) -> Pattern:
    return Pattern(kind=d["kind"], cycle=tuple(d["cycle"]), p=d["p"], seed=d["seed"])


@dataclass
class CoreTrace:
    """What a core did: spiking neurons per tick (in output order), final state, counters.

    ``cycles`` (RTL only) records per tick the clock cycles of the event phase and of the
    update, from the first event offered (or the update requested) to the last handshake.
    """
    spikes: list[np.ndarray]
    v: np.ndarray
    i: np.ndarray
    counters: dict[str, int]
    cycles: np.ndarray | None = None  # (ticks, 2): event phase, update
    sim_cycles: int = 0               # every clock cycle the bench ran, loading included
    sim_seconds: float = 0.0          # wall time the bench spent on them

    def save(self, path: Path) -> None:
        lengths = np.array([len(s) for s in self.spikes], dtype=np.int64)
        flat = (np.concatenate(self.spikes).astype(np.int64) if self.spikes
                else np.zeros(0, np.int64))
        np.savez(path, spike_lengths=lengths, spikes=flat, v=self.v, i=self.i,
                 counters=json.dumps(self.counters),
                 cycles=self.cycles if self.cycles is not None else np.zeros((0, 2), np.int64),
                 sim_cycles=self.sim_cycles, sim_seconds=self.sim_seconds)

    @classmethod
    def load(cls, path: Path) -> "CoreTrace":
        with np.load(path) as f:
            splits = np.cumsum(f["spike_lengths"])[:-1]
            spikes = list(np.split(f["spikes"], splits)) if len(f["spike_lengths"]) else []
            return cls(spikes=spikes, v=f["v"], i=f["i"],
                       counters=json.loads(str(f["counters"])), cycles=f["cycles"],
                       sim_cycles=int(f["sim_cycles"]), sim_seconds=float(f["sim_seconds"]))


def compare_traces(expected: CoreTrace, observed: CoreTrace, *, label: str = "") -> list[str]:
    """Human-readable differences, first ones first; empty when the traces agree bit for bit."""
    problems = []
    if len(expected.spikes) != len(observed.spikes):
        problems.append(f"{label}: {len(observed.spikes)} ticks observed, "
                        f"{len(expected.spikes)} expected")
    for t, (e, o) in enumerate(zip(expected.spikes, observed.spikes)):
        if not np.array_equal(e, o):
            problems.append(f"{label}: tick {t}: spikes {o.tolist()} != expected {e.tolist()}")
            break
    for name in ("v", "i"):
        e, o = getattr(expected, name), getattr(observed, name)
        if not np.array_equal(e, o):
            bad = np.flatnonzero(e != o)
            problems.append(f"{label}: final {name.upper()} differs at neurons {bad[:8].tolist()}:"
                            f" {o[bad[:8]].tolist()} != expected {e[bad[:8]].tolist()}")
    for key, value in expected.counters.items():
        if observed.counters.get(key) != value:
            problems.append(f"{label}: counter {key} = {observed.counters.get(key)} "
                            f"!= expected {value}")
    return problems


def random_scenario(shape: CoreShape, seed: int, *, ticks: int = 200,
                    name: str | None = None) -> CoreScenario:
    """A seeded random scenario that reaches the corners: saturation at both ends, theta = 1
    and theta = max, k = 0 and k = v_bits - 1, ticks with every axon, empty ticks, weights at
    +-max, out-of-range axons and over-budget ticks (where the accumulator may wrap). The
    ``seed`` alone decides everything."""
    rng = np.random.Generator(np.random.PCG64(seed))
    A, N = shape.axons, shape.neurons
    flavour = rng.integers(0, 4)  # 0: uniform weights, 1: +-max only, 2: sparse, 3: excitatory
    if flavour == 0:
        weights = rng.integers(shape.w_min, shape.w_max + 1, size=(A, N))
    elif flavour == 1:
        weights = rng.choice([shape.w_min, shape.w_max], size=(A, N))
    elif flavour == 2:
        weights = rng.integers(shape.w_min, shape.w_max + 1, size=(A, N))
        weights[rng.random((A, N)) < 0.8] = 0
    else:
        weights = rng.integers(-1, shape.w_max + 1, size=(A, N))

    def pick(edges, lo, hi):
        if rng.random() < 0.3:
            return int(rng.choice(edges))
        return int(rng.integers(lo, hi + 1))

    # Threshold: log-uniform, with both ends often.
    log_theta = rng.uniform(0, np.log2(shape.v_max))
    threshold = pick([1, shape.v_max], 1, max(1, int(2 ** log_theta)))
    leak = pick([0, shape.v_bits - 1], 0, shape.v_bits - 1)
    reset = ResetMode(int(rng.integers(0, 2)))
    bias_span = int(rng.choice([0, 4, 64, shape.v_max]))
    bias = rng.integers(-bias_span, bias_span + 1, size=N)
    if rng.random() < 0.2:
        bias[:] = rng.choice([shape.v_min, shape.v_max])
    v0 = rng.integers(shape.v_min, shape.v_max + 1, size=N)

    budget = shape.events_per_tick
    mean_events = float(rng.choice([1, 4, 16, min(64, A)]))
    events = []
    for t in range(ticks):
        kind = rng.random()
        if kind < 0.08:
            tick = np.zeros(0, np.int64)                       # empty tick
        elif kind < 0.12:
            tick = rng.permutation(A)                          # every axon once
        elif kind < 0.15 and budget < 4 * A:
            tick = rng.integers(0, A, size=budget + int(rng.integers(1, 8)))  # over budget
        else:
            count = int(rng.poisson(mean_events))
            tick = rng.integers(0, A, size=count)
        if len(tick) and rng.random() < 0.15:                  # some axons that do not exist
            if A < AXON_LIMIT:
                wild = rng.integers(A, AXON_LIMIT, size=int(rng.integers(1, 4)))
                tick = np.insert(tick, rng.integers(0, len(tick) + 1, size=len(wild)), wild)
        events.append(np.asarray(tick, dtype=np.int64))

    def pattern(base_seed):
        kind = rng.integers(0, 3)
        if kind == 0:
            return Pattern()
        if kind == 1:
            cycles = [(1, 1, 1, 0), (1, 0), (0, 0, 1), (1, 1, 0, 1, 0, 0, 0)]
            return Pattern("cycle", cycle=cycles[int(rng.integers(0, len(cycles)))])
        return Pattern("random", p=float(rng.choice([0.2, 0.5, 0.9])), seed=base_seed)

    return CoreScenario(
        shape=shape, config=NeuronConfig(threshold, leak, reset),
        weights=weights.astype(np.int64), bias=bias.astype(np.int64), v0=v0.astype(np.int64),
        events=events, gaps=pattern(seed * 2 + 1), backpressure=pattern(seed * 2 + 2),
        name=name or f"seed{seed}", seed=seed)


def corner_scenarios(shape: CoreShape, seed: int, *, ticks: int = 40) -> list[CoreScenario]:
    """Deterministic scenarios, each pinned to one corner of the semantics (named after it).

    ``saturate-high``: weights and bias at +max, every axon every tick, theta = max, k = 0: the
    membrane sits at the top of its range. ``saturate-low``: the same at -max with theta = max,
    so V ends at the bottom. ``theta1-k<max>``: theta = 1 with the strongest leak and zero reset.
    ``out-of-range``: every tick mixes axons >= A (when A < 1024) into a mostly empty stream.
    ``over-budget-wrap`` (when ``events_per_tick <= 64``): weights at +max and three times the
    budget's events in every tick, so the accumulator wraps.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    A, N = shape.axons, shape.neurons
    # Saturation is reached in the first tick; a few more show that it stays put.
    every = [rng.permutation(A)[:shape.events_per_tick] for _ in range(8)]

    def make(name, weights, config, bias, events, v0=None):
        return CoreScenario(shape=shape, config=config, weights=np.asarray(weights, np.int64),
                            bias=np.asarray(bias, np.int64),
                            v0=np.zeros(N, np.int64) if v0 is None else v0, events=events,
                            gaps=Pattern("cycle", cycle=(1, 0)),
                            backpressure=Pattern("random", p=0.5, seed=seed),
                            name=name, seed=seed)

    full = np.full((A, N), 1)
    scenarios = [
        make("saturate-high", full * shape.w_max, NeuronConfig(shape.v_max, 0),
             np.full(N, shape.v_max), every),
        make("saturate-low", full * shape.w_min, NeuronConfig(shape.v_max, 0),
             np.full(N, shape.v_min), every),
        make(f"theta1-k{shape.v_bits - 1}",
             rng.integers(shape.w_min, shape.w_max + 1, size=(A, N)),
             NeuronConfig(1, shape.v_bits - 1, ResetMode.ZERO), rng.integers(-3, 4, size=N),
             [rng.integers(0, A, size=int(rng.integers(0, 4))) for _ in range(ticks)],
             v0=rng.integers(shape.v_min, shape.v_max + 1, size=N)),
        make("out-of-range", rng.integers(shape.w_min, shape.w_max + 1, size=(A, N)),
             NeuronConfig(int(rng.integers(1, min(200, shape.v_max) + 1)), 1),
             np.zeros(N),
             [np.concatenate([rng.integers(min(A, AXON_LIMIT - 1), AXON_LIMIT,
                                           size=int(rng.integers(1, 5))),
                              rng.integers(0, A, size=int(rng.integers(0, 2)))])
              for _ in range(ticks)]),
    ]
    budget = shape.events_per_tick
    if budget <= 64:
        scenarios.append(make(
            "over-budget-wrap", full * shape.w_max, NeuronConfig(shape.v_max, 0), np.zeros(N),
            [rng.integers(0, A, size=3 * budget) for _ in range(8)]))
    return scenarios
