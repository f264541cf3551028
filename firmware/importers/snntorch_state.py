"""snnTorch state dicts into the integer model (the rules: :mod:`spikefab.firmware.importers`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...hdl.abi import ResetMode
from ..model import Model
from .common import (ConversionError, ImportReport, _array, _build, _check_finite, _per_neuron,
                     _reset_mode, _SourceLayer, SYN_TOLERANCE)

__all__ = ["from_snntorch", "load_state_dict"]


# ---- snnTorch ----------------------------------------------------------------------------------------

_NEURON_KEYS = {"beta", "threshold", "graded_spikes_factor", "reset_mechanism_val", "mem",
                "alpha", "syn", "spk", "V"}
#: snnTorch's ``reset_mechanism_val`` codes; 2 ("none": pure integration) has no chip mode.
_RESETS = {0: ResetMode.SUBTRACT, 1: ResetMode.ZERO, 2: None}


def load_state_dict(path) -> dict[str, Any]:
    """A state dict from a file: ``.npz`` (NumPy arrays under the state dict's keys) or a
    PyTorch file (``torch.load``, weights only; torch is imported here and only here).
    A checkpoint dict holding a ``"state_dict"`` (or ``"model_state_dict"``) is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(None, f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if path.suffix == ".npz" or (head == b"PK\x03\x04" and path.suffix not in (".pt", ".pth")):
        try:
            with np.load(path, allow_pickle=False) as npz:
                state = {key: npz[key] for key in npz.files}
        except Exception as exc:   # zip, pickle and format errors of every kind
            raise ConversionError(None, f"{path}: cannot read it as .npz ({exc})") from None
        if "format" in state and "weights_0" in state:
            raise ConversionError(None, f"{path} is already a spikefab model, not a state dict")
        return state
    try:
        import torch
    except ImportError:
        raise ConversionError(None, f"reading {path} needs PyTorch: pip install torch (or pip "
                                    f"install 'spikefab[torch]'), or save the state dict as "
                                    f".npz") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises many kinds
        raise ConversionError(None, f"{path}: torch.load failed ({type(exc).__name__}: "
                                    f"{exc})") from None
    for key in ("state_dict", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConversionError(None, f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _per_layer(value, index: int, count: int):
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"a per-layer list needs {count} values, not {len(value)}")
        return value[index]
    return value


def _pick(module: str, what: str, stored, given, default=None):
    """The state dict's value, or the argument's; both given and different is an error."""
    if stored is not None and given is not None:
        a, b = _array(stored).reshape(-1), _array(given).reshape(-1)
        same = (a.size == 1 or b.size == 1 or a.shape == b.shape) and np.allclose(a, b)
        if not same:
            raise ConversionError(module, f"{what} in the state dict ({a.reshape(-1)[:4]}) "
                                          f"disagrees with the argument {what}={given!r}")
    if stored is not None:
        return stored
    return given if given is not None else default


def from_snntorch(state_dict, *, beta=None, threshold=None, reset: ResetMode | str | None = None,
                  reset_delay: bool = True, w_bits: int = 8, v_bits: int = 16,
                  steps: int | None = None, calibration=None,
                  name: str | None = None) -> tuple[Model, ImportReport]:
    """Import an snnTorch network of ``nn.Linear`` + ``snn.Leaky`` layers from its state dict.

    Parameters
    ----------
    state_dict : mapping or path
        Keys ``<linear>.weight`` (outputs, inputs), ``<linear>.bias``, and for each Leaky the
        buffers/parameters snnTorch stores (``<lif>.beta``, ``<lif>.threshold``,
        ``<lif>.reset_mechanism_val``, ``<lif>.graded_spikes_factor``, ``<lif>.mem``); values
        are torch tensors or NumPy arrays. The i-th Linear (in the dict's order) feeds the i-th
        Leaky. A path is read with :func:`load_state_dict`.
    beta, threshold : float, array or a list with one per layer, optional
        Used where the state dict has none (a dict of Linear layers only); both given and
        different is an error. ``threshold`` defaults to 1.0 (snnTorch's); ``beta`` must be
        somewhere.
    reset : ResetMode, "subtract", "zero" or None
        Where the state dict has no ``reset_mechanism_val``; default "subtract" (snnTorch's).
    reset_delay : bool
        snnTorch's ``Leaky(reset_delay=...)`` (its default True), for the float reference.
    w_bits, v_bits, steps, calibration, name
        As :func:`from_nir`.
    """
    reset = _reset_mode(reset)
    source = "state dict"
    default_name = ""
    if isinstance(state_dict, (str, os.PathLike)):
        source = str(state_dict)
        default_name = Path(state_dict).stem
        state_dict = load_state_dict(state_dict)
    if not hasattr(state_dict, "items"):
        raise TypeError(f"from_snntorch takes a state dict or a path, not "
                        f"{type(state_dict).__name__}")
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        key = str(key)
        if "." not in key:
            raise ConversionError(f"state-dict key {key!r}", "not a module parameter (expected "
                                  "'<module>.weight', '<module>.beta', ...)")
        prefix, part = key.rsplit(".", 1)
        groups.setdefault(prefix, {})[part] = value
    linears, neurons, loops = [], [], {}
    for prefix, params in groups.items():
        where = f"module {prefix!r}"
        parts = set(params)
        owner, _, last = prefix.rpartition(".")
        if last == "recurrent" and owner and (parts <= {"weight", "bias"} or parts == {"V"}):
            loops[owner] = params   # RLeaky's recurrent connection: a Linear, or V one to one
            continue
        if "weight" in parts and parts <= {"weight", "bias"}:
            shape = np.shape(_array(params["weight"]))
            if len(shape) != 2:
                kind = "a convolution" if len(shape) > 2 else "not a Linear layer"
                raise ConversionError(where, f"weight has shape {shape}: {kind}; the chip's "
                                             f"cores are fully connected (nn.Linear)")
            linears.append(prefix)
        elif parts & {"beta", "threshold", "reset_mechanism_val"} and parts <= _NEURON_KEYS:
            neurons.append(prefix)
        else:
            raise ConversionError(where, f"unsupported module with "
                                         f"{', '.join(sorted(parts))} (expected nn.Linear "
                                         f"weight/bias and snn.Leaky beta/threshold)")
    for owner in loops:
        if owner not in neurons:
            raise ConversionError(f"module {owner + '.recurrent'!r}", f"a recurrent connection "
                                  f"of {owner!r}, which is not a neuron module of the state "
                                  f"dict (expected RLeaky's beta/threshold beside it)")
    for prefix in linears:
        for neuron in neurons:
            if prefix.startswith(neuron + "."):
                raise ConversionError(f"module {prefix!r}", f"a Linear inside the neuron "
                                      f"module {neuron!r}; RLeaky's recurrent connection is "
                                      f"'{neuron}.recurrent'")
    if not linears:
        raise ConversionError(None, "the state dict has no nn.Linear layer ('<name>.weight')")
    if neurons and len(neurons) != len(linears):
        raise ConversionError(None, f"{len(linears)} Linear layers ({', '.join(linears)}) but "
                                    f"{len(neurons)} Leaky neurons ({', '.join(neurons)}); "
                                    f"each Linear needs one Leaky after it")
    count = len(linears)
    notes: list[str] = []
    layers: list[_SourceLayer] = []
    width = None
    spike_value = None      # the previous layer's graded_spikes_factor, per neuron
    delayed_note = False
    for i, prefix in enumerate(linears):
        params = groups[prefix]
        weight = _array(params["weight"])
        _check_finite(f"module {prefix!r}", "weight", weight)
        outputs, inputs = weight.shape
        if width is not None and inputs != width:
            raise ConversionError(f"module {prefix!r}", f"takes {inputs} inputs but the "
                                  f"previous layer has {width} neurons (the Linear layers are "
                                  f"taken in the state dict's order)")
        bias = (_per_neuron(f"module {prefix!r}", "bias", params["bias"], outputs)
                if "bias" in params else np.zeros(outputs))
        weight = weight.T.copy()
        if spike_value is not None:
            weight = weight * spike_value[:, None]
        neuron = neurons[i] if neurons else None
        stored = groups[neuron] if neuron else {}
        where = f"module {neuron!r}" if neuron else f"neuron after {prefix!r}"
        b = _pick(where, "beta", stored.get("beta"), _per_layer(beta, i, count))
        if b is None:
            raise ConversionError(where, "no beta: the state dict has none; give the Leaky "
                                         "neurons' decay per tick, e.g. 0.9 (spikefab import "
                                         "--beta B; from Python, beta=)")
        decay = np.clip(_per_neuron(where, "beta", b, outputs), 0.0, 1.0)
        thr = _per_neuron(where, "threshold",
                          _pick(where, "threshold", stored.get("threshold"),
                                _per_layer(threshold, i, count), 1.0), outputs)
        mode = ResetMode.SUBTRACT if reset is None else reset
        if "reset_mechanism_val" in stored:
            code = int(_array(stored["reset_mechanism_val"]).reshape(-1)[0])
            if code not in _RESETS:
                raise ConversionError(where, f"reset_mechanism_val = {code} is not 0, 1 or 2")
            mode = _RESETS[code]
            if mode is None:
                raise ConversionError(where, "reset_mechanism 'none' (pure integration); the "
                                             "chip always resets after a spike")
            if reset is not None and reset is not mode:
                raise ConversionError(where, f"reset_mechanism in the state dict "
                                             f"({mode.name.lower()!r}) disagrees with the "
                                             f"argument reset={reset.name.lower()!r}")
        if "alpha" in stored:
            alpha = _array(stored["alpha"])
            if np.any(np.abs(alpha) > SYN_TOLERANCE):
                raise ConversionError(where, f"a Synaptic neuron with alpha = "
                                      f"{alpha.reshape(-1)[0]:.4g}; the chip has no synaptic "
                                      f"current state (alpha must be 0)")
        spike_value = None
        if "graded_spikes_factor" in stored:
            factor = _per_neuron(where, "graded_spikes_factor",
                                 stored["graded_spikes_factor"], outputs)
            if np.any(factor != 1.0):
                if i < count - 1:
                    spike_value = factor
                    notes.append(f"{where}: graded_spikes_factor folded into the next layer's "
                                 f"weights")
                if np.any(factor <= 0):
                    raise ConversionError(where, "graded_spikes_factor <= 0")
        if mode is ResetMode.SUBTRACT and reset_delay and not delayed_note:
            delayed_note = True
            notes.append("snnTorch's delayed subtract reset (reset_delay=True) subtracts thr "
                         "undecayed one step later, the chip subtracts at once and then decays "
                         "(beta * thr); the float reference keeps snnTorch's rule")
        loop = _recurrent(where, neuron, loops, stored, outputs)
        if loop is not None:
            recurrent, loop_bias = loop
            bias = bias + loop_bias   # recurrent(spk) = spk @ W.T + b: b is added every tick
            if "graded_spikes_factor" in stored:   # the layer's own spikes carry its factor
                recurrent = recurrent * _per_neuron(where, "graded_spikes_factor",
                                                    stored["graded_spikes_factor"],
                                                    outputs)[:, None]
        else:
            recurrent = None
        layers.append(_SourceLayer(
            name=f"{prefix} + {neuron}" if neuron else prefix, neuron=where, weight=weight,
            bias=bias, threshold=thr, decay=decay, reset=mode, rule="snntorch",
            reset_delay=reset_delay, recurrent=recurrent))
        width = outputs
    return _build(layers, source=source, fmt="snnTorch", w_bits=w_bits, v_bits=v_bits,
                  steps=steps, calibration=calibration,
                  name=name if name is not None else default_name, notes=notes)


def _recurrent(where: str, neuron: str | None, loops: dict, stored: dict, outputs: int):
    """RLeaky's recurrent connection of ``neuron`` as ``(weights m -> n, bias)``, or None:
    ``recurrent.weight``/``recurrent.bias`` (an ``nn.Linear`` over the layer's own spikes,
    ``all_to_all=True``), or ``V`` (one to one: neuron ``n`` feeds itself ``V[n]``)."""
    params = loops.get(neuron) if neuron else None
    if params is None and "V" in stored:
        params = {"V": stored["V"]}
    if params is None:
        return None
    if "V" in params:
        v = _per_neuron(where, "V", params["V"], outputs)
        _check_finite(where, "V", v)
        return np.diag(v), np.zeros(outputs)
    weight = _array(params["weight"])
    _check_finite(where, "recurrent weight", weight)
    if weight.shape != (outputs, outputs):
        raise ConversionError(f"module {neuron + '.recurrent'!r}", f"weight has shape "
                              f"{weight.shape}; the layer has {outputs} neurons, so a recurrent "
                              f"Linear is ({outputs}, {outputs})")
    bias = (_per_neuron(where, "recurrent bias", params["bias"], outputs)
            if "bias" in params else np.zeros(outputs))
    return weight.T.copy(), bias

