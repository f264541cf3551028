"""The golden model: it implements the spec in docs/semantics.md, executable and bit-exact.

Everything that claims to be spikefab (the RTL, the trainer, the driver) is checked against this
module. It imports NumPy and the formats (``hdl/abi/``) only, never a simulator or gateware,
and it is vectorized over neurons *and* over a batch of independent runs, so one object can
carry many images at once.

Semantics of one core (all integers are two's complement):

1. **Delivery.** An event for axon ``a < A`` does ``I[n] += W[a][n]`` for every neuron ``n``;
   an event for ``a >= A`` is dropped and counted. ``I`` is ``accumulator_bits`` wide: it
   holds the sum of ``events_per_tick`` (``E``) weights of either extreme exactly, and it
   wraps (two's complement, modulo ``2**accumulator_bits``), so the sum is the same in every
   order of arrival, however many events a tick brings. Events past ``E`` in a tick are
   delivered and counted in ``over_budget`` (docs/semantics.md, "Event budget").
2. **Update**, at the end of every tick, for every neuron::

       L  = V if k == 0 else V - (V >> k)      # >> is arithmetic: floor division by 2**k
       V' = sat(L + I + B)                     # saturate to v_bits signed
       spike = V' >= theta
       V' = V' - theta (subtract) or 0 (zero)  # on spike only
       V = V';  I = 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..hdl.abi import CoreShape, Register, ResetMode, check_int

__all__ = [
    "NeuronConfig", "CoreCounters",
    "CoreModel", "lif_update", "saturate", "wrap", "decode",
]

@dataclass(frozen=True)
class NeuronConfig:
    """The run-time parameters of one core (registers in the hardware).

    Parameters
    ----------
    threshold : int
        ``theta``, 1 to the largest membrane value.
    leak : int
        ``k``, the leak shift, 0 (no leak) to ``v_bits - 1``.
    reset : ResetMode
        ``SUBTRACT`` or ``ZERO``.
    """
    threshold: int
    leak: int = 0
    reset: ResetMode = ResetMode.SUBTRACT

    def registers(self) -> dict[Register, int]:
        """The parameter registers that hold this configuration, and their values."""
        return {Register.THRESHOLD: int(self.threshold), Register.LEAK: int(self.leak),
                Register.RESET: int(self.reset)}

    def validate(self, shape: CoreShape) -> "NeuronConfig":
        check_int("threshold", self.threshold, 1, shape.v_max)
        check_int("leak", self.leak, 0, shape.v_bits - 1)
        try:
            ResetMode(self.reset)
        except ValueError:
            raise ValueError(f"reset must be a ResetMode (0 = subtract, 1 = zero), "
                             f"not {self.reset!r}") from None
        return self


def saturate(x: np.ndarray, bits: int) -> np.ndarray:
    """Clamp integers to the signed ``bits``-wide range."""
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """Integers reduced to the signed ``bits``-wide range modulo ``2**bits`` (two's complement
    wrap-around, as a ``bits``-wide adder does)."""
    half = 1 << (bits - 1)
    return ((np.asarray(x) + half) & ((half << 1) - 1)) - half


def lif_update(v: np.ndarray, i: np.ndarray, b: np.ndarray, config: NeuronConfig,
               v_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """One update of rule 2 on arrays of any (broadcastable) shape.

    Returns ``(new_v, spikes)``; inputs are not modified. The arithmetic is exact: int64, or
    int32 when ``v`` and ``i`` are both int32 (every legal core fits it: ``|V|, |B| <= 2**23``
    and ``|I| < 2**24``, so ``L + I + B`` stays below ``2**31``).
    """
    v, i, b = np.asarray(v), np.asarray(i), np.asarray(b)
    dtype = (np.int32 if v.dtype == np.int32 and i.dtype == np.int32 and v_bits <= 24
             else np.int64)
    v = v.astype(dtype, copy=False)
    new_v = v - (v >> config.leak) if config.leak else v.copy()
    new_v += i
    new_v += b.astype(dtype, copy=False)
    np.clip(new_v, -(1 << (v_bits - 1)), (1 << (v_bits - 1)) - 1, out=new_v)
    spikes = new_v >= config.threshold
    # Reset as arithmetic on the spike mask: much faster than masked assignment.
    if ResetMode(config.reset) is ResetMode.SUBTRACT:
        new_v -= spikes * dtype(config.threshold)
    else:
        new_v *= ~spikes
    return new_v, spikes


@dataclass
class CoreCounters:
    """What a core counts, summed over the batch: the same counters the hardware has."""
    events: int = 0        #: in-range events delivered
    sops: int = 0          #: synaptic operations: events times N
    ticks: int = 0         #: updates performed
    drop_range: int = 0    #: events for an axon >= A
    over_budget: int = 0   #: in-range events past ``events_per_tick`` in one tick


class CoreModel:
    """A batch of independent copies of one core.

    Parameters
    ----------
    shape : CoreShape
    weights : array of int, shape ``(A, N)``
        Synapse memory ``W[a][n]``; every value must fit ``w_bits``.
    config : NeuronConfig
    bias : array of int, shape ``(N,)``, optional
        ``B[n]``; fits ``v_bits``. Zero when omitted.
    batch : int
        Number of independent runs carried side by side.

    Members
    -------
    v : ndarray, shape ``(batch, N)``, int32
        Membranes; may be set directly (e.g. to start from a given state).
    i : ndarray, shape ``(batch, N)``, int32
        Accumulators of the current tick, in the signed ``accumulator_bits`` range (int32
        holds every legal core's, see :func:`lif_update`).
    counters : CoreCounters
    """

    def __init__(self, shape: CoreShape, weights, config: NeuronConfig, bias=None, *,
                 batch: int = 1):
        self.shape = shape
        self.config = config.validate(shape)
        self.weights = self._check_array("weights", weights, (shape.axons, shape.neurons),
                                         shape.w_min, shape.w_max)
        if bias is None:
            bias = np.zeros(shape.neurons, dtype=np.int64)
        self.bias = self._check_array("bias", bias, (shape.neurons,), shape.v_min, shape.v_max)
        self.batch = check_int("batch", batch, 1, 1 << 30)
        self.v = np.zeros((batch, shape.neurons), dtype=np.int32)
        self.i = np.zeros((batch, shape.neurons), dtype=np.int32)
        self._delivered = np.zeros(batch, dtype=np.int64)  # in-range events this tick
        self._updated_events = np.zeros(batch, dtype=np.int64)  # of the ticks updated since
        self.counters = CoreCounters()
        # Exact float matmul is much faster than int matmul; it is exact while every partial sum
        # is an integer the float's mantissa holds (below 2**24 for float32, 2**53 for float64).
        # A tick with more events than that falls back to int64.
        bound = shape.events_per_tick * -shape.w_min
        self._mm_dtype = np.float32 if bound < (1 << 24) else np.float64
        self._exact_bound = 1 << (24 if self._mm_dtype is np.float32 else 53)
        self._weights_mm = self.weights.astype(self._mm_dtype)

    @staticmethod
    def _check_array(name, value, shape, lo, hi) -> np.ndarray:
        array = np.asarray(value)
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, not {array.shape}")
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, not {array.dtype}")
        if array.size and (array.min() < lo or array.max() > hi):
            bad = array[(array < lo) | (array > hi)].flat[0]
            raise ValueError(f"{name} must lie in [{lo}, {hi}]; found {bad}")
        return array.astype(np.int64)

    def deliver(self, axons: Iterable[int], run: int = 0) -> None:
        """Deliver events, in order, to run ``run`` of the batch (rule 1)."""
        shape = self.shape
        for axon in axons:
            axon = int(axon)
            if not 0 <= axon < shape.axons:
                self.counters.drop_range += 1
                continue
            if self._delivered[run] >= shape.events_per_tick:
                self.counters.over_budget += 1
            self.i[run] = wrap(self.i[run].astype(np.int64) + self.weights[axon],
                               shape.accumulator_bits)
            self._delivered[run] += 1
            self.counters.events += 1
            self.counters.sops += shape.neurons

    def deliver_spikes(self, spikes: np.ndarray) -> None:
        """Deliver one tick of axon spikes for the whole batch at once.

        ``spikes`` has shape ``(batch, k)`` with ``k <= A`` (axons ``k ..`` get no events) and
        holds 0/1 (or event counts per axon). The same as :meth:`deliver` of those events in
        any order.
        """
        spikes = np.asarray(spikes)
        if spikes.ndim != 2 or spikes.shape[0] != self.batch or \
                spikes.shape[1] > self.shape.axons:
            raise ValueError(f"spikes must have shape ({self.batch}, k) with k <= "
                             f"{self.shape.axons}, not {spikes.shape}")
        if spikes.size and spikes.min() < 0:
            raise ValueError("spikes must hold non-negative event counts")
        shape = self.shape
        count = spikes.sum(axis=1, dtype=np.int64)
        if int(count.max(initial=0)) * -shape.w_min < self._exact_bound:
            # Exact: every partial sum is an integer the float's mantissa holds (see
            # __init__); within the budget nothing wraps either.
            product = (spikes.astype(self._mm_dtype, copy=False)
                       @ self._weights_mm[:spikes.shape[1]]).astype(np.int64)
        else:
            product = spikes.astype(np.int64) @ self.weights[:spikes.shape[1]]
        self.deliver_sums(product, count)

    def deliver_sums(self, product: np.ndarray, count: np.ndarray) -> None:
        """Deliver one tick of events given as their exact sum, for the whole batch.

        ``product[b]`` (shape ``(batch, N)``, integers, not wrapped) is the sum of the weight
        rows of run ``b``'s in-range events and ``count[b]`` their number: the same as
        :meth:`deliver` of those events in any order (``spikefab.sim.golden_batch`` computes
        them for a whole run at once).
        """
        shape = self.shape
        count = np.asarray(count, np.int64)
        if (self._delivered + count > shape.events_per_tick).any():
            self.i = wrap(self.i + np.asarray(product, np.int64),
                          shape.accumulator_bits).astype(np.int32)
        else:   # within the budget I holds the sum exactly
            self.i += product
        self.counters.over_budget += int(np.clip(
            self._delivered + count - np.maximum(self._delivered, shape.events_per_tick),
            0, None).sum())
        self._delivered += count
        total = int(count.sum())
        self.counters.events += total
        self.counters.sops += total * shape.neurons

    @property
    def events_per_run(self) -> np.ndarray:
        """``(batch,)``: the in-range events each run has delivered (what ``counters.events``
        sums over the batch; synaptic ops are these times N)."""
        return self._updated_events + self._delivered

    def update(self) -> np.ndarray:
        """End the tick (rule 2) for every run; returns the spikes, shape ``(batch, N)``, bool."""
        self.v, spikes = lif_update(self.v, self.i, self.bias, self.config, self.shape.v_bits)
        self.i[:] = 0
        self._updated_events += self._delivered
        self._delivered[:] = 0
        self.counters.ticks += self.batch
        return spikes

    def run(self, inputs: np.ndarray, *, trace: bool = False):
        """Run ``T`` ticks of axon spikes, shape ``(T, batch, A)``: deliver, then update.

        Returns spikes of shape ``(T, batch, N)`` (bool), and with ``trace=True`` also the
        membranes after each update, same shape, int32.
        """
        inputs = np.asarray(inputs)
        if inputs.ndim != 3:
            raise ValueError(f"inputs must have shape (T, batch, A), not {inputs.shape}")
        steps = inputs.shape[0]
        spikes = np.zeros((steps, self.batch, self.shape.neurons), dtype=bool)
        vs = np.zeros(spikes.shape, dtype=np.int32) if trace else None
        for t in range(steps):
            self.deliver_spikes(inputs[t])
            spikes[t] = self.update()
            if trace:
                vs[t] = self.v
        return (spikes, vs) if trace else spikes


def decode(counts: np.ndarray, final_v: np.ndarray) -> np.ndarray:
    """The predicted class of each run: the output neuron with the most spikes.

    Ties go to the higher final membrane, then to the lower index. ``counts`` and ``final_v``
    have shape ``(batch, classes)`` (``final_v`` integer, or float for a float network the
    same rule decides); returns int64 of shape ``(batch,)``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    final_v = np.asarray(final_v)
    if final_v.dtype.kind not in "iuf":
        raise ValueError(f"final_v must hold numbers, not {final_v.dtype}")
    if counts.shape != final_v.shape or counts.ndim != 2:
        raise ValueError(f"counts and final_v must both be (batch, classes); "
                         f"got {counts.shape} and {final_v.shape}")
    classes = counts.shape[1]
    # Lexicographic key, largest wins: (count, membrane, -index).
    index = np.arange(classes)
    order = np.lexsort((-index[None, :].repeat(len(counts), 0), final_v, counts), axis=1)
    return order[:, -1].astype(np.int64)
