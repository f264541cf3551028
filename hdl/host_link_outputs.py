"""The host link's output queue: the chip's output events, kept until the host has them."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .abi import AERPacket

__all__ = ["OutputQueue"]


class OutputQueue(wiring.Component):
    """The chip's output events in; kept, oldest first, for OUTPUTS; the rest dropped, counted.

    ``depth`` events in all, in one memory with three places in it: where the next event is
    written, where the next event to send is read, and ``head``, the oldest event kept. An
    event sent (taken from ``events``) stays kept until ``commit``: a repeated OUTPUTS
    (:mod:`spikefab.firmware.protocol`, "Sequence numbers and repeats") ``rewind``\\ s to
    ``head`` and sends the same events again. ``clear`` empties the queue (RESET).

    A run's events are kept all or none: ``mark`` (as a run starts) notes where its events
    begin, and ``rollback`` (once the chip is quiet) forgets every event since the mark, and
    counts them as dropped, if any event since the mark found the queue full
    (``overflowed``). Which events fit a full queue would depend on the order they arrived in,
    which the mesh decides; whether a run's events all fit does not.

    The memory's read address is a register (the next event to send), so no handshake reaches
    into block RAM's address in the cycle it is decided, and the memory needs no bypass for a
    read of the word being written: ``events.valid`` waits a cycle or two (three with
    ``registered``: the read data passes a register first, block RAM's data being late in the
    cycle) after the read address moves or an event is written into an empty queue. Events are
    only sent between runs, at a few bytes each, so those cycles cost nothing.

    Parameters
    ----------
    depth : int
        Events kept.
    registered : bool
        Register the memory's read data (where the chip registers its block-RAM reads: a chip
        built for speed).

    Members
    -------
    host_out : In(stream.Signature(AERPacket))
        From the chip. Always ready: an event that finds the queue full (``depth`` kept, sent
        or not) is dropped.
    events : Out(stream.Signature(AERPacket))
        The events not yet sent, oldest first.
    pending : Out(16)
        Events not yet sent (one taken from ``events`` no longer counts two cycles after).
    taken : Out(16)
        Events sent since the last ``commit``.
    commit, rewind, clear : In(1)
        Forget the events sent; send them again; forget every event (one at a time, not in
        the cycle after an event is taken; no event is offered on ``events`` in their cycle).
    mark, rollback : In(1), overflowed : Out(1)
        See above (``rollback`` not with the others, nor with an event arriving).
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
            "taken": Out(16),
            "commit": In(1),
            "rewind": In(1),
            "clear": In(1),
            "mark": In(1),
            "rollback": In(1),
            "overflowed": Out(1),
            "output_drops": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        # A read at the address being written is never used (``events.valid`` waits for the
        # data written), so yosys builds no logic for that case (``no_rw_check``).
        m.submodules.memory = memory = Memory(shape=AERPacket, depth=depth, init=[],
                                              attrs={"no_rw_check": 1})
        wp, rp = memory.write_port(), memory.read_port()

        # A power-of-two depth wraps by itself; another needs the comparison.
        bits = max(depth - 1, 1).bit_length()

        def advance(pointer):
            if depth == 1 << bits:
                return pointer + 1
            return Mux(pointer == depth - 1, 0, pointer + 1)

        write, read, head, marked = (Signal(bits, name=n)
                                     for n in ("write", "read", "head", "marked"))
        unsent = Signal(range(depth + 1))    # events from read to write
        sent = Signal(range(depth + 1))      # events from head to read
        pushed = Signal(range(depth + 1))    # events from marked to write
        m.d.comb += [self.pending.eq(unsent), self.taken.eq(sent), self.host_out.ready.eq(1)]

        # Room for unsent events, ``depth - sent``, kept as a register of its own, so that
        # whether the queue is full is an equality of two registers: an adder there would
        # stand between the chip's output handshake and the next counts, on the UP5K's
        # longest paths (BENCHMARKS.md, "The UP5K's clock").
        room = Signal(range(depth + 1), init=depth)
        full = Signal()
        m.d.comb += full.eq(unsent == room)
        push = self.host_out.valid & ~full
        drop = self.host_out.valid & full
        m.d.comb += [wp.addr.eq(write), wp.data.eq(self.host_out.payload), wp.en.eq(push)]
        # An event taken moves the read address and the counts a cycle later (``took``): the
        # taker's ready comes from the sender's byte logic, too late for an adder.
        take = self.events.valid & self.events.ready
        took = Signal()
        m.d.sync += took.eq(take)
        with m.If(push):
            m.d.sync += write.eq(advance(write))
        # One adder: a drop counts 1, a rollback the events it forgets (never both at once).
        with m.If(drop | self.rollback):
            m.d.sync += self.output_drops.eq(self.output_drops + Mux(self.rollback, pushed, 1))
        with m.If(self.mark):
            m.d.sync += [marked.eq(write), pushed.eq(push), self.overflowed.eq(drop)]
        with m.Else():
            m.d.sync += pushed.eq(pushed + push)
            with m.If(drop):
                m.d.sync += self.overflowed.eq(1)

        # An event arriving is kept whatever else happens in its cycle (``events.valid`` is low
        # while the others act, so none is taken then). The unsent count is what the others
        # leave plus the event arriving, added last: the arrival is known late in the cycle
        # (the chip's handshake, then whether the queue is full), the rest from registers.
        base = Signal.like(unsent)
        m.d.sync += unsent.eq(base + (push & ~self.rollback))
        with m.If(self.rollback):
            m.d.comb += base.eq(unsent - pushed)
            m.d.sync += [write.eq(marked), pushed.eq(0), self.overflowed.eq(0)]
        with m.Elif(self.clear):
            m.d.comb += base.eq(0)
            m.d.sync += [read.eq(write), head.eq(write), sent.eq(0), room.eq(depth)]
        with m.Elif(self.rewind):
            m.d.comb += base.eq(unsent + sent)
            m.d.sync += [read.eq(head), sent.eq(0), room.eq(depth)]
        with m.Elif(self.commit):
            m.d.comb += base.eq(unsent)
            m.d.sync += [head.eq(read), sent.eq(0), room.eq(depth)]
        with m.Else():
            m.d.comb += base.eq(unsent - took)
            m.d.sync += [sent.eq(sent + took), room.eq(room - took)]
            with m.If(took):
                m.d.sync += read.eq(advance(read))

        # The read data shows the event at ``read`` a cycle after the address, or two after a
        # write there (no bypass), or one more with ``registered``.
        settle = 3 if self.registered else 2
        m.d.comb += rp.addr.eq(read)
        data = rp.data
        if self.registered:
            data = Signal.like(rp.data)
            m.d.sync += data.eq(rp.data)
        moved = took | self.clear | self.rewind | self.rollback | (push & (unsent == 0))
        settling = Signal(range(settle + 1))
        with m.If(moved):
            m.d.sync += settling.eq(settle)
        with m.Elif(settling != 0):
            m.d.sync += settling.eq(settling - 1)
        m.d.comb += [self.events.payload.eq(data),
                     self.events.valid.eq((unsent != 0) & (settling == 0) & ~took & ~self.clear
                                          & ~self.rewind & ~self.commit & ~self.rollback)]
        return m
