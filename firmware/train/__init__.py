"""The hardware-exact trainer: surrogate-gradient BPTT of a feed-forward LIF network, in NumPy.

The network is the chip's (docs/semantics.md): ``inputs -> hidden... -> classes`` (784-128-10 for
the shipped MNIST models; ``hidden`` may list several layers, of any width), fully connected LIF
layers with subtract reset, a leak shift ``k`` and a threshold per layer; with ``recurrent``,
every hidden layer also takes its own spikes of the tick before, all to all.
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

from .config import TrainConfig
from .network import ForwardTrace, integer_forward
from .data import VAL_START, shift_images, split_indices
from .trainer import TrainResult, train
from .evaluate import golden_evaluate
from .command import train_mnist, train_command, format_train_report

__all__ = ["TrainConfig", "ForwardTrace", "integer_forward", "VAL_START", "shift_images", "split_indices", "TrainResult", "train", "golden_evaluate", "train_mnist", "train_command", "format_train_report"]
