"""The host link's frames: SLIP bytes in and out, and the response's way to the sender.

* :class:`FrameReceiver` unescapes SLIP into a frame buffer (one block RAM of
  :data:`~spikefab.firmware.protocol.MAX_FRAME` bytes), checking the CRC on the fly. It holds
  the frame, refusing further bytes, until the executor is done with it, so a frame is only
  acted upon once it is known to be whole and correct: **a bad frame never changes state**.
* :class:`ResponsePath` sends a response piece by piece (a header, a memory word, a counter or
  two), each byte straight from its source, through a one-place queue into the sender.
* :class:`FrameSender` escapes a response into SLIP and appends its CRC.
"""

import operator
from functools import reduce

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .abi import CRC_RESIDUE, END, ESC, ESC_END, ESC_ESC, MAX_FRAME, Status

__all__ = ["FRAME_ADDR_BITS", "LENGTH_BITS", "ReceivedFrame", "ResponseByte", "FrameReceiver",
           "FrameSender", "response_layouts", "ResponsePath"]

FRAME_ADDR_BITS = ceil_log2(MAX_FRAME)
LENGTH_BITS = ceil_log2(MAX_FRAME + 1)

#: A received frame, as the receiver hands it over: its length and how it ended.
ReceivedFrame = data.StructLayout({"length": unsigned(LENGTH_BITS), "status": unsigned(4)})
#: A byte of a response; ``last`` marks the response's final byte.
ResponseByte = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


def _crc_byte(m, crc, byte):
    """CRC-16/CCITT-FALSE of one more byte (combinational)."""
    value = Signal(16)
    m.d.comb += value.eq(crc ^ (byte << 8))
    for _ in range(8):
        shifted = Signal(16)
        m.d.comb += shifted.eq(Mux(value[15], (value << 1) ^ 0x1021, value << 1))
        value = shifted
    return value


class FrameReceiver(wiring.Component):
    """SLIP bytes in; whole frames held in a buffer for the executor.

    A frame half received when the line falls silent is dropped: ``silence`` strobes (one
    cycle every ``P`` cycles) mark the time, and a frame still in progress (a byte stored or an
    error seen since the last ``END``) at a strobe with no byte taken since the one before is
    forgotten, unanswered (``timed_out``): so after between ``P`` and ``2 P`` silent cycles.

    Members
    -------
    bytes : In(stream.Signature(8))
        Not ready while a frame is held.
    frame : Out(stream.Signature(ReceivedFrame))
        A frame is in the buffer; ``status`` is OK, CRC, SHORT, OVERSIZE or ESCAPE (the first
        error seen). The transfer releases the buffer.
    read_addr : In(FRAME_ADDR_BITS), read_data : Out(8)
        The buffer's read port (``read_data`` is the byte at last cycle's ``read_addr``).
    store : Out(1), store_addr : Out(FRAME_ADDR_BITS), store_data : Out(8)
        The buffer's write port: with ``store``, ``store_data`` is written at ``store_addr``
        this cycle (an unescaped byte of the frame being received), for checks made as the
        frame arrives; without it the other two mean nothing.
    silence : In(1)
        The timeout's strobe.
    timed_out : Out(1)
        One cycle when a half-received frame is dropped.
    """

    def __init__(self):
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "frame": Out(stream.Signature(ReceivedFrame)),
            "read_addr": In(FRAME_ADDR_BITS),
            "read_data": Out(8),
            "store": Out(1),
            "store_addr": Out(FRAME_ADDR_BITS),
            "store_data": Out(8),
            "silence": In(1),
            "timed_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = Memory(shape=8, depth=MAX_FRAME, init=[])
        wr, rd = buffer.write_port(), buffer.read_port()
        m.d.comb += [rd.addr.eq(self.read_addr), self.read_data.eq(rd.data)]

        length = Signal(LENGTH_BITS)
        crc = Signal(16, init=0xFFFF)
        escaped = Signal()
        error = Signal(4)   # Status; 0 = none yet
        held = Signal()

        byte = self.bytes.payload
        store = Signal()
        # The byte to store if one is stored (the unescaped byte after an ESC), whether or
        # not one is: gated by ``store``, it and the write data would follow the whole
        # decision on the byte and the queue's handshake into the event checks' register.
        value = Signal(8)
        m.d.comb += [value.eq(Mux(escaped, Mux(byte == ESC_END, END, ESC), byte)),
                     self.bytes.ready.eq(~held)]
        with m.If(self.bytes.valid & ~held):
            with m.If(byte == END):
                m.d.sync += escaped.eq(0)
                with m.If(escaped & (error == 0)):    # ESC END: a bad escape
                    m.d.sync += error.eq(Status.ESCAPE)
                with m.If((length != 0) | (error != 0) | escaped):
                    m.d.sync += held.eq(1)
            with m.Elif(escaped):
                m.d.sync += escaped.eq(0)
                with m.If(byte == ESC_END):
                    m.d.comb += store.eq(1)
                with m.Elif(byte == ESC_ESC):
                    m.d.comb += store.eq(1)
                with m.Elif(error == 0):
                    m.d.sync += error.eq(Status.ESCAPE)
            with m.Elif(byte == ESC):
                m.d.sync += escaped.eq(1)
            with m.Else():
                m.d.comb += store.eq(1)
        m.d.comb += [wr.addr.eq(length), wr.data.eq(value)]
        with m.If(store):
            with m.If(length < MAX_FRAME):
                m.d.comb += wr.en.eq(1)
                m.d.sync += [length.eq(length + 1), crc.eq(_crc_byte(m, crc, value))]
            with m.Elif(error == 0):
                m.d.sync += error.eq(Status.OVERSIZE)

        m.d.comb += [self.store.eq(wr.en), self.store_addr.eq(wr.addr),
                     self.store_data.eq(wr.data)]

        # The inter-byte timeout: ``quiet`` is set by a strobe and cleared by a byte taken, so a
        # strobe that finds it set ends a silence of at least one strobe period.
        quiet = Signal()
        taken = self.bytes.valid & ~held
        with m.If(taken):
            m.d.sync += quiet.eq(0)
        with m.Elif(self.silence):
            m.d.sync += quiet.eq(1)
            with m.If(quiet & ~held & ((length != 0) | (error != 0) | escaped)):
                m.d.comb += self.timed_out.eq(1)
                m.d.sync += [length.eq(0), crc.eq(0xFFFF), error.eq(0), escaped.eq(0)]
        m.d.comb += [self.frame.valid.eq(held), self.frame.payload.length.eq(length)]
        with m.If(error != 0):
            m.d.comb += self.frame.payload.status.eq(error)
        with m.Elif(length < 4):
            m.d.comb += self.frame.payload.status.eq(Status.SHORT)
        with m.Elif(crc != CRC_RESIDUE):
            m.d.comb += self.frame.payload.status.eq(Status.CRC)
        with m.Else():
            m.d.comb += self.frame.payload.status.eq(Status.OK)
        with m.If(self.frame.valid & self.frame.ready):
            m.d.sync += [held.eq(0), length.eq(0), crc.eq(0xFFFF), error.eq(0)]
        return m


class FrameSender(wiring.Component):
    """A response's bytes in; ``END``, the escaped bytes, the escaped CRC, ``END`` out.

    Members
    -------
    response : In(stream.Signature(ResponseByte))
    bytes : Out(stream.Signature(8))
    busy : Out(1)
        A frame is being sent.
    """

    def __init__(self):
        super().__init__({
            "response": In(stream.Signature(ResponseByte)),
            "bytes": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        crc = Signal(16)
        out = self.bytes
        inp = self.response

        def send_escaped(value, escape_state, done):
            """Offer ``value``; an END or ESC goes out as ESC first, then ``escape_state``.
            ``done`` runs (in the transfer's cycle) once the value is fully out."""
            special = (value == END) | (value == ESC)
            m.d.comb += [out.valid.eq(1), out.payload.eq(Mux(special, ESC, value))]
            with m.If(out.ready):
                with m.If(special):
                    m.next = escape_state
                with m.Else():
                    done()

        def send_second(value, done):
            m.d.comb += [out.valid.eq(1), out.payload.eq(Mux(value == END, ESC_END, ESC_ESC))]
            with m.If(out.ready):
                done()

        next_crc = _crc_byte(m, crc, inp.payload.data)

        def consume():
            """The input byte is out: take it, and go on to the next one or to the CRC."""
            m.d.comb += inp.ready.eq(1)
            m.d.sync += crc.eq(next_crc)
            with m.If(inp.payload.last):
                m.next = "CRC_HI"
            with m.Else():
                m.next = "DATA"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(inp.valid):
                    m.d.comb += [out.valid.eq(1), out.payload.eq(END)]
                    with m.If(out.ready):
                        m.d.sync += crc.eq(0xFFFF)
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(inp.valid):
                    send_escaped(inp.payload.data, "DATA_ESC", consume)
            with m.State("DATA_ESC"):
                m.d.comb += self.busy.eq(1)
                send_second(inp.payload.data, consume)
            for name, value, after in (("CRC_HI", ~crc[8:], "CRC_LO"),
                                       ("CRC_LO", ~crc[:8], "STOP")):
                def go(after=after):
                    m.next = after
                with m.State(name):
                    m.d.comb += self.busy.eq(1)
                    send_escaped(value, name + "_ESC", go)
                with m.State(name + "_ESC"):
                    m.d.comb += self.busy.eq(1)
                    send_second(value, go)
            with m.State("STOP"):
                m.d.comb += [self.busy.eq(1), out.valid.eq(1), out.payload.eq(END)]
                with m.If(out.ready):
                    m.next = "IDLE"
        return m


def response_layouts(pieces: dict) -> tuple[data.StructLayout, data.StructLayout]:
    """The layouts of a response made of ``pieces`` (name -> bytes, as :class:`ResponsePath`
    takes them): the piece offered (``select``, one flag per piece; ``last``, whether the piece
    ends the response) and every piece's value (``8 * bytes`` bits, little-endian)."""
    if not isinstance(pieces, dict) or not pieces:
        raise TypeError(f"pieces must be a non-empty dict of name -> bytes, not {pieces!r}")
    for name, n in pieces.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"a piece's name must be an identifier, not {name!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"piece {name!r} must be a positive number of bytes, not {n!r}")
    piece = data.StructLayout({"select": data.StructLayout(dict.fromkeys(pieces, 1)),
                               "last": 1})
    values = data.StructLayout({name: unsigned(8 * n) for name, n in pieces.items()})
    return piece, values


class ResponsePath(wiring.Component):
    """A response's pieces in, one at a time; their bytes out, little-endian, to the sender.

    The executor offers a piece (a header, a memory word, a counter or two) while it is in the
    state that sends it; the piece's bytes go out one by one, each straight from the piece's
    value, and the piece's transfer is the cycle its last byte is taken. One byte multiplexer
    over every piece, not a wide shift register loaded from each of them. Between it and the
    sender, a one-place queue: a register, so that the sender's ready, which depends on the
    byte's value (escapes) and on the UART, and the pieces, some of which come from block RAM
    (the output queue) with its late read data, are not one long path.

    Parameters
    ----------
    pieces : dict of str -> int
        Every piece a response can have: its name and its length in bytes.

    Members
    -------
    piece : In(stream.Signature(piece layout))
        The piece to send (:func:`response_layouts`): ``select`` has the flag of one piece
        set (or none), ``last`` marks the piece that ends the response. Transferred with the
        piece's last byte. ``select`` decides each byte and whether it is the piece's last, so
        it should come from little logic (the sender's state alone, say).
    values : In(values layout)
        Every piece's value. The value of the piece offered must hold still until its
        transfer (the executor's do: a bus answer waits for its ready, the output queue's head
        for its read, and the counters that could move are copied first).
    response : Out(stream.Signature(ResponseByte))
        To :class:`FrameSender`, from the one-place queue. Its ``valid``: a byte is still on
        its way to the sender.
    """

    def __init__(self, pieces: dict):
        piece, values = response_layouts(pieces)
        self.pieces = dict(pieces)
        super().__init__({
            "piece": In(stream.Signature(piece)),
            "values": In(values),
            "response": Out(stream.Signature(ResponseByte)),
        })

    def elaborate(self, platform):
        m = Module()
        # A register between the two: the sender's ready depends on the byte's value (escapes)
        # and on the UART, and the pieces come from block RAM (the output queue), whose data
        # arrives late in the cycle: without it that is one long path.
        m.submodules.queue = queue = SyncFIFOBuffered(width=ResponseByte.size, depth=1)
        resp = stream.Signature(ResponseByte).create()
        wiring.connect(m, resp, queue.w_stream)
        wiring.connect(m, queue.r_stream, wiring.flipped(self.response))
        byte_index = Signal(range(max(self.pieces.values())))

        # One byte multiplexer over every piece, each byte straight from its source, not a wide
        # shift register loaded from each of them.
        piece, select = self.piece, self.piece.payload.select
        final = Signal()    # the byte offered is its piece's last
        data = [Mux(select[name], self.values[name].word_select(byte_index, 8), 0)
                for name in self.pieces]
        finals = [select[name] & (byte_index == n - 1) for name, n in self.pieces.items()]
        m.d.comb += [resp.payload.data.eq(reduce(operator.or_, data)),
                     final.eq(reduce(operator.or_, finals)),
                     resp.valid.eq(piece.valid),
                     resp.payload.last.eq(piece.payload.last & final),
                     piece.ready.eq(resp.ready & final)]
        with m.If(piece.valid & resp.ready):
            with m.If(final):
                m.d.sync += byte_index.eq(0)
            with m.Else():
                m.d.sync += byte_index.eq(byte_index + 1)
        return m
