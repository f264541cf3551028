"""What both importers share: the float layers they read (``_SourceLayer``), quantization onto
the chip's integer model, the import report, and the float and integer simulations the report
compares (the rules are in the package's docstring, :mod:`spikefab.firmware.importers`).
"""


from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...hdl.abi import AXON_LIMIT, ResetMode
from ...sim.golden import decode
from ..model import Layer, Model

__all__ = ["ConversionError", "ImportReport", "LayerReport", "CalibrationResult",
           "float_forward", "integer_forward", "calibrate"]

#: A synaptic decay per tick up to this is taken as an instantaneous synapse (CubaLIF).
SYN_TOLERANCE = 1e-3
#: Relative spread of per-neuron decays within a layer still taken as one decay.
DECAY_TOLERANCE = 1e-6
#: Default number of time steps of the calibration run (as ``spikefab run``).
DEFAULT_STEPS = 25


class ConversionError(ValueError):
    """The source network has something the chip cannot express.

    ``node`` names the NIR node or state-dict module (``None`` for the whole graph), ``reason``
    says what and why; ``str()`` gives both.
    """

    def __init__(self, node: str | None, reason: str):
        self.node = node
        self.reason = reason
        super().__init__(reason if node is None else f"{node}: {reason}")


# ---- the common intermediate form -------------------------------------------------------------

@dataclass
class _SourceLayer:
    """One weight + neuron pair in source units (float), gain and v_leak already folded in.

    Per tick: ``v <- decay * v + x @ weight + s @ recurrent + bias`` (``s``: the layer's own
    spikes of the tick before, if recurrent); spike iff ``v > threshold``.
    """
    name: str                 # for reports: "affine -> lif" / "fc1 + lif1"
    neuron: str               # for errors: the neuron node / module
    weight: np.ndarray        # (inputs, outputs)
    bias: np.ndarray          # (outputs,)
    threshold: np.ndarray     # (outputs,)
    decay: np.ndarray         # (outputs,)
    reset: ResetMode
    rule: str                 # "nir" (reset at once) | "snntorch" (reset_delay True/False)
    reset_delay: bool = False
    notes: list[str] = field(default_factory=list)
    recurrent: np.ndarray | None = None   # (outputs, outputs): from neuron m to neuron n


@dataclass
class LayerReport:
    """What quantization did to one layer (see the module's documentation)."""
    index: int
    name: str
    inputs: int
    outputs: int
    scale: float               #: s: one integer step of weight/membrane in source units
    weight_max: float          #: max |W| after folding, source units
    weight_error_max: float    #: max|W - s W_int| / max|W|
    weight_error_mean: float   #: mean|W - s W_int| / mean|W|
    bias_error: float | None   #: max|b - s B_int| / thr (None: no bias)
    threshold_source: float    #: thr (the layer's largest, after normalization)
    thresholds_differ: bool    #: per-neuron thresholds or gains were normalized
    theta: int
    threshold_error: float     #: |s theta - thr| / thr
    decay_source: float
    leak: int
    decay_chip: float
    reset: ResetMode


@dataclass
class CalibrationResult:
    """Accuracy before (float source semantics) and after (integer golden model) quantization."""
    images: int
    steps: int
    seed: int
    data: str
    float_accuracy: float
    integer_accuracy: float
    agreement: float           #: fraction of images both predict the same class for


@dataclass
class ImportReport:
    """What an import did: per-layer quantization, notes, and optionally calibration accuracy."""
    source: str
    format: str
    w_bits: int
    v_bits: int
    sizes: list[int]
    layers: list[LayerReport]
    notes: list[str] = field(default_factory=list)
    calibration: CalibrationResult | None = None

    def __str__(self) -> str:
        head = (f"imported {self.source} ({self.format}): {len(self.layers)} layer"
                f"{'s' if len(self.layers) != 1 else ''}, "
                f"{'-'.join(map(str, self.sizes))}, {self.w_bits}-bit weights, "
                f"{self.v_bits}-bit membranes")
        columns = ["layer", "nodes", "size", "scale s", "w err max/mean", "bias err",
                   "threshold -> theta", "leak: decay -> k (chip)", "reset"]
        rows = []
        for layer in self.layers:
            thr = f"{layer.threshold_source:.4g}{'*' if layer.thresholds_differ else ''}"
            thr_err = (f" ({layer.threshold_error:+.1%})"
                       if layer.threshold_error > 1e-9 else "")
            rows.append([
                str(layer.index), layer.name, f"{layer.inputs}->{layer.outputs}",
                f"{layer.scale:.4g}",
                f"{layer.weight_error_max:.2%} / {layer.weight_error_mean:.2%}",
                "-" if layer.bias_error is None else f"{layer.bias_error:.2%}",
                f"{thr} -> {layer.theta}{thr_err}",
                f"{layer.decay_source:.4g} -> {layer.leak} ({layer.decay_chip:.4g})",
                layer.reset.name.lower(),
            ])
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        if any(layer.thresholds_differ for layer in self.layers):
            lines.append("* per-neuron thresholds/gains normalized to the layer's largest")
        lines.append("w err: |W - s W_int| relative to max|W| / mean|W|; bias err in units of "
                     "the threshold")
        if self.calibration is not None:
            c = self.calibration
            lines += [
                f"calibration: {c.images} images of {c.data}, T = {c.steps}, seed {c.seed}",
                f"  float reference (source semantics): {c.float_accuracy:.2%}",
                f"  integer model (golden, quantized):  {c.integer_accuracy:.2%}  "
                f"({c.integer_accuracy - c.float_accuracy:+.2%}; predictions agree on "
                f"{c.agreement:.1%} of the images)",
            ]
        if self.notes:
            lines.append("notes:")
            for note in self.notes:
                lines += textwrap.wrap(note, 96, initial_indent="  - ",
                                       subsequent_indent="    ")
        return "\n".join(lines)


# ---- helpers -------------------------------------------------------------------------------------

def _array(value) -> np.ndarray:
    """A float64 array from a NumPy array, a number or a torch tensor (without importing torch)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _per_neuron(node: str, what: str, value, outputs: int) -> np.ndarray:
    array = _array(value)
    if array.size == 1:
        return np.full(outputs, float(array.reshape(-1)[0]))
    if array.ndim != 1 or array.shape[0] != outputs:
        raise ConversionError(node, f"{what} has shape {array.shape}; expected one value or "
                                    f"one per neuron ({outputs},)")
    return array.copy()


def _check_finite(node: str, what: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise ConversionError(node, f"{what} holds non-finite values (nan or inf)")


def _choose_leak(decay: float, v_bits: int) -> tuple[int, float]:
    """The leak shift whose decay per tick ``1 - 2**-k`` (1 for ``k = 0``) is nearest."""
    candidates = [(0, 1.0)] + [(k, 1.0 - 2.0 ** -k) for k in range(1, v_bits)]
    return min(candidates, key=lambda kd: (abs(kd[1] - decay), kd[0]))


def _tau_ticks(decay: float) -> float:
    return math.inf if decay >= 1.0 else 1.0 / (1.0 - decay)


def _quantize(index: int, layer: _SourceLayer, w_bits: int, v_bits: int,
              notes: list[str]) -> tuple[Layer, LayerReport]:
    node = layer.neuron
    inputs, outputs = layer.weight.shape
    # Every core of a layer holds all of its axons (its neurons may spread over many cores).
    axons = inputs + (outputs if layer.recurrent is not None else 0)
    if axons > AXON_LIMIT:
        what = (f"{inputs} inputs + {outputs} recurrent" if layer.recurrent is not None
                else f"{inputs} inputs")
        raise ConversionError(node, f"layer needs {axons} axons ({what}); a core has at most "
                                    f"{AXON_LIMIT}")
    for what, array in (("weights", layer.weight), ("bias", layer.bias),
                        ("threshold", layer.threshold), ("decay", layer.decay),
                        ("recurrent weights", layer.recurrent)):
        if array is not None:
            _check_finite(node, what, array)
    if np.any(layer.threshold <= 0):
        raise ConversionError(node, f"threshold {layer.threshold.min():g} <= 0; the chip's "
                                    f"threshold is positive")
    decay = layer.decay
    if np.any(decay > 1.0 + 1e-12):
        raise ConversionError(node, f"decay per tick {decay.max():g} > 1 (a growing "
                                    f"membrane: negative time constant)")
    if np.any(decay < 0.0):
        raise ConversionError(node, f"decay per tick {decay.min():g} < 0: the time constant "
                                    f"is shorter than the time step (pass the dt the graph "
                                    f"was exported with, e.g. dt=1e-4 for snnTorch)")
    if decay.max() - decay.min() > DECAY_TOLERANCE * max(1.0, abs(decay.max())):
        raise ConversionError(node, f"per-neuron time constants differ (decay per tick "
                                    f"{decay.min():.6g} .. {decay.max():.6g}); a core has one "
                                    f"leak shift")
    d = float(np.clip(decay.mean(), 0.0, 1.0))
    k, chip_decay = _choose_leak(d, v_bits)
    tau_src, tau_chip = _tau_ticks(d), _tau_ticks(chip_decay)
    if (math.isinf(tau_src) != math.isinf(tau_chip)
            or (not math.isinf(tau_src) and abs(tau_chip / tau_src - 1) > 0.25)):
        notes.append(f"layer {index} ({node}): leak decay {d:.4g}/tick (tau {tau_src:.3g} "
                     f"ticks) approximated by k = {k}, decay {chip_decay:.4g} (tau "
                     f"{tau_chip:.3g} ticks)")

    # Per-neuron normalization to one threshold.
    thr = float(layer.threshold.max())
    factor = thr / layer.threshold
    differ = bool(np.any(np.abs(factor - 1.0) > 1e-12))
    weight = layer.weight * factor[None, :]
    bias = layer.bias * factor
    # Recurrent weights add into the same membranes: the same scale quantizes them.
    loop = None if layer.recurrent is None else layer.recurrent * factor[None, :]

    q = (1 << (w_bits - 1)) - 1
    v_max = (1 << (v_bits - 1)) - 1
    w_abs = float(max(np.abs(weight).max(), 0.0 if loop is None else np.abs(loop).max()))
    s_w = w_abs / q if w_abs > 0 else thr / q
    if thr >= s_w:
        theta = int(math.floor(thr / s_w * (1 + 1e-12)))
        scale = thr / theta
    else:
        theta, scale = 1, s_w
        notes.append(f"layer {index} ({node}): threshold {thr:.4g} is below one weight step "
                     f"{s_w:.4g}; theta = 1, i.e. the threshold grows to {s_w:.4g}")
    if theta > v_max:
        raise ConversionError(node, f"threshold / weight step = {theta} exceeds the "
                                    f"{v_bits}-bit membrane's maximum {v_max} (the weights are "
                                    f"tiny compared to the threshold; wider v_bits or "
                                    f"retrain)")
    w_int = np.clip(np.rint(weight / scale), -q - 1, q).astype(np.int64)
    loop_int = (None if loop is None else
                np.clip(np.rint(loop / scale), -q - 1, q).astype(np.int64))
    b_int = np.rint(bias / scale).astype(np.int64)
    has_bias = bool(np.any(layer.bias != 0))
    if has_bias and np.abs(b_int).max() > v_max:
        raise ConversionError(node, f"bias / scale reaches {int(np.abs(b_int).max())}, beyond "
                                    f"the {v_bits}-bit membrane range")
    error = np.abs(weight - scale * w_int)
    mean_abs = float(np.abs(weight).mean())
    report = LayerReport(
        index=index, name=layer.name, inputs=inputs, outputs=outputs, scale=scale,
        weight_max=w_abs,
        weight_error_max=float(error.max() / w_abs) if w_abs > 0 else 0.0,
        weight_error_mean=float(error.mean() / mean_abs) if mean_abs > 0 else 0.0,
        bias_error=(float(np.abs(bias - scale * b_int).max() / thr) if has_bias else None),
        threshold_source=thr, thresholds_differ=differ, theta=theta,
        threshold_error=abs(scale * theta - thr) / thr,
        decay_source=d, leak=k, decay_chip=chip_decay, reset=layer.reset)
    reset = layer.reset
    chip_layer = Layer(weights=w_int, threshold=theta, leak=k, reset=reset,
                       bias=b_int if has_bias and np.any(b_int) else None, recurrent=loop_int)
    return chip_layer, report


def _build(layers: list[_SourceLayer], *, source: str, fmt: str, w_bits: int, v_bits: int,
           steps: int | None, calibration, name: str, notes: list[str]
           ) -> tuple[Model, ImportReport]:
    if isinstance(w_bits, bool) or w_bits not in (4, 8):
        raise ValueError(f"w_bits must be 4 or 8, not {w_bits!r}")
    if isinstance(v_bits, bool) or not isinstance(v_bits, (int, np.integer)) \
            or not 8 <= v_bits <= 24:
        raise ValueError(f"v_bits must be an integer in [8, 24], not {v_bits!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 1):
        raise ValueError(f"steps must be a positive integer, not {steps!r}")
    chip_layers, reports = [], []
    for index, layer in enumerate(layers):
        notes.extend(layer.notes)
        chip_layer, report = _quantize(index, layer, w_bits, v_bits, notes)
        chip_layers.append(chip_layer)
        reports.append(report)
    model = Model(chip_layers, w_bits=w_bits, v_bits=v_bits, steps=steps, name=name)
    report = ImportReport(source=source, format=fmt, w_bits=w_bits, v_bits=v_bits,
                          sizes=model.sizes, layers=reports, notes=notes)
    if calibration is not None:
        report.calibration = calibrate(model, layers, calibration,
                                       steps=steps or DEFAULT_STEPS)
    return model, report


# ---- simulations for the report ------------------------------------------------------------------

def float_forward(layers: Sequence[_SourceLayer], spikes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source network in float64, source semantics: every layer in the same step, ``T``
    steps. Returns ``(counts, final_v, predictions)`` of the last layer."""
    spikes = np.asarray(spikes)
    steps, batch = spikes.shape[:2]
    v = [np.zeros((batch, layer.weight.shape[1])) for layer in layers]
    own = [np.zeros((batch, layer.weight.shape[1])) for layer in layers]   # spikes of t - 1
    counts = np.zeros((batch, layers[-1].weight.shape[1]), np.int64)
    for t in range(steps):
        signal = spikes[t].astype(np.float64)
        for l, layer in enumerate(layers):
            current = signal @ layer.weight + layer.bias
            if layer.recurrent is not None:
                current = current + own[l] @ layer.recurrent
            thr, d = layer.threshold, layer.decay
            if layer.rule == "nir":
                new = d * v[l] + current
                fired = new > thr
                new = np.where(fired, new - thr if layer.reset is ResetMode.SUBTRACT else 0.0, new)
            else:  # snnTorch's Leaky.forward
                pending = v[l] > thr                       # mem_reset(mem)
                if layer.reset is ResetMode.SUBTRACT:
                    new = d * v[l] + current - pending * thr
                else:
                    new = d * np.where(pending, 0.0, v[l]) + current
                fired = new > thr
                if not layer.reset_delay:
                    do = fired.astype(np.float64) - pending
                    new = new - do * (thr if layer.reset is ResetMode.SUBTRACT else new)
            v[l] = new
            signal = own[l] = fired.astype(np.float64)
        counts += fired
    return counts, v[-1], decode(counts, v[-1])


def integer_forward(model: Model, spikes: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(counts, final_v, predictions)`` of the last layer of :meth:`Model.forward`: the
    integer model as the chip runs it (``T + L - 1`` ticks)."""
    run = model.forward(spikes)
    return run.counts, run.final_v[-1], run.predictions


def _calibration_data(calibration):
    """``(images, labels, indices, name)`` from an MNISTSet-like object or a tuple."""
    if hasattr(calibration, "images") and hasattr(calibration, "labels"):
        images, labels = calibration.images, calibration.labels
        indices = getattr(calibration, "indices", None)
        name = getattr(calibration, "name", "calibration data")
    elif isinstance(calibration, (tuple, list)) and len(calibration) in (2, 3):
        images, labels = calibration[0], calibration[1]
        indices = calibration[2] if len(calibration) == 3 else None
        name = "calibration data"
    else:
        raise ValueError("calibration must be (images, labels[, indices]) or an MNISTSet")
    images = np.asarray(images)
    labels = np.asarray(labels)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"calibration: {len(images)} images but {len(labels)} labels")
    images = images.reshape(len(images), -1)
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    return images, labels, indices, name


def calibrate(model: Model, layers: Sequence[_SourceLayer], calibration, *, steps: int,
              seed: int = 0) -> CalibrationResult:
    """Accuracy of the float source network and of the integer model on the same spikes."""
    from ...sim.encoding import rate_encode
    images, labels, indices, name = _calibration_data(calibration)
    if images.shape[1] != model.inputs:
        raise ValueError(f"calibration images have {images.shape[1]} pixels, the model "
                         f"{model.inputs} inputs")
    spikes = rate_encode(images, steps, seed, indices)
    _, _, before = float_forward(layers, spikes)
    _, _, after = integer_forward(model, spikes)
    return CalibrationResult(
        images=len(labels), steps=steps, seed=seed, data=name,
        float_accuracy=float(np.mean(before == labels)),
        integer_accuracy=float(np.mean(after == labels)),
        agreement=float(np.mean(before == after)))


def _reset_mode(reset) -> ResetMode | None:
    """A reset argument (a :class:`ResetMode`, its lower-case name, or None) as a mode."""
    if reset is None or isinstance(reset, ResetMode):
        return reset
    names = {mode.name.lower(): mode for mode in ResetMode}
    if reset not in names:
        raise ValueError(f"reset must be one of {', '.join(map(repr, names))} or None, "
                         f"not {reset!r}")
    return names[reset]
