"""The LIF update datapath: docs/semantics.md#update, pipelined for one neuron per cycle."""

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .abi import CoreShape, ResetMode

__all__ = ["LIFDatapath"]


class LIFDatapath(wiring.Component):
    """Update one neuron per cycle, with a fixed latency and no backpressure.

    ``L = V - (V >>> k)`` (``V`` when ``k = 0``), ``V' = sat(L + I + B)``, ``spike = V' >= theta``,
    then ``V' - theta`` or ``0`` on a spike. Three register stages keep each stage to one adder
    (with the shifter or the clamp beside it), which is what lets an iCE40 close timing.

    Parameters
    ----------
    shape : CoreShape
    input_register : bool
        Register the inputs first (one more cycle of latency): when they come straight from
        block RAM, whose read data arrives late in the cycle, the leak's shifter and adder
        behind it would otherwise limit the clock.

    Members
    -------
    threshold, leak, reset : In
        The core's run-time parameters; must hold steady while neurons are in flight.
    i_valid, i_index, i_v, i_acc, i_bias : In
        A neuron entering the pipeline: its index, membrane ``V``, accumulator ``I``, bias ``B``.
    o_valid, o_index, o_v, o_spike : Out
        The same neuron :attr:`latency` cycles later: its new membrane and whether it spiked.
    """

    #: Latency without the input register; :attr:`latency` is this one's.
    LATENCY = 3

    def __init__(self, shape: CoreShape, *, input_register: bool = False):
        self._shape = shape
        self.input_register = input_register
        self.latency = self.LATENCY + int(input_register)
        vb = shape.v_bits
        super().__init__({
            "threshold": In(vb - 1),
            "leak": In(range(vb)),
            "reset": In(ResetMode),
            "i_valid": In(1),
            "i_index": In(8),
            "i_v": In(signed(vb)),
            "i_acc": In(signed(shape.accumulator_bits)),
            "i_bias": In(signed(vb)),
            "o_valid": Out(1),
            "o_index": Out(8),
            "o_v": Out(signed(vb)),
            "o_spike": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        shape = self._shape
        inputs = (self.i_valid, self.i_index, self.i_v, self.i_acc, self.i_bias)
        if self.input_register:
            registered = tuple(Signal.like(s, name=f"r_{s.name}") for s in inputs)
            m.d.sync += [r.eq(s) for r, s in zip(registered, inputs)]
            inputs = registered
        i_valid, i_index, i_v, i_acc, i_bias = inputs

        # Stage 1: leak, and the two inputs summed.
        s1_valid = Signal()
        s1_index = Signal(8)
        s1_leaked = Signal(signed(shape.v_bits + 1))
        s1_input = Signal(signed(max(shape.accumulator_bits, shape.v_bits) + 1))
        m.d.sync += [
            s1_valid.eq(i_valid),
            s1_index.eq(i_index),
            s1_leaked.eq(Mux(self.leak == 0, i_v, i_v - (i_v >> self.leak))),
            s1_input.eq(i_acc + i_bias),
        ]

        # Stage 2: the saturating sum.
        s2_valid = Signal()
        s2_index = Signal(8)
        s2_total = Signal(signed(shape.v_bits))
        total = s1_leaked + s1_input
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_index.eq(s1_index),
            s2_total.eq(Mux(total > shape.v_max, shape.v_max,
                            Mux(total < shape.v_min, shape.v_min, total))),
        ]

        # Stage 3: one subtraction gives both the comparison and the subtract-reset value.
        over = s2_total - self.threshold
        spike = over >= 0
        m.d.sync += [
            self.o_valid.eq(s2_valid),
            self.o_index.eq(s2_index),
            self.o_spike.eq(s2_valid & spike),
            self.o_v.eq(Mux(spike,
                            Mux(self.reset == ResetMode.ZERO, 0, over),
                            s2_total)),
        ]
        return m
