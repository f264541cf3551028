"""The network the trainer runs, float or integer, forward and backward, and the integer forward
pass on a :class:`~spikefab.firmware.model.Model` (:func:`integer_forward`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim.golden import decode
from ...hdl.abi import ResetMode
from ..model import Model

__all__ = ["ForwardTrace", "integer_forward"]


# ---- the network, float or integer ------------------------------------------------------------

@dataclass
class _Layer:
    """A layer as the forward pass sees it: effective (possibly integer) parameters."""
    weights: np.ndarray      # (inputs, outputs) float32; integers in integer mode
    bias: np.ndarray         # (outputs,) float32
    theta: float
    leak: int
    reset: ResetMode = ResetMode.SUBTRACT
    integer: bool = False
    v_lo: float | None = None    # saturation bounds (integer mode)
    v_hi: float | None = None
    recurrent: np.ndarray | None = None   # (outputs, outputs): spikes of tick t into tick t + 1


@dataclass
class _Run:
    """What the backward pass needs of one layer's run."""
    inputs: np.ndarray       # (ticks, batch, inputs) float32: what the layer received
    potential: np.ndarray    # (ticks, batch, outputs) V' after saturation, before the reset
    in_range: np.ndarray | None   # (ticks, batch, outputs) bool: not saturated
    spikes: np.ndarray       # (ticks, batch, outputs) bool
    final_v: np.ndarray      # (batch, outputs)


def _forward(layers: list[_Layer], x: np.ndarray) -> list[_Run]:
    """Run the chain on input spikes ``x`` (``(T, batch, inputs)``, 0/1) for ``T + L - 1``
    ticks. A recurrent layer adds its own spikes of the tick before, through its recurrent
    weights, to each tick's input.

    In integer mode this is the chip's arithmetic exactly: every value is an integer held in
    float32 well inside its 24-bit mantissa (``|I| <= inputs * 2**(w_bits-1)``, ``|V| <
    2**(v_bits-1)``), ``V >> k`` is ``floor(V * 2**-k)``, a power-of-two scaling and a floor.
    """
    steps, batch = x.shape[:2]
    ticks = steps + len(layers) - 1
    signal = np.zeros((ticks, batch, x.shape[2]), np.float32)
    signal[:steps] = x
    runs = []
    for layer in layers:
        n_in, n_out = layer.weights.shape
        current = (signal.reshape(-1, n_in) @ layer.weights).reshape(ticks, batch, n_out)
        current += layer.bias
        potential = np.empty((ticks, batch, n_out), np.float32)
        spikes = np.empty((ticks, batch, n_out), bool)
        in_range = None
        saturate = layer.v_lo is not None
        if saturate:
            in_range = np.empty((ticks, batch, n_out), bool)
        v = np.zeros((batch, n_out), np.float32)
        theta = np.float32(layer.theta)
        scale = np.float32(2.0 ** -layer.leak)
        decay = np.float32(1.0 - 2.0 ** -layer.leak)
        subtract = layer.reset == ResetMode.SUBTRACT
        for t in range(ticks):
            u = potential[t]
            if layer.recurrent is not None and t:
                current[t] += spikes[t - 1].astype(np.float32) @ layer.recurrent
            if layer.leak == 0:
                np.add(v, current[t], out=u)
            elif layer.integer:
                np.subtract(v, np.floor(v * scale), out=u)
                u += current[t]
            else:
                np.multiply(v, decay, out=u)
                u += current[t]
            if saturate:
                np.logical_and(u >= layer.v_lo, u <= layer.v_hi, out=in_range[t])
                np.clip(u, layer.v_lo, layer.v_hi, out=u)
            fired = np.greater_equal(u, theta, out=spikes[t])
            if subtract:
                v = u - theta * fired
            else:
                v = np.where(fired, np.float32(0), u)
        runs.append(_Run(signal, potential, in_range, spikes, v))
        # The next layer receives these spikes one tick later.
        signal = np.zeros((ticks, batch, n_out), np.float32)
        signal[1:] = spikes[:-1]
    return runs


def _backward(layers: list[_Layer], runs: list[_Run], grad_counts: np.ndarray,
              grad_final_v: np.ndarray, slope: float):
    """Gradients of the loss w.r.t. every layer's effective weights and bias, given those of
    the output counts and the output layer's final membranes (both ``(batch, classes)``).

    Per tick, backwards (``p`` = ``V'`` before the reset, ``s`` = spike, ``sigma`` the
    surrogate ``d s / d p``): ``g_p = g_V + (g_s - theta g_V) sigma`` (output layer: the reset
    is in the graph) or ``g_V + g_s sigma`` (hidden layers: detached reset), times 0 where
    saturated; ``g_I = g_B = g_p``; ``g_V`` of the tick before ``= (1 - 2**-k) g_p``. A
    recurrent layer's spikes of tick ``t`` also get ``g_I`` of tick ``t + 1`` through its
    recurrent weights, and those weights the gradient ``s(t - 1)^T g_I(t)``; its gradients are
    ``(weights, bias, recurrent)``.
    """
    grads = [None] * len(layers)
    grad_spikes = None   # d loss / d spikes of the current layer, (ticks, batch, outputs)
    for l in range(len(layers) - 1, -1, -1):
        layer, run = layers[l], runs[l]
        last = l == len(layers) - 1
        ticks = run.potential.shape[0]
        theta = np.float32(layer.theta)
        # d L / d V: 1 without leak, else 1 - 2**-k (the floor passes straight through)
        decay = np.float32(1.0 - 2.0 ** -layer.leak if layer.leak else 1.0)
        # The surrogate at every tick at once: 1 / (theta (1 + beta |p - theta| / theta)^2).
        surrogate = np.abs(run.potential - theta)
        surrogate *= np.float32(slope / layer.theta)
        surrogate += 1
        np.square(surrogate, out=surrogate)
        np.divide(np.float32(1.0 / layer.theta), surrogate, out=surrogate)
        if last:
            drive = grad_counts * surrogate           # g_s sigma
            keep = 1 - theta * surrogate               # g_V's factor
            g_v = grad_final_v.astype(np.float32)
        else:
            drive = grad_spikes * surrogate
            keep = None
            g_v = np.zeros(run.final_v.shape, np.float32)
        mask = run.in_range
        rec = layer.recurrent
        g_current = drive   # overwritten tick by tick, backwards
        for t in range(ticks - 1, -1, -1):
            g_p = g_current[t]
            if rec is not None and t + 1 < ticks:
                # This tick's spikes reach the next tick's input through the recurrent weights.
                g_p += (g_current[t + 1] @ rec.T) * surrogate[t]
            if keep is not None:
                g_p += g_v * keep[t]
            else:
                g_p += g_v
            if mask is not None:
                g_p *= mask[t]
            g_v = g_p * decay
        n_in, n_out = layer.weights.shape
        flat = g_current.reshape(-1, n_out)
        grad_w = run.inputs.reshape(-1, n_in).T @ flat
        grad_b = flat.sum(axis=0)
        grads[l] = (grad_w, grad_b)
        if rec is not None:
            before = run.spikes[:-1].reshape(-1, n_out).astype(np.float32)
            grads[l] += (before.T @ g_current[1:].reshape(-1, n_out),)
        if l:
            # Layer l received layer l-1's spikes of tick t in tick t+1.
            back = (g_current[1:].reshape(-1, n_out) @ layer.weights.T)
            grad_spikes = np.zeros((ticks, g_current.shape[1], n_in), np.float32)
            grad_spikes[:-1] = back.reshape(ticks - 1, -1, n_in)
    return grads


def _charge(layer: _Layer, run: _Run) -> np.ndarray:
    """Each output neuron's spike count plus final membrane in units of its threshold."""
    return run.spikes.sum(axis=0, dtype=np.float32) + run.final_v / np.float32(layer.theta)


def _loss(layer: _Layer, run: _Run, labels: np.ndarray, scale: float):
    """Cross-entropy on ``scale * charge``; returns (mean loss, d/d counts, d/d final V)."""
    charge = scale * _charge(layer, run).astype(np.float64)
    batch = len(labels)
    # A constant extra logit 0 (a "none of them" class that is never the label): softmax is
    # shift invariant, and this anchors the charges: the right class must end well above 0
    # (it spikes), the others below (they stay silent), so decode's spike counts decide.
    logits = np.concatenate([charge, np.zeros((batch, 1))], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    loss = -np.log(prob[np.arange(batch), labels] + 1e-30).mean()
    g = prob[:, :-1]
    g[np.arange(batch), labels] -= 1
    g *= scale / batch
    return float(loss), g.astype(np.float32), (g / layer.theta).astype(np.float32)


# ---- the integer forward on a Model -----------------------------------------------------------

@dataclass
class ForwardTrace:
    """A run of a model: per layer, its spikes ``(T + L - 1, batch, outputs)`` (bool) and its
    final membranes ``(batch, outputs)`` (int64); the output counts, and the decoded classes."""
    spikes: list[np.ndarray]
    final_v: list[np.ndarray]
    counts: np.ndarray
    predictions: np.ndarray


def _model_layers(model: Model) -> list[_Layer]:
    lo, hi = -(1 << (model.v_bits - 1)), (1 << (model.v_bits - 1)) - 1
    layers = []
    for layer in model.layers:
        bias = (np.zeros(layer.outputs, np.float32) if layer.bias is None
                else np.asarray(layer.bias, np.float32))
        recurrent = (None if layer.recurrent is None
                     else np.asarray(layer.recurrent, np.float32))
        layers.append(_Layer(np.asarray(layer.weights, np.float32), bias, float(layer.threshold),
                             int(layer.leak), ResetMode(layer.reset), True, float(lo), float(hi),
                             recurrent))
    return layers


def _check_exact(model: Model) -> None:
    """Every sum of the float32 forward must be an exactly representable integer."""
    w_max = 1 << (model.w_bits - 1)
    for l, layer in enumerate(model.layers):
        axons = layer.inputs + (layer.outputs if layer.recurrent is not None else 0)
        bound = axons * w_max + (1 << model.v_bits)
        if bound >= 1 << 24:
            raise ValueError(f"layer {l}: {axons} inputs of {model.w_bits}-bit weights "
                             f"at v_bits={model.v_bits} exceed float32's exact integers")


def integer_forward(model: Model, spikes: np.ndarray, *, batch_size: int = 1000) -> ForwardTrace:
    """Run ``model`` on input spikes ``(T, images, inputs)`` with the trainer's integer forward
    pass (the very code of quantization-aware training), ``T + L - 1`` ticks as on the chip.

    Bit-exact with :mod:`spikefab.sim.golden` (the tests check it); the class of each image is
    :func:`spikefab.sim.golden.decode` of the output counts and final membranes.
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[2] != model.inputs:
        raise ValueError(f"spikes must have shape (T, images, {model.inputs}), "
                         f"not {spikes.shape}")
    _check_exact(model)
    layers = _model_layers(model)
    parts = []
    for lo in range(0, spikes.shape[1], batch_size):
        runs = _forward(layers, spikes[:, lo:lo + batch_size])
        parts.append(runs)
    out_spikes = [np.concatenate([p[l].spikes for p in parts], axis=1)
                  for l in range(len(layers))]
    final_v = [np.concatenate([p[l].final_v for p in parts]).astype(np.int64)
               for l in range(len(layers))]
    counts = out_spikes[-1].sum(axis=0, dtype=np.int64)
    return ForwardTrace(out_spikes, final_v, counts, decode(counts, final_v[-1]))
