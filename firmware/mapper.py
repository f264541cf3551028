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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..hdl.abi import (AXON_LIMIT, MESH_LIMIT, NEURON_LIMIT, ROUTE_INDEX_BITS, CoreShape,
                       MemoryStyle)
from ..hdl.chip import TileConfig
from ..hdl.profiles import ChipProfile, get_profile
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


def generate_mapping(model: Model, *, lanes: int = GENERATED_LANES,
                     memory: MemoryStyle = MemoryStyle.BLOCK, name: str | None = None,
                     output_depth: int = 256, neurons_per_core: int = NEURON_LIMIT) -> Mapping:
    """A chip generated for ``model`` and its mapping (see the module's documentation); at
    most ``neurons_per_core`` neurons on a core (tests split small layers with it).

    Raises :class:`MapError` listing every limit the network exceeds.
    """
    if not 1 <= neurons_per_core <= NEURON_LIMIT:
        raise ValueError(f"neurons_per_core must be in [1, {NEURON_LIMIT}], not "
                         f"{neurons_per_core!r}")
    problems = []
    sizes = []
    for l, layer in enumerate(model.layers):
        axons = layer_axons(layer)
        if axons > AXON_LIMIT:
            what = (f"{layer.inputs} inputs + {layer.outputs} recurrent"
                    if layer.recurrent is not None else f"{layer.inputs} inputs")
            problems.append(f"layer {l} needs {axons} axons per core ({what}); a core has at "
                            f"most {AXON_LIMIT} ({axons - AXON_LIMIT} too many)")
        sizes.append(_slice_sizes(layer.outputs, neurons_per_core))
    cores = sum(len(s) for s in sizes)
    if cores > MESH_LIMIT * MESH_LIMIT:
        problems.append(f"the network needs {cores} cores of at most {neurons_per_core} "
                        f"neurons; "
                        f"a chip has at most {MESH_LIMIT * MESH_LIMIT} "
                        f"({cores - MESH_LIMIT * MESH_LIMIT} too many)")
    for l, layer in enumerate(model.layers):
        fanout = (len(sizes[l + 1]) if l + 1 < len(sizes) else 0) + \
                 (len(sizes[l]) if layer.recurrent is not None else 0)
        need = max(sizes[l]) * fanout
        if need > MAX_DESTINATIONS:
            problems.append(f"layer {l}: a core's {max(sizes[l])} neurons need {need} route "
                            f"destinations ({fanout} cores to reach); a route table holds at "
                            f"most {MAX_DESTINATIONS} ({need - MAX_DESTINATIONS} too many)")
    if problems:
        raise MapError("the network does not fit a spikefab chip:\n  " + "\n  ".join(problems))
    cols, rows = _mesh(cores)
    path = _snake(cols, rows)
    slices, configs = [], {}
    k = 0
    for l, layer in enumerate(model.layers):
        first = 0
        for size in sizes[l]:
            tile = path[k]
            slices.append(CoreSlice(l, first, size, tile))
            first += size
            k += 1
    mapping = Mapping(None, tuple(slices))
    for s in slices:
        layer = model.layers[s.layer]
        shape = CoreShape(layer_axons(layer), s.neurons, w_bits=model.w_bits,
                          v_bits=model.v_bits)
        configs[s.tile] = TileConfig(shape, lanes=lanes, memory=memory,
                                     destinations=max(1, s.neurons
                                                      * mapping.destinations(model, s)))
    for tile in path[k:]:   # the mesh is full: an idle core on each tile left over
        configs[tile] = TileConfig(CoreShape(1, 1, w_bits=model.w_bits, v_bits=model.v_bits),
                                   lanes=1, memory=MemoryStyle.BLOCK, destinations=1)
    sizes_text = "-".join(map(str, model.sizes))
    profile = ChipProfile(
        name=name or f"generated-{sizes_text}",
        description=f"generated for a {sizes_text} network: {cores} cores on a {cols} x {rows} "
                    f"mesh, {lanes} lanes, {model.w_bits}-bit weights",
        cols=cols, rows=rows, host=path[0], tiles=configs, output_depth=output_depth)
    return Mapping(profile, tuple(slices))
