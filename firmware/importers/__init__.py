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
spikes), ``Scale``/``Threshold``/``Delay``, two weight or two neuron nodes in a row, a layer
with more than 1024 inputs (axons; plus its own neurons if recurrent). A layer may have any
number of neurons: the mapper spreads them over cores.

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
ignored: the chip starts every image at 0. ``snn.RLeaky`` (``mem <- beta mem + W x + b +
V(spk)``, ``spk`` the layer's own spikes of the step before) is a recurrent layer: its
``recurrent.weight``/``recurrent.bias`` (``all_to_all``: an ``nn.Linear``) or ``V`` (one to one)
become the layer's recurrent weights, on the scale of its feed-forward weights, and the
recurrent bias joins the bias. Refused: convolutions, ``Synaptic`` with ``alpha != 0``, any
other module.

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

from .common import (CalibrationResult, ConversionError, ImportReport, LayerReport, calibrate,
                     float_forward, integer_forward)
from .nir_graph import from_nir
from .snntorch_state import from_snntorch, load_state_dict

__all__ = ["ConversionError", "ImportReport", "LayerReport", "CalibrationResult", "from_nir",
           "from_snntorch", "load_state_dict", "float_forward", "integer_forward", "calibrate"]
