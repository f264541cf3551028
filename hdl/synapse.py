"""Synapse memory: ``P`` weights of one axon's row per read, in SPRAM or block RAM."""

from amaranth.hdl import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import MemoryStyle

__all__ = ["SynapseMemory"]


class SynapseMemory(wiring.Component):
    """A single-port memory of ``depth`` words of ``lanes`` signed weights.

    One port, one address: the shape iCE40 SPRAM (SB_SPRAM256KA) has, so that yosys can map it
    there, and harmless on block RAM. Reads return data one cycle after ``r_en``; the read is
    suppressed in a cycle that writes (SPRAM cannot do both), and ``r_data`` holds its value
    while ``r_en`` is low.

    The ``"spram"`` style marks the memory ``ram_style = "huge"``; a synthesis flow must also
    drop the all-zero initial value (SPRAM has none: it is undefined at power-up, and the host
    loads every word it uses).

    With ``registered``, read data passes a register first and arrives two cycles after
    ``r_en``. A ``"block"`` memory deeper than :attr:`BANK_DEPTH` words is then built as banks
    of that depth, each with its own register, and the bank multiplexer comes after the
    registers: a large memory's blocks are spread over the die, and their late read data
    (5.6 ns clock-to-out on the ECP5) would otherwise cross it and a multiplexer in one cycle.

    Parameters
    ----------
    depth : int
        Number of words (``A * ceil(N / P)``).
    lanes : int
        Weights per word, ``P``.
    w_bits : int
        Width of one signed weight.
    style : str
        A :class:`~spikefab.hdl.abi.MemoryStyle` (or its name).
    registered : bool
        Register the read data (see above).

    Members
    -------
    addr, r_en, w_en, w_data : In
    r_data : Out(ArrayLayout(signed(w_bits), lanes))
    """

    #: Words per bank of a registered block memory: an ECP5 DP16KD holds 4096 x 4 bits, so a
    #: bank maps to blocks side by side, without a multiplexer between them.
    BANK_DEPTH = 4096

    def __init__(self, *, depth: int, lanes: int, w_bits: int,
                 style: MemoryStyle = MemoryStyle.BLOCK, registered: bool = False):
        style = MemoryStyle.cast(style, "memory style")
        self.depth = depth
        self.style = style
        self.registered = bool(registered)
        self.word = data.ArrayLayout(signed(w_bits), lanes)
        super().__init__({
            "addr": In(ceil_log2(depth)),
            "r_en": In(1),
            "r_data": Out(self.word),
            "w_en": In(1),
            "w_data": In(self.word),
        })

    def elaborate(self, platform):
        m = Module()
        # The read is suppressed in a cycle that writes: no read-write collision can happen,
        # and yosys need not build logic for one (``no_rw_check``).
        attrs = {"no_rw_check": 1}
        if self.style == MemoryStyle.SPRAM:
            attrs["ram_style"] = "huge"
        banked = self.registered and self.style == MemoryStyle.BLOCK and self.depth > self.BANK_DEPTH
        bank_depth = self.BANK_DEPTH if banked else self.depth
        low_bits = ceil_log2(bank_depth)
        banks = []
        for k in range(-(-self.depth // bank_depth)):
            memory = Memory(shape=self.word, depth=min(bank_depth, self.depth - k * bank_depth),
                            init=[], attrs=attrs)
            # An SPRAM memory is named so: the iCE40 flows find it by name to drop its initial
            # value (boards/synthesis.py, DROP_SPRAM_INIT).
            name = ("spram" if self.style == MemoryStyle.SPRAM
                    else f"memory{k}" if banked else "memory")
            m.submodules[name] = memory
            wp, rp = memory.write_port(), memory.read_port()
            here = (self.addr >> low_bits) == k if banked else C(1)
            m.d.comb += [
                wp.addr.eq(self.addr[:low_bits]),
                wp.en.eq(self.w_en & here),
                wp.data.eq(self.w_data),
                rp.addr.eq(self.addr[:low_bits]),
                rp.en.eq(self.r_en & ~self.w_en),
            ]
            if self.registered:
                data_q = Signal(self.word, name=f"data{k}")
                m.d.sync += data_q.eq(rp.data)   # holds while the port holds
                banks.append(data_q)
            else:
                banks.append(rp.data)
        if not banked:
            m.d.comb += self.r_data.eq(banks[0])
            return m
        # Which bank the data in the registers came from: the read's bank, two cycles on.
        bank, bank_q = Signal(range(len(banks))), Signal(range(len(banks)))
        with m.If(self.r_en & ~self.w_en):
            m.d.sync += bank.eq(self.addr >> low_bits)
        m.d.sync += bank_q.eq(bank)
        m.d.comb += self.r_data.eq(Array(banks)[bank_q])
        return m
