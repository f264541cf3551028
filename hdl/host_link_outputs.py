"""The host link's output queue: the chip's output events, kept until the host asks for them."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .abi import AERPacket

__all__ = ["OutputQueue"]


class OutputQueue(wiring.Component):
    """The chip's output events in; kept, oldest first, for OUTPUTS; the rest dropped, counted.

    ``depth`` events in all. Behind a block-RAM queue (``registered``, ``depth`` > 1), a
    one-event register holds the queue's head, so that the block RAM's late read data is
    registered before the response's byte multiplexer; during a run that register is always
    full, so the whole depth is used before an event is dropped. Behind two queues,
    ``pending`` is counted as events come and go rather than added up from the queues'
    levels, so that no carry chain leads into the response's bytes.

    Parameters
    ----------
    depth : int
        Events kept.
    registered : bool
        Put the one-event register behind the queue (where the chip registers its block-RAM
        reads: a chip built for speed); without it, one queue of ``depth``.

    Members
    -------
    host_out : In(stream.Signature(AERPacket))
        From the chip. Always ready: an event that finds the queue full is dropped.
    events : Out(stream.Signature(AERPacket))
        The events kept, oldest first.
    pending : Out(16)
        Events kept (those taken from ``events`` no longer count, from the cycle after).
    output_drops : Out(32)
        Events dropped.
    """

    def __init__(self, depth: int, *, registered: bool = False):
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 4096:
            raise ValueError(f"depth must be an integer in [1, 4096], not {depth!r}")
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        self.depth = depth
        self.registered = registered
        super().__init__({
            "host_out": In(stream.Signature(AERPacket)),
            "events": Out(stream.Signature(AERPacket)),
            "pending": Out(16),
            "output_drops": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        # ``depth`` events in all. Where the chip registers its block-RAM reads, a block-RAM
        # queue and, behind it, a one-event register (the queue's read data arrives late in
        # the cycle, and the response's byte multiplexer follows); during a run the register
        # is always full, so the whole depth is used before an event is dropped.
        if self.depth > 1 and self.registered:
            m.submodules.output_queue = queue = SyncFIFOBuffered(width=AERPacket.size,
                                                                 depth=self.depth - 1)
            m.submodules.outputs = outputs = SyncFIFOBuffered(width=AERPacket.size, depth=1)
            wiring.connect(m, queue.r_stream, outputs.w_stream)
        else:
            m.submodules.outputs = queue = outputs = SyncFIFOBuffered(
                width=AERPacket.size, depth=self.depth)
        wiring.connect(m, outputs.r_stream, wiring.flipped(self.events))

        m.d.comb += [self.host_out.ready.eq(1), queue.w_data.eq(self.host_out.payload)]
        with m.If(self.host_out.valid):
            with m.If(queue.w_rdy):
                m.d.comb += queue.w_en.eq(1)
            with m.Else():
                m.d.sync += self.output_drops.eq(self.output_drops + 1)
        # The events queued. Behind two queues, counted as they come and go: the same figure
        # as the queues' levels added up, without the carry chains that would lead into the
        # response's bytes (one queue's level is a register and a one-bit add).
        pending = Signal(16)
        if queue is outputs:
            m.d.comb += pending.eq(outputs.level)
        else:
            pushed, popped = queue.w_en & queue.w_rdy, outputs.r_en & outputs.r_rdy
            with m.If(pushed & ~popped):
                m.d.sync += pending.eq(pending + 1)
            with m.Elif(popped & ~pushed):
                m.d.sync += pending.eq(pending - 1)
        m.d.comb += self.pending.eq(pending)
        return m
