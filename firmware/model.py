"""spikefab's native model format: a quantized spiking network in one ``.npz``.

This is what a trainer exports and what ``spikefab compile`` reads. The network is a chain of
``L`` fully connected LIF layers with exactly the semantics of docs/semantics.md: layer ``l`` has
``weights_l[a][n]``, the weight from its input ``a`` to its neuron ``n``; layer ``l``'s neurons
are layer ``l + 1``'s inputs one to one (neuron ``n`` -> input ``n``, one tick later); the
network's inputs are layer 0's inputs (pixels, rate encoded); the last layer's neurons are the
classes. A layer may also be **recurrent**: ``recurrent_l[m][n]`` is the weight from its own
neuron ``m`` to its neuron ``n``, and a spike of ``m`` in tick ``t`` reaches ``n`` in tick
``t + 1``, as a spike of the previous layer does (docs/semantics.md, "Networks").

Keys of the ``.npz`` (every value a NumPy array; scalars are 0-d arrays, strings unicode)::

    format        "spikefab-model"
    version       1
    layers        L >= 1
    w_bits        signed weight width: 4 or 8
    v_bits        signed membrane (and bias) width: 8 to 24
    weights_{l}   integer array (inputs, outputs), every value in [-2**(w_bits-1), 2**(w_bits-1))
    bias_{l}      optional integer array (outputs,), in the signed v_bits range (0 if absent)
    recurrent_{l} optional integer array (outputs, outputs), weights as weights_{l}
    threshold_{l} integer, 1 .. 2**(v_bits-1) - 1
    leak_{l}      integer leak shift, 0 (no leak) .. v_bits - 1
    reset_{l}     "subtract" or "zero" (or 0 / 1, the register encoding)
    steps         optional: the suggested number of time steps T
    encoder       optional: the rate encoder the model was trained and evaluated with, a name of
                  ``sim.encoding.ENCODERS`` ("pcg64" if absent)
    name          optional: a name for the model

for ``l = 0 .. L - 1``, with ``weights_{l+1}`` having as many inputs as ``weights_{l}`` has
outputs. Any other key is refused (a misspelt key must not be silently ignored).

:meth:`Model.load` raises :class:`ModelError` (a ValueError) naming the key and what is wrong
with it. :meth:`Model.digest` is a SHA-256 of the model's content (not of the file, which holds
zip timestamps), recorded in chip images.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..sim.encoding import check_encoder
from ..sim.golden import NeuronConfig, decode, lif_update
from ..hdl.abi import ResetMode

__all__ = ["FORMAT", "VERSION", "ModelError", "Layer", "Model", "ModelRun", "random_model"]

FORMAT = "spikefab-model"
VERSION = 1

_LAYER_KEY = re.compile(r"^(weights|bias|recurrent|threshold|leak|reset)_(\d+)$")
_TOP_KEYS = {"format", "version", "layers", "w_bits", "v_bits", "steps", "encoder", "name"}


#: Files that ``spikefab import`` converts into models, by suffix.
_PYTORCH = "a PyTorch file (an snnTorch state dict?)"
_IMPORTED = {".pt": _PYTORCH, ".pth": _PYTORCH, ".nir": "a NIR graph"}


class ModelError(ValueError):
    """A model file or object that does not follow the format; the message names the key."""


def _int_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _scalar_int(key: str, value, lo: int | None = None, hi: int | None = None) -> int:
    array = np.asarray(value)
    if array.ndim != 0 and array.shape != (1,):
        raise ModelError(f"{key} must be a single integer, not an array of shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        item = array.reshape(()).item()
        raise ModelError(f"{key} must be an integer, not {item!r} ({array.dtype})")
    result = int(array.reshape(()))
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        bound = (f"in [{lo}, {hi}]" if lo is not None and hi is not None
                 else f"at least {lo}" if lo is not None else f"at most {hi}")
        raise ModelError(f"{key} must be {bound}, not {result}")
    return result


def _reset(key: str, value) -> ResetMode:
    array = np.asarray(value)
    if array.ndim == 0 and array.dtype.kind == "U":
        text = str(array)
        names = {"subtract": ResetMode.SUBTRACT, "zero": ResetMode.ZERO}
        if text.lower() not in names:
            raise ModelError(f"{key} must be 'subtract' or 'zero' (or 0 / 1), not {text!r}")
        return names[text.lower()]
    return ResetMode(_scalar_int(key, value, 0, 1))


def _int_array(key: str, value, ndim: int, bits: int, kind: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != ndim:
        want = "(inputs, outputs)" if ndim == 2 else "(outputs,)"
        raise ModelError(f"{key} must be a {ndim}-D array {want}, not shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ModelError(f"{key} must hold integers (quantized {kind}), not {array.dtype}")
    if 0 in array.shape:
        raise ModelError(f"{key} is empty (shape {array.shape})")
    lo, hi = _int_range(bits)
    found_lo, found_hi = int(array.min()), int(array.max())
    if found_lo < lo or found_hi > hi:
        raise ModelError(f"{key} holds values in [{found_lo}, {found_hi}], outside the "
                         f"signed {bits}-bit range [{lo}, {hi}]")
    return array.astype(np.int64)


@dataclass
class Layer:
    """One fully connected LIF layer: ``weights`` is ``(inputs, outputs)``; ``recurrent``, if
    given, ``(outputs, outputs)``: from the layer's own spikes of the tick before."""
    weights: np.ndarray
    threshold: int
    leak: int = 0
    reset: ResetMode = ResetMode.SUBTRACT
    bias: np.ndarray | None = None
    recurrent: np.ndarray | None = None

    @property
    def inputs(self) -> int:
        return int(np.shape(self.weights)[0])

    @property
    def outputs(self) -> int:
        return int(np.shape(self.weights)[1])

    def config(self) -> NeuronConfig:
        return NeuronConfig(self.threshold, self.leak, ResetMode(self.reset))


@dataclass
class Model:
    """A quantized feed-forward SNN (see the module's documentation for the file format)."""
    layers: list[Layer]
    w_bits: int = 8
    v_bits: int = 16
    steps: int | None = None
    name: str = ""
    encoder: str = "pcg64"

    def __post_init__(self):
        self.validate()

    # ---- checking ----
    def validate(self) -> "Model":
        """Check (and normalize) every field; raises :class:`ModelError`."""
        if isinstance(self.w_bits, bool) or self.w_bits not in (4, 8):
            raise ModelError(f"w_bits must be 4 or 8, not {self.w_bits!r}")
        self.w_bits = int(self.w_bits)
        self.v_bits = _scalar_int("v_bits", self.v_bits, 8, 24)
        if self.steps is not None:
            self.steps = _scalar_int("steps", self.steps, 1, None)
        self.name = str(self.name)
        try:
            self.encoder = check_encoder(str(self.encoder))
        except ValueError as exc:
            raise ModelError(f"encoder: {exc}") from None
        if not self.layers:
            raise ModelError("layers must be at least 1, not 0")
        v_hi = _int_range(self.v_bits)[1]
        for l, layer in enumerate(self.layers):
            layer.weights = _int_array(f"weights_{l}", layer.weights, 2, self.w_bits, "weights")
            if layer.bias is not None:
                layer.bias = _int_array(f"bias_{l}", layer.bias, 1, self.v_bits, "bias")
                if layer.bias.shape[0] != layer.outputs:
                    raise ModelError(f"bias_{l} has {layer.bias.shape[0]} values but layer {l} "
                                     f"has {layer.outputs} outputs")
            if layer.recurrent is not None:
                layer.recurrent = _int_array(f"recurrent_{l}", layer.recurrent, 2, self.w_bits,
                                             "weights")
                if layer.recurrent.shape != (layer.outputs, layer.outputs):
                    raise ModelError(f"recurrent_{l} has shape {layer.recurrent.shape}; layer "
                                     f"{l} has {layer.outputs} outputs, so it must be "
                                     f"({layer.outputs}, {layer.outputs})")
            layer.threshold = _scalar_int(f"threshold_{l}", layer.threshold, 1, v_hi)
            layer.leak = _scalar_int(f"leak_{l}", layer.leak, 0, self.v_bits - 1)
            layer.reset = _reset(f"reset_{l}", layer.reset)
            if l and layer.inputs != self.layers[l - 1].outputs:
                raise ModelError(f"weights_{l} has {layer.inputs} inputs but layer {l - 1} "
                                 f"has {self.layers[l - 1].outputs} outputs")
        return self

    # ---- shape ----
    @property
    def sizes(self) -> list[int]:
        """``[inputs, outputs of layer 0, ..., outputs of layer L-1]``."""
        return [self.layers[0].inputs] + [layer.outputs for layer in self.layers]

    @property
    def inputs(self) -> int:
        return self.layers[0].inputs

    @property
    def classes(self) -> int:
        return self.layers[-1].outputs

    @property
    def drain_ticks(self) -> int:
        """Ticks after the input during which the last layer still answers it: ``L - 1``, the
        ticks an input spike takes to reach the last layer (recurrent activity beyond them is
        not waited for)."""
        return len(self.layers) - 1

    # ---- files ----
    def arrays(self) -> dict[str, np.ndarray]:
        """The ``.npz`` content."""
        out = {"format": np.array(FORMAT), "version": np.array(VERSION),
               "layers": np.array(len(self.layers)), "w_bits": np.array(self.w_bits),
               "v_bits": np.array(self.v_bits)}
        if self.steps is not None:
            out["steps"] = np.array(self.steps)
        if self.name:
            out["name"] = np.array(self.name)
        if self.encoder != "pcg64":
            out["encoder"] = np.array(self.encoder)
        dtype = np.int8 if self.w_bits <= 8 else np.int16
        for l, layer in enumerate(self.layers):
            out[f"weights_{l}"] = layer.weights.astype(dtype)
            if layer.bias is not None:
                out[f"bias_{l}"] = layer.bias.astype(np.int32)
            if layer.recurrent is not None:
                out[f"recurrent_{l}"] = layer.recurrent.astype(dtype)
            out[f"threshold_{l}"] = np.array(layer.threshold)
            out[f"leak_{l}"] = np.array(layer.leak)
            out[f"reset_{l}"] = np.array(ResetMode(layer.reset).name.lower())
        return out

    def save(self, path) -> None:
        """Write the model as ``.npz`` to ``path`` (exactly that name; no suffix is added)."""
        self.validate()
        with open(path, "wb") as f:
            np.savez_compressed(f, **self.arrays())

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Model":
        """A model from the ``.npz`` content (a mapping of key -> array)."""
        keys = set(arrays)
        if "format" not in keys:
            raise ModelError("missing key 'format': not a spikefab model "
                             f"(expected format = {FORMAT!r})")
        fmt = np.asarray(arrays["format"])
        if fmt.dtype.kind != "U" or str(fmt) != FORMAT:
            raise ModelError(f"format is {fmt.reshape(-1)[:1].tolist()!r}, not {FORMAT!r}: "
                             f"not a spikefab model")
        for key in ("version", "layers", "w_bits", "v_bits"):
            if key not in keys:
                raise ModelError(f"missing key {key!r}")
        version = _scalar_int("version", arrays["version"])
        if version != VERSION:
            raise ModelError(f"version is {version}; this spikefab reads model format version "
                             f"{VERSION}")
        count = _scalar_int("layers", arrays["layers"], 1, None)
        unknown = []
        for key in sorted(keys - _TOP_KEYS):
            match = _LAYER_KEY.match(key)
            if not match or int(match.group(2)) >= count:
                unknown.append(key)
        if unknown:
            raise ModelError(f"unexpected key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} (layers = {count}; the format's "
                             f"keys are format, version, layers, w_bits, v_bits, steps, encoder, "
                             f"name and weights/bias/recurrent/threshold/leak/reset_<layer>)")
        layers = []
        for l in range(count):
            for part in ("weights", "threshold", "leak", "reset"):
                if f"{part}_{l}" not in keys:
                    raise ModelError(f"missing key '{part}_{l}' (layers = {count})")
            layers.append(Layer(weights=arrays[f"weights_{l}"],
                                threshold=arrays[f"threshold_{l}"],
                                leak=arrays[f"leak_{l}"], reset=arrays[f"reset_{l}"],
                                bias=arrays.get(f"bias_{l}"),
                                recurrent=arrays.get(f"recurrent_{l}")))
        steps = arrays.get("steps")
        name = arrays.get("name")
        if name is not None:
            name = np.asarray(name)
            if name.dtype.kind != "U" or name.ndim != 0:
                raise ModelError(f"name must be a string, not {name.dtype} of shape "
                                 f"{name.shape}")
            name = str(name)
        encoder = arrays.get("encoder", np.array("pcg64"))
        encoder = np.asarray(encoder)
        if encoder.dtype.kind != "U" or encoder.ndim != 0:
            raise ModelError(f"encoder must be a string, not {encoder.dtype} of shape "
                             f"{encoder.shape}")
        w_bits = _scalar_int("w_bits", arrays["w_bits"])
        return cls(layers, w_bits=w_bits, v_bits=arrays["v_bits"], steps=steps,
                   name=name or "", encoder=str(encoder))

    @classmethod
    def load(cls, path) -> "Model":
        """Read a model file; raises :class:`ModelError` for anything that is not a valid one
        (a PyTorch or NIR file gets the command that converts it)."""
        path = Path(path)
        source = _IMPORTED.get(path.suffix.lower())
        if source is not None:
            raise ModelError(f"{path} is {source}, not a spikefab model: convert it first with "
                             f"spikefab import {path} -o model.npz, then use model.npz")
        try:
            with open(path, "rb") as f:
                head = f.read(4)
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
        if head != b"PK\x03\x04":
            raise ModelError(f"{path} is not a spikefab model: not an .npz (zip) file")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path} is corrupted (cannot read it as .npz: {exc})") from None
        try:
            return cls.from_arrays(arrays)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None

    # ---- identity ----
    def digest(self) -> str:
        """SHA-256 (hex) of the model's content: a canonical JSON of the scalars, then every
        array as little-endian int64 in C order, in key order."""
        arrays = self.arrays()
        scalars, blobs = {}, []
        for key in sorted(arrays):
            value = arrays[key]
            if value.ndim == 0:
                scalars[key] = value.item()
            else:
                scalars[key] = list(value.shape)
                blobs.append(np.ascontiguousarray(value, dtype="<i8").tobytes())
        h = hashlib.sha256(json.dumps(scalars, sort_keys=True, separators=(",", ":"))
                           .encode())
        for blob in blobs:
            h.update(blob)
        return h.hexdigest()

    # ---- running ----
    def forward(self, inputs: np.ndarray, *, drain: bool = True,
                trace: bool = False) -> "ModelRun":
        """Run the network on the golden update rule (:func:`spikefab.sim.golden.lif_update`)
        as the chip runs it: in each tick every layer receives the previous layer's spikes of
        the tick before (layer 0: the tick's input) and, if recurrent, its own spikes of the
        tick before; then every layer updates. This is spikefab's one integer simulator of a
        network; the golden chip model running a compiled image must equal it.

        ``inputs`` is ``(T, batch, inputs)`` of event counts (0/1 for rate-coded spikes); the
        run lasts ``T`` ticks and, with ``drain``, :attr:`drain_ticks` more without input.
        ``trace`` keeps every layer's spikes (else only the last layer's).
        """
        inputs = np.asarray(inputs)
        if inputs.ndim != 3 or inputs.shape[2] != self.inputs:
            raise ValueError(f"inputs must have shape (T, batch, {self.inputs}), "
                             f"not {inputs.shape}")
        steps, batch = inputs.shape[:2]
        total = steps + (self.drain_ticks if drain else 0)
        count = len(self.layers)
        # float64 products are exact: every sum is an integer far below 2**53.
        weights = [layer.weights.astype(np.float64) for layer in self.layers]
        recurrent = [None if layer.recurrent is None else layer.recurrent.astype(np.float64)
                     for layer in self.layers]
        configs = [layer.config() for layer in self.layers]
        biases = [np.zeros(1, np.int64) if layer.bias is None else layer.bias
                  for layer in self.layers]
        v = [np.zeros((batch, layer.outputs), np.int64) for layer in self.layers]
        fired = [np.zeros((batch, layer.outputs), bool) for layer in self.layers]
        spikes = [np.zeros((total, batch, layer.outputs), bool)
                  for layer in (self.layers if trace else self.layers[-1:])]
        zero_input = np.zeros((batch, self.inputs), np.float64)
        for t in range(total):
            now = []
            for l in range(count):
                signal = (inputs[t] if t < steps else zero_input) if l == 0 else fired[l - 1]
                current = np.asarray(signal, np.float64) @ weights[l]
                if recurrent[l] is not None:
                    current += fired[l].astype(np.float64) @ recurrent[l]
                v[l], out = lif_update(v[l], current.astype(np.int64), biases[l], configs[l],
                                       self.v_bits)
                now.append(out)
            fired = now
            if trace:
                for l in range(count):
                    spikes[l][t] = fired[l]
            else:
                spikes[0][t] = fired[-1]
        counts = spikes[-1].sum(axis=0, dtype=np.int64)
        return ModelRun(spikes, v, counts, decode(counts, v[-1]))

    def simulate(self, inputs: np.ndarray, *, drain: bool = True) -> np.ndarray:
        """The last layer's spikes of :meth:`forward`, ``(T [+ drain ticks], batch,
        classes)``."""
        return self.forward(inputs, drain=drain).spikes[-1]


@dataclass
class ModelRun:
    """What :meth:`Model.forward` returns."""
    spikes: list[np.ndarray]    #: per layer (or only the last), ``(ticks, batch, outputs)`` bool
    final_v: list[np.ndarray]   #: per layer, the membranes after the last tick, int64
    counts: np.ndarray          #: ``(batch, classes)`` the last layer's spikes over the run
    predictions: np.ndarray     #: ``(batch,)`` :func:`spikefab.sim.golden.decode` of the above


def random_model(sizes, *, seed: int, w_bits: int = 8, v_bits: int = 16, threshold=None,
                 density: float = 0.5, leak=0, reset="subtract", bias: bool = False,
                 rate: float = 0.5, steps: int | None = None, name: str | None = None,
                 recurrent=False) -> Model:
    """A valid random model with layer sizes ``sizes = [inputs, hidden..., classes]`` whose
    layers spike under rate-coded input.

    Weights are zero with probability ``1 - density``, else uniform in
    ``[w_min // 2, w_max]`` (mostly excitatory). Without ``threshold`` (an int, or one per
    layer), each layer's threshold is calibrated on the golden model: with random binary
    input of ``rate`` (layer 0), resp. the previous layer's spikes, over 32 ticks, it is set
    to the median over neurons of the positive mean drive per tick, times two, so the median
    neuron fires about every other tick. ``leak`` and ``reset`` are one value or one per
    layer; ``bias=True`` adds small random biases; ``recurrent`` (one bool, or one per layer)
    gives layers sparse recurrent weights of either sign, drawn after the threshold is set.
    Deterministic in ``seed``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least the inputs and one layer, all >= 1, "
                         f"not {sizes}")
    count = len(sizes) - 1

    def per_layer(name_, value):
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                raise ValueError(f"{name_} must have one value per layer ({count})")
            return list(value)
        return [value] * count

    thresholds, leaks, resets = (per_layer("threshold", threshold), per_layer("leak", leak),
                                 per_layer("reset", reset))
    recurrents = per_layer("recurrent", recurrent)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    w_lo, w_hi = _int_range(w_bits)
    v_hi = _int_range(v_bits)[1]
    calib_steps, calib_batch = 32, 4
    signal = rng.random((calib_steps, calib_batch, sizes[0])) < rate
    layers = []
    for l in range(count):
        inputs, outputs = sizes[l], sizes[l + 1]
        weights = rng.integers(w_lo // 2, w_hi + 1, size=(inputs, outputs))
        weights[rng.random((inputs, outputs)) >= density] = 0
        drive = signal.reshape(-1, inputs).astype(np.float64).mean(axis=0) @ weights
        theta = thresholds[l]
        if theta is None:
            positive = drive[drive > 0]
            theta = int(round(2 * np.median(positive))) if positive.size else 1
        theta = int(min(max(theta, 1), v_hi))
        layer_bias = None
        if bias:
            span = max(theta // 8, 1)
            layer_bias = rng.integers(-span, span + 1, size=outputs)
        layer = Layer(weights=weights, threshold=theta, leak=leaks[l], reset=resets[l],
                      bias=layer_bias)
        if recurrents[l]:
            # Own spikes of the tick before: a sparse mix of excitation and inhibition.
            loop = rng.integers(w_lo, w_hi + 1, size=(outputs, outputs))
            loop[rng.random((outputs, outputs)) >= min(density, 4 / outputs)] = 0
            layer.recurrent = loop
        # Validates (and normalizes) the layer; its spikes calibrate the next layer.
        signal = Model([layer], w_bits=w_bits, v_bits=v_bits).forward(
            signal, drain=False).spikes[-1]
        layers.append(layer)
    return Model(layers, w_bits=w_bits, v_bits=v_bits, steps=steps,
                 name=name if name is not None else
                 f"random-{'-'.join(map(str, sizes))}-seed{seed}")
