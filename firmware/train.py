"""The hardware-exact trainer: surrogate-gradient BPTT of a feed-forward LIF network, in NumPy.

The network is the chip's (docs/semantics.md): ``inputs -> hidden -> classes`` (784-128-10, MNIST),
fully connected LIF layers with subtract reset, a leak shift ``k`` and a threshold per layer.
Every tick ``t`` of a run of ``T`` steps:

* the inputs are :func:`spikefab.sim.encoding.rate_encode` spikes of tick ``t``;
* layer 0 receives them during tick ``t`` and updates at the end of tick ``t``;
* layer ``l + 1`` receives layer ``l``'s spikes of tick ``t`` during tick ``t + 1``, so a net of
  ``L`` layers runs ``T + L - 1`` ticks (the last ``L - 1`` drain ticks carry no input), exactly
  as :meth:`spikefab.firmware.model.Model.simulate`, the compiler and the driver do;
* update: ``L = V - (V >> k)`` (``k = 0``: ``L = V``), ``V' = sat(L + I + B)`` to ``v_bits``,
  ``spike = V' >= theta``, then ``V' - theta`` on a spike.

**Training** has two phases that share one forward and one backward pass:

1. *Float* (``epochs - qat_epochs`` epochs): real-valued weights and biases, ``theta = 1`` in
   every layer, leak as the factor ``1 - 2**-k``, subtract reset, no saturation -- the same
   network with the rounding taken out, so that quantizing it is a small step.
2. *Quantization-aware* (``qat_epochs`` epochs): the forward pass **is** the integer model.
   Each layer gets an integer scale at the start of the phase, ``theta_int = round(w_max /
   max|W|)`` (``w_max = 2**(w_bits-1) - 1``) and ``s = 1 / theta_int``: the per-layer scale
   is folded into the threshold. Every step the float master weights and biases are rounded,
   ``W_int = clip(round(W / s))``, ``B_int = round(B / s)`` (the straight-through estimator
   carries the gradient past the rounding: ``dL/dW = dL/dW_int / s``), and the run is
   computed in exact integer arithmetic (float32 holding integers far below ``2**24``, so
   every sum is exact): ``V >> k`` as ``floor(V * 2**-k)``, the saturation, the threshold
   comparison. The masters are kept within the range the rounding can represent. (A run that
   is quantization-aware from the first epoch recalibrates the scale every epoch instead and
   does not clip the masters: its weights start far smaller than they end.)
   :func:`integer_forward` runs that very code on a :class:`~spikefab.firmware.model.Model`;
   the tests check it against the golden model bit for bit.

Both phases use Adam with a cosine learning-rate schedule (restarted for the second phase).
The computation is vectorized over the batch and over time: each layer's input currents for
all ticks are one matrix product, so is each weight gradient; only the elementwise membrane
recurrence loops over the ticks. Memory is ``O(T * batch * (inputs + hidden))``.

The spike's derivative is a fast sigmoid (SuperSpike) surrogate in units of the threshold,
``d spike / d V' = 1 / (theta * (1 + beta |V' - theta| / theta)**2)``; the hidden layers' reset
is detached from the graph (the usual choice), the output layer's is not. The leak's floor
passes the gradient straight through (factor ``1 - 2**-k``); saturation passes it where the
membrane is inside the range.

**Loss**: cross-entropy on the *charge* of each output neuron, ``q = c + V_final / theta``
(spike count plus the final membrane in units of the threshold), as logits ``logit_scale / T
* q`` next to one constant logit 0 that is never the label. Why the charge: its order is the
decision rule's. :func:`spikefab.sim.golden.decode` picks the most spikes, then the higher
final membrane, and for membranes in ``[0, theta)`` -- all of them unless a membrane goes
negative after spiking -- ``(c, V)`` compares exactly as ``c + V / theta``. It is also smooth
where the counts alone are integer steps: without leak it is the output layer's summed input
(subtract reset conserves charge), so the output layer's gradient is exact, not a surrogate.
Why the constant logit: softmax does not care about a common offset, so charges alone could
all sit below zero and no output would ever spike (the class would be decided by membranes
only); against a fixed 0 the right class must end clearly positive -- it spikes -- and the
others negative, so spike counts decide as the rule intends. Predictions (every accuracy
figure) come from ``decode``.

**Inputs**: every epoch draws fresh spike trains with the inference encoder,
``rate_encode(images, T, seed_e, indices)``, keyed on each image's index in its file and an
epoch seed ``seed_e`` derived from ``(seed, epoch)``; optionally each training image is first
shifted by a random ``(dx, dy)`` in ``[-shift, shift]`` pixels (zero fill). Validation uses
the inference encoding, seed ``eval_seed`` (0 by default, as ``spikefab run``).

**Determinism**: initial weights, the order of the batches, the shifts and the epoch seeds
all come from ``numpy.random.Generator(PCG64(SeedSequence([seed, ...])))``; the same seed,
data and NumPy build give the same model bytes.

**MNIST split** (:func:`train_mnist`): training-file images ``0 .. 54999`` train, ``55000 ..
59999`` validate; the validation part holds the bundled slice (``59000 .. 59999``, see
:func:`spikefab.firmware.mnist.bundled_slice`), which is therefore never trained on.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..sim.encoding import rate_encode
from ..sim.golden import decode
from ..hdl.abi import ResetMode
from .model import Layer, Model

__all__ = [
    "VAL_START",
    "ForwardTrace",
    "TrainConfig",
    "TrainResult",
    "golden_evaluate",
    "integer_forward",
    "shift_images",
    "split_indices",
    "train",
    "train_mnist",
]

#: First training-file image of the validation split of :func:`train_mnist`.
VAL_START = 55000


# ---- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (with the data and the NumPy build).

    Parameters
    ----------
    hidden : int
        Hidden neurons (one hidden layer).
    steps : int
        ``T``, ticks of input per image.
    w_bits : {8, 4}
        Signed weight width of the exported model.
    v_bits : int
        Signed membrane width, 8 .. 24 (16 on the chip).
    leak : int
        Leak shift ``k`` of every layer, 0 (no leak) .. ``v_bits - 1``.
    epochs : int
        Epochs in all, float and quantization-aware.
    qat_epochs : int or None
        The last ``qat_epochs`` epochs are quantization-aware (default: a third, at least 1).
        ``0`` only rounds the float network at the end; ``epochs`` trains the integer network
        from the start.
    batch_size : int
    lr, qat_lr : float
        Adam learning rates at the start of each phase; each phase follows a cosine schedule
        down to ``lr_floor`` times its start.
    weight_decay : float
        Decoupled (AdamW) weight decay on the weights.
    shift : int
        Augmentation: random shifts of up to ``shift`` pixels along each axis (0: off). Only
        applies to square images.
    slope : float
        ``beta`` of the fast-sigmoid surrogate.
    logit_scale : float
        Logits are ``logit_scale / T`` times each output neuron's charge.
    init_gain : float
        Initial weights are uniform with ``gain * sqrt(3 / inputs)`` as bound.
    seed : int
        Seeds everything (weights, batches, shifts, training spike trains).
    eval_seed : int
        The encoder seed of the validation runs.
    """
    hidden: int = 128
    steps: int = 25
    w_bits: int = 8
    v_bits: int = 16
    leak: int = 2
    epochs: int = 30
    qat_epochs: int | None = None
    batch_size: int = 128
    lr: float = 2e-3
    qat_lr: float = 3e-4
    lr_floor: float = 0.02
    weight_decay: float = 0.0
    shift: int = 1
    slope: float = 5.0
    logit_scale: float = 8.0
    init_gain: float = 1.0
    seed: int = 0
    eval_seed: int = 0

    def validate(self) -> TrainConfig:
        """Check every field; raises ValueError naming the field."""
        def integer(name, lo, hi=None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, not {value!r}")
            if value < lo or (hi is not None and value > hi):
                bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{name} must be {bound}, not {value!r}")

        if isinstance(self.w_bits, bool) or self.w_bits not in (4, 8):
            raise ValueError(f"w_bits must be 4 or 8, not {self.w_bits!r}")
        integer("steps", 1)
        integer("hidden", 1)
        integer("v_bits", 8, 24)
        integer("leak", 0, self.v_bits - 1)
        integer("epochs", 1)
        if self.qat_epochs is not None:
            integer("qat_epochs", 0, self.epochs)
        integer("batch_size", 1)
        integer("shift", 0, 8)
        integer("seed", 0)
        integer("eval_seed", 0)
        for name in ("lr", "qat_lr", "slope", "logit_scale", "init_gain"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        for name in ("lr_floor", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, not {value!r}")
        return self

    @property
    def qat(self) -> int:
        """The number of quantization-aware epochs."""
        if self.qat_epochs is not None:
            return self.qat_epochs
        return max(1, self.epochs // 3)


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
    ticks.

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
    saturated; ``g_I = g_B = g_p``; ``g_V`` of the tick before ``= (1 - 2**-k) g_p``.
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
        g_current = drive   # overwritten tick by tick, backwards
        for t in range(ticks - 1, -1, -1):
            g_p = g_current[t]
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
        layers.append(_Layer(np.asarray(layer.weights, np.float32), bias, float(layer.threshold),
                             int(layer.leak), ResetMode(layer.reset), True, float(lo), float(hi)))
    return layers


def _check_exact(model: Model) -> None:
    """Every sum of the float32 forward must be an exactly representable integer."""
    w_max = 1 << (model.w_bits - 1)
    for l, layer in enumerate(model.layers):
        bound = layer.inputs * w_max + (1 << model.v_bits)
        if bound >= 1 << 24:
            raise ValueError(f"layer {l}: {layer.inputs} inputs of {model.w_bits}-bit weights "
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


# ---- data ---------------------------------------------------------------------------------------

def _check_data(images, labels, name: str, inputs: int | None = None):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim < 2:
        raise ValueError(f"{name} images must be (count, pixels) or (count, rows, cols), "
                         f"not shape {images.shape}")
    if len(images) == 0 or images.size == 0:
        raise ValueError(f"{name} images are empty (shape {images.shape})")
    flat = images.reshape(len(images), -1)
    if not np.issubdtype(flat.dtype, np.integer) or flat.min() < 0 or flat.max() > 255:
        raise ValueError(f"{name} images must hold integer pixels in [0, 255]")
    if inputs is not None and flat.shape[1] != inputs:
        raise ValueError(f"{name} images have {flat.shape[1]} pixels, the training images "
                         f"{inputs}")
    if labels.shape != (len(flat),):
        raise ValueError(f"{name} labels must have shape ({len(flat)},) (one per image), "
                         f"not {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{name} labels must be non-negative integers")
    return flat.astype(np.uint8), labels.astype(np.int64)


def _check_indices(indices, count: int, name: str) -> np.ndarray:
    if indices is None:
        return np.arange(count, dtype=np.int64)
    indices = np.asarray(indices)
    if indices.shape != (count,) or not np.issubdtype(indices.dtype, np.integer) or (
            count and indices.min() < 0):
        raise ValueError(f"{name} indices must be {count} non-negative integers (one per "
                         f"image), not {indices.dtype} of shape {indices.shape}")
    return indices.astype(np.int64)


def shift_images(images: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Shift square images ``(n, side*side)`` by ``(dx[i], dy[i])`` pixels each (zero fill)."""
    n, pixels = images.shape
    side = math.isqrt(pixels)
    pad = int(max(np.abs(dx).max(initial=0), np.abs(dy).max(initial=0)))
    if pad == 0:
        return images.copy()
    square = np.pad(images.reshape(n, side, side), ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(square, (side, side), axis=(1, 2))
    # windows[i, r, c] is the image seen from offset (r, c); offset pad is no shift.
    return windows[np.arange(n), pad - dy, pad - dx].reshape(n, pixels)


def split_indices(count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` positions in a training file of ``count`` images: with the
    standard 60000, ``0 .. 54999`` and ``55000 .. 59999`` (the bundled slice, ``59000 ..
    59999``, is in the validation part); with another count, the last twelfth validates."""
    if count < 2:
        raise ValueError(f"the training file must hold at least 2 images, not {count}")
    start = VAL_START if count == 60000 else count - max(1, count // 12)
    return np.arange(start, dtype=np.int64), np.arange(start, count, dtype=np.int64)


def _derived_seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint32)[0])


# ---- training ---------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train` returns."""
    model: Model                      #: the integer model
    config: TrainConfig
    history: list[dict] = field(default_factory=list)   #: one entry per epoch
    seconds: float = 0.0              #: wall time of the training
    val_accuracy: float | None = None  #: integer model on the validation data (decode)


class _Adam:
    def __init__(self, params, weight_decay: float):
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        self.weight_decay = weight_decay

    def step(self, params, grads, lr: float, decay_mask):
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, m, v, wd in zip(params, grads, self.m, self.v, decay_mask):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            if wd and self.weight_decay:
                p *= 1 - lr * self.weight_decay
            p -= lr * (m / c1) / (np.sqrt(v / c2) + eps)


class _Progress:
    """One line per epoch on stderr; a live bar within the epoch when stderr is a terminal."""

    def __init__(self, enabled: bool, epochs: int):
        self.enabled = enabled
        self.live = enabled and sys.stderr.isatty()
        self.epochs = epochs

    def batch(self, epoch: int, phase: str, done: int, total: int, loss: float) -> None:
        if self.live:
            width = 24
            filled = width * done // total
            print(f"\repoch {epoch + 1}/{self.epochs} {phase} [{'#' * filled}"
                  f"{'.' * (width - filled)}] loss {loss:.4f}", end="", file=sys.stderr,
                  flush=True)

    def epoch(self, entry: dict) -> None:
        if not self.enabled:
            return
        val = entry.get("val_accuracy")
        val = "" if val is None else f"  val {val:.2%} (integer)"
        line = (f"epoch {entry['epoch']}/{self.epochs} {entry['phase']:<5} loss "
                f"{entry['loss']:.4f}  lr {entry['lr']:.2e}{val}  {entry['seconds']:.1f} s")
        print(("\r" if self.live else "") + line.ljust(78), file=sys.stderr, flush=True)


def _init_params(sizes: list[int], rng: np.random.Generator,
                 gain: float = 1.0) -> list[list[np.ndarray]]:
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        # gain 1: unit variance of the input sum for unit-rate inputs
        bound = gain * math.sqrt(3.0 / n_in)
        weights = rng.uniform(-bound, bound, size=(n_in, n_out))
        params.append([weights, np.zeros(n_out)])
    return params


def _scales(params, w_bits: int, v_bits: int) -> list[float]:
    """Per layer ``theta_int``: the largest weight maps to ``w_max`` (``theta = 1``)."""
    w_max = (1 << (w_bits - 1)) - 1
    v_max = (1 << (v_bits - 1)) - 1
    thetas = []
    for weights, _ in params:
        largest = float(np.abs(weights).max())
        theta = round(w_max / largest) if largest > 0 else v_max
        thetas.append(int(min(max(theta, 1), v_max // 2)))
    return thetas


def _quantized(params, thetas, config: TrainConfig) -> list[_Layer]:
    w_lo, w_hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
    v_lo, v_hi = -(1 << (config.v_bits - 1)), (1 << (config.v_bits - 1)) - 1
    layers = []
    for (weights, bias), theta in zip(params, thetas):
        w_int = np.clip(np.rint(weights * theta), w_lo, w_hi).astype(np.float32)
        b_int = np.clip(np.rint(bias * theta), v_lo, v_hi).astype(np.float32)
        layers.append(_Layer(w_int, b_int, float(theta), config.leak, ResetMode.SUBTRACT, True,
                             float(v_lo), float(v_hi)))
    return layers


def _float_layers(params, config: TrainConfig) -> list[_Layer]:
    return [_Layer(w.astype(np.float32), b.astype(np.float32), 1.0, config.leak)
            for w, b in params]


def _export(layers: list[_Layer], config: TrainConfig, name: str) -> Model:
    return Model([Layer(weights=layer.weights.astype(np.int64), threshold=int(layer.theta),
                        leak=layer.leak, reset=ResetMode.SUBTRACT,
                        bias=layer.bias.astype(np.int64)) for layer in layers],
                 w_bits=config.w_bits, v_bits=config.v_bits, steps=config.steps, name=name)


def _accuracy(layers: list[_Layer], spikes: np.ndarray, labels: np.ndarray,
              batch_size: int = 1000) -> float:
    correct = 0
    for lo in range(0, len(labels), batch_size):
        runs = _forward(layers, spikes[:, lo:lo + batch_size])
        counts = runs[-1].spikes.sum(axis=0, dtype=np.int64)
        final_v = runs[-1].final_v.astype(np.int64)
        correct += int((decode(counts, final_v) == labels[lo:lo + batch_size]).sum())
    return correct / len(labels)


def train(images, labels, *, config: TrainConfig = TrainConfig(), val_images=None,
          val_labels=None, indices=None, val_indices=None, classes: int | None = None,
          name: str | None = None, progress: bool = False) -> TrainResult:
    """Train an ``inputs - hidden - classes`` network and return its integer model.

    Parameters
    ----------
    images : array of uint8, ``(count, pixels)`` or ``(count, rows, cols)``
        Training images; pixel values 0 .. 255.
    labels : array of int, ``(count,)``
        Their classes, ``0 .. classes - 1``.
    config : TrainConfig
    val_images, val_labels : optional
        Validation data, evaluated (integer model) after every epoch.
    indices, val_indices : array of int, optional
        Each image's index in its data file: what its spike trains are keyed on (default
        ``0 .. count - 1``).
    classes : int, optional
        Output neurons (default: the largest label + 1, at least 2).
    name : str, optional
        The model's name.
    progress : bool
        Report on stderr: a line per epoch with the loss and the validation accuracy.

    Raises
    ------
    ValueError
        Bad data (shape, pixel range, labels) or a bad configuration.
    """
    config = config.validate()
    images, labels = _check_data(images, labels, "training")
    indices = _check_indices(indices, len(images), "training")
    has_val = val_images is not None or val_labels is not None
    if has_val:
        if val_images is None or val_labels is None:
            raise ValueError("give both val_images and val_labels, or neither")
        val_images, val_labels = _check_data(val_images, val_labels, "validation",
                                             images.shape[1])
        val_indices = _check_indices(val_indices, len(val_images), "validation")
    if classes is None:
        classes = max(2, int(labels.max()) + 1, int(val_labels.max()) + 1 if has_val else 0)
    if labels.max() >= classes or (has_val and val_labels.max() >= classes):
        raise ValueError(f"labels must be below classes={classes}")
    if config.shift and math.isqrt(images.shape[1]) ** 2 != images.shape[1]:
        raise ValueError(f"shift augmentation needs square images; {images.shape[1]} pixels "
                         f"are not (set shift=0)")
    sizes = [images.shape[1], config.hidden, classes]
    probe = Model([Layer(np.zeros((a, b), np.int64), 1) for a, b in zip(sizes, sizes[1:])],
                  w_bits=config.w_bits, v_bits=config.v_bits)
    _check_exact(probe)
    name = name if name is not None else (
        f"snn-{'-'.join(map(str, sizes))}-T{config.steps}-w{config.w_bits}")

    start = time.perf_counter()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 0x7A1])))
    params = _init_params(sizes, rng, config.init_gain)
    flat_params = [p for pair in params for p in pair]
    decay_mask = [True, False] * len(params)
    val_spikes = (rate_encode(val_images, config.steps, config.eval_seed, val_indices)
                  if has_val else None)
    report = _Progress(progress, config.epochs)
    scale = config.logit_scale / config.steps
    float_epochs = config.epochs - config.qat
    batches = -(-len(images) // config.batch_size)
    thetas = None
    adam = _Adam(flat_params, config.weight_decay)
    history = []
    w_lo, w_hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
    # A helper thread encodes the next batch while this one trains (encoding is a pure
    # function of the images, the seed and the indices: no effect on the result).
    with ThreadPoolExecutor(max_workers=1) as pool:
        for epoch in range(config.epochs):
            t0 = time.perf_counter()
            qat = epoch >= float_epochs
            if qat and (thetas is None or not float_epochs):
                # After a float phase the scale is fixed from its weights; a run that is
                # quantization-aware throughout recalibrates it every epoch (its weights
                # start far smaller than they end).
                thetas = _scales(params, config.w_bits, config.v_bits)
            if qat and epoch == float_epochs:
                adam = _Adam(flat_params, config.weight_decay)   # fresh for the new phase
            phase_epoch = epoch - float_epochs if qat else epoch
            phase_len = config.qat if qat else float_epochs
            base_lr = config.qat_lr if qat else config.lr
            order = rng.permutation(len(images))
            epoch_seed = _derived_seed(config.seed, epoch, 0xE4C)
            total_loss = 0.0
            lr = base_lr

            def encode(k, order=order, epoch_seed=epoch_seed):
                """Batch k's images (shifted: the generator is used here, in batch order) and
                the encoding of its spikes, started on the helper thread."""
                pick = order[k * config.batch_size:(k + 1) * config.batch_size]
                batch_images = images[pick]
                if config.shift:
                    dx = rng.integers(-config.shift, config.shift + 1, size=len(pick))
                    dy = rng.integers(-config.shift, config.shift + 1, size=len(pick))
                    batch_images = shift_images(batch_images, dx, dy)
                return pick, pool.submit(rate_encode, batch_images, config.steps, epoch_seed,
                                         indices[pick])

            upcoming = encode(0)
            for k in range(batches):
                progress_frac = (phase_epoch + k / batches) / phase_len
                lr = base_lr * (config.lr_floor + (1 - config.lr_floor)
                                * 0.5 * (1 + math.cos(math.pi * progress_frac)))
                pick, future = upcoming
                x = future.result()
                if k + 1 < batches:   # encode the next batch while this one trains
                    upcoming = encode(k + 1)
                if qat:
                    layers = _quantized(params, thetas, config)
                else:
                    layers = _float_layers(params, config)
                runs = _forward(layers, x)
                loss, g_counts, g_v = _loss(layers[-1], runs[-1], labels[pick], scale)
                grads = _backward(layers, runs, g_counts, g_v, config.slope)
                flat_grads = []
                for (grad_w, grad_b), layer in zip(grads, layers):
                    # Straight through the rounding: d W_int / d W = theta_int (= 1 / s).
                    factor = layer.theta if qat else 1.0
                    flat_grads += [grad_w.astype(np.float64) * factor,
                                   grad_b.astype(np.float64) * factor]
                adam.step(flat_params, flat_grads, lr, decay_mask)
                if qat and float_epochs:   # keep the masters inside the representable range
                    for (weights, _), theta in zip(params, thetas):
                        np.clip(weights, (w_lo - 0.5) / theta, (w_hi + 0.5) / theta, out=weights)
                total_loss += loss * len(pick)
                report.batch(epoch, "qat" if qat else "float", k + 1, batches, loss)
            entry = {"epoch": epoch + 1, "phase": "qat" if qat else "float",
                     "loss": total_loss / len(images), "lr": lr}
            if has_val:
                current = _quantized(params, thetas or _scales(params, config.w_bits,
                                                               config.v_bits), config)
                entry["val_accuracy"] = _accuracy(current, val_spikes, val_labels)
            entry["seconds"] = time.perf_counter() - t0
            history.append(entry)
            report.epoch(entry)
    final = _quantized(params, thetas or _scales(params, config.w_bits, config.v_bits), config)
    model = _export(final, config, name)
    val_accuracy = history[-1].get("val_accuracy") if has_val else None
    return TrainResult(model, config, history, time.perf_counter() - start, val_accuracy)


# ---- evaluation on the golden model -------------------------------------------------------------

def golden_evaluate(model: Model, images, labels, indices=None, *, steps: int | None = None,
                    seed: int = 0, profile: str = "icebreaker") -> dict:
    """Accuracy of ``model`` on the golden model, as ``spikefab run --target golden`` measures
    it: rate-encoded with ``seed`` keyed on ``indices``, compiled for ``profile`` and run on
    :class:`spikefab.firmware.driver.GoldenChip` (the golden chip model).

    A model that does not fit ``profile`` runs on a chain of :class:`spikefab.sim.golden.
    CoreModel` instead (one core per layer, each a tick behind the one before, as the chip).

    Returns ``{"accuracy", "correct", "images", "steps", "seed", "predictions", "golden"}``
    (``golden`` names the model that ran).
    """
    from .compiler import CompileError, compile_model
    from ..sim.golden_chip import GoldenChip
    from ..hdl.profiles import get_profile
    images, labels = _check_data(images, labels, "evaluation", model.inputs)
    indices = _check_indices(indices, len(images), "evaluation")
    steps = steps or model.steps or 25
    try:
        image = compile_model(model, profile)
    except CompileError:
        chip, golden = None, "CoreModel chain"
    else:
        chip, golden = GoldenChip(get_profile(profile).info()), f"GoldenChip ({profile})"
        chip.load(image)
    correct, predictions = 0, []
    for lo in range(0, len(images), 1000):
        spikes = rate_encode(images[lo:lo + 1000], steps, seed, indices[lo:lo + 1000])
        decided = (chip.run(spikes).predictions if chip is not None
                   else _core_chain_predict(model, spikes))
        predictions.append(decided)
        correct += int((decided == labels[lo:lo + 1000]).sum())
    return {"accuracy": correct / len(images), "correct": correct, "images": len(images),
            "steps": steps, "seed": seed, "predictions": np.concatenate(predictions),
            "golden": golden}


def _core_chain_predict(model: Model, spikes: np.ndarray) -> np.ndarray:
    """Decoded classes from the golden model, one :class:`CoreModel` per layer."""
    from ..sim.golden import CoreModel
    from ..hdl.abi import CoreShape
    steps, batch = spikes.shape[:2]
    ticks = steps + len(model.layers) - 1
    cores = [CoreModel(CoreShape(layer.inputs, layer.outputs, w_bits=model.w_bits,
                                 v_bits=model.v_bits), layer.weights, layer.config(),
                       layer.bias, batch=batch) for layer in model.layers]
    previous = [np.zeros((batch, layer.outputs), bool) for layer in model.layers]
    counts = np.zeros((batch, model.classes), np.int64)
    for t in range(ticks):
        fired = []
        for l, core in enumerate(cores):
            core.deliver_spikes(spikes[t] if l == 0 and t < steps else
                                np.zeros((batch, core.shape.axons), np.int64) if l == 0
                                else previous[l - 1])
            fired.append(core.update())
        previous = fired
        counts += fired[-1]
    return decode(counts, cores[-1].v)


def train_mnist(folder, config: TrainConfig = TrainConfig(), *, name: str | None = None,
                progress: bool = False) -> TrainResult:
    """Train on the MNIST training file in ``folder`` (``train-images-idx3-ubyte[.gz]`` and
    ``train-labels-idx1-ubyte[.gz]``) with the split of :func:`split_indices`: images ``0 ..
    54999`` train, ``55000 .. 59999`` validate (they hold the bundled slice)."""
    from .mnist import load_mnist
    data = load_mnist(folder, split="train")
    train_at, val_at = split_indices(len(data.labels))
    return train(data.images[train_at], data.labels[train_at], config=config,
                 val_images=data.images[val_at], val_labels=data.labels[val_at],
                 indices=data.indices[train_at], val_indices=data.indices[val_at], classes=10,
                 name=name, progress=progress)


def _config_dict(config: TrainConfig) -> dict:
    return asdict(replace(config, qat_epochs=config.qat))


# ---- the command -------------------------------------------------------------------------------

def train_command(data, config: TrainConfig, output, *, name: str | None = None,
                  profile: str = "icebreaker", progress: bool = True) -> dict:
    """``spikefab train``: train on the MNIST training file in ``data`` (split of
    :func:`split_indices`), write the integer model to ``output``, then measure its validation
    accuracy on the golden model (:func:`golden_evaluate`, encoder seed ``config.eval_seed``),
    also on the part of it that is the bundled slice. Returns a report dict."""
    from pathlib import Path

    from .mnist import SLICE_COUNT, SLICE_START, load_mnist
    config = config.validate()
    output = Path(output)
    if not output.parent.is_dir():
        raise ValueError(f"-o {output}: folder {output.parent} does not exist")
    dataset = load_mnist(data, split="train")
    train_at, val_at = split_indices(len(dataset.labels))
    if progress:
        print(f"training {dataset.images.shape[1]}-{config.hidden}-10, T = {config.steps}, "
              f"{config.w_bits}-bit weights, {config.epochs} epochs ({config.epochs - config.qat}"
              f" float + {config.qat} quantization-aware), seed {config.seed}; training images "
              f"{train_at[0]}-{train_at[-1]}, validation {val_at[0]}-{val_at[-1]}",
              file=sys.stderr, flush=True)
    result = train(dataset.images[train_at], dataset.labels[train_at], config=config,
                   val_images=dataset.images[val_at], val_labels=dataset.labels[val_at],
                   indices=dataset.indices[train_at], val_indices=dataset.indices[val_at],
                   classes=10, name=name, progress=progress)
    result.model.save(output)
    start = time.perf_counter()
    val_indices = dataset.indices[val_at]
    golden = golden_evaluate(result.model, dataset.images[val_at], dataset.labels[val_at],
                             val_indices, seed=config.eval_seed, profile=profile)
    in_slice = (val_indices >= SLICE_START) & (val_indices < SLICE_START + SLICE_COUNT)
    slice_report = None
    if in_slice.any():
        hits = int((golden["predictions"][in_slice] == dataset.labels[val_at][in_slice]).sum())
        slice_report = {"images": int(in_slice.sum()), "correct": hits,
                        "accuracy": hits / int(in_slice.sum())}
    return {
        "output": str(output), "model": result.model.name, "sha256": result.model.digest(),
        "sizes": result.model.sizes, "steps": config.steps, "w_bits": config.w_bits,
        "config": _config_dict(config),
        "train_images": [int(train_at[0]), int(train_at[-1])],
        "val_images": [int(val_at[0]), int(val_at[-1])],
        "val_accuracy": golden["accuracy"], "val_correct": golden["correct"],
        "val_count": golden["images"], "trainer_val_accuracy": result.val_accuracy,
        "slice": slice_report, "profile": profile, "golden": golden["golden"],
        "eval_seed": config.eval_seed,
        "train_seconds": result.seconds, "eval_seconds": time.perf_counter() - start,
        "history": result.history,
    }


def format_train_report(report: dict) -> str:
    """The text ``spikefab train`` prints for a :func:`train_command` report."""
    first, last = report["val_images"]
    lines = [
        (f"wrote {report['output']} (model {report['model']}, "
         f"{'-'.join(map(str, report['sizes']))}, T = {report['steps']}, "
         f"{report['w_bits']}-bit weights, sha256 {report['sha256'][:12]})"),
        (f"validation accuracy (integer model on the golden model, {report['golden']}, "
         f"encoder seed {report['eval_seed']}, training images {first}-{last}): "
         f"{report['val_accuracy']:.2%} ({report['val_correct']}/{report['val_count']})"),
    ]
    if report["slice"]:
        s = report["slice"]
        lines.append(f"  of which the bundled slice (59000-59999): {s['accuracy']:.2%} "
                     f"({s['correct']}/{s['images']})")
    minutes = report["train_seconds"] / 60
    lines.append(f"training time: {report['train_seconds']:.1f} s ({minutes:.1f} min)")
    return "\n".join(lines)
