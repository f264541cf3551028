"""The host link: framed commands over a byte stream, executed on the chip.

The protocol is defined once, in :mod:`spikefab.firmware.protocol`; this is its gateware.

* :class:`FrameReceiver` unescapes SLIP into a frame buffer (one block RAM of
  :data:`~spikefab.firmware.protocol.MAX_FRAME` bytes), checking the CRC on the fly. It holds
  the frame, refusing further bytes, until the executor is done with it, so a frame is only
  acted upon once it is known to be whole and correct: **a bad frame never changes state**.
* :class:`FrameSender` escapes a response into SLIP and appends its CRC.
* :class:`HostLink` validates every request completely (command, length, arguments, every
  address and every event) before it acts, then executes it on the chip's bus, host port and
  tick handshake, and keeps the output queue and the link's counters.
"""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .abi import (ADDRESS_BYTES, AXON_BITS, CORE_REGIONS, CRC_RESIDUE, END, ESC, ESC_END, ESC_ESC,
                  MAX_FRAME, MAX_OUTPUTS, AERPacket, ChipInfo, Command, CoreMemoryMap, EventWord,
                  OutputRecord, PacketKind, Region, Status, TileInfo)
from .chip import Chip, chip_request_layout
from .core import Handshake
from .counter import Counter

__all__ = ["chip_info", "FrameReceiver", "FrameSender", "ResponseByte", "HostLink"]

FRAME_ADDR_BITS = ceil_log2(MAX_FRAME)
LENGTH_BITS = ceil_log2(MAX_FRAME + 1)

#: A received frame, as the receiver hands it over: its length and how it ended.
ReceivedFrame = data.StructLayout({"length": unsigned(LENGTH_BITS), "status": unsigned(4)})
#: A byte of a response; ``last`` marks the response's final byte.
ResponseByte = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


def chip_info(*, cols: int, rows: int, host, tiles: dict, output_depth: int) -> ChipInfo:
    """What INFO answers for a chip of these parameters (those of :class:`Chip`, with
    ``tiles`` mapping ``(x, y)`` to :class:`~spikefab.hdl.chip.TileConfig`): derived from the
    same memory maps and bus layout the gateware uses."""
    data_bits = chip_request_layout(tiles)["data"].shape.width
    infos = []
    for position in [(x, y) for y in range(rows) for x in range(cols)]:
        config = tiles[position]
        mm = CoreMemoryMap(config.shape, config.lanes)
        regions = [mm.region_size(r) for r in CORE_REGIONS]
        regions += [config.shape.neurons, config.destinations]
        infos.append(TileInfo(config.shape.axons, config.shape.neurons, config.shape.w_bits,
                              config.shape.v_bits, config.lanes, config.shape.events_per_tick,
                              mm.data_bits, tuple(regions)))
    return ChipInfo(cols, rows, tuple(host), (data_bits + 7) // 8, output_depth, tuple(infos))


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
        The buffer's write port: ``store_data`` is written at ``store_addr`` this cycle (an
        unescaped byte of the frame being received), for checks made as the frame arrives.
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
        value = Signal(8)
        m.d.comb += self.bytes.ready.eq(~held)
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
                    m.d.comb += [store.eq(1), value.eq(END)]
                with m.Elif(byte == ESC_ESC):
                    m.d.comb += [store.eq(1), value.eq(ESC)]
                with m.Elif(error == 0):
                    m.d.sync += error.eq(Status.ESCAPE)
            with m.Elif(byte == ESC):
                m.d.sync += escaped.eq(1)
            with m.Else():
                m.d.comb += [store.eq(1), value.eq(byte)]
        with m.If(store):
            with m.If(length < MAX_FRAME):
                m.d.comb += [wr.addr.eq(length), wr.data.eq(value), wr.en.eq(1)]
                m.d.sync += [length.eq(length + 1), crc.eq(_crc_byte(m, crc, value))]
            with m.Elif(error == 0):
                m.d.sync += error.eq(Status.OVERSIZE)

        m.d.comb += [self.store.eq(wr.en), self.store_addr.eq(wr.addr),
                     self.store_data.eq(wr.data)]
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


class HostLink(wiring.Component):
    """The chip's end of the host link: protocol bytes in and out, the chip driven.

    Parameters
    ----------
    chip : Chip
        The chip this link drives (its tiles decide the address checks and INFO).
    output_depth : int
        Output events kept for OUTPUTS; further ones are dropped and counted.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        Bytes to the host.
    host_in, host_out, tick, quiet, bus, mesh_drops, ticks
        To the chip's members of the same names.
    busy : Out(1)
        A frame is being received, executed or answered.
    nak : Out(1)
        One cycle for every NAK sent (e.g. an error LED).
    """

    def __init__(self, chip: Chip, *, output_depth: int = 256):
        if not isinstance(chip, Chip):
            raise TypeError(f"chip must be a Chip, not {chip!r}")
        if isinstance(output_depth, bool) or not isinstance(output_depth, int) \
                or not 1 <= output_depth <= 4096:
            raise ValueError(f"output_depth must be an integer in [1, 4096], "
                             f"not {output_depth!r}")
        self.chip = chip
        self.output_depth = output_depth
        self.info = chip_info(cols=chip.cols, rows=chip.rows, host=chip.host, tiles=chip.tiles,
                              output_depth=output_depth)
        bus_signature = chip.signature.members["bus"].signature.flip()
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "host_in": Out(stream.Signature(AERPacket)),
            "host_out": In(stream.Signature(AERPacket)),
            "tick": Out(Handshake),
            "quiet": In(1),
            "bus": Out(bus_signature),
            "mesh_drops": In(32),
            "ticks": In(32),
            "busy": Out(1),
            "nak": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        info, chip = self.info, self.chip
        wb = info.word_bytes
        word_bits = 8 * wb
        n_tiles = len(info.tiles)
        max_read = info.max_read_words

        m.submodules.receiver = receiver = FrameReceiver()
        m.submodules.sender = sender = FrameSender()
        wiring.connect(m, wiring.flipped(self.rx), receiver.bytes)
        wiring.connect(m, sender.bytes, wiring.flipped(self.tx))

        # ---- the output queue ----
        # ``output_depth`` events in all. Where the chip registers its block-RAM reads, a
        # block-RAM queue and, behind it, a one-event register (the queue's read data arrives
        # late in the cycle, and the response's byte multiplexer follows); during a run the
        # register is always full, so the whole depth is used before an event is dropped.
        if self.output_depth > 1 and chip.registered_reads:
            m.submodules.output_queue = queue = SyncFIFOBuffered(width=AERPacket.size,
                                                                 depth=self.output_depth - 1)
            m.submodules.outputs = outputs = SyncFIFOBuffered(width=AERPacket.size, depth=1)
            m.d.comb += [outputs.w_data.eq(queue.r_data), outputs.w_en.eq(queue.r_rdy),
                         queue.r_en.eq(outputs.w_rdy)]
        else:
            m.submodules.outputs = queue = outputs = SyncFIFOBuffered(
                width=AERPacket.size, depth=self.output_depth)
        output_drops = Signal(32)
        m.d.comb += [self.host_out.ready.eq(1), queue.w_data.eq(self.host_out.payload)]
        with m.If(self.host_out.valid):
            with m.If(queue.w_rdy):
                m.d.comb += queue.w_en.eq(1)
            with m.Else():
                m.d.sync += output_drops.eq(output_drops + 1)
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

        # ---- the response: each byte straight from its source into the sender ----
        # A state sends a piece of the response (a header, a memory word, a counter or two)
        # byte by byte and moves on once its last byte is taken; the piece must hold still
        # meanwhile (it does: a bus answer waits for its ready, the output queue's head for its
        # read, and the counters that could move are copied first). One byte multiplexer over
        # every piece, not a wide shift register loaded from each of them.
        # A register between the two: the sender's ready depends on the byte's value (escapes)
        # and on the UART, and the pieces come from block RAM (the output queue), whose data
        # arrives late in the cycle: without it that is one long path.
        m.submodules.response = response = SyncFIFOBuffered(width=ResponseByte.size, depth=1)
        resp = stream.Signature(ResponseByte).create()
        m.d.comb += [response.w_data.eq(resp.payload), response.w_en.eq(resp.valid),
                     resp.ready.eq(response.w_rdy),
                     sender.response.payload.eq(response.r_data),
                     sender.response.valid.eq(response.r_rdy),
                     response.r_en.eq(sender.response.ready)]
        byte_index = Signal(range(max(wb, 8)))

        def emit(value, n, last, next_state, when=None):
            """Send ``n`` bytes of ``value`` (little-endian), the last one marked ``last``, then
            go to ``next_state`` (a state, or a function that picks one). Returns the
            condition of the cycle the last byte is taken."""
            value = Value.cast(value)
            value = Cat(value, C(0, 8 * n - len(value))) if len(value) < 8 * n else value
            offer = C(1) if when is None else when
            done = Signal()
            m.d.comb += [resp.valid.eq(offer),
                         resp.payload.data.eq(value[:8 * n].word_select(byte_index, 8)),
                         resp.payload.last.eq(last & (byte_index == n - 1))]
            with m.If(offer & resp.ready):
                with m.If(byte_index == n - 1):
                    m.d.comb += done.eq(1)
                    m.d.sync += byte_index.eq(0)
                    if callable(next_state):
                        next_state()
                    else:
                        m.next = next_state
                with m.Else():
                    m.d.sync += byte_index.eq(byte_index + 1)
            return done

        # ---- the request ----
        # seq, command and the first 10 payload bytes; once they are checked, the bytes after
        # seq and command hold a memory word or an event (gathered into the top bytes).
        # Not reset (each is gathered before it is used), so that the flip-flops' reset input
        # is free to zero the word for RESET's clearing.
        hdr = Signal(8 * max(12, 2 + wb), reset_less=True)
        length = Signal(LENGTH_BITS)
        rx_status = Signal(4)
        seq, cmd = hdr[0:8], hdr[8:16]

        def p(i, n=1):
            return hdr[16 + 8 * i: 16 + 8 * (i + n)]

        tile_f, region_f, offset_f = p(0), p(1), p(2, 4)
        plen = Signal(LENGTH_BITS)
        m.d.comb += plen.eq(length - 4)
        write_count = Signal(LENGTH_BITS)
        m.d.comb += write_count.eq((plen - ADDRESS_BYTES) >> (wb.bit_length() - 1))

        is_command = Signal()
        length_ok = Signal()
        argument_ok = Signal(init=1)
        range_count = Signal(32)
        with m.Switch(cmd):
            with m.Case(Command.INFO, Command.STATUS, Command.RESET):
                m.d.comb += [is_command.eq(1), length_ok.eq(plen == 0)]
            with m.Case(Command.WRITE):
                m.d.comb += [is_command.eq(1),
                             length_ok.eq((plen >= ADDRESS_BYTES + wb)
                                          & (((plen - ADDRESS_BYTES) & (wb - 1)) == 0)),
                             range_count.eq(write_count)]
            with m.Case(Command.READ):
                m.d.comb += [is_command.eq(1), length_ok.eq(plen == ADDRESS_BYTES + 2),
                             argument_ok.eq((p(6, 2) >= 1) & (p(6, 2) <= max_read)),
                             range_count.eq(p(6, 2))]
            with m.Case(Command.FILL):
                m.d.comb += [is_command.eq(1), length_ok.eq(plen == ADDRESS_BYTES + 4 + wb),
                             argument_ok.eq(p(6, 4) >= 1), range_count.eq(p(6, 4))]
            with m.Case(Command.RUN):
                m.d.comb += [is_command.eq(1), length_ok.eq((plen >= 2) & ~plen[0])]
            with m.Case(Command.OUTPUTS):
                m.d.comb += [is_command.eq(1), length_ok.eq(plen == 2),
                             argument_ok.eq(p(0, 2) <= MAX_OUTPUTS)]
        # Two cycles of checks (MEASURE, CHECK), each a register's worth of logic: the header's
        # fields are 32 bits, but a region is smaller, so a field passes only if its high bits
        # are zero and its low bits (``region_bits``) are in range.
        region_bits = bits_for(max(size for t in info.tiles for size in t.regions))
        sizes = Array(Array(Const(size, region_bits) for size in t.regions) for t in info.tiles)
        size = Signal(region_bits)
        with m.If((tile_f < n_tiles) & (region_f < len(Region))):
            m.d.comb += size.eq(sizes[tile_f][region_f])
        memory_command = (cmd == Command.WRITE) | (cmd == Command.READ) | (cmd == Command.FILL)
        form = Signal(4)            # the verdict but for the address check
        with m.If(~is_command):
            m.d.comb += form.eq(Status.COMMAND)
        with m.Elif(~length_ok):
            m.d.comb += form.eq(Status.LENGTH)
        with m.Elif(~argument_ok):
            m.d.comb += form.eq(Status.ARGUMENT)
        with m.Else():
            m.d.comb += form.eq(Status.OK)
        # MEASURE registers these ...
        form_q, size_q = Signal(4), Signal(region_bits)
        end_q = Signal(region_bits + 1)     # one past the last word addressed
        fits_q, memory_q = Signal(), Signal()
        # ... and CHECK decides from them.
        in_range = Signal()
        # A count that passed its form check is at least 1, so the offset lies inside the
        # region if the end does.
        m.d.comb += in_range.eq(fits_q & (end_q <= size_q))
        verdict = Signal(4)
        checked = Signal(4)         # verdict, registered
        with m.If(form_q != Status.OK):
            m.d.comb += verdict.eq(form_q)
        with m.Elif(memory_q & ~in_range):
            m.d.comb += verdict.eq(Status.ADDRESS)
        with m.Else():
            m.d.comb += verdict.eq(Status.OK)

        # ---- execution state ----
        ptr = Signal(FRAME_ADDR_BITS + 1)
        gather_max = max(12, wb)   # the header, or one memory word
        j = Signal(range(gather_max + 2))
        tile = Signal(8)
        region = Signal(Region.as_shape())
        # After the checks, an offset lies within its region and every count within a region,
        # a frame or the output queue: registers that wide, not the fields' 32 bits.
        count_limit = max([size for t in info.tiles for size in t.regions]
                          + [MAX_FRAME, MAX_OUTPUTS, max_read, self.output_depth])
        offset = Signal(range(count_limit + 1))
        remaining = Signal(range(count_limit + 1))
        word = hdr[-word_bits:]
        event = EventWord(hdr[-EventWord.size:])
        resetting = Signal()
        ticks_left = Signal(16)
        settle = Signal(2)
        # The chip's quiet, registered: it sums the whole chip's activity, a long path to put in
        # front of this state machine's decisions. A cycle late is safe: a tick taken
        # in cycle t, or an event sent, makes the chip not quiet from t + 1, and WAIT_QUIET
        # comes at t + 2 at the earliest, so sees it; and with nothing sent the chip, once
        # quiet, stays quiet.
        quiet = Signal()
        m.d.sync += quiet.eq(self.quiet)
        status = Signal(8)
        frames, bad_frames, naks = Signal(32), Signal(32), Signal(32)
        # The clock count: in a DSP block where the chip's counters are (an iCE40).
        m.submodules.cycles = cycle_counter = Counter(32, dsp=chip.dsp_counters)
        m.d.comb += [cycle_counter.en.eq(1), cycle_counter.step.eq(1)]
        cycles, cycles_q = cycle_counter.value, Signal(32)
        m.d.comb += receiver.read_addr.eq(ptr)

        # The frame buffer's bytes, registered: block RAM's read data arrives late in the
        # cycle, and each byte goes to one of many places.
        read_data = Signal(8)
        m.d.sync += read_data.eq(receiver.read_data)

        def gather(n, next_state, window):
            """Read ``n`` buffer bytes from ``ptr`` on, shifting them into ``window`` (a slice
            of ``hdr``) from the top, so that they end up little-endian in its top ``n``
            bytes: the byte addressed in step ``j`` lands in step ``j + 2``. A shift register
            needs no per-byte write decode."""
            with m.If(j < n):
                m.d.sync += ptr.eq(ptr + 1)
            with m.If(j >= 2):
                m.d.sync += window.eq(Cat(window[8:], read_data))
            m.d.sync += j.eq(j + 1)
            with m.If(j == n + 1):
                m.d.sync += j.eq(0)
                m.next = next_state

        req = self.bus.req.payload
        m.d.comb += [req.tile.eq(tile), req.region.eq(region), req.offset.eq(offset),
                     req.data.eq(word)]

        # RUN's events are checked as the frame arrives (the tile must exist and have the
        # axon), so that RUN injects them in one pass. An event is the little-endian pair of
        # bytes at body offsets 4 + 2k, 5 + 2k; the receiver cannot tell the CRC, the last
        # pair of an even-length frame, from an event, so ``events_ok`` covers every pair but
        # the last, whose verdict waits in ``pair_ok`` (an odd length is a LENGTH NAK anyway).
        # The stored bytes are registered first: the receiver's unescaping is already a long
        # path from the UART, and the check (a tile's axon count) would follow it. The verdict
        # is due many cycles after the frame's last byte (HEADER, MEASURE, CHECK come first).
        axons = Array(Const(t.axons, AXON_BITS + 1) for t in info.tiles)
        stored = Signal()
        stored_addr, stored_data = Signal(FRAME_ADDR_BITS), Signal(8)
        m.d.sync += [stored.eq(receiver.store), stored_addr.eq(receiver.store_addr),
                     stored_data.eq(receiver.store_data)]
        low_byte = Signal(8)
        pair = Cat(low_byte, stored_data)
        pair_event = EventWord(pair)
        pair_axon, pair_x, pair_y = pair_event.axon, pair_event.x, pair_event.y
        pair_check = Signal()
        with m.If((pair_x < info.cols) & (pair_y < info.rows)):
            m.d.comb += pair_check.eq(pair_axon < axons[pair_y * info.cols + pair_x])
        pair_ok, events_ok = Signal(init=1), Signal(init=1)
        with m.If(stored):
            m.d.sync += low_byte.eq(stored_data)
            with m.If(stored_addr[0] & (stored_addr >= 5)):
                m.d.sync += [pair_ok.eq(pair_check), events_ok.eq(events_ok & pair_ok)]
        with m.If(receiver.frame.ready):   # the frame is released: the next one starts afresh
            m.d.sync += [pair_ok.eq(1), events_ok.eq(1)]

        m.d.comb += [self.host_in.payload.kind.eq(PacketKind.EVENT),
                     self.host_in.payload.x.eq(event.x), self.host_in.payload.y.eq(event.y),
                     self.host_in.payload.body.event.axon.eq(event.axon)]

        m.submodules.info_rom = info_rom = Memory(shape=8, depth=len(info.encode()),
                                                  init=list(info.encode()))
        rom = info_rom.read_port()
        rom_addr = Signal(range(len(info.encode()) + 1))
        m.d.comb += rom.addr.eq(rom_addr)

        out_event = Signal(AERPacket)
        m.d.comb += out_event.eq(outputs.r_data)
        out_record = Signal(OutputRecord)
        m.d.comb += [out_record.neuron.eq(out_event.body.output.neuron),
                     out_record.x.eq(out_event.x), out_record.y.eq(out_event.y),
                     out_record.tick.eq(out_event.body.output.tick)]
        out_bytes = out_record.as_value()

        ok_header = Cat(seq, Const(Status.OK, 8))

        # For OUTPUTS' count (the events asked for, or as many as are queued): whether fewer
        # are asked for than are queued, and whether the count is none, registered (the
        # comparison's carry chain came ahead of the state machine's next state and the
        # response byte). A cycle late is safe: the request's field holds still from MEASURE
        # on, and between frames the queue holds still (RUN answers only once the chip is
        # quiet and its last outputs have landed here).
        outputs_fewer, outputs_none = Signal(), Signal()
        m.d.sync += [outputs_fewer.eq(p(0, 2) < pending),
                     outputs_none.eq((p(0, 2) == 0) | (pending == 0))]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(receiver.frame.valid):
                    m.d.sync += [frames.eq(frames + 1), ptr.eq(0), j.eq(0),
                                 length.eq(receiver.frame.payload.length),
                                 rx_status.eq(receiver.frame.payload.status),
                                 resetting.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                gather(12, "MEASURE", hdr[:12 * 8])
            with m.State("MEASURE"):
                m.d.sync += [form_q.eq(form), size_q.eq(size), memory_q.eq(memory_command),
                             end_q.eq(offset_f[:region_bits] + range_count[:region_bits]),
                             fits_q.eq((offset_f >> region_bits == 0)
                                       & (range_count >> region_bits == 0))]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += checked.eq(verdict)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += [tile.eq(tile_f), region.eq(region_f), offset.eq(offset_f)]
                with m.If(rx_status != Status.OK):
                    m.d.sync += [status.eq(rx_status), bad_frames.eq(bad_frames + 1)]
                    m.next = "NAK"
                with m.Elif(checked != Status.OK):
                    m.d.sync += status.eq(checked)
                    m.next = "NAK"
                with m.Elif((cmd == Command.RUN) & ~events_ok):
                    m.d.sync += status.eq(Status.ADDRESS)
                    m.next = "NAK"
                with m.Else():
                    with m.Switch(cmd):
                        with m.Case(Command.INFO):
                            m.d.sync += rom_addr.eq(0)
                            emit(ok_header, 2, 0, "INFO_READ")
                        with m.Case(Command.STATUS):
                            m.d.sync += cycles_q.eq(cycles)   # holds still while it is sent
                            emit(ok_header, 2, 0, "SEND_TICKS")
                        with m.Case(Command.WRITE):
                            m.d.sync += [ptr.eq(2 + ADDRESS_BYTES), remaining.eq(write_count)]
                            m.next = "GATHER_WORD"
                        with m.Case(Command.FILL):
                            m.d.sync += [ptr.eq(2 + ADDRESS_BYTES + 4), remaining.eq(p(6, 4))]
                            m.next = "GATHER_WORD"
                        with m.Case(Command.READ):
                            m.d.sync += remaining.eq(p(6, 2))
                            emit(ok_header, 2, 0, "READ_REQUEST")
                        with m.Case(Command.RUN):
                            m.d.sync += [ptr.eq(4), remaining.eq((plen - 2) >> 1),
                                         ticks_left.eq(p(0, 2))]
                            m.next = "EVENTS"
                        with m.Case(Command.OUTPUTS):
                            m.d.sync += remaining.eq(Mux(outputs_fewer, p(0, 2), pending))
                            emit(ok_header, 2, outputs_none, "OUTPUTS")
                        with m.Case(Command.RESET):
                            m.d.sync += resetting.eq(1)
                            m.next = "WAIT_QUIET"

            with m.State("NAK"):
                known = length >= 4
                with m.If(emit(Cat(Mux(known, seq, 0), status, Mux(known, cmd, 0)), 3, 1,
                               "FINISH")):
                    m.d.sync += naks.eq(naks + 1)
                    m.d.comb += self.nak.eq(1)
            with m.State("RESPOND_OK"):
                emit(ok_header, 2, 1, "FINISH")
            with m.State("FINISH"):   # the sender has every byte: release the frame
                m.d.comb += receiver.frame.ready.eq(1)
                m.next = "IDLE"

            # INFO: the ROM, a byte at a time.
            with m.State("INFO_READ"):
                m.next = "INFO_SEND"
            with m.State("INFO_SEND"):
                last = rom_addr == len(info.encode()) - 1
                with m.If(emit(rom.data, 1, last, "INFO_READ")):
                    m.d.sync += rom_addr.eq(rom_addr + 1)
                    with m.If(last):
                        m.next = "FINISH"

            # STATUS and RUN's answer (both after an OK header): the pieces they have in
            # common, ticks and pending, are sent by the same states, so that the byte
            # multiplexer has them once.
            is_status = cmd == Command.STATUS

            def after_ticks():
                with m.If(is_status):
                    m.next = "STATUS_A"
                with m.Else():
                    m.next = "PENDING"

            def after_pending():
                with m.If(is_status):
                    m.next = "STATUS_C"
                with m.Else():
                    m.next = "FINISH"

            with m.State("SEND_TICKS"):
                emit(self.ticks, 4, 0, after_ticks)
            with m.State("STATUS_A"):
                emit(Cat(self.mesh_drops, output_drops), 8, 0, "PENDING")
            with m.State("PENDING"):
                emit(pending, 2, ~is_status, after_pending)
            with m.State("STATUS_C"):
                emit(Cat(frames, bad_frames), 8, 0, "STATUS_D")
            with m.State("STATUS_D"):
                emit(Cat(naks, cycles_q), 8, 1, "FINISH")

            # WRITE and FILL (and RESET's clearing) go through the bus one word at a time.
            with m.State("GATHER_WORD"):
                gather(wb, "BUS_WRITE", hdr[16:])
            with m.State("BUS_WRITE"):
                m.d.comb += [self.bus.req.valid.eq(1), req.write.eq(1)]
                with m.If(self.bus.req.ready):
                    m.d.sync += [offset.eq(offset + 1), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.next = "WRITTEN"
                    with m.Elif(cmd == Command.WRITE):
                        m.next = "GATHER_WORD"
            with m.State("WRITTEN"):
                with m.If(~resetting):
                    m.next = "RESPOND_OK"
                with m.Elif(region == Region.MEMBRANE):
                    m.d.sync += [region.eq(Region.ACCUMULATOR), offset.eq(0),
                                 remaining.eq(Array(Const(t.neurons, 32)
                                                    for t in info.tiles)[tile])]
                    m.next = "BUS_WRITE"
                with m.Elif(tile != n_tiles - 1):
                    m.d.sync += [tile.eq(tile + 1), region.eq(Region.MEMBRANE), offset.eq(0),
                                 remaining.eq(Array(Const(t.neurons, 32)
                                                    for t in info.tiles)[tile + 1])]
                    m.next = "BUS_WRITE"
                with m.Else():
                    m.next = "FLUSH"

            with m.State("READ_REQUEST"):
                m.d.comb += [self.bus.req.valid.eq(1), req.write.eq(0)]
                with m.If(self.bus.req.ready):
                    m.next = "READ_RESPONSE"
            with m.State("READ_RESPONSE"):
                last = remaining == 1
                with m.If(emit(self.bus.resp.payload, wb, last, "READ_REQUEST",
                               when=self.bus.resp.valid)):
                    m.d.comb += self.bus.resp.ready.eq(1)
                    m.d.sync += [offset.eq(offset + 1), remaining.eq(remaining - 1)]
                    with m.If(last):
                        m.next = "FINISH"

            # RUN (its events checked on arrival): inject the events, then run the ticks.
            with m.State("EVENTS"):
                with m.If(remaining == 0):
                    m.next = "TICKS"
                with m.Else():
                    m.next = "GATHER_EVENT"
            with m.State("GATHER_EVENT"):
                gather(2, "EVENT", hdr[16:])
            with m.State("EVENT"):
                m.d.comb += self.host_in.valid.eq(1)
                with m.If(self.host_in.ready):
                    m.d.sync += remaining.eq(remaining - 1)
                    m.next = "EVENTS"
            with m.State("TICKS"):
                with m.If(ticks_left == 0):
                    m.next = "WAIT_QUIET"
                with m.Else():
                    m.d.comb += self.tick.valid.eq(1)
                    with m.If(self.tick.ready):
                        m.d.sync += ticks_left.eq(ticks_left - 1)
            # Quiet: no update running, nothing in flight, the chip's output queue empty; then
            # a few cycles for the last outputs to land in ours.
            with m.State("WAIT_QUIET"):
                m.d.sync += settle.eq(0)
                with m.If(quiet & ~self.host_out.valid):
                    m.next = "SETTLE"
            with m.State("SETTLE"):
                m.d.sync += settle.eq(settle + 1)
                with m.If(~quiet | self.host_out.valid):
                    m.next = "WAIT_QUIET"
                with m.Elif(settle == 3):
                    with m.If(resetting):
                        m.d.sync += [tile.eq(0), region.eq(Region.MEMBRANE), offset.eq(0),
                                     word.eq(0),
                                     remaining.eq(Array(Const(t.neurons, 32)
                                                        for t in info.tiles)[0])]
                        m.next = "BUS_WRITE"
                    with m.Else():
                        m.next = "RUN_ANSWER"
            with m.State("RUN_ANSWER"):
                emit(ok_header, 2, 0, "SEND_TICKS")

            with m.State("OUTPUTS"):
                with m.If(remaining == 0):
                    m.next = "FINISH"
                with m.Else():
                    with m.If(emit(out_bytes, 4, remaining == 1, "OUTPUTS",
                                   when=outputs.r_rdy)):
                        m.d.comb += outputs.r_en.eq(1)
                        m.d.sync += remaining.eq(remaining - 1)
            with m.State("FLUSH"):
                with m.If(pending != 0):
                    m.d.comb += outputs.r_en.eq(1)
                with m.Else():
                    m.next = "RESPOND_OK"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | receiver.frame.valid | sender.busy
                                 | response.r_rdy)
        return m
