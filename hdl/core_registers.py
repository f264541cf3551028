"""A core's register file: the parameters and counters of the register table."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .abi import COUNTER_BITS, COUNTERS, REGISTERS, CoreShape, Register
from .counter import Counter

__all__ = ["CoreRegisters"]


def _member(reg: Register) -> str:
    # (RESET's signal is "reset_mode": "reset" is the domain's reset.)
    return "reset_mode" if reg == Register.RESET else REGISTERS[reg].name


class CoreRegisters(wiring.Component):
    """Every register of :data:`~spikefab.hdl.abi.REGISTERS`, at its :class:`Register` offset.

    A parameter is a register exactly as wide as its range, starting at its reset value; a
    write (``write`` high for one cycle) loads ``data`` into it if the value lies in its range
    (one the golden model accepts) and is ignored otherwise. A counter is a
    :data:`COUNTER_BITS`-bit wrapping :class:`~spikefab.hdl.counter.Counter`: it grows in
    every cycle its bit of ``count`` is high (``SOPS`` by ``N``, the others by 1), and a
    write clears it, whatever is written. ``r_data`` is the register at ``offset``
    (combinational), or 0 at an offset with no register.

    Registers: the parameters and the counters themselves (a counter has no load: a write
    clears it, which costs no multiplexer per bit). The range check of each parameter
    (``threshold_ok`` ...), registered from ``data`` in every cycle: a comparison of the
    whole bus word would otherwise feed the parameter's enable. So ``data`` must hold from
    the cycle before ``write``, as the core's bus request does (the write is carried out at
    least a cycle after the request is offered, and its payload holds until it is taken).

    Parameters
    ----------
    shape : CoreShape
        The parameters' ranges and reset values depend on it; ``N`` is the ``SOPS`` step.
    offset_bits : int
        Width of ``offset``: the core bus's offset, whole, as the bus decodes it.
    data_bits : int
        Width of ``data``: the core bus's word.
    dsp_counters : collection of Register
        The counters to build in DSP blocks on an iCE40 (``Counter(dsp=True)``).
    absent : collection of Register
        Counters that cannot count where the core is used: not built, they read 0.

    Members
    -------
    offset : In(offset_bits)
        The register that ``write`` and ``r_data`` address.
    data : In(data_bits)
        The value a write loads (a parameter) or ignores (a counter).
    write : In(1)
        Carry out a write to the register at ``offset``.
    r_data : Out(COUNTER_BITS)
        The register at ``offset``, zero-extended.
    count : In(StructLayout)
        One bit per counter, named as the register (``events``, ``sops``, ``ticks``,
        ``drop_range``, ``over_budget``): the counter steps in this cycle.
    threshold, leak, reset_mode : Out
        The parameters (``reset_mode`` is the ``RESET`` register), for the LIF datapath.
    """

    def __init__(self, shape: CoreShape, *, offset_bits: int, data_bits: int,
                 dsp_counters=(), absent=()):
        self.shape = shape
        self.dsp_counters = frozenset(dsp_counters)
        self.absent = frozenset(absent)
        members = {
            "offset": In(offset_bits),
            "data": In(data_bits),
            "write": In(1),
            "r_data": Out(COUNTER_BITS),
            "count": In(data.StructLayout({REGISTERS[reg].name: 1 for reg in COUNTERS})),
        }
        # Each parameter exactly as wide as its range, starting at its reset value.
        for reg, spec in REGISTERS.items():
            if not spec.counter:
                lo, hi = spec.range_of(shape)
                members[_member(reg)] = Out(range(lo, hi + 1), init=spec.reset_of(shape))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        shape = self.shape
        params = {reg: getattr(self, _member(reg))
                  for reg, spec in REGISTERS.items() if not spec.counter}
        counters = {}
        for reg in COUNTERS:
            if reg in self.absent:
                continue
            step = shape.neurons if reg == Register.SOPS else 1   # a delivered event is N SOPs
            counters[reg] = counter = Counter(COUNTER_BITS, step_width=bits_for(step),
                                              dsp=reg in self.dsp_counters)
            m.submodules[REGISTERS[reg].name] = counter
            m.d.comb += [counter.step.eq(step),
                         counter.en.eq(getattr(self.count, REGISTERS[reg].name))]

        # The range checks of a parameter write (a value outside the register's range, one the
        # golden model would reject, is ignored) are registered, as the bus's region check is:
        # a 32-bit comparison would otherwise feed the parameter's enable.
        param_ok = {}
        for reg in params:
            lo, hi = REGISTERS[reg].range_of(shape)
            param_ok[reg] = ok = Signal(name=f"{REGISTERS[reg].name}_ok")
            m.d.sync += ok.eq((self.data >= lo) & (self.data <= hi) if lo else self.data <= hi)

        with m.If(self.write):
            with m.Switch(self.offset):
                for reg, param in params.items():
                    with m.Case(reg):
                        with m.If(param_ok[reg]):
                            m.d.sync += param.eq(self.data)
                # A write clears a counter (see Counter: a load would cost a multiplexer per
                # bit).
                for reg, counter in counters.items():
                    with m.Case(reg):
                        m.d.comb += counter.clear.eq(1)

        registers = {**params, **{reg: counter.value for reg, counter in counters.items()}}
        for reg, sig in registers.items():
            with m.If(self.offset == reg):
                m.d.comb += self.r_data.eq(sig)
        return m
