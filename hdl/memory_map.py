"""A core's memory bus and address map: how the host reads and writes weights, state, registers.

One definition, used by the gateware (:class:`~spikefab.hdl.core.LIFCore`), by the test benches
and by the host side. Addresses are word addresses ``region << offset_bits | offset``:

============  ==============================  =================================================
region        offset                          word
============  ==============================  =================================================
SYNAPSE       ``a * R + r``, ``R = ceil(N/P)``  ``P`` weights: lane ``j`` (bits ``j*w_bits``
                                              up) is ``W[a][r*P + j]``; lanes past ``N`` unused
MEMBRANE      neuron ``n``                    ``V[n]``, signed ``v_bits``
BIAS          neuron ``n``                    ``B[n]``, signed ``v_bits``
ACCUMULATOR   neuron ``n``                    ``I[n]``, signed ``accumulator_bits``; a write
                                              clears it
REGISTER      :class:`Reg`                    parameters and 32-bit wrapping counters
============  ==============================  =================================================

Signed values read back sign-extended to the bus width. A write to an offset outside its region
(or to an unknown region) changes nothing; such a read returns 0. A write to a counter or to an
accumulator clears it, whatever the value written (I is zero between ticks anyway; a sum or
zero is what the accumulator's adder writes without a multiplexer per bit) (a counter that could be loaded with any value costs a logic
cell more per bit on the iCE40: the load multiplexer does not fit the adder's cell).
"""

import enum

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..firmware.protocol import Register
from ..sim.golden import CoreShape

__all__ = ["Region", "Reg", "COUNTER_BITS", "CoreMemoryMap", "MemoryBusSignature"]

COUNTER_BITS = 32


class Region(enum.IntEnum):
    SYNAPSE = 0
    MEMBRANE = 1
    BIAS = 2
    ACCUMULATOR = 3
    REGISTER = 4


#: Register offsets: defined once, with the wire protocol the host reads them over.
Reg = Register


class CoreMemoryMap:
    """Widths and addresses of one core configuration's memory bus.

    Parameters
    ----------
    shape : CoreShape
    lanes : int
        ``P``, weights per synapse word.
    """

    REGION_BITS = 3

    def __init__(self, shape: CoreShape, lanes: int):
        self.shape = shape
        self.lanes = lanes
        self.rows = -(-shape.neurons // lanes)
        self.synapse_words = shape.axons * self.rows
        self.offset_bits = bits_for(max(self.synapse_words, shape.neurons, len(Reg)) - 1)
        self.data_bits = max(COUNTER_BITS, lanes * shape.w_bits)
        self.addr_layout = data.StructLayout({
            "offset": unsigned(self.offset_bits),
            "region": unsigned(self.REGION_BITS),
        })
        self.request_layout = data.StructLayout({
            "addr": self.addr_layout,
            "write": unsigned(1),
            "data": unsigned(self.data_bits),
        })

    @property
    def addr_bits(self) -> int:
        return self.offset_bits + self.REGION_BITS

    def region_size(self, region: Region) -> int:
        return {
            Region.SYNAPSE: self.synapse_words,
            Region.MEMBRANE: self.shape.neurons,
            Region.BIAS: self.shape.neurons,
            Region.ACCUMULATOR: self.shape.neurons,
            Region.REGISTER: len(Reg),
        }[Region(region)]

    def addr(self, region: Region, offset: int) -> int:
        """The bus address of ``offset`` in ``region``; raises if it lies outside the region."""
        size = self.region_size(region)
        if not 0 <= offset < size:
            raise ValueError(f"offset {offset!r} is outside region {Region(region).name} "
                             f"(size {size})")
        return int(region) << self.offset_bits | offset

    def request(self, addr: int, *, write: bool, data: int = 0) -> int:
        """A bus request as the integer a bench or a host link puts on ``req.payload``."""
        layout = self.request_layout
        if not 0 <= addr < (1 << self.addr_bits):
            raise ValueError(f"address {addr!r} does not fit {self.addr_bits} bits")
        if not 0 <= data < (1 << self.data_bits):
            raise ValueError(f"data {data!r} does not fit {self.data_bits} bits")
        return (addr << layout["addr"].offset | int(write) << layout["write"].offset
                | data << layout["data"].offset)

    # Host-side packing of the synapse region.
    def synapse_words_of(self, weights) -> list[tuple[int, int]]:
        """``(address, word)`` pairs that load a full ``(A, N)`` weight matrix."""
        shape, lanes = self.shape, self.lanes
        mask = (1 << shape.w_bits) - 1
        pairs = []
        for a in range(shape.axons):
            for r in range(self.rows):
                word = 0
                for j in range(lanes):
                    n = r * lanes + j
                    if n < shape.neurons:
                        word |= (int(weights[a][n]) & mask) << (j * shape.w_bits)
                pairs.append((self.addr(Region.SYNAPSE, a * self.rows + r), word))
        return pairs

    def to_signed(self, word: int, bits: int | None = None) -> int:
        """Interpret a read-back bus word as a signed value of ``bits`` (the bus width if None)."""
        bits = self.data_bits if bits is None else bits
        word &= (1 << bits) - 1
        return word - (1 << bits) if word >> (bits - 1) else word

    def to_word(self, value: int) -> int:
        """A signed value as a bus word (two's complement in ``data_bits``)."""
        return value & ((1 << self.data_bits) - 1)


class MemoryBusSignature(wiring.Signature):
    """Requests in, read responses out, from the host's side.

    Every request is a :attr:`CoreMemoryMap.request_layout`. A write completes when its request
    is accepted; a read answers with exactly one ``resp`` word, in order.
    """

    def __init__(self, memory_map: CoreMemoryMap):
        self.memory_map = memory_map
        super().__init__({
            "req": Out(stream.Signature(memory_map.request_layout)),
            "resp": In(stream.Signature(memory_map.data_bits)),
        })
