"""The mapper: which core holds which neurons of a network, and the chip generated for it.

**Slices.** A layer's neurons are split into *slices*, one per core. Every core of a layer holds
all of the layer's input axons for its slice of neurons: axon ``a < inputs`` is input ``a`` of
the layer (a pixel, or neuron ``a`` of the layer before), and, for a recurrent layer, axon
``inputs + m`` is the layer's own neuron ``m``. So a core needs ``inputs (+ outputs)`` axons
and as many neurons as its slice.

**Routes.** Neuron ``n`` of layer ``l`` sends each spike, through its core's multicast route
table, to axon ``n`` of every core of layer ``l + 1`` and, if layer ``l`` is recurrent, to axon
``inputs + n`` of every core of layer ``l`` (its own core included); the last layer's neurons
also report to the host. The host sends input ``i`` to axon ``i`` of every core of layer 0 (the
driver repeats each input event once per core of layer 0: docs/mapping.md says what that
costs).

**Chips.** :func:`preset_mapping` puts layer ``l`` whole on tile ``l`` of a named profile (the
hand-written chips tests use). :func:`generate_mapping` derives the chip from the network:
balanced slices of at most :data:`~spikefab.hdl.abi.NEURON_LIMIT` neurons, one core shaped
for each slice, on the smallest near-square mesh that holds them, placed along a snake path
from the host's tile so that consecutive layers, which exchange all their spikes, are close.
For a board (:data:`~spikefab.hdl.profiles.BOARD_CHIPS`) the cores take the board's style
(lanes, SPRAM, registered reads, router queues, DSP counters) and the chip must fit the
board's logic (a number of cores) and block RAM (an estimate that has equalled every build
measured, BENCHMARKS.md); a network that does not fit gets every excess and what would fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..hdl.abi import (AXON_LIMIT, MESH_LIMIT, NEURON_LIMIT, ROUTE_INDEX_BITS, CoreMemoryMap,
                       CoreShape, MemoryStyle)
from ..hdl.chip import TileConfig
from ..hdl.profiles import BOARD_CHIPS, BoardChip, ChipProfile, get_board_chip, get_profile
from .model import Layer, Model

__all__ = ["MapError", "CoreSlice", "Mapping", "layer_axons", "preset_mapping",
           "generate_mapping", "GENERATED_LANES"]

#: Weights read per cycle on the cores of a generated chip.
GENERATED_LANES = 4

#: Most destinations one core's route table can hold.
MAX_DESTINATIONS = 1 << ROUTE_INDEX_BITS


class MapError(ValueError):
    """The network cannot be mapped; the message lists what is over and by how much."""


@dataclass(frozen=True)
class CoreSlice:
    """Neurons ``first .. first + neurons - 1`` of layer ``layer``, on the core of ``tile``."""
    layer: int
    first: int
    neurons: int
    tile: tuple[int, int]

    @property
    def stop(self) -> int:
        return self.first + self.neurons


@dataclass(frozen=True)
class Mapping:
    """A network's slices on a chip; the tiles no slice uses hold idle cores."""
    profile: ChipProfile
    slices: tuple[CoreSlice, ...]

    def of_layer(self, layer: int) -> list[CoreSlice]:
        return [s for s in self.slices if s.layer == layer]

    def destinations(self, model: Model, s: CoreSlice) -> int:
        """Route-table words a neuron of slice ``s`` needs: a copy of its spike for every
        core of the next layer, and of its own layer if that is recurrent."""
        fanout = len(self.of_layer(s.layer + 1)) if s.layer + 1 < len(model.layers) else 0
        if model.layers[s.layer].recurrent is not None:
            fanout += len(self.of_layer(s.layer))
        return fanout


def layer_axons(layer: Layer) -> int:
    """Axons a core of ``layer`` needs: its inputs, then its own neurons if recurrent."""
    return layer.inputs + (layer.outputs if layer.recurrent is not None else 0)


def preset_mapping(model: Model, profile: ChipProfile | str) -> Mapping:
    """Layer ``l`` whole on tile ``l`` (in tile order ``y * cols + x``) of a named chip."""
    if isinstance(profile, str):
        profile = get_profile(profile)
    order = profile.order
    if len(model.layers) > len(order):
        raise MapError(f"the model has {len(model.layers)} layers, but profile "
                       f"{profile.name!r} has {len(order)} tiles (one layer per tile; "
                       f"{len(model.layers) - len(order)} too many); without --profile the "
                       f"chip is generated for the network")
    slices = tuple(CoreSlice(l, 0, layer.outputs, order[l])
                   for l, layer in enumerate(model.layers))
    return Mapping(profile, slices)


def _slice_sizes(neurons: int, most: int) -> list[int]:
    """``neurons`` in as few slices of at most ``most`` as possible, sizes within one."""
    count = -(-neurons // most)
    base, extra = divmod(neurons, count)
    return [base + (k < extra) for k in range(count)]


def _mesh(cores: int) -> tuple[int, int]:
    """The smallest near-square ``cols x rows`` holding ``cores`` tiles."""
    cols = min(MESH_LIMIT, math.ceil(math.sqrt(cores)))
    return cols, -(-cores // cols)


def _snake(cols: int, rows: int) -> list[tuple[int, int]]:
    """Every tile once, row by row, alternating direction: each tile beside the one before."""
    return [(x if y % 2 == 0 else cols - 1 - x, y) for y in range(rows) for x in range(cols)]


def generate_mapping(model: Model, *, board: str | None = None, lanes: int = GENERATED_LANES,
                     memory: MemoryStyle = MemoryStyle.BLOCK, name: str | None = None,
                     output_depth: int = 256, neurons_per_core: int = NEURON_LIMIT) -> Mapping:
    """A chip generated for ``model`` and its mapping (see the module's documentation); at
    most ``neurons_per_core`` neurons on a core (tests split small layers with it).

    With ``board`` (one of :data:`~spikefab.hdl.profiles.BOARD_CHIPS`) the cores are that
    board's style (lanes, memories, queues) and the chip must fit the board's logic and block
    RAM; ``lanes`` and ``memory`` are then the board's. Raises :class:`MapError` listing every
    limit the network exceeds and, for a board, what would fit.
    """
    if not 1 <= neurons_per_core <= NEURON_LIMIT:
        raise ValueError(f"neurons_per_core must be in [1, {NEURON_LIMIT}], not "
                         f"{neurons_per_core!r}")
    style = None if board is None else get_board_chip(board)
    problems = _network_limits(model, neurons_per_core)
    if problems:
        raise MapError("the network does not fit a spikefab chip:\n  " + "\n  ".join(problems))
    mapping = _generate(model, style, lanes, memory, name, output_depth, neurons_per_core)
    if style is not None:
        over = _board_limits(model, style, mapping)
        if over:
            raise MapError(f"the network does not fit the {board}:\n  " + "\n  ".join(over)
                           + "\n" + _what_fits(model, style, neurons_per_core))
    return mapping


def _sizes(model: Model, neurons_per_core: int) -> list[list[int]]:
    return [_slice_sizes(layer.outputs, neurons_per_core) for layer in model.layers]


def _network_limits(model: Model, neurons_per_core: int) -> list[str]:
    """What no chip can hold: too many axons on a core, cores, route destinations."""
    problems = []
    sizes = _sizes(model, neurons_per_core)
    for l, layer in enumerate(model.layers):
        axons = layer_axons(layer)
        if axons > AXON_LIMIT:
            what = (f"{layer.inputs} inputs + {layer.outputs} recurrent"
                    if layer.recurrent is not None else f"{layer.inputs} inputs")
            problems.append(f"layer {l} needs {axons} axons per core ({what}); a core has at "
                            f"most {AXON_LIMIT} ({axons - AXON_LIMIT} too many)")
    cores = sum(len(s) for s in sizes)
    if cores > MESH_LIMIT * MESH_LIMIT:
        problems.append(f"the network needs {cores} cores of at most {neurons_per_core} "
                        f"neurons; a chip has at most {MESH_LIMIT * MESH_LIMIT} "
                        f"({cores - MESH_LIMIT * MESH_LIMIT} too many)")
    for l, layer in enumerate(model.layers):
        fanout = (len(sizes[l + 1]) if l + 1 < len(sizes) else 0) + \
                 (len(sizes[l]) if layer.recurrent is not None else 0)
        need = max(sizes[l]) * fanout
        if need > MAX_DESTINATIONS:
            problems.append(f"layer {l}: a core's {max(sizes[l])} neurons need {need} route "
                            f"destinations ({fanout} cores to reach); a route table holds at "
                            f"most {MAX_DESTINATIONS} ({need - MAX_DESTINATIONS} too many)")
    return problems


def _generate(model: Model, style: BoardChip | None, lanes: int, memory: MemoryStyle,
              name: str | None, output_depth: int, neurons_per_core: int) -> Mapping:
    sizes = _sizes(model, neurons_per_core)
    cores = sum(len(s) for s in sizes)
    cols, rows = _mesh(cores)
    path = _snake(cols, rows)
    slices = []
    k = 0
    for l in range(len(model.layers)):
        first = 0
        for size in sizes[l]:
            slices.append(CoreSlice(l, first, size, path[k]))
            first += size
            k += 1
    mapping = Mapping(None, tuple(slices))
    last = len(model.layers) - 1
    configs = {}
    for s in slices:
        layer = model.layers[s.layer]
        shape = CoreShape(layer_axons(layer), s.neurons, w_bits=model.w_bits,
                          v_bits=model.v_bits)
        destinations = max(1, s.neurons * mapping.destinations(model, s))
        if style is None:
            configs[s.tile] = TileConfig(shape, lanes=lanes, memory=memory,
                                         destinations=destinations)
        else:
            configs[s.tile] = TileConfig(
                shape, lanes=style.output_lanes if s.layer == last else style.lanes,
                memory=MemoryStyle.BLOCK, destinations=destinations,
                register_reads=style.register_reads)
    if style is not None and style.spram:
        # The largest synapse memory goes to the SPRAMs, if it fits them.
        biggest = max(slices, key=lambda s: CoreMemoryMap(configs[s.tile].shape,
                                                          configs[s.tile].lanes).synapse_words)
        config = configs[biggest.tile]
        if style.spram_fits(config):
            configs[biggest.tile] = replace(config, memory=MemoryStyle.SPRAM)
    for tile in path[k:]:   # the mesh is full: an idle core on each tile left over
        configs[tile] = TileConfig(CoreShape(1, 1, w_bits=model.w_bits, v_bits=model.v_bits),
                                   lanes=1, memory=MemoryStyle.BLOCK, destinations=1)
    sizes_text = "-".join(map(str, model.sizes))
    recurrent = "".join("r" if layer.recurrent is not None else "" for layer in model.layers)
    label = f"{sizes_text}{'-' + recurrent if recurrent else ''}-w{model.w_bits}"
    where = f"the {style.board}" if style else "no board"
    used_lanes = lanes if style is None else style.lanes
    profile = ChipProfile(
        name=name or (f"{style.board}-{label}" if style else f"generated-{label}"),
        description=f"generated for a {sizes_text} network ({where}): {cores} cores on a "
                    f"{cols} x {rows} mesh, {used_lanes} lanes, {model.w_bits}-bit weights",
        cols=cols, rows=rows, host=path[0], tiles=configs, output_depth=output_depth,
        router_fifo_depth=style.router_fifo_depth if style else 2,
        dsp_counters=style.dsp_counters if style else False,
        board=style.board if style else None, encoder=style.encoder if style else True,
        rx_queue=style.rx_queue if style else 0)
    if style is not None and style.lut_ram and style.blocks(profile) > style.block_count:
        # Short of block RAM: the small memories to LUT RAM, on logic the board has to spare.
        profile = replace(profile, description=profile.description + ", small memories in LUT RAM",
                          tiles={t: replace(c, lut_ram=True) for t, c in profile.tiles.items()})
    return Mapping(profile, tuple(slices))


def _board_limits(model: Model, style: BoardChip, mapping: Mapping) -> list[str]:
    """What the generated chip needs beyond the board's logic and block RAM."""
    over = []
    cores = len(mapping.slices)
    if cores > style.max_cores:
        over.append(f"{cores} cores; the {style.board}'s logic holds {style.max_cores} "
                    f"({cores - style.max_cores} too many)")
    blocks = style.blocks(mapping.profile)
    if blocks > style.block_count:
        spram = [c for c in mapping.profile.tiles.values() if c.memory is MemoryStyle.SPRAM]
        beside = " beside the SPRAMs" if spram else ""
        over.append(f"about {blocks} block RAMs{beside}; the {style.board} has "
                    f"{style.block_count} ({blocks - style.block_count} too many)")
    return over


def _fits(model: Model, style: BoardChip, neurons_per_core: int) -> bool:
    if _network_limits(model, neurons_per_core):
        return False
    mapping = _generate(model, style, GENERATED_LANES, MemoryStyle.BLOCK, None, 256,
                        neurons_per_core)
    return not _board_limits(model, style, mapping)


def _what_fits(model: Model, style: BoardChip, neurons_per_core: int) -> str:
    """One line on what would fit: 4-bit weights, the other boards, fewer hidden neurons."""
    options = []
    if model.w_bits == 8:
        narrow = _with(model, w_bits=4)
        if narrow is not None and _fits(narrow, style, neurons_per_core):
            options.append("4-bit weights (--weight-bits 4)")
    for other in BOARD_CHIPS.values():
        if other is not style and _fits(model, other, neurons_per_core):
            options.append(f"the {other.board}")
    if len(model.layers) == 2:
        lo, hi = 0, model.layers[0].outputs - 1   # the widest hidden layer that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _fits(_with(model, hidden=mid), style, neurons_per_core):
                lo = mid
            else:
                hi = mid - 1
        if lo:
            options.append(f"at most {lo} hidden neurons ({model.inputs}-{lo}-"
                           f"{model.classes})")
    return ("what would fit: " + "; ".join(options) if options
            else "nothing close fits: fewer or smaller layers")


def _with(model: Model, *, w_bits: int | None = None, hidden: int | None = None):
    """A stand-in of ``model`` with other weight bits or another hidden width (zero weights:
    only the shape matters for fitting)."""
    sizes = list(model.sizes)
    if hidden is not None:
        sizes[1] = hidden
    layers = []
    for l, layer in enumerate(model.layers):
        layers.append(Layer(np.zeros((sizes[l], sizes[l + 1]), np.int64), threshold=1,
                            recurrent=(np.zeros((sizes[l + 1],) * 2, np.int64)
                                       if layer.recurrent is not None else None)))
    return Model(layers, w_bits=w_bits or model.w_bits, v_bits=model.v_bits)
