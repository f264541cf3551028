"""The host link's command executor: the state machine that acts on a checked request."""

from types import SimpleNamespace

from amaranth.hdl import Array, C, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .abi import (ADDRESS_BYTES, AXON_BITS, ENCODE_HEAD, ENCODER_DRAW, ENCODER_SHIFTS,
                  INPUT_HEAD, MAX_FRAME, MAX_OUTPUTS, MAX_PAYLOAD, MAX_REPORT, MAX_RUN_TICKS,
                  NO_SEQ, OUTPUT_BYTES, REPORT_BYTES, RUN_ANSWER, AERPacket, ChipInfo, Command,
                  EncodeFlag, EventWord, OutputRecord, PacketKind, Region, Status,
                  report_outputs)
from .core import Handshake
from .counter import Counter
from .host_link_checks import HEADER_PAYLOAD_BYTES, RequestCheck
from .host_link_frames import FRAME_ADDR_BITS, LENGTH_BITS, ReceivedFrame, response_layouts

__all__ = ["chip_ports", "CommandExecutor"]

#: :func:`~spikefab.hdl.abi.report_outputs` as the gateware computes it, with shifts and
#: adds: ``(this - count - 2 count) >> 2``.
MAX_PAYLOAD_FOR_REPORT = MAX_PAYLOAD - RUN_ANSWER.size
assert REPORT_BYTES == 3 and OUTPUT_BYTES == 4 and all(
    report_outputs(c) == (MAX_PAYLOAD_FOR_REPORT - 3 * c) >> 2 for c in range(MAX_REPORT + 1))


def chip_ports(bus) -> dict:
    """The members by which the executor, and the host link it is part of, drive the chip
    beside its host port: tick handshake, chip bus (``bus``: its signature, as the link sees
    it), the chip's counts, and the link's busy and NAK lights."""
    return {
        "tick": Out(Handshake),
        "quiet": In(1),
        "bus": Out(bus),
        "mesh_drops": In(32),
        "ticks": In(32),
        "busy": Out(1),
        "nak": Out(1),
    }


class CommandExecutor(wiring.Component):
    """The link's state machine: a received frame in, executed, its response out.

    It reads the header from the frame buffer, has it checked (``request``), and acts only if
    the frame arrived whole (``frame.payload.status``), its seq is not 0, the header passed
    and, for RUN and INPUT, every event or axon did (``events_ok``); otherwise it answers a
    NAK. A request with the seq and command of the last one answered OK is a repeat
    (:mod:`spikefab.firmware.protocol`, "Sequence numbers and repeats"): WRITE, FILL and RESET
    are answered OK, RUN and INPUT with the chip's tick count and pending outputs, and OUTPUTS
    with the same events (the output queue rewound), none executed again; INFO, READ and
    STATUS are executed again. Any other request that passes its checks commits the output
    queue: the events sent by the last OUTPUTS are gone. A memory
    command goes through the chip bus one word at a time; RUN injects its events into the host
    port (INPUT each axon to every tile it names, in tile order), raises ``tick`` once per
    tick, and answers once the chip is quiet and its last outputs have landed in the output
    queue. ENCODE (on a chip with the encoder) draws its spikes from the frame's pixels tick
    by tick, after RESET's work if it asks, and reports its outputs and membranes if it asks
    (:meth:`_encode`). The response goes out piece by piece (``piece``, ``values``: see
    :class:`~spikefab.hdl.host_link_frames.ResponsePath`); once the sender has every byte, the
    frame is released (``frame.ready``).

    Registers stand where a long path would otherwise lead into the state machine's
    decisions: the frame buffer's bytes (block RAM's late read data), the chip's ``quiet`` (a
    sum of the whole chip's activity) and the comparisons behind OUTPUTS' count are each
    registered, a cycle late where that is safe (the comments say why). The header register
    has no reset, which leaves the flip-flops' reset input to zero the word for RESET.

    Parameters
    ----------
    info : ChipInfo
        The chip's INFO (what INFO answers; the tiles decide RESET's clearing).
    bus : wiring.Signature
        The chip bus, seen from the link (the flip of
        :class:`~spikefab.hdl.chip.Chip`'s ``bus`` member).
    dsp_counters : bool
        Count the clock in a DSP block (where the chip's counters are: an iCE40).
    timeout_log2 : int
        The line's inter-byte timeout is between ``2 ** (timeout_log2 - 1)`` and
        ``2 ** timeout_log2`` cycles: ``silence`` strobes every ``2 ** (timeout_log2 - 1)``.

    Members
    -------
    frame : In(stream.Signature(ReceivedFrame))
        From :class:`~spikefab.hdl.host_link_frames.FrameReceiver`; the transfer releases the
        frame.
    read_addr : Out(FRAME_ADDR_BITS), read_data : In(8)
        The frame buffer's read port (``read_data``: the byte at last cycle's address).
    events_ok : In(1), axon_limit : In(AXON_BITS + 1)
        :class:`~spikefab.hdl.host_link_checks.RunEventChecker`'s verdict on the frame, and the
        fewest axons of the tiles it names (ENCODE's pixels are checked against it).
    request : Out(RequestCheck)
        To :class:`~spikefab.hdl.host_link_checks.RequestChecker`.
    piece : Out(stream.Signature(piece layout)), values : Out(values layout)
        To :class:`~spikefab.hdl.host_link_frames.ResponsePath` (the layouts of
        :func:`~spikefab.hdl.host_link_frames.response_layouts` for :attr:`pieces`).
        ``select`` follows the state alone (:attr:`piece_states`).
    outputs : In(stream.Signature(AERPacket)), pending, taken : In(16), output_drops : In(32)
        From :class:`~spikefab.hdl.host_link_outputs.OutputQueue`.
    commit, rewind, clear, mark, rollback : Out(1), overflowed : In(1)
        To and from the output queue: a RUN's outputs are kept all or none.
    silence : Out(1)
        The receiver's timeout strobe.
    line_error : In(1)
        A byte lost by the UART (a framing error or an overrun): counted.
    arriving : In(1)
        An output event is on its way from the chip to the output queue (``host_out.valid``).
    host_in, tick, quiet, bus, mesh_drops, ticks
        To the chip's members of the same names.
    busy : Out(1)
        A frame is being executed or answered.
    nak : Out(1)
        One cycle for every NAK sent, the cycle after its last byte is taken (registered: it
        leaves for a board's LED, across the die, from the end of the response's byte
        multiplexer).
    """

    #: The states that send each piece of the response (:attr:`piece_states` adds the
    #: encoder's).
    PIECE_STATES = {"ok": ("DECIDE", "RESPOND_OK", "RUN_ANSWER", "OUTPUTS_AGAIN"),
                    "nak": ("NAK",), "info": ("INFO_SEND",), "ticks": ("SEND_TICKS",),
                    "drops": ("STATUS_A",), "pending": ("PENDING",), "frames": ("STATUS_C",),
                    "naks": ("STATUS_D",), "word": ("READ_RESPONSE",), "output": ("OUTPUTS",)}

    def __init__(self, info: ChipInfo, bus: wiring.Signature, *, dsp_counters: bool = False,
                 timeout_log2: int = 21):
        if not isinstance(info, ChipInfo):
            raise TypeError(f"info must be a ChipInfo, not {info!r}")
        if not isinstance(bus, wiring.Signature) or set(bus.members) != {"req", "resp"}:
            raise TypeError(f"bus must be the chip bus's signature (req, resp), not {bus!r}")
        if not isinstance(dsp_counters, bool):
            raise TypeError(f"dsp_counters must be a bool, not {dsp_counters!r}")
        if isinstance(timeout_log2, bool) or not isinstance(timeout_log2, int) \
                or not 2 <= timeout_log2 <= 31:
            raise ValueError(f"timeout_log2 must be an integer in [2, 31], not {timeout_log2!r}")
        self.info = info
        self.dsp_counters = dsp_counters
        self.timeout_log2 = timeout_log2
        #: The pieces of the responses: name -> bytes.
        self.pieces = {"ok": 2, "nak": 3, "info": 1, "ticks": 4, "drops": 8, "pending": 2,
                       "frames": 4, "naks": 8, "word": info.word_bytes, "output": OUTPUT_BYTES}
        self.piece_states = dict(self.PIECE_STATES)
        if info.encoder:
            # ENCODE's report: its outputs, then its membranes.
            self.pieces["membrane"] = REPORT_BYTES
            self.piece_states["output"] += ("REPORT_OUTPUTS",)
            self.piece_states["membrane"] = ("REPORT_V",)
        piece, values = response_layouts(self.pieces)
        super().__init__({
            "frame": In(stream.Signature(ReceivedFrame)),
            "read_addr": Out(FRAME_ADDR_BITS),
            "read_data": In(8),
            "events_ok": In(1),
            "axon_limit": In(AXON_BITS + 1),
            "request": Out(RequestCheck),
            "piece": Out(stream.Signature(piece)),
            "values": Out(values),
            "outputs": In(stream.Signature(AERPacket)),
            "pending": In(16),
            "taken": In(16),
            "commit": Out(1),
            "rewind": Out(1),
            "clear": Out(1),
            "mark": Out(1),
            "rollback": Out(1),
            "overflowed": In(1),
            "output_drops": In(32),
            "silence": Out(1),
            "line_error": In(1),
            "arriving": In(1),
            "host_in": Out(stream.Signature(AERPacket)),
            **chip_ports(bus),
        })

    def elaborate(self, platform):
        m = Module()
        info = self.info
        wb = info.word_bytes
        word_bits = 8 * wb
        max_read = info.max_read_words

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

        m.d.comb += [self.request.command.eq(cmd), self.request.length.eq(length),
                     self.request.payload.eq(hdr[16:16 + 8 * HEADER_PAYLOAD_BYTES])]

        # ---- execution state ----
        ptr = Signal(FRAME_ADDR_BITS + 1)
        gather_max = max(12, wb)   # the header, or one memory word
        j = Signal(range(gather_max + 2))
        tile = Signal(8)
        region = Signal(Region.as_shape())
        # After the checks, an offset lies within its region and every count within a region,
        # a frame or the output queue: registers that wide, not the fields' 32 bits.
        count_limit = max([size for t in info.tiles for size in t.regions]
                          + [MAX_FRAME, MAX_OUTPUTS, max_read, info.output_depth])
        offset = Signal(range(count_limit + 1))
        remaining = Signal(range(count_limit + 1))
        word = hdr[-word_bits:]
        event = EventWord(hdr[-EventWord.size:])
        # INPUT: the tiles it names, and those its current axon has still to go to.
        n_tiles = len(info.tiles)
        inputting = Signal()
        input_tiles, fanout = Signal(n_tiles), Signal(n_tiles)
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
        frames, bad_frames, naks = Signal(16), Signal(16), Signal(16)
        # Repeats: the seq and command of the last request answered OK (seq 0: none yet, as no
        # request may carry it; a command that passes the checks fits 4 bits), and whether
        # this one repeats it (from CHECK on).
        last_seq, last_cmd = Signal(8, init=NO_SEQ), Signal(4)
        is_repeat, skip, bad_frame, refused, runs = (
            Signal(name=n) for n in ("is_repeat", "skip", "bad_frame", "refused", "runs"))
        # Which command it is, for the states after DECIDE that ask, and the count DECIDE
        # starts the word or event count at: chosen by the command in CHECK and registered, as
        # decoding the header in DECIDE would stand ahead of the count's enable and value, the
        # UP5K's longest paths (BENCHMARKS.md, "The UP5K's clock").
        is_write, is_status, is_outputs, counts = Signal(), Signal(), Signal(), Signal()
        count = Signal.like(remaining)
        line_errors = Signal(16)
        m.d.sync += line_errors.eq(line_errors + self.line_error)
        # The clock count: in a DSP block where the chip's counters are (an iCE40).
        m.submodules.cycles = cycle_counter = Counter(32, dsp=self.dsp_counters)
        m.d.comb += [cycle_counter.en.eq(1), cycle_counter.step.eq(1)]
        # STATUS's copy of the clock count, which must hold still while it is sent: kept in
        # the header's payload bytes, which STATUS (no payload) leaves free.
        cycles, cycles_q = cycle_counter.value, hdr[16:48]
        m.d.comb += self.read_addr.eq(ptr)
        # The line's timeout strobe: each flip of a bit of the clock count.
        timer_bit = Signal()
        m.d.sync += timer_bit.eq(cycles[self.timeout_log2 - 1])
        m.d.comb += self.silence.eq(timer_bit != cycles[self.timeout_log2 - 1])

        # The frame buffer's bytes, registered: block RAM's read data arrives late in the
        # cycle, and each byte goes to one of many places.
        read_data = Signal(8)
        m.d.sync += read_data.eq(self.read_data)

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

        # An INPUT axon goes to the lowest tile left in ``fanout`` (the axon is the pair's low
        # bits, where a RUN event has it; the checks kept the rest zero).
        lowest = Signal(n_tiles)
        m.d.comb += lowest.eq(fanout & -fanout)
        fan_x = Signal.like(event.x)
        fan_y = Signal.like(event.y)
        for k in range(n_tiles):
            with m.If(lowest[k]):
                m.d.comb += [fan_x.eq(k % info.cols), fan_y.eq(k // info.cols)]
        m.d.comb += [self.host_in.payload.kind.eq(PacketKind.EVENT),
                     self.host_in.payload.x.eq(Mux(inputting, fan_x, event.x)),
                     self.host_in.payload.y.eq(Mux(inputting, fan_y, event.y)),
                     self.host_in.payload.body.event.axon.eq(event.axon)]
        # ENCODE's scan of its pixel runs (see _encode); the spike's axon replaces the event's.
        # ``count``: the run's pixels left; ``value``: its skip, then each pixel's value;
        # ``pos``: the next pixel's axon (a run passes over at most 255, and MAX_FRAME bytes
        # hold fewer than 256 runs).
        scan = SimpleNamespace(dry=Signal(), count=Signal(8), pos=Signal(16),
                               value=Signal(8), state=Signal(32), axon=Signal(AXON_BITS),
                               bad_length=Signal(), bad_axon=Signal(),
                               end=Signal(FRAME_ADDR_BITS + 1),
                               # ENCODE's head after its tiles and ticks, gathered apart:
                               # state, drain, flags, report tile and count.
                               head=Signal(80, reset_less=True), verdict=Signal(4),
                               drain=Signal(16), limit=Signal(range(MAX_OUTPUTS + 1)))
        scan.reporting = C(0)
        if info.encoder:
            with m.If(self.request.command == Command.ENCODE):
                m.d.comb += self.host_in.payload.body.event.axon.eq(scan.axon)
            head = scan.head
            scan.start_state, scan.drain_ticks = head[0:32], head[32:48]
            scan.flags, scan.report_tile, scan.report_count = head[48:56], head[56:64], head[64:80]
            scan.reporting = ((self.request.command == Command.ENCODE)
                              & scan.flags[EncodeFlag.REPORT.bit_length() - 1])

        # For OUTPUTS' count (the events asked for, or as many as are queued): whether fewer
        # are asked for than are queued, and whether the count is none, registered (the
        # comparison's carry chain came ahead of the state machine's next state and the
        # response byte). A cycle late is safe: the request's field holds still from MEASURE
        # on, and between frames the queue holds still (RUN answers only once the chip is
        # quiet and its last outputs have landed here).
        outputs_fewer, outputs_none = Signal(), Signal()
        m.d.sync += [outputs_fewer.eq(p(0, 2) < self.pending),
                     outputs_none.eq((p(0, 2) == 0) | (self.pending == 0))]

        s = SimpleNamespace(
            hdr=hdr, length=length, rx_status=rx_status, seq=seq, cmd=cmd, ptr=ptr, j=j,
            tile=tile, region=region, offset=offset, remaining=remaining, word=word,
            resetting=resetting, ticks_left=ticks_left, settle=settle, quiet=quiet,
            status=status, frames=frames, bad_frames=bad_frames, naks=naks, cycles=cycles,
            cycles_q=cycles_q, outputs_fewer=outputs_fewer, outputs_none=outputs_none, p=p,
            gather=gather, inputting=inputting, input_tiles=input_tiles, fanout=fanout,
            lowest=lowest, last_seq=last_seq, last_cmd=last_cmd, is_repeat=is_repeat,
            skip=skip, bad_frame=bad_frame, refused=refused, runs=runs, is_write=is_write,
            is_status=is_status, is_outputs=is_outputs, counts=counts, count=count,
            line_errors=line_errors, scan=scan)
        self._response(m, s)
        m.d.sync += self.nak.eq(0)
        if info.encoder:
            self._encoder_logic(m, scan)
        with m.FSM() as fsm:
            self._take_request(m, s)
            self._answer_info_and_status(m, s)
            self._access_memory(m, s)
            self._run_and_output(m, s)
            if info.encoder:
                self._encode(m, s)
        # The byte multiplexer's choice: the piece each state sends, by the state alone. The
        # conditions a state puts on its piece only gate the offer, so that the choice of the
        # byte, and whether it is the piece's last, do not wait for them (they come late: the
        # checks' verdicts, the counts).
        assert s.sent == set(self.piece_states), s.sent
        for name, states in self.piece_states.items():
            m.d.comb += self.piece.payload.select[name].eq(
                Cat(*(fsm.ongoing(state) for state in states)).any())
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

    def _response(self, m, s):
        """The response's pieces (``values``), each straight from where it is kept, and
        ``s.send``, which offers one."""
        info, values, piece = self.info, self.values, self.piece
        m.submodules.info_rom = info_rom = Memory(shape=8, depth=len(info.encode()),
                                                  init=list(info.encode()))
        rom = info_rom.read_port()
        s.rom_addr = rom_addr = Signal(range(len(info.encode()) + 1))
        m.d.comb += rom.addr.eq(rom_addr)

        out_event = self.outputs.payload
        out_record = Signal(OutputRecord)
        m.d.comb += [out_record.neuron.eq(out_event.body.output.neuron),
                     out_record.x.eq(out_event.x), out_record.y.eq(out_event.y),
                     out_record.tick.eq(out_event.body.output.tick)]

        seq, cmd, known = s.seq, s.cmd, s.length >= 4
        m.d.comb += [values.ok.eq(Cat(seq, Const(Status.OK, 8))),
                     values.nak.eq(Cat(Mux(known, seq, 0), s.status, Mux(known, cmd, 0))),
                     values.info.eq(rom.data), values.ticks.eq(self.ticks),
                     values.drops.eq(Cat(self.mesh_drops, self.output_drops)),
                     values.pending.eq(self.pending),
                     values.frames.eq(Cat(s.frames, s.bad_frames)),
                     values.naks.eq(Cat(s.naks, s.cycles_q, s.line_errors)),
                     values.word.eq(self.bus.resp.payload), values.output.eq(out_record)]
        if self.info.encoder:
            m.d.comb += values.membrane.eq(self.bus.resp.payload[:8 * REPORT_BYTES])
        s.sent = set()

        def send(name, last, next_state, when=None):
            """Offer the piece ``name`` of the response (the state's, in :attr:`PIECE_STATES`),
            the response's last if ``last``, then go to ``next_state`` (a state, or a function
            that picks one); ``name`` and the state are one of :attr:`piece_states`. Returns
            the condition of the cycle the piece's last byte is taken.
            """
            s.sent.add(name)
            offer = C(1) if when is None else when
            done = Signal()
            m.d.comb += [piece.valid.eq(offer), piece.payload.last.eq(last)]
            with m.If(offer & piece.ready):
                m.d.comb += done.eq(1)
                if callable(next_state):
                    next_state()
                else:
                    m.next = next_state
            return done

        s.send = send

    def _take_request(self, m, s):
        """IDLE to DECIDE: a frame taken, its header read and checked; then its command's
        first state, or a NAK. NAK, RESPOND_OK and FINISH end every request."""
        request, send, p = self.request, s.send, s.p
        frames, bad_frames, naks, status = s.frames, s.bad_frames, s.naks, s.status
        ptr, remaining, tile, region, offset = s.ptr, s.remaining, s.tile, s.region, s.offset
        rx_status, cmd = s.rx_status, s.cmd
        tile_f, region_f, offset_f = p(0), p(1), p(2, 4)
        with m.State("IDLE"):
            with m.If(self.frame.valid):
                m.d.sync += [frames.eq(frames + 1), ptr.eq(0), s.j.eq(0),
                             s.length.eq(self.frame.payload.length),
                             rx_status.eq(self.frame.payload.status),
                             s.resetting.eq(0), s.inputting.eq(0),
                             s.scan.bad_length.eq(0), s.scan.bad_axon.eq(0),
                             s.scan.verdict.eq(Status.OK)]
                m.next = "HEADER"
        with m.State("HEADER"):
            s.gather(12, "MEASURE", s.hdr[:12 * 8])
        with m.State("MEASURE"):
            m.d.comb += request.measure.eq(1)
            m.next = "CHECK"
        with m.State("CHECK"):
            m.d.comb += request.check.eq(1)
            # What DECIDE decides by, as far as it is known here, registered: one bit each
            # there, not comparisons ahead of the response's first byte.
            pure = (cmd == Command.INFO) | (cmd == Command.READ) | (cmd == Command.STATUS)
            repeat = (s.seq == s.last_seq) & (cmd[:4] == s.last_cmd)
            m.d.sync += [s.is_repeat.eq(repeat), s.skip.eq(repeat & ~pure),
                         s.bad_frame.eq(rx_status != Status.OK),
                         s.refused.eq((rx_status != Status.OK) | (s.seq == NO_SEQ)),
                         s.runs.eq((cmd == Command.RUN) | (cmd == Command.INPUT)),
                         s.is_write.eq(cmd == Command.WRITE),
                         s.is_status.eq(cmd == Command.STATUS),
                         s.is_outputs.eq(cmd == Command.OUTPUTS)]
            m.d.sync += s.counts.eq(cmd.matches(Command.WRITE, Command.FILL, Command.READ,
                                                Command.RUN, Command.INPUT, Command.OUTPUTS))
            with m.Switch(cmd):
                with m.Case(Command.WRITE):
                    m.d.sync += s.count.eq(request.write_count)
                with m.Case(Command.FILL):
                    m.d.sync += s.count.eq(p(6, 4))
                with m.Case(Command.READ):
                    m.d.sync += s.count.eq(p(6, 2))
                with m.Case(Command.RUN):
                    m.d.sync += s.count.eq((request.payload_length - 2) >> 1)
                with m.Case(Command.INPUT):
                    m.d.sync += s.count.eq((request.payload_length - INPUT_HEAD.size) >> 1)
                with m.Case(Command.OUTPUTS):
                    # The request's field holds still, and so does the queue between frames.
                    m.d.sync += s.count.eq(Mux(s.outputs_fewer, p(0, 2), self.pending))
            m.next = "DECIDE"
            if self.info.encoder:
                # ENCODE's pixel runs, checked in a scan of their own before DECIDE: a frame
                # with a bad one must change nothing, not even the output queue's commit.
                with m.If((cmd == Command.ENCODE) & (rx_status == Status.OK)):
                    m.d.sync += [ptr.eq(2 + INPUT_HEAD.size), s.scan.dry.eq(1),
                                 s.scan.end.eq(s.length - 2)]
                    m.next = "ENCODE_HEAD"
        with m.State("DECIDE"):
            m.d.sync += [tile.eq(tile_f), region.eq(region_f), offset.eq(offset_f)]
            with m.If(s.refused):
                # A bad frame (its own status), or seq 0.
                m.d.sync += [status.eq(Mux(s.bad_frame, rx_status, Status.SEQUENCE)),
                             bad_frames.eq(bad_frames + s.bad_frame)]
                m.next = "NAK"
            with m.Elif(request.verdict != Status.OK):
                m.d.sync += status.eq(request.verdict)
                m.next = "NAK"
            with m.Elif(s.runs & ~self.events_ok):
                m.d.sync += status.eq(Status.ADDRESS)
                m.next = "NAK"
            with m.Elif(s.scan.verdict != Status.OK):
                # Only ENCODE's check sets it: its drain, flags or report.
                m.d.sync += status.eq(s.scan.verdict)
                m.next = "NAK"
            with m.Elif(s.scan.bad_length | s.scan.bad_axon):
                # Only ENCODE's scan sets these: runs cut short, or an axon off a tile.
                m.d.sync += status.eq(Mux(s.scan.bad_length, Status.LENGTH, Status.ADDRESS))
                m.next = "NAK"
            with m.Elif(s.skip):
                # The first answer again, nothing executed.
                with m.If(s.is_outputs):
                    m.d.sync += remaining.eq(self.taken)
                with m.Switch(cmd):
                    with m.Case(Command.RUN, Command.INPUT):
                        m.next = "RUN_ANSWER"
                    with m.Case(Command.ENCODE):
                        # Its report's outputs go out again, as a repeated OUTPUTS's do.
                        m.d.comb += self.rewind.eq(1)
                        m.next = "RUN_ANSWER"
                    with m.Case(Command.OUTPUTS):
                        m.d.comb += self.rewind.eq(1)
                        m.next = "OUTPUTS_AGAIN"
                    with m.Default():
                        m.next = "RESPOND_OK"
            with m.Else():
                with m.If(~s.is_repeat):
                    m.d.comb += self.commit.eq(1)
                    m.d.sync += [s.last_seq.eq(s.seq), s.last_cmd.eq(cmd[:4])]
                with m.If(s.counts):
                    m.d.sync += remaining.eq(s.count)
                with m.Switch(cmd):
                    with m.Case(Command.INFO):
                        m.d.sync += s.rom_addr.eq(0)
                        send("ok", 0, "INFO_READ")
                    with m.Case(Command.STATUS):
                        m.d.sync += s.cycles_q.eq(s.cycles)
                        send("ok", 0, "SEND_TICKS")
                    with m.Case(Command.WRITE):
                        m.d.sync += ptr.eq(2 + ADDRESS_BYTES)
                        m.next = "GATHER_WORD"
                    with m.Case(Command.FILL):
                        m.d.sync += ptr.eq(2 + ADDRESS_BYTES + 4)
                        m.next = "GATHER_WORD"
                    with m.Case(Command.READ):
                        send("ok", 0, "READ_REQUEST")
                    with m.Case(Command.RUN):
                        m.d.comb += self.mark.eq(1)
                        m.d.sync += [ptr.eq(4), s.ticks_left.eq(p(0, 2))]
                        m.next = "EVENTS"
                    with m.Case(Command.INPUT):
                        m.d.comb += self.mark.eq(1)
                        m.d.sync += [ptr.eq(2 + INPUT_HEAD.size),
                                     s.ticks_left.eq(p(8, 2)), s.inputting.eq(1),
                                     s.input_tiles.eq(p(0, 8))]
                        m.next = "EVENTS"
                    if self.info.encoder:
                        with m.Case(Command.ENCODE):
                            m.d.sync += [s.ticks_left.eq(p(8, 2)), s.inputting.eq(1),
                                         s.input_tiles.eq(p(0, 8)), s.scan.dry.eq(0)]
                            with m.If(s.scan.flags[EncodeFlag.CLEAR.bit_length() - 1]):
                                # RESET's work first; its FLUSH comes back to ENCODE_START.
                                m.d.sync += s.resetting.eq(1)
                                m.next = "WAIT_QUIET"
                            with m.Else():
                                m.next = "ENCODE_START"
                    with m.Case(Command.OUTPUTS):
                        send("ok", s.outputs_none, "OUTPUTS")
                    with m.Case(Command.RESET):
                        m.d.sync += s.resetting.eq(1)
                        m.next = "WAIT_QUIET"

        with m.State("OUTPUTS_AGAIN"):
            send("ok", remaining == 0, "OUTPUTS")
        with m.State("NAK"):
            with m.If(send("nak", 1, "FINISH")):
                m.d.sync += [naks.eq(naks + 1), self.nak.eq(1)]
        with m.State("RESPOND_OK"):
            send("ok", 1, "FINISH")
        with m.State("FINISH"):   # the sender has every byte: release the frame
            m.d.comb += self.frame.ready.eq(1)
            m.next = "IDLE"

    def _answer_info_and_status(self, m, s):
        """INFO's answer; STATUS's, and the part of RUN's it shares."""
        send, rom_addr = s.send, s.rom_addr
        # INFO: the ROM, a byte at a time.
        with m.State("INFO_READ"):
            m.next = "INFO_SEND"
        with m.State("INFO_SEND"):
            last = rom_addr == len(self.info.encode()) - 1
            with m.If(send("info", last, "INFO_READ")):
                m.d.sync += rom_addr.eq(rom_addr + 1)
                with m.If(last):
                    m.next = "FINISH"

        # STATUS and RUN's answer (both after an OK header): the pieces they have in
        # common, ticks and pending, are sent by the same states, so that the byte
        # multiplexer has them once.
        is_status = s.is_status

        def after_ticks():
            with m.If(is_status):
                m.next = "STATUS_A"
            with m.Else():
                m.next = "PENDING"

        reporting = s.scan.reporting

        def after_pending():
            m.next = "FINISH"
            if self.info.encoder:
                with m.If(reporting):
                    m.next = "REPORT_COUNT"
            with m.If(is_status):
                m.next = "STATUS_C"

        with m.State("SEND_TICKS"):
            send("ticks", 0, after_ticks)
        with m.State("STATUS_A"):
            send("drops", 0, "PENDING")
        with m.State("PENDING"):
            send("pending", ~is_status & ~reporting, after_pending)
        with m.State("STATUS_C"):
            send("frames", 0, "STATUS_D")
        with m.State("STATUS_D"):
            send("naks", 1, "FINISH")

    def _access_memory(self, m, s):
        """WRITE, FILL and READ (and RESET's clearing) on the chip bus, a word at a time."""
        info, req = self.info, self.bus.req.payload
        n_tiles = len(info.tiles)
        tile, region, offset, remaining = s.tile, s.region, s.offset, s.remaining
        # WRITE and FILL (and RESET's clearing) go through the bus one word at a time.
        with m.State("GATHER_WORD"):
            s.gather(info.word_bytes, "BUS_WRITE", s.hdr[16:])
        with m.State("BUS_WRITE"):
            m.d.comb += [self.bus.req.valid.eq(1), req.write.eq(1)]
            with m.If(self.bus.req.ready):
                m.d.sync += [offset.eq(offset + 1), remaining.eq(remaining - 1)]
                with m.If(remaining == 1):
                    m.next = "WRITTEN"
                with m.Elif(s.is_write):
                    m.next = "GATHER_WORD"
        with m.State("WRITTEN"):
            with m.If(~s.resetting):
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
            with m.If(s.send("word", last, "READ_REQUEST", when=self.bus.resp.valid)):
                m.d.comb += self.bus.resp.ready.eq(1)
                m.d.sync += [offset.eq(offset + 1), remaining.eq(remaining - 1)]
                with m.If(last):
                    m.next = "FINISH"

    def _run_and_output(self, m, s):
        """RUN (its events injected, its ticks run, the chip left to go quiet), RESET's wait
        for quiet, OUTPUTS, and RESET's emptying of the output queue."""
        info, remaining, ticks_left, settle = self.info, s.remaining, s.ticks_left, s.settle
        quiet, outputs = s.quiet, self.outputs
        # RUN and INPUT (their events checked on arrival): inject the events, then run the
        # ticks. An INPUT axon is one event per tile it names.
        fanout = s.fanout
        with m.State("EVENTS"):
            m.d.sync += fanout.eq(s.input_tiles)
            with m.If(remaining == 0):
                m.next = "TICKS"
            with m.Else():
                m.next = "GATHER_EVENT"
        with m.State("GATHER_EVENT"):
            s.gather(2, "EVENT", s.hdr[16:])
        with m.State("EVENT"):
            m.d.comb += self.host_in.valid.eq(1)
            with m.If(self.host_in.ready):
                m.d.sync += fanout.eq(fanout & ~s.lowest)
                with m.If(~s.inputting | (fanout == s.lowest)):
                    # The event's last packet: on to the next event's bytes at once (what
                    # EVENTS would do, a cycle sooner).
                    m.d.sync += [remaining.eq(remaining - 1), fanout.eq(s.input_tiles)]
                    with m.If(remaining == 1):
                        m.next = "TICKS"
                    with m.Else():
                        m.next = "GATHER_EVENT"
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
            with m.If(quiet & ~self.arriving):
                m.next = "SETTLE"
        with m.State("SETTLE"):
            m.d.sync += settle.eq(settle + 1)
            with m.If(~quiet | self.arriving):
                m.next = "WAIT_QUIET"
            with m.Elif(settle == 3):
                with m.If(s.resetting):
                    m.d.sync += [s.tile.eq(0), s.region.eq(Region.MEMBRANE), s.offset.eq(0),
                                 s.word.eq(0),
                                 remaining.eq(Array(Const(t.neurons, 32)
                                                    for t in info.tiles)[0])]
                    m.next = "BUS_WRITE"
                with m.Else():
                    # A run's outputs are kept all or none (see OutputQueue).
                    m.d.comb += self.rollback.eq(self.overflowed)
                    m.next = "RUN_ANSWER"
        with m.State("RUN_ANSWER"):
            s.send("ok", 0, "SEND_TICKS")

        with m.State("OUTPUTS"):
            with m.If(remaining == 0):
                m.next = "FINISH"
            with m.Else():
                with m.If(s.send("output", remaining == 1, "OUTPUTS", when=outputs.valid)):
                    m.d.comb += outputs.ready.eq(1)
                    m.d.sync += remaining.eq(remaining - 1)
        with m.State("FLUSH"):
            m.d.comb += self.clear.eq(1)
            m.next = "RESPOND_OK"
            if info.encoder:
                with m.If(s.cmd == Command.ENCODE):
                    m.next = "ENCODE_START"

    def _encoder_logic(self, m, scan):
        """ENCODE's combinational parts, outside the state machine: the generator's next state
        (``scan.drawn``: :func:`~spikefab.hdl.abi.encoder_step`'s three shifts and XORs)."""
        a, b, c = ENCODER_SHIFTS
        x1, x2, scan.drawn = Signal(32), Signal(32), Signal(32)
        m.d.comb += [x1.eq(scan.state ^ (scan.state << a)[:32]), x2.eq(x1 ^ (x1 >> b)),
                     scan.drawn.eq(x2 ^ (x2 << c)[:32])]

    def _encode(self, m, s):
        """ENCODE: a scan of the frame's pixel runs (:func:`~spikefab.hdl.abi.parse_pixel_runs`),
        once to check them (``dry``, before DECIDE), then once per tick to draw each pixel's
        spike and inject it (to every tile of the set, as INPUT's axons), then the tick.
        Three cycles per byte read (the frame buffer's latency, as :func:`gather`'s), one
        per packet injected."""
        info, scan, ptr, j = self.info, s.scan, s.ptr, s.j
        start = 2 + ENCODE_HEAD.size
        drawn, count, skip = scan.drawn, scan.count, scan.value
        # The head's fields after the tiles and ticks, checked (those two are the request
        # checker's), then the runs' dry scan.
        with m.State("ENCODE_HEAD"):
            s.gather(10, "ENCODE_CHECK", scan.head)
        with m.State("ENCODE_CHECK"):
            tile_neurons = Array(Const(t.neurons, 16) for t in info.tiles)
            report = scan.flags[EncodeFlag.REPORT.bit_length() - 1]
            with m.If((scan.drain_ticks > MAX_RUN_TICKS)
                      | (scan.flags & ~Const(EncodeFlag.CLEAR | EncodeFlag.REPORT, 8) != 0)
                      | (report & ((scan.report_count == 0)
                                   | (scan.report_count > MAX_REPORT)))):
                m.d.sync += scan.verdict.eq(Status.ARGUMENT)
            with m.Elif(report & ((scan.report_tile >= len(info.tiles))
                                  | (scan.report_count > tile_neurons[scan.report_tile]))):
                m.d.sync += scan.verdict.eq(Status.ADDRESS)
            m.d.sync += [ptr.eq(start), scan.pos.eq(0),
                         scan.limit.eq((MAX_PAYLOAD_FOR_REPORT - scan.report_count
                                        - (scan.report_count << 1)) >> 2)]
            m.next = "SCAN_RUN"
        with m.State("ENCODE_START"):
            # After RESET's work if asked: this run's outputs are kept all or none from here.
            m.d.comb += self.mark.eq(1)
            m.d.sync += [s.resetting.eq(0), scan.state.eq(scan.start_state),
                         scan.drain.eq(scan.drain_ticks)]
            m.next = "ENCODE_TICK"
        with m.State("ENCODE_TICK"):
            with m.If(s.ticks_left == 0):
                # Then the drain ticks, as RUN's.
                m.d.sync += [s.ticks_left.eq(scan.drain), scan.drain.eq(0)]
                m.next = "TICKS"
            with m.Else():
                m.d.sync += [ptr.eq(start), scan.pos.eq(0)]
                m.next = "SCAN_RUN"
        # A run: its skip, its count, then its values, each drawn for.
        with m.State("SCAN_RUN"):
            with m.If((j == 0) & (ptr >= scan.end)):
                with m.If(scan.dry):
                    m.next = "DECIDE"
                with m.Else():
                    m.next = "SCAN_TICK"
            with m.Else():
                s.gather(1, "SCAN_SKIP", skip)
        with m.State("SCAN_SKIP"):
            with m.If(j == 0):
                m.d.sync += scan.pos.eq(scan.pos + skip)
            with m.If((j == 0) & (ptr >= scan.end)):
                # A run without its count (only a dry scan can meet one).
                m.d.sync += scan.bad_length.eq(1)
                m.next = "DECIDE"
            with m.Else():
                s.gather(1, "SCAN_PIXEL", count)
        with m.State("SCAN_PIXEL"):
            with m.If(count == 0):
                m.next = "SCAN_RUN"
            with m.Elif((j == 0) & (ptr >= scan.end)):
                # A pixel without its value (only a dry scan can meet one).
                m.d.sync += scan.bad_length.eq(1)
                m.next = "DECIDE"
            with m.Else():
                with m.If(j == 0):
                    m.d.sync += [scan.axon.eq(scan.pos),
                                 scan.bad_axon.eq(scan.bad_axon
                                                  | (scan.pos >= self.axon_limit))]
                s.gather(1, "SCAN_DRAW", scan.value)
        with m.State("SCAN_DRAW"):
            m.d.sync += [count.eq(count - 1), scan.pos.eq(scan.pos + 1)]
            m.next = "SCAN_PIXEL"
            with m.If(~scan.dry):
                m.d.sync += [scan.state.eq(drawn), s.fanout.eq(s.input_tiles)]
                with m.If(drawn[32 - ENCODER_DRAW:] < scan.value):
                    m.next = "SCAN_SPIKE"
        with m.State("SCAN_SPIKE"):
            m.d.comb += self.host_in.valid.eq(1)
            with m.If(self.host_in.ready):
                m.d.sync += s.fanout.eq(s.fanout & ~s.lowest)
                with m.If(s.fanout == s.lowest):
                    m.next = "SCAN_PIXEL"
        with m.State("SCAN_TICK"):
            m.d.comb += self.tick.valid.eq(1)
            with m.If(self.tick.ready):
                m.d.sync += s.ticks_left.eq(s.ticks_left - 1)
                m.next = "ENCODE_TICK"

        # The report, after the answer's ticks and pending: as many outputs as fit beside the
        # membranes, then the membranes, read through the chip bus as READ does.
        remaining, outputs, req = s.remaining, self.outputs, self.bus.req.payload
        with m.State("REPORT_COUNT"):
            m.d.sync += remaining.eq(Mux(self.pending < scan.limit, self.pending, scan.limit))
            m.next = "REPORT_OUTPUTS"
        with m.State("REPORT_OUTPUTS"):
            with m.If(remaining == 0):
                m.d.sync += [s.tile.eq(scan.report_tile), s.region.eq(Region.MEMBRANE),
                             s.offset.eq(0), remaining.eq(scan.report_count)]
                m.next = "REPORT_REQUEST"
            with m.Else():
                with m.If(s.send("output", 0, "REPORT_OUTPUTS", when=outputs.valid)):
                    m.d.comb += outputs.ready.eq(1)
                    m.d.sync += remaining.eq(remaining - 1)
        with m.State("REPORT_REQUEST"):
            m.d.comb += [self.bus.req.valid.eq(1), req.write.eq(0)]
            with m.If(self.bus.req.ready):
                m.next = "REPORT_V"
        with m.State("REPORT_V"):
            last = remaining == 1
            with m.If(s.send("membrane", last, "REPORT_REQUEST", when=self.bus.resp.valid)):
                m.d.comb += self.bus.resp.ready.eq(1)
                m.d.sync += [s.offset.eq(s.offset + 1), remaining.eq(remaining - 1)]
                with m.If(last):
                    m.next = "FINISH"
