"""The golden model of a chip: a mesh of cores joined by routing tables (docs/semantics.md).

Each tick ``t``: every event of the tick is delivered (host events for ``t``, and the events
that the spikes of tick ``t - 1`` were routed to), then every core updates; a spike of neuron
``n`` on core ``c`` becomes one event for each ``(x, y, axon)`` in ``routes[n]`` of that core,
delivered in tick ``t + 1``, and, where ``to_host[n]``, an output event ``(c, n, t)``.
Delivery order cannot change a result (see :mod:`spikefab.sim.golden`), so the model delivers
a tick's events as one matrix product per core, for a whole batch of runs at once.

An event for a tile outside the mesh or an axon its core does not have is dropped and counted
in :attr:`ChipModel.mesh_drops` (the hardware drops it at the first router that sees it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .golden import CoreModel, NeuronConfig
from ..hdl.abi import CoreShape, MESH_LIMIT

__all__ = ["CoreProgram", "ChipProgram", "ChipModel", "OutputEvent"]

#: ``(x, y, neuron, tick)`` of a spike reported to the host.
OutputEvent = tuple[int, int, int, int]


@dataclass
class CoreProgram:
    """What one core is loaded with: its neurons and where their spikes go.

    ``routes[n]`` lists the ``(x, y, axon)`` destinations of neuron ``n`` (any number, the same
    core included); ``to_host[n]`` reports its spikes to the host.
    """
    shape: CoreShape
    config: NeuronConfig
    weights: np.ndarray
    bias: np.ndarray | None = None
    routes: list[list[tuple[int, int, int]]] | None = None
    to_host: np.ndarray | None = None

    def __post_init__(self):
        n = self.shape.neurons
        if self.routes is None:
            self.routes = [[] for _ in range(n)]
        if len(self.routes) != n:
            raise ValueError(f"routes must list destinations for each of the {n} neurons, "
                             f"not {len(self.routes)}")
        for neuron, dests in enumerate(self.routes):
            for dest in dests:
                if len(dest) != 3 or any(not isinstance(v, (int, np.integer)) or v < 0
                                         for v in dest):
                    raise ValueError(f"neuron {neuron}: a destination is (x, y, axon) of "
                                     f"non-negative integers, not {dest!r}")
        self.to_host = (np.zeros(n, bool) if self.to_host is None
                        else np.asarray(self.to_host, bool))
        if self.to_host.shape != (n,):
            raise ValueError(f"to_host must have shape ({n},), not {self.to_host.shape}")


@dataclass
class ChipProgram:
    """A ``cols`` x ``rows`` mesh with a core on every tile, and the host port's tile."""
    cols: int
    rows: int
    cores: dict[tuple[int, int], CoreProgram]
    host: tuple[int, int] = (0, 0)

    def __post_init__(self):
        for name, value in (("cols", self.cols), ("rows", self.rows)):
            if not 1 <= value <= MESH_LIMIT:
                raise ValueError(f"{name} must be in [1, {MESH_LIMIT}], not {value!r}")
        tiles = {(x, y) for y in range(self.rows) for x in range(self.cols)}
        if set(self.cores) != tiles:
            missing = sorted(tiles - set(self.cores))
            extra = sorted(set(self.cores) - tiles)
            raise ValueError(f"a {self.cols} x {self.rows} mesh needs a core on every tile; "
                             f"missing {missing}, outside the mesh {extra}")
        if tuple(self.host) not in tiles:
            raise ValueError(f"host tile {self.host!r} is outside the mesh")

    def tiles(self):
        return [(x, y) for y in range(self.rows) for x in range(self.cols)]

    def accepts(self, x: int, y: int, axon: int) -> bool:
        """Whether an event for ``(x, y, axon)`` reaches a core (else the mesh drops it)."""
        core = self.cores.get((x, y))
        return core is not None and 0 <= axon < core.shape.axons


class ChipModel:
    """A batch of independent runs of one chip program."""

    def __init__(self, program: ChipProgram, *, batch: int = 1):
        self.program = program
        self.batch = batch
        self.tick = 0
        self.cores = {tile: CoreModel(p.shape, p.weights, p.config, p.bias, batch=batch)
                      for tile, p in program.cores.items()}
        self.mesh_drops = 0
        # Routing as matrices: how many routes lead from each neuron of s to each axon of d.
        self._routes = {}
        self._bad_routes = {}
        for src, p in program.cores.items():
            bad = np.zeros(p.shape.neurons, np.int64)
            for n, dests in enumerate(p.routes):
                for x, y, axon in dests:
                    if program.accepts(x, y, axon):
                        key = (src, (x, y))
                        if key not in self._routes:
                            self._routes[key] = np.zeros(
                                (p.shape.neurons, program.cores[x, y].shape.axons), np.int64)
                        self._routes[key][n, axon] += 1
                    else:
                        bad[n] += 1
            self._bad_routes[src] = bad
        self._routes_mm = {key: m.astype(np.float32) for key, m in self._routes.items()}
        self._routed = {dst for _, dst in self._routes}   # tiles that spikes are routed to
        # Event counts per axon, as float32 (exact: far below 2**24), ready for the matmul.
        self._pending = {tile: np.zeros((batch, p.shape.axons), np.float32)
                         for tile, p in program.cores.items()}

    def _deliver(self, tile, counts: np.ndarray) -> None:
        """A tick's events for one core, for every run (``counts`` may cover only the first
        axons). Their order does not matter (docs/semantics.md, "Event budget")."""
        self.cores[tile].deliver_spikes(counts)

    def deliver_pending(self) -> None:
        """Deliver the events the last update's spikes were routed to, without updating.

        This is where a chip stands after its last tick: those events have reached their cores'
        accumulators (and counters), waiting for an update that has not been asked for.
        """
        for tile in self.cores:
            self._deliver(tile, self._pending[tile])
            self._pending[tile] = np.zeros_like(self._pending[tile])

    def step(self, host_events=None, *, host_spikes=None, host_sums=None,
             collect: bool = True) -> list[list[OutputEvent]] | None:
        """Run one tick. ``host_events[b]`` lists run ``b``'s ``(x, y, axon)`` events for it;
        ``host_spikes`` maps a tile to an array ``(batch, k)``, ``k <= A``, of the event
        counts of its first ``k`` axons (the fast way to give a whole batch its input);
        ``host_sums`` maps a tile to ``(sums, counts)``, the host events of the tick already
        summed (``(batch, N)`` weight-row sums and ``(batch,)`` event counts, as
        :func:`spikefab.sim.golden_batch.spike_sums` makes them for a whole run at once).

        Returns, per run, the output events of this tick's update (None without
        ``collect``); :attr:`spikes` maps every tile to its ``(batch, N)`` spikes of the tick.
        """
        host_spikes = host_spikes or {}
        counts = {}
        for tile, pending in self._pending.items():
            spikes = host_spikes.get(tile)
            if tile in self._routed or host_events is not None:
                counts[tile] = pending
                self._pending[tile] = np.zeros_like(pending)
                if spikes is not None:
                    counts[tile][:, :spikes.shape[1]] += spikes
            else:   # only the host's spikes, if any: deliver them as they are
                counts[tile] = spikes
        if host_events is not None:
            if len(host_events) != self.batch:
                raise ValueError(f"host_events must have one list per run ({self.batch}), "
                                 f"not {len(host_events)}")
            for b, events in enumerate(host_events):
                for x, y, axon in events:
                    if self.program.accepts(x, y, axon):
                        counts[x, y][b, axon] += 1
                    else:
                        self.mesh_drops += 1
        for tile in self.cores:
            if counts[tile] is not None:
                self._deliver(tile, counts[tile])
        for tile, (sums, events) in (host_sums or {}).items():
            self.cores[tile].deliver_sums(sums, events)
        self.spikes = spikes = {tile: core.update() for tile, core in self.cores.items()}
        outputs = [[] for _ in range(self.batch)] if collect else None
        for (x, y), fired in spikes.items():
            if collect:
                to_host = self.program.cores[x, y].to_host
                for b, n in zip(*np.nonzero(fired & to_host)):
                    outputs[b].append((x, y, int(n), self.tick))
            if self._bad_routes[x, y].any():
                self.mesh_drops += int((fired.astype(np.int64) @ self._bad_routes[x, y]).sum())
        for (src, dst), matrix in self._routes_mm.items():
            # Exact in float32: every sum is at most N times a route's multiplicity.
            self._pending[dst] += spikes[src].astype(np.float32) @ matrix
        self.tick += 1
        return outputs
