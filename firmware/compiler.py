"""The network compiler: a :class:`~spikefab.firmware.model.Model` onto a chip, as a chip image.

**Placement** is the mapper's (:mod:`spikefab.firmware.mapper`): a named profile holds layer
``l`` whole on tile ``l``; a generated chip splits each layer into slices, one per core.

**Routing.** Neuron ``n`` of layer ``l`` has, in its core's route table, one destination per
core of layer ``l + 1`` (axon ``n`` there) and, if layer ``l`` is recurrent, one per core of
layer ``l`` (axon ``inputs + n``); its route entry points at that run of destinations. Neurons
of the last layer also report to the host (``to_host``). Every other route entry is 0 (no
route). A network of ``L`` layers answers ``L - 1`` ticks late: the image's ``drain_ticks``.

**What the image writes.** Everything a run depends on, on every tile (SPRAM and block RAM
hold anything at power-up, and a previous image may have been loaded): the whole synapse region
(zero weights for unused axons and neurons, packed by
:meth:`~spikefab.hdl.abi.CoreMemoryMap.synapse_region`), the bias, membrane and
accumulator of every neuron (zero where unused), the threshold, leak and reset registers
(idle tiles: threshold ``v_max``, so they never spike), and both route tables in full. The
counters are left alone. Each record is one WRITE frame.

**Requirements** per slice and its tile: axons (inputs, plus outputs if recurrent) <= the
core's axons and <= its event budget per tick (each axon gets at most one event per tick, so
none is ever dropped), slice neurons <= neurons, destinations <= the route table, model
``w_bits`` <= core ``w_bits`` (a 4-bit model runs bit-exact on 8-bit synapses), model
``v_bits`` == core ``v_bits`` (the membrane saturates at its width), threshold <= the core's
``v_max``. :class:`CompileError` lists every one that fails.
"""

from __future__ import annotations

import numpy as np

from ..hdl.abi import REGISTERS, CoreMemoryMap, Region, ResetMode, route_dest, route_entry
from ..hdl.profiles import ChipProfile
from ..sim.golden import NeuronConfig
from .image import ChipImage, MemoryWrite, OutputSlice, max_record_words
from .mapper import MapError, Mapping, generate_mapping, layer_axons, preset_mapping
from .model import Model

__all__ = ["CompileError", "GENERATED", "DEFAULT_PROFILE", "map_model", "compile_model",
           "compile_for", "route_entry", "route_dest", "summary"]

#: What ``--profile`` names to have a chip generated for the network.
GENERATED = "generated"

#: The chip a model goes on when none is named: this profile if the model fits it (the shipped
#: MNIST models do), else a chip generated for the model.
DEFAULT_PROFILE = "icebreaker"


class CompileError(ValueError):
    """The model does not fit the chip; the message names each layer and by how much."""


def _check(model: Model, mapping: Mapping) -> None:
    profile = mapping.profile
    problems = []
    for s in mapping.slices:
        layer = model.layers[s.layer]
        config = profile.tiles[s.tile]
        shape = config.shape
        part = (f"neurons {s.first}-{s.stop - 1} of " if s.neurons != layer.outputs else "")
        label = f"{part}layer {s.layer} ({layer.inputs} -> {layer.outputs})"
        core = f"core {s.tile} of profile {profile.name!r}".replace(", ", ",")

        def need(amount: int, what: str, have: int, label=label, core=core) -> None:
            if amount > have:
                problems.append(f"{label}: needs {amount} {what}, {core} has {have} "
                                f"({amount - have} too many)")

        axons = layer_axons(layer)
        need(axons, "axons" if layer.recurrent is None else
             f"axons ({layer.inputs} inputs + {layer.outputs} recurrent)", shape.axons)
        if axons <= shape.axons:
            need(axons, "input events per tick", shape.events_per_tick)
        need(s.neurons, "neurons", shape.neurons)
        fanout = mapping.destinations(model, s)
        need(s.neurons * fanout, f"route destinations ({fanout} per neuron)",
             config.destinations)
        if model.w_bits > shape.w_bits:
            problems.append(f"{label}: the model has {model.w_bits}-bit weights, {core} has "
                            f"{shape.w_bits}-bit synapses")
        if model.v_bits != shape.v_bits:
            problems.append(f"{label}: the model has {model.v_bits}-bit membranes, {core} has "
                            f"{shape.v_bits}-bit ones (they must be equal: the membrane "
                            f"saturates at its width)")
        elif layer.threshold > shape.v_max:
            problems.append(f"{label}: threshold {layer.threshold} exceeds the largest "
                            f"membrane value of {core}, {shape.v_max} "
                            f"(by {layer.threshold - shape.v_max})")
    if len(problems) == 1:
        raise CompileError(problems[0])
    if problems:
        raise CompileError(f"the model does not fit profile {profile.name!r}:\n  "
                           + "\n  ".join(problems))


def map_model(model: Model, profile: ChipProfile | str | None = None, *,
              board: str | None = None) -> Mapping:
    """Where ``model`` goes: on a named profile (or a :class:`ChipProfile`), one layer per
    tile; with ``profile=None``, on a chip generated for it (and for ``board``, if given).
    Raises :class:`CompileError`."""
    try:
        if profile is None:
            return generate_mapping(model, board=board)
        return preset_mapping(model, profile)
    except MapError as exc:
        raise CompileError(str(exc)) from None


def compile_model(model: Model, profile: ChipProfile | str | Mapping | None = None) -> ChipImage:
    """The chip image that loads ``model`` onto a chip: a named profile, a
    :class:`ChipProfile`, a :class:`~spikefab.firmware.mapper.Mapping`, or ``None`` for a chip
    generated for the model.

    Raises :class:`CompileError` if the model does not fit (see the module's documentation).
    """
    model.validate()
    mapping = profile if isinstance(profile, Mapping) else map_model(model, profile)
    _check(model, mapping)
    profile = mapping.profile
    info = profile.info()
    order = profile.order
    count = len(model.layers)
    wb = info.word_bytes
    word_mask = (1 << (8 * wb)) - 1
    chunk = max_record_words(wb)
    writes: list[MemoryWrite] = []
    placement = []
    by_tile = {s.tile: s for s in mapping.slices}

    def emit(tile: int, region: Region, words) -> None:
        words = [int(w) & word_mask for w in words]
        size = info.tiles[tile].regions[region]
        if len(words) != size:   # the image must cover the whole region
            raise AssertionError(f"tile {tile} {region.name}: {len(words)} words for {size}")
        for start in range(0, len(words), chunk):
            writes.append(MemoryWrite(tile, int(region), start,
                                      tuple(words[start:start + chunk])))

    for k, (x, y) in enumerate(order):
        config = profile.tiles[x, y]
        shape = config.shape
        mm = CoreMemoryMap(shape, config.lanes)
        s = by_tile.get((x, y))
        weights = np.zeros((shape.axons, shape.neurons), np.int64)
        bias = np.zeros(shape.neurons, np.int64)
        index = [0] * shape.neurons
        dests = [0] * config.destinations
        if s is None:
            registers = {r: spec.reset_of(shape) for r, spec in REGISTERS.items()
                         if not spec.counter}
        else:
            layer = model.layers[s.layer]
            weights[:layer.inputs, :s.neurons] = layer.weights[:, s.first:s.stop]
            if layer.recurrent is not None:
                weights[layer.inputs:layer.inputs + layer.outputs, :s.neurons] = \
                    layer.recurrent[:, s.first:s.stop]
            if layer.bias is not None:
                bias[:s.neurons] = layer.bias[s.first:s.stop]
            registers = NeuronConfig(layer.threshold, layer.leak,
                                     ResetMode(layer.reset)).registers()
            targets = [(t.tile, 0) for t in mapping.of_layer(s.layer + 1)]
            if layer.recurrent is not None:
                targets += [(t.tile, layer.inputs) for t in mapping.of_layer(s.layer)]
            used = 0
            for j in range(s.neurons):
                n = s.first + j
                index[j] = route_entry(start=used if targets else 0, count=len(targets),
                                       to_host=s.layer == count - 1)
                for (tx, ty), base in targets:
                    dests[used] = route_dest(tx, ty, base + n)
                    used += 1
            placement.append({
                "layer": s.layer, "tile": [x, y], "first": s.first, "inputs": layer.inputs,
                "axons_used": layer_axons(layer), "outputs": s.neurons,
                "axons": shape.axons, "neurons": shape.neurons,
                "synapse_words_used": layer_axons(layer) * -(-s.neurons // config.lanes),
                "synapse_words": mm.synapse_words,
                "destinations_used": used, "destinations": config.destinations,
            })
        emit(k, Region.SYNAPSE, mm.synapse_region(weights))
        emit(k, Region.BIAS, bias)
        emit(k, Region.MEMBRANE, [0] * shape.neurons)
        emit(k, Region.ACCUMULATOR, [0] * shape.neurons)
        # Only the parameters: the counters (offsets 3 and up) are the driver's to clear.
        # The parameters are consecutive registers: one write covers them.
        first = min(registers)
        assert sorted(registers) == list(range(first, first + len(registers)))
        writes.append(MemoryWrite(k, int(Region.REGISTER), int(first),
                                  tuple(registers[r] for r in sorted(registers))))
        emit(k, Region.ROUTE_INDEX, index)
        emit(k, Region.ROUTE_DEST, dests)

    image = ChipImage(
        profile=profile.name, info=info, chip=profile.to_dict(), writes=writes,
        input_tiles=tuple(s.tile for s in mapping.of_layer(0)), inputs=model.inputs,
        outputs=tuple(OutputSlice(s.tile, s.first, s.neurons)
                      for s in mapping.of_layer(count - 1)),
        classes=model.classes, drain_ticks=model.drain_ticks, steps=model.steps,
        encoder=model.encoder,
        meta={"model": model.name, "sha256": model.digest(), "sizes": model.sizes,
              "recurrent": [l for l, layer in enumerate(model.layers)
                            if layer.recurrent is not None],
              "w_bits": model.w_bits, "v_bits": model.v_bits, "placement": placement})
    return image.validate()


def compile_for(model: Model, profile: str | None = None, *,
                board: str | None = None) -> ChipImage:
    """``compile_model`` for a chip as the commands name it: ``board`` (a chip generated for
    the model and that board), a profile's name, :data:`GENERATED`, or neither
    (:data:`DEFAULT_PROFILE` if the model fits it, else a chip generated for the model; the
    image names the chip it chose)."""
    if board is not None:
        if profile is not None:
            raise CompileError(f"give a board (a chip generated for it) or a profile, not "
                               f"both (--board {board} --profile {profile})")
        return compile_model(model, map_model(model, board=board))
    if profile == GENERATED:
        return compile_model(model, None)
    if profile is not None:
        return compile_model(model, profile)
    try:
        return compile_model(model, DEFAULT_PROFILE)
    except CompileError:
        return compile_model(model, None)


def summary(image: ChipImage) -> str:
    """A short placement and utilization report of a compiled image."""
    meta = image.meta
    info = image.info
    lines = [f"model {meta.get('model') or '(unnamed)'} "
             f"({'-'.join(map(str, meta.get('sizes', [])))}, "
             f"sha256 {str(meta.get('sha256', ''))[:12]}) on chip {image.profile!r}: "
             f"{info.cols} x {info.rows} mesh, host port at {tuple(info.host)}",
             f"{'layer':<6} {'neurons':<10} {'tile':<6} {'axons':>11} {'neurons':>9} "
             f"{'synapse words':>15} {'routes':>11}"]
    for p in meta.get("placement", []):
        used = p["synapse_words_used"]
        first = p.get("first", 0)
        span = f"{first}-{first + p['outputs'] - 1}"
        lines.append(
            f"{p['layer']:<6} {span:<10} {'(%d,%d)' % tuple(p['tile']):<6} "
            f"{p.get('axons_used', p['inputs']):>5}/{p['axons']:<5} "
            f"{p['outputs']:>4}/{p['neurons']:<4} "
            f"{used:>7}/{p['synapse_words']:<7} {p['destinations_used']:>5}/"
            f"{p['destinations']:<5}".rstrip())
    steps = "not given" if image.steps is None else str(image.steps)
    inputs = ", ".join(str(tuple(t)) for t in image.input_tiles)
    outputs = ", ".join(f"{o.first}-{o.first + o.count - 1} on {tuple(o.tile)}"
                        for o in image.outputs)
    lines.append(f"inputs: {image.inputs} axons of tile{'s' * (len(image.input_tiles) > 1)} "
                 f"{inputs}; classes: {outputs}; drain ticks: {image.drain_ticks}; "
                 f"steps: {steps}; encoder: {image.encoder}")
    lines.append(f"{len(image.writes)} WRITE frames, {image.word_count} words of "
                 f"{image.info.word_bytes} bytes")
    return "\n".join(lines)
