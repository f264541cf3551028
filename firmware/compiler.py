"""The network compiler: a :class:`~spikefab.firmware.model.Model` onto a chip profile.

**Placement.** Layer ``l`` goes on tile number ``l`` in tile order (``y * cols + x``): the host
can inject events into any tile (its router forwards them), so the input layer may sit anywhere,
and the classes are the neurons of the last layer's tile. Input ``i`` of the network is axon
``i`` of the first tile.

**Routing.** Neuron ``n`` of layer ``l < L - 1`` has one destination, ``(tile of l + 1, axon
n)``, stored at ``dest[n]`` of its tile (route entry ``start = n, count = 1``); neurons of the
last layer report to the host (``to_host = 1, count = 0``); every other neuron has entry 0 (no
route). A network of ``L`` layers answers ``L - 1`` ticks late: the image's ``drain_ticks``.

**What the image writes.** Everything a run depends on, on every tile (SPRAM and block RAM
hold anything at power-up, and a previous image may have been loaded): the whole synapse region
(zero weights for unused axons and neurons, packed by
:meth:`~spikefab.hdl.abi.CoreMemoryMap.synapse_region`), the bias, membrane and
accumulator of every neuron (zero where unused), the threshold, leak and reset registers
(unused tiles: threshold ``v_max``, so they never spike), and both route tables in full. The
counters are left alone. Each record is one WRITE frame.

**Requirements** per layer and tile: inputs <= axons (and <= the core's event budget per tick,
so no input event is ever dropped), outputs <= neurons, model ``w_bits`` <= core ``w_bits``
(a 4-bit model runs bit-exact on 8-bit synapses), model ``v_bits`` == core ``v_bits`` (the
membrane saturates at its width), threshold <= the core's ``v_max``, and, for every layer but
the last, route destinations >= outputs. :class:`CompileError` lists every one that fails.
"""

from __future__ import annotations

import numpy as np

from ..hdl.abi import REGISTERS, CoreMemoryMap, Region, ResetMode, route_dest, route_entry
from ..hdl.profiles import ChipProfile, get_profile
from ..sim.golden import NeuronConfig
from .image import ChipImage, MemoryWrite, max_record_words
from .model import Model

__all__ = ["CompileError", "compile_model", "route_entry", "route_dest", "summary"]


class CompileError(ValueError):
    """The model does not fit the profile; the message names each layer and by how much."""


def _check(model: Model, profile: ChipProfile) -> None:
    order = profile.order
    count = len(model.layers)
    if count > len(order):
        raise CompileError(f"the model has {count} layers, but profile {profile.name!r} has "
                           f"{len(order)} tiles (one layer per tile; "
                           f"{count - len(order)} too many)")
    problems = []
    for l, layer in enumerate(model.layers):
        (x, y), config = order[l], profile.tiles[order[l]]
        shape = config.shape
        label = f"layer {l} ({layer.inputs} -> {layer.outputs})"
        core = f"core ({x},{y}) of profile {profile.name!r}"

        def need(amount: int, what: str, have: int, label=label, core=core) -> None:
            if amount > have:
                problems.append(f"{label}: needs {amount} {what}, {core} has {have} "
                                f"({amount - have} too many)")

        need(layer.inputs, "axons", shape.axons)
        if layer.inputs <= shape.axons:
            need(layer.inputs, "input events per tick", shape.events_per_tick)
        need(layer.outputs, "neurons", shape.neurons)
        if l < count - 1:
            need(layer.outputs, "route destinations (one per neuron)", config.destinations)
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


def compile_model(model: Model, profile: ChipProfile | str) -> ChipImage:
    """The chip image that loads ``model`` onto a chip of ``profile`` (a profile or its name).

    Raises :class:`CompileError` if the model does not fit (see the module's documentation).
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    model.validate()
    _check(model, profile)
    info = profile.info()
    order = profile.order
    count = len(model.layers)
    wb = info.word_bytes
    word_mask = (1 << (8 * wb)) - 1
    chunk = max_record_words(wb)
    writes: list[MemoryWrite] = []
    placement = []

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
        layer = model.layers[k] if k < count else None
        weights = np.zeros((shape.axons, shape.neurons), np.int64)
        bias = np.zeros(shape.neurons, np.int64)
        index = [0] * shape.neurons
        dests = [0] * config.destinations
        if layer is None:
            registers = {r: spec.reset_of(shape) for r, spec in REGISTERS.items()
                         if not spec.counter}
        else:
            weights[:layer.inputs, :layer.outputs] = layer.weights
            if layer.bias is not None:
                bias[:layer.outputs] = layer.bias
            registers = NeuronConfig(layer.threshold, layer.leak,
                                     ResetMode(layer.reset)).registers()
            if k < count - 1:
                nx, ny = order[k + 1]
                for n in range(layer.outputs):
                    index[n] = route_entry(start=n, count=1)
                    dests[n] = route_dest(nx, ny, n)
            else:
                for n in range(layer.outputs):
                    index[n] = route_entry(to_host=True)
            placement.append({
                "layer": k, "tile": [x, y], "inputs": layer.inputs, "outputs": layer.outputs,
                "axons": shape.axons, "neurons": shape.neurons,
                "synapse_words_used": layer.inputs * -(-layer.outputs // config.lanes),
                "synapse_words": mm.synapse_words,
                "destinations_used": layer.outputs if k < count - 1 else 0,
                "destinations": config.destinations,
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
        profile=profile.name, info=info, writes=writes, input_tile=order[0],
        inputs=model.inputs, output_tile=order[count - 1], classes=model.classes,
        drain_ticks=count - 1, steps=model.steps,
        meta={"model": model.name, "sha256": model.digest(), "sizes": model.sizes,
              "w_bits": model.w_bits, "v_bits": model.v_bits, "placement": placement})
    return image.validate()


def summary(image: ChipImage) -> str:
    """A short placement and utilization report of a compiled image."""
    meta = image.meta
    lines = [f"model {meta.get('model') or '(unnamed)'} "
             f"({'-'.join(map(str, meta.get('sizes', [])))}, "
             f"sha256 {str(meta.get('sha256', ''))[:12]}) on profile {image.profile!r}",
             f"{'layer':<6} {'tile':<6} {'axons':>11} {'neurons':>9} {'synapse words':>15} "
             f"{'routes':>8}"]
    for p in meta.get("placement", []):
        used = p["synapse_words_used"]
        lines.append(
            f"{p['layer']:<6} {'(%d,%d)' % tuple(p['tile']):<6} "
            f"{p['inputs']:>5}/{p['axons']:<5} {p['outputs']:>4}/{p['neurons']:<4} "
            f"{used:>7}/{p['synapse_words']:<7} {p['destinations_used']:>3}/"
            f"{p['destinations']:<4}".rstrip())
    steps = "not given" if image.steps is None else str(image.steps)
    lines.append(f"inputs: {image.inputs} axons of tile {tuple(image.input_tile)}; classes: "
                 f"{image.classes} neurons of tile {tuple(image.output_tile)}; "
                 f"drain ticks: {image.drain_ticks}; steps: {steps}")
    lines.append(f"{len(image.writes)} WRITE frames, {image.word_count} words of "
                 f"{image.info.word_bytes} bytes")
    return "\n".join(lines)
