"""Synapse memory: ``P`` weights of one axon's row per read, in SPRAM or block RAM."""

from amaranth.hdl import *
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["MEMORY_STYLES", "SynapseMemory"]

#: ``"block"``: ordinary block RAM (iCE40 EBR, ECP5 DP16KD); ``"spram"``: iCE40 UP5K SPRAM.
MEMORY_STYLES = ("block", "spram")


class SynapseMemory(wiring.Component):
    """A single-port memory of ``depth`` words of ``lanes`` signed weights.

    One port, one address: the shape iCE40 SPRAM (SB_SPRAM256KA) has, so that yosys can map it
    there, and harmless on block RAM. Reads return data one cycle after ``r_en``; the read is
    suppressed in a cycle that writes (SPRAM cannot do both), and ``r_data`` holds its value
    while ``r_en`` is low.

    The ``"spram"`` style marks the memory ``ram_style = "huge"``; a synthesis flow must also
    drop the all-zero initial value (SPRAM has none: it is undefined at power-up, and the host
    loads every word it uses).

    Parameters
    ----------
    depth : int
        Number of words (``A * ceil(N / P)``).
    lanes : int
        Weights per word, ``P``.
    w_bits : int
        Width of one signed weight.
    style : str
        One of :data:`MEMORY_STYLES`.

    Members
    -------
    addr, r_en, w_en, w_data : In
    r_data : Out(ArrayLayout(signed(w_bits), lanes))
    """

    def __init__(self, *, depth: int, lanes: int, w_bits: int, style: str = "block"):
        if style not in MEMORY_STYLES:
            raise ValueError(f"memory style must be one of {MEMORY_STYLES}, not {style!r}")
        self.depth = depth
        self.style = style
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
        attrs = {"ram_style": "huge"} if self.style == "spram" else None
        m.submodules.memory = memory = Memory(shape=self.word, depth=self.depth, init=[],
                                              attrs=attrs)
        wp = memory.write_port()
        rp = memory.read_port(transparent_for=(wp,))
        m.d.comb += [
            wp.addr.eq(self.addr),
            wp.en.eq(self.w_en),
            wp.data.eq(self.w_data),
            rp.addr.eq(self.addr),
            rp.en.eq(self.r_en & ~self.w_en),
            self.r_data.eq(rp.data),
        ]
        return m
