"""NIR graphs into the integer model (the rules: :mod:`spikefab.firmware.importers`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...hdl.abi import ResetMode
from ..model import Model
from .common import (ConversionError, ImportReport, _array, _build, _check_finite, _per_neuron,
                     _reset_mode, _SourceLayer, SYN_TOLERANCE)

__all__ = ["from_nir"]


# ---- NIR -------------------------------------------------------------------------------------------

def _import_nir():
    try:
        import nir
    except ImportError:
        raise ConversionError(None, "reading NIR graphs needs the 'nir' package: pip install "
                                    "nir (or pip install 'spikefab[import]')") from None
    return nir


def _describe(name: str, node) -> str:
    return f"NIR node {name!r} ({type(node).__name__})"


def _nir_chain(nir, graph) -> list[str]:
    """The node names from Input to Output, checking that the graph is a plain chain."""
    nodes = graph.nodes
    successors = {name: [] for name in nodes}
    predecessors = {name: [] for name in nodes}
    for edge in graph.edges:
        a, b = (str(x) for x in edge)
        for end in (a, b):
            if end not in nodes:
                raise ConversionError(None, f"edge {a!r} -> {b!r} names node {end!r}, which "
                                            f"the graph does not have")
        successors[a].append(b)
        predecessors[b].append(a)
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            _recurrent_parts(nir, name, node)   # refuses any other nested graph
    # Loops (recurrence), found by depth-first search.
    state: dict[str, int] = {}
    for start in nodes:
        if state.get(start):
            continue
        stack = [(start, iter(successors[start]))]
        state[start] = 1
        path = [start]
        while stack:
            current, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[current] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                loop = path[path.index(child):] + [child]
                raise ConversionError(_describe(child, nodes[child]),
                                      f"recurrence: the edges loop {' -> '.join(loop)}; the "
                                      f"chip runs feed-forward chains only")
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(successors[child])))
    for name in nodes:
        if len(successors[name]) > 1:
            raise ConversionError(_describe(name, nodes[name]),
                                  f"branches to {', '.join(successors[name])}; the chip runs "
                                  f"feed-forward chains only")
        if len(predecessors[name]) > 1:
            raise ConversionError(_describe(name, nodes[name]),
                                  f"merges {', '.join(predecessors[name])}; the chip runs "
                                  f"feed-forward chains only")
    inputs = [n for n, node in nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1:
        raise ConversionError(None, f"the graph has {len(inputs)} Input nodes "
                                    f"({', '.join(inputs) or 'none'}); exactly one is needed")
    if len(outputs) != 1:
        raise ConversionError(None, f"the graph has {len(outputs)} Output nodes "
                                    f"({', '.join(outputs) or 'none'}); exactly one is needed")
    chain = [inputs[0]]
    while successors[chain[-1]]:
        chain.append(successors[chain[-1]][0])
    if chain[-1] != outputs[0]:
        raise ConversionError(_describe(chain[-1], nodes[chain[-1]]),
                              f"the chain from {inputs[0]!r} ends here, not at the Output "
                              f"node {outputs[0]!r}")
    stray = [n for n in nodes if n not in chain]
    if stray:
        raise ConversionError(_describe(stray[0], nodes[stray[0]]),
                              "not on the chain from Input to Output")
    return chain


def _recurrent_parts(nir, name: str, graph) -> tuple[str, object, object]:
    """A recurrent layer as snnTorch's RLeaky exports it, a nested graph ``input -> neuron``,
    ``neuron -> w_rec -> neuron``, ``neuron -> output``: ``(neuron name, neuron node, w_rec
    node)``. Any other nested graph is refused."""
    where = _describe(name, graph)
    kinds = {n: node for n, node in graph.nodes.items()
             if not isinstance(node, (nir.Input, nir.Output))}
    neurons = [n for n, node in kinds.items() if isinstance(node, (nir.IF, nir.LIF,
                                                                   nir.CubaLIF))]
    weights = [n for n, node in kinds.items() if isinstance(node, (nir.Affine, nir.Linear))]
    edges = {(str(a), str(b)) for a, b in graph.edges}
    if len(kinds) == 2 and len(neurons) == 1 and len(weights) == 1:
        neuron, loop = neurons[0], weights[0]
        ins = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
        outs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
        if (len(ins) == 1 and len(outs) == 1 and edges == {
                (ins[0], neuron), (neuron, loop), (loop, neuron), (neuron, outs[0])}):
            return neuron, graph.nodes[neuron], graph.nodes[loop]
    raise ConversionError(where, "a nested graph that is not a recurrent layer (Input -> "
                                 "neuron, neuron -> Affine/Linear -> neuron, neuron -> "
                                 "Output, as snnTorch exports RLeaky)")


def _nir_refusal(nir, node) -> str:
    kind = type(node).__name__
    if kind in ("Conv1d", "Conv2d"):
        return "convolution; the chip's cores are fully connected (flatten it to Affine)"
    if kind in ("SumPool2d", "AvgPool2d"):
        return "pooling; the chip's cores are fully connected"
    if kind in ("LI", "I", "CubaLI"):
        return ("a non-spiking neuron (integrator readout); the chip's outputs are spikes, "
                "decoded by count: use a spiking output layer (LIF/IF)")
    return f"{kind} nodes are not supported (chain: Affine/Linear then LIF/IF/CubaLIF)"


def _nir_neuron(nir, name: str, node, outputs: int, dt: float, reset: ResetMode | None,
                notes: list[str]):
    """``(gain, decay, bias_drive, threshold, reset)`` per neuron for a neuron node."""
    where = _describe(name, node)

    def param(field_name):
        return _per_neuron(where, field_name, getattr(node, field_name), outputs)

    if isinstance(node, nir.IF):
        r = param("r")
        decay, gain, drive = np.ones(outputs), dt * r, np.zeros(outputs)
    elif isinstance(node, (nir.LIF, nir.CubaLIF)):
        tau = param("tau" if isinstance(node, nir.LIF) else "tau_mem")
        if np.any(tau <= 0):
            raise ConversionError(where, f"time constant {tau.min():g} <= 0")
        r, v_leak = param("r"), param("v_leak")
        decay = 1.0 - dt / tau
        gain = dt * r / tau
        drive = (1.0 - decay) * v_leak
        if np.any(v_leak != 0):
            notes.append(f"{where}: v_leak (resting potential) folded into the bias as "
                         f"(1 - d) v_leak per tick")
        if isinstance(node, nir.CubaLIF):
            tau_syn = param("tau_syn")
            if np.any(tau_syn <= 0):
                raise ConversionError(where, f"tau_syn {tau_syn.min():g} <= 0")
            syn_decay = 1.0 - dt / tau_syn
            if np.any(np.abs(syn_decay) > SYN_TOLERANCE):
                worst = float(syn_decay[np.argmax(np.abs(syn_decay))])
                raise ConversionError(where, f"synaptic time constant tau_syn = "
                                      f"{tau_syn.max():g} (dt = {dt:g}) gives a synaptic "
                                      f"decay of {worst:.4g} per tick; the chip has no synaptic "
                                      f"current state, only instantaneous synapses (decay 0 "
                                      f"within {SYN_TOLERANCE:g}; tau_syn = dt)")
            gain = gain * (dt / tau_syn) * param("w_in")
    else:
        raise ConversionError(where, _nir_refusal(nir, node))
    threshold = param("v_threshold")
    v_reset = param("v_reset") if getattr(node, "v_reset", None) is not None \
        else np.zeros(outputs)
    mode = ResetMode.ZERO if reset is None else reset
    if np.any(v_reset != 0):
        if mode is ResetMode.SUBTRACT:
            raise ConversionError(where, f"v_reset = {v_reset[v_reset != 0][0]:g} with "
                                         f"subtract reset: ambiguous (subtract reset has no "
                                         f"reset potential); use v_reset = 0")
        raise ConversionError(where, f"v_reset = {v_reset[v_reset != 0][0]:g}; the chip "
                                     f"resets to 0 ('zero') or subtracts the threshold")
    if np.any(gain <= 0):
        raise ConversionError(where, f"input gain (from r, tau, dt) {gain.min():g} <= 0")
    return gain, decay, drive, threshold, mode


def from_nir(graph_or_path, *, w_bits: int = 8, v_bits: int = 16, steps: int | None = None,
             calibration=None, dt: float = 1.0, reset: ResetMode | str | None = None,
             name: str | None = None) -> tuple[Model, ImportReport]:
    """Import a NIR graph (a ``nir.NIRGraph`` or the path of a ``.nir`` file).

    Parameters
    ----------
    w_bits, v_bits : int
        Weight width (4 or 8) and membrane width (8 to 24) of the model.
    steps : int, optional
        The model's suggested ``T`` (stored in it; also the calibration run's, default 25).
    calibration : MNISTSet or (images, labels[, indices]), optional
        Data to measure accuracy before and after quantization on.
    dt : float
        The time step one tick stands for (forward Euler); 1e-4 for snnTorch's exports.
    reset : ResetMode, "zero", "subtract" or None
        The chip's reset mode; None: "zero", NIR's reset to ``v_reset`` (which must be 0).
    name : str, optional
        The model's name (default: the file's stem).

    Raises :class:`ConversionError` for anything the chip cannot express (see the module's
    documentation for the rules).
    """
    nir = _import_nir()
    reset = _reset_mode(reset)
    if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive number, not {dt!r}")
    if isinstance(graph_or_path, (str, os.PathLike)):
        path = Path(graph_or_path)
        try:
            graph = nir.read(path)
        except FileNotFoundError:
            raise ConversionError(None, f"{path}: no such file") from None
        except (OSError, KeyError, ValueError, AssertionError, TypeError) as exc:
            raise ConversionError(None, f"{path}: cannot read it as a NIR graph "
                                        f"({type(exc).__name__}: {exc})") from None
        source = str(path)
        default_name = path.stem
    else:
        graph = graph_or_path
        if not isinstance(graph, nir.NIRGraph):
            raise TypeError(f"from_nir takes a nir.NIRGraph or a path, not "
                            f"{type(graph).__name__}")
        source, default_name = "NIR graph", ""
    chain = _nir_chain(nir, graph)
    nodes = graph.nodes
    notes: list[str] = [f"NIR discretized with forward Euler, dt = {dt:g} per tick"]
    if reset is None:
        # NIR has no field for it: a graph exported from snnTorch (subtract reset by default)
        # reads as reset to v_reset, and loses accuracy on the chip if it was trained so.
        notes.append("reset 'zero' chosen: NIR cannot record a reset mode (it resets to "
                     "v_reset); if the network was trained with subtract reset (snnTorch's "
                     "default), import it again with --reset subtract (from Python, "
                     "reset='subtract')")
    layers: list[_SourceLayer] = []
    pending = None   # (name, weight (in, out), bias)
    shape = (nodes[chain[0]].input_type or {}).get("input")
    try:
        width = int(np.prod(np.asarray(shape)))
    except (TypeError, ValueError):   # an Input without a shape
        width = None
    for node_name in chain[1:-1]:
        node = nodes[node_name]
        where = _describe(node_name, node)
        if isinstance(node, nir.Flatten):
            continue
        if isinstance(node, (nir.Affine, nir.Linear)):
            if pending is not None:
                raise ConversionError(where, f"follows weight node {pending[0]!r} with no "
                                             f"neuron between them (one weight node per layer)")
            weight = _array(node.weight)
            if weight.ndim != 2:
                raise ConversionError(where, f"weight has shape {weight.shape}; a (outputs, "
                                             f"inputs) matrix is needed")
            _check_finite(where, "weight", weight)
            if width is not None and weight.shape[1] != width:
                raise ConversionError(where, f"takes {weight.shape[1]} inputs but receives "
                                             f"{width}")
            outputs = weight.shape[0]
            bias = (np.broadcast_to(_array(node.bias), (outputs,)).astype(np.float64)
                    if isinstance(node, nir.Affine) else np.zeros(outputs))
            pending = (node_name, weight.T.copy(), bias)
            width = outputs
            continue
        if pending is None:
            if isinstance(node, (nir.IF, nir.LIF, nir.CubaLIF)):
                raise ConversionError(where, "a neuron node with no weight node (Affine/Linear) "
                                             "before it")
            raise ConversionError(where, _nir_refusal(nir, node))
        weight_name, weight, bias = pending
        recurrent = None
        if isinstance(node, nir.NIRGraph):   # a recurrent layer: its neuron and its loop
            inner, node, loop = _recurrent_parts(nir, node_name, node)
            node_name = f"{node_name}.{inner}"
            recurrent = _array(loop.weight)
            if recurrent.shape != (width, width):
                raise ConversionError(where, f"its recurrent weight has shape "
                                             f"{recurrent.shape}; the layer has {width} "
                                             f"neurons, so ({width}, {width})")
            _check_finite(where, "recurrent weight", recurrent)
            if isinstance(loop, nir.Affine):
                bias = bias + np.broadcast_to(_array(loop.bias), (width,))
            recurrent = recurrent.T.copy()   # NIR's (outputs, inputs) -> from m to n
        gain, decay, drive, threshold, mode = _nir_neuron(nir, node_name, node, width, dt,
                                                          reset, notes)
        layers.append(_SourceLayer(
            name=f"{weight_name} -> {node_name}", neuron=where,
            weight=weight * gain[None, :], bias=bias * gain + drive, threshold=threshold,
            decay=decay, reset=mode, rule="nir",
            recurrent=None if recurrent is None else recurrent * gain[None, :]))
        pending = None
    if pending is not None:
        raise ConversionError(_describe(pending[0], nodes[pending[0]]),
                              "the last weight node has no neuron after it (the chip's outputs "
                              "are spiking neurons)")
    if not layers:
        raise ConversionError(None, "the graph has no layer (Affine/Linear then LIF/IF)")
    return _build(layers, source=source, fmt="NIR", w_bits=w_bits, v_bits=v_bits, steps=steps,
                  calibration=calibration, name=name if name is not None else default_name,
                  notes=notes)
