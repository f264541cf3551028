"""Importers: trained float networks (NIR graphs, snnTorch state dicts) into spikefab's native
integer :class:`~spikefab.firmware.model.Model`, with a report of what quantization changed.

Entry points
------------
* :func:`from_nir` -- a NIR graph (``nir.NIRGraph``, or a ``.nir`` HDF5 file read with
  ``nir.read``; the ``nir`` package is the optional extra ``spikefab[import]``).
* :func:`from_snntorch` -- a PyTorch/snnTorch ``state_dict`` of ``nn.Linear`` and
  ``snn.Leaky`` modules, as real tensors or as plain NumPy arrays under the same keys, or a
  path: ``.pt``/``.pth`` (read with ``torch.load``; torch is imported only then, extra
  ``spikefab[torch]``) or ``.npz`` (NumPy arrays named like the state dict's keys).

Both return ``(model, report)``; the :class:`ImportReport` prints as a table. Anything the chip
cannot express raises :class:`ConversionError` (a ValueError) naming the node (or state-dict
module) and the reason.

Chip semantics (docs/semantics.md)
----------------------------------
Per layer (one core): ``L = V - (V >> k)``, ``V' = sat(L + I + B)``, spike iff ``V' >= theta``,
then ``V' - theta`` (subtract) or ``0`` (zero). One threshold ``theta``, one leak shift ``k``
and one reset mode per layer; a spike delivers ``W[a][n]`` to every neuron; layer ``l + 1``
sees layer ``l``'s spikes one tick later.

Conversion rules
----------------
**Graph shape.** A feed-forward chain ``Input -> [Flatten] -> (Affine|Linear) -> neuron ->
(Affine|Linear) -> neuron -> ... -> Output``; each weight node plus the neuron node after it
becomes one :class:`~spikefab.firmware.model.Layer`. ``Flatten`` is a no-op (inputs are taken
in C order, the order :func:`~spikefab.sim.encoding.rate_encode` flattens images in). Refused:
branches, merges, loops (recurrence), nested graphs (how recurrent layers are exported),
convolutions, pooling, non-spiking neurons (``LI``, ``I``, ``CubaLI``: the chip's outputs are
spikes), ``Scale``/``Threshold``/``Delay``, two weight or two neuron nodes in a row, more than
1024 inputs (axons) or 256 neurons in a layer.

**Time (NIR).** NIR neurons are continuous-time ODEs (NIR's own docs: "neuron models are
defined as dynamical system equations"); NIR does not fix a time step. The importer discretizes
them with **forward Euler** at step ``dt`` (one chip tick = ``dt``; default ``dt = 1``), the
rule snnTorch and Norse use (snnTorch's NIR export writes ``tau = dt / (1 - beta)``,
``r = tau / dt`` with ``dt = 1e-4``, so ``from_nir(..., dt=1e-4)`` gives back its ``beta``):

* ``LIF`` (``tau dv/dt = (v_leak - v) + r I``): ``v <- d v + (1 - d) v_leak + g I`` with decay
  ``d = 1 - dt / tau`` and input gain ``g = dt r / tau``;
* ``IF`` (``dv/dt = r I``): ``d = 1`` (no leak), ``g = dt r``;
* ``CubaLIF``: accepted only when its synapse is instantaneous, i.e. its synaptic decay
  ``1 - dt / tau_syn`` is 0 within ``1e-3`` (then ``I = (dt / tau_syn) w_in S`` within the tick
  and ``g = (dt / tau_syn) w_in dt r / tau_mem``); a slower synapse is a state the chip does not
  have and is refused.

``I`` is the weight node's output ``W x + b``; the gain is folded into the weights and the
bias. ``tau < dt`` (a negative Euler decay) is refused: usually the graph was exported with a
small ``dt`` that must be passed.

**Leak.** The chip's decay per tick is ``1 - 2**-k`` (``k = 0``: none). ``k`` is the value in
``0 .. v_bits - 1`` whose decay is nearest to the source's ``d``; the report shows both and a
note is added when the time constants (``1 / (1 - d)`` ticks) differ by more than 25 %. The
chip's shift floors, so small membranes leak a little less than ``d V``. One leak per layer:
per-neuron time constants that differ are refused.

**Threshold and per-neuron normalization.** Spikes do not change if a neuron's membrane, its
incoming weights, its bias and its threshold are all multiplied by the same ``c > 0``. Neurons
with different thresholds (or different gains) are therefore brought to the layer's largest
threshold ``thr`` by scaling their column of weights and their bias by ``thr / thr_n`` -- exact,
and the reason one ``theta`` per core is no restriction. (Only the output layer's tie-break on
the final membrane sees the rescaled membranes.)

**snnTorch** (``snn.Leaky``: ``mem <- beta mem + W x + b``, spike on ``mem > threshold``): the
decay is ``beta`` clamped to ``[0, 1]`` (as snnTorch does), the gain 1. The i-th ``nn.Linear``
of the state dict (in its order) feeds the i-th Leaky; ``beta``/``threshold``/reset come from
the state dict's buffers, else from the arguments. The ``mem`` buffer (a run's state) is
ignored: the chip starts every image at 0. Refused: convolutions, recurrent modules (RLeaky's
``V`` or ``recurrent.*``), ``Synaptic`` with ``alpha != 0``, any other module.

**v_leak** (the resting potential) is a constant drive ``(1 - d) v_leak`` per tick, folded into
the bias; exact. **v_reset** must be 0 (the chip resets to 0, or subtracts).

**Reset.** NIR neurons reset to ``v_reset`` after a spike: chip reset ``zero``. snnTorch's
``reset_mechanism`` subtract/zero map to the chip's; ``none`` is refused. ``reset=`` overrides
(e.g. ``reset="subtract"`` for a NIR file exported from an snnTorch network trained with
subtract reset: NIR 1.0 cannot record it). snnTorch's default ``reset_delay=True`` subtracts the
threshold one step later, undecayed (``v <- beta v + I - thr S[t-1]``), where the chip subtracts
at once and then decays (``beta (v - thr)``): a difference of ``(1 - beta) thr`` per spike, noted
in the report; ``reset_delay=False`` is the chip's rule exactly.

**Spike comparison.** NIR and snnTorch spike on ``v > thr``, the chip on ``V >= theta``; they
differ only when a membrane lands exactly on the threshold.

**Quantization (per layer).** ``q = 2**(w_bits-1) - 1``; ``s_w = max|W| / q`` (after the
folding above); ``theta = max(1, floor(thr / s_w))`` and ``s = thr / theta`` (so ``s >= s_w``:
the largest weight still fits, and the threshold is exact); ``W_int = clip(round(W / s), -q-1,
q)``, ``B_int = round(b / s)``. If ``thr < s_w``, ``theta = 1`` with ``s = s_w`` (the threshold
then grows; reported). A ``theta`` or a bias beyond the signed ``v_bits`` membrane range is
refused. snnTorch's ``graded_spikes_factor`` (the value of one spike) is folded into the next
layer's weights.

**Report.** Per layer: ``s``, the weight error ``max|W - s W_int| / max|W|`` and
``mean|W - s W_int| / mean|W|``, the bias error in units of the threshold, ``theta``, the leak
and the reset. With ``calibration`` data (images and labels) it also gives the accuracy of a
float NumPy simulation of the *source* semantics (the rules above without any rounding: Euler
decay ``d``, ``v > thr``, the source's reset and its timing, all layers in the same step, ``T``
steps) and of the integer model (the golden model's update rule, with the chip's layer
pipeline, ``T + L - 1`` ticks), both decoded by :func:`spikefab.sim.golden.decode`'s rule (most
spikes, then the higher final membrane, then the lower index), on the same rate-encoded spikes
(:func:`~spikefab.sim.encoding.rate_encode`, seed 0 as ``spikefab run`` uses). With biases the
two timings differ slightly: on the chip, layer ``l`` integrates its bias for ``l`` ticks
before its first input arrives.
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..sim.golden import NeuronConfig, lif_update
from ..hdl.abi import AXON_LIMIT, NEURON_LIMIT, ResetMode
from .model import Layer, Model

__all__ = [
    "ConversionError",
    "ImportReport",
    "LayerReport",
    "CalibrationResult",
    "from_nir",
    "from_snntorch",
    "load_state_dict",
    "float_forward",
    "integer_forward",
]

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

    Per tick: ``v <- decay * v + x @ weight + bias``; spike iff ``v > threshold``.
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
    if inputs > AXON_LIMIT:
        raise ConversionError(node, f"layer has {inputs} inputs; a core has at most "
                                    f"{AXON_LIMIT} axons")
    if outputs > NEURON_LIMIT:
        raise ConversionError(node, f"layer has {outputs} neurons; a core has at most "
                                    f"{NEURON_LIMIT}")
    for what, array in (("weights", layer.weight), ("bias", layer.bias),
                        ("threshold", layer.threshold), ("decay", layer.decay)):
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

    q = (1 << (w_bits - 1)) - 1
    v_max = (1 << (v_bits - 1)) - 1
    w_abs = float(np.abs(weight).max())
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
                       bias=b_int if has_bias and np.any(b_int) else None)
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

def _decode(counts: np.ndarray, final_v: np.ndarray) -> np.ndarray:
    """:func:`spikefab.sim.golden.decode`'s rule for any dtype: most spikes, then the higher
    final membrane, then the lower index."""
    index = np.arange(counts.shape[1])
    order = np.lexsort((-index[None, :].repeat(len(counts), 0), final_v, counts), axis=1)
    return order[:, -1].astype(np.int64)


def float_forward(layers: Sequence[_SourceLayer], spikes: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source network in float64, source semantics: every layer in the same step, ``T``
    steps. Returns ``(counts, final_v, predictions)`` of the last layer."""
    spikes = np.asarray(spikes)
    steps, batch = spikes.shape[:2]
    v = [np.zeros((batch, layer.weight.shape[1])) for layer in layers]
    counts = np.zeros((batch, layers[-1].weight.shape[1]), np.int64)
    for t in range(steps):
        signal = spikes[t].astype(np.float64)
        for l, layer in enumerate(layers):
            current = signal @ layer.weight + layer.bias
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
            signal = fired.astype(np.float64)
        counts += fired
    return counts, v[-1], _decode(counts, v[-1])


def integer_forward(model: Model, spikes: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integer model with the golden update rule and the chip's pipeline (as
    :meth:`Model.simulate`, ``T + L - 1`` ticks), returning ``(counts, final_v, predictions)``
    of the last layer; predictions by :func:`spikefab.sim.golden.decode`."""
    from ..sim.golden import decode
    spikes = np.asarray(spikes)
    steps, batch = spikes.shape[:2]
    total = steps + len(model.layers) - 1
    v = [np.zeros((batch, layer.outputs), np.int64) for layer in model.layers]
    previous = [np.zeros((batch, layer.outputs), bool) for layer in model.layers]
    # Exact: every partial sum is an integer far below 2**53.
    weights = [layer.weights.astype(np.float64) for layer in model.layers]
    counts = np.zeros((batch, model.classes), np.int64)
    for t in range(total):
        fired_now = []
        for l, layer in enumerate(model.layers):
            if l == 0:
                signal = spikes[t] if t < steps else np.zeros((batch, model.inputs))
            else:
                signal = previous[l - 1]
            current = (np.asarray(signal, np.float64) @ weights[l]).astype(np.int64)
            bias = 0 if layer.bias is None else layer.bias
            v[l], fired = lif_update(v[l], current, bias,
                                     NeuronConfig(layer.threshold, layer.leak, layer.reset),
                                     model.v_bits)
            fired_now.append(fired)
        previous = fired_now
        counts += previous[-1]
    return counts, v[-1], decode(counts, v[-1])


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
    from ..sim.encoding import rate_encode
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
            raise ConversionError(_describe(name, node), "a nested graph (recurrent layers "
                                  "such as snnTorch's RLeaky/RSynaptic export as one); the chip "
                                  "runs feed-forward chains only")
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
        gain, decay, drive, threshold, mode = _nir_neuron(nir, node_name, node, width, dt,
                                                          reset, notes)
        layers.append(_SourceLayer(
            name=f"{weight_name} -> {node_name}", neuron=where,
            weight=weight * gain[None, :], bias=bias * gain + drive, threshold=threshold,
            decay=decay, reset=mode, rule="nir"))
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


# ---- snnTorch ----------------------------------------------------------------------------------------

_NEURON_KEYS = {"beta", "threshold", "graded_spikes_factor", "reset_mechanism_val", "mem",
                "alpha", "syn"}
#: snnTorch's ``reset_mechanism_val`` codes; 2 ("none": pure integration) has no chip mode.
_RESETS = {0: ResetMode.SUBTRACT, 1: ResetMode.ZERO, 2: None}


def _reset_mode(reset) -> ResetMode | None:
    """A reset argument (a :class:`ResetMode`, its lower-case name, or None) as a mode."""
    if reset is None or isinstance(reset, ResetMode):
        return reset
    names = {mode.name.lower(): mode for mode in ResetMode}
    if reset not in names:
        raise ValueError(f"reset must be one of {', '.join(map(repr, names))} or None, "
                         f"not {reset!r}")
    return names[reset]


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
    linears, neurons = [], []
    for prefix, params in groups.items():
        where = f"module {prefix!r}"
        parts = set(params)
        if "weight" in parts and parts <= {"weight", "bias"}:
            shape = np.shape(_array(params["weight"]))
            if len(shape) != 2:
                kind = "a convolution" if len(shape) > 2 else "not a Linear layer"
                raise ConversionError(where, f"weight has shape {shape}: {kind}; the chip's "
                                             f"cores are fully connected (nn.Linear)")
            linears.append(prefix)
        elif parts & {"beta", "threshold", "reset_mechanism_val"} and parts <= _NEURON_KEYS:
            neurons.append(prefix)
        elif "V" in parts or "recurrent" in prefix.split("."):
            raise ConversionError(where, "a recurrent connection (RLeaky/RSynaptic); the chip "
                                         "runs feed-forward chains only")
        else:
            raise ConversionError(where, f"unsupported module with "
                                         f"{', '.join(sorted(parts))} (expected nn.Linear "
                                         f"weight/bias and snn.Leaky beta/threshold)")
    for prefix in linears:
        for neuron in neurons:
            if prefix.startswith(neuron + "."):
                raise ConversionError(f"module {prefix!r}", f"a recurrent connection of "
                                      f"{neuron!r} (RLeaky/RSynaptic); the chip runs "
                                      f"feed-forward chains only")
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
        layers.append(_SourceLayer(
            name=f"{prefix} + {neuron}" if neuron else prefix, neuron=where, weight=weight,
            bias=bias, threshold=thr, decay=decay, reset=mode, rule="snntorch",
            reset_delay=reset_delay))
        width = outputs
    return _build(layers, source=source, fmt="snnTorch", w_bits=w_bits, v_bits=v_bits,
                  steps=steps, calibration=calibration,
                  name=name if name is not None else default_name, notes=notes)
