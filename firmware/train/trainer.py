"""Training: :func:`train` (surrogate-gradient BPTT, float then quantization-aware)."""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ...sim.encoding import encode as encode_spikes
from ...sim.golden import decode
from ...hdl.abi import ResetMode
from ..model import Layer, Model

from .config import TrainConfig
from .data import _check_data, _check_indices, _derived_seed, shift_images
from .network import _Layer, _backward, _check_exact, _forward, _loss
__all__ = ["TrainResult", "train"]


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


def _init_params(sizes: list[int], rng: np.random.Generator, gain: float = 1.0,
                 recurrent=()) -> list[list[np.ndarray]]:
    """Per layer ``[weights, bias]``, and ``recurrent`` weights after them for the layers
    numbered in ``recurrent``."""
    params = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        # gain 1: unit variance of the input sum for unit-rate inputs
        bound = gain * math.sqrt(3.0 / n_in)
        weights = rng.uniform(-bound, bound, size=(n_in, n_out))
        params.append([weights, np.zeros(n_out)])
        if l in recurrent:
            # Half a feed-forward layer's scale: the layer's own spikes, far sparser than
            # the input, should not drive it at the start.
            bound = 0.5 * gain * math.sqrt(3.0 / n_out)
            params[-1].append(rng.uniform(-bound, bound, size=(n_out, n_out)))
    return params


def _scales(params, w_bits: int, v_bits: int) -> list[float]:
    """Per layer ``theta_int``: the largest weight maps to ``w_max`` (``theta = 1``)."""
    w_max = (1 << (w_bits - 1)) - 1
    v_max = (1 << (v_bits - 1)) - 1
    thetas = []
    for weights, _, *recurrent in params:
        largest = max(float(np.abs(w).max()) for w in (weights, *recurrent))
        theta = round(w_max / largest) if largest > 0 else v_max
        thetas.append(int(min(max(theta, 1), v_max // 2)))
    return thetas


def _quantized(params, thetas, config: TrainConfig) -> list[_Layer]:
    w_lo, w_hi = -(1 << (config.w_bits - 1)), (1 << (config.w_bits - 1)) - 1
    v_lo, v_hi = -(1 << (config.v_bits - 1)), (1 << (config.v_bits - 1)) - 1
    layers = []
    for (weights, bias, *recurrent), theta in zip(params, thetas):
        w_int, *r_int = (np.clip(np.rint(w * theta), w_lo, w_hi).astype(np.float32)
                         for w in (weights, *recurrent))
        b_int = np.clip(np.rint(bias * theta), v_lo, v_hi).astype(np.float32)
        layers.append(_Layer(w_int, b_int, float(theta), config.leak, ResetMode.SUBTRACT, True,
                             float(v_lo), float(v_hi), *r_int))
    return layers


def _float_layers(params, config: TrainConfig) -> list[_Layer]:
    return [_Layer(w.astype(np.float32), b.astype(np.float32), 1.0, config.leak,
                   recurrent=recurrent[0].astype(np.float32) if recurrent else None)
            for w, b, *recurrent in params]


def _export(layers: list[_Layer], config: TrainConfig, name: str) -> Model:
    return Model([Layer(weights=layer.weights.astype(np.int64), threshold=int(layer.theta),
                        leak=layer.leak, reset=ResetMode.SUBTRACT,
                        bias=layer.bias.astype(np.int64),
                        recurrent=None if layer.recurrent is None
                        else layer.recurrent.astype(np.int64)) for layer in layers],
                 w_bits=config.w_bits, v_bits=config.v_bits, steps=config.steps, name=name,
                 encoder=config.encoder)


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
    """Train an ``inputs - hidden... - classes`` network and return its integer model.

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
    sizes = [images.shape[1], *config.hidden_layers, classes]
    recurrent = range(len(sizes) - 2) if config.recurrent else ()   # the hidden layers
    probe = Model([Layer(np.zeros((a, b), np.int64), 1,
                         recurrent=np.zeros((b, b), np.int64) if l in recurrent else None)
                   for l, (a, b) in enumerate(zip(sizes, sizes[1:]))],
                  w_bits=config.w_bits, v_bits=config.v_bits)
    _check_exact(probe)
    name = name if name is not None else (
        f"snn-{'-'.join(map(str, sizes))}-T{config.steps}-w{config.w_bits}")

    start = time.perf_counter()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, 0x7A1])))
    params = _init_params(sizes, rng, config.init_gain, recurrent)
    flat_params = [p for layer in params for p in layer]
    decay_mask = [k != 1 for layer in params for k in range(len(layer))]   # not the biases
    val_spikes = (encode_spikes(val_images, config.steps, config.eval_seed, val_indices,
                                encoder=config.encoder) if has_val else None)
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
                return pick, pool.submit(encode_spikes, batch_images, config.steps,
                                         epoch_seed, indices[pick], encoder=config.encoder)

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
                for layer_grads, layer in zip(grads, layers):
                    # Straight through the rounding: d W_int / d W = theta_int (= 1 / s).
                    factor = layer.theta if qat else 1.0
                    flat_grads += [g.astype(np.float64) * factor for g in layer_grads]
                adam.step(flat_params, flat_grads, lr, decay_mask)
                if qat and float_epochs:   # keep the masters inside the representable range
                    for (weights, _, *recurrent), theta in zip(params, thetas):
                        for w in (weights, *recurrent):
                            np.clip(w, (w_lo - 0.5) / theta, (w_hi + 0.5) / theta, out=w)
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
