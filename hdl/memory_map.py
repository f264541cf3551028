"""A core's memory bus: requests in, read responses out.

The address map it carries (regions, offsets, word formats) is
:class:`~spikefab.hdl.abi.CoreMemoryMap`, shared with the host side.
"""

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .abi import CoreMemoryMap

__all__ = ["MemoryBusSignature"]


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
