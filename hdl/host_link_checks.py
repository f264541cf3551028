"""The host link's checks: a request is validated completely before it is executed.

* :class:`RequestChecker` judges the request's header: command, length, arguments and the
  address range of a memory command.
* :class:`RunEventChecker` checks every event of a RUN frame, or every axon of an INPUT frame,
  as the receiver stores its bytes.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .abi import (ADDRESS_BYTES, AXON_BITS, ENCODE_HEAD, INPUT_HEAD, MAX_OUTPUTS, MAX_RUN_TICKS,
                  ChipInfo,
                  Command, EventWord, Region, Status)
from .host_link_frames import FRAME_ADDR_BITS, LENGTH_BITS

__all__ = ["HEADER_PAYLOAD_BYTES", "RequestCheck", "RequestChecker", "RunEventChecker"]

#: The payload bytes the header holds (tile, region, offset and a count: the most a check needs).
HEADER_PAYLOAD_BYTES = 10

#: The executor's end of the request checker: the request's command, first payload bytes and
#: frame length out, the two check cycles' strobes out; the verdict and the counts back.
RequestCheck = wiring.Signature({
    "command": Out(8),
    "payload": Out(8 * HEADER_PAYLOAD_BYTES),
    "length": Out(LENGTH_BITS),
    "measure": Out(1),
    "check": Out(1),
    "verdict": In(4),
    "payload_length": In(LENGTH_BITS),
    "write_count": In(LENGTH_BITS),
})


def _check_info(info):
    if not isinstance(info, ChipInfo):
        raise TypeError(f"info must be a ChipInfo, not {info!r}")
    if len(info.tiles) != info.cols * info.rows:
        raise ValueError(f"info describes {len(info.tiles)} tiles for a {info.cols} x "
                         f"{info.rows} mesh")


class RequestChecker(wiring.Component):
    """A request's header in; its verdict out: OK, COMMAND, LENGTH, ARGUMENT or ADDRESS, the
    first that applies (a RUN's events and an INPUT's axons are checked apart, by
    :class:`RunEventChecker`; INPUT's tiles here).

    Two cycles of checks, each a register's worth of logic (the header's fields are 32 bits
    wide): in the ``measure`` cycle the checker registers what it measures of the fields (the
    command's form, the addressed region's size, the end of the addressed range); in the
    ``check`` cycle, the verdict, from those registers.

    Parameters
    ----------
    info : ChipInfo
        The chip's INFO: its tiles' region sizes, its word size.

    Members
    -------
    request : In(RequestCheck)
        ``command``, ``payload`` (the first :data:`HEADER_PAYLOAD_BYTES` payload bytes),
        ``length`` (the frame's: seq, command, payload and CRC); ``measure`` and ``check``, the
        strobes of the two check cycles; ``verdict`` (a :class:`Status`, registered in the
        ``check`` cycle); ``payload_length`` and ``write_count`` (the words a WRITE carries),
        from ``length``.
    """

    def __init__(self, info: ChipInfo):
        _check_info(info)
        self.info = info
        super().__init__({"request": In(RequestCheck)})

    def elaborate(self, platform):
        m = Module()
        info = self.info
        wb = info.word_bytes
        n_tiles = len(info.tiles)
        max_read = info.max_read_words
        request = self.request
        cmd = request.command

        def p(i, n=1):
            return request.payload[8 * i: 8 * (i + n)]

        tile_f, region_f, offset_f = p(0), p(1), p(2, 4)
        plen = Signal(LENGTH_BITS)
        m.d.comb += plen.eq(request.length - 4)
        write_count = Signal(LENGTH_BITS)
        m.d.comb += write_count.eq((plen - ADDRESS_BYTES) >> (wb.bit_length() - 1))
        m.d.comb += [request.payload_length.eq(plen), request.write_count.eq(write_count)]

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
                m.d.comb += [is_command.eq(1), length_ok.eq((plen >= 2) & ~plen[0]),
                             argument_ok.eq(p(0, 2) <= MAX_RUN_TICKS)]
            with m.Case(Command.INPUT):
                m.d.comb += [is_command.eq(1),
                             length_ok.eq((plen >= INPUT_HEAD.size) & ~plen[0]),
                             argument_ok.eq((p(0, 8) != 0) & (p(8, 2) <= MAX_RUN_TICKS))]
            if info.encoder:
                # Its tiles and ticks are INPUT's; its pixel groups are checked by the executor
                # before it acts (their layout depends on every mask byte).
                with m.Case(Command.ENCODE):
                    m.d.comb += [is_command.eq(1), length_ok.eq(plen >= ENCODE_HEAD.size),
                                 argument_ok.eq((p(0, 8) != 0)
                                                & (p(8, 2) <= MAX_RUN_TICKS))]
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
        beyond_q = Signal()         # INPUT (ENCODE) names a tile past the last
        names_tiles = (cmd == Command.INPUT) | (cmd == Command.ENCODE)
        with m.If(request.measure):
            m.d.sync += [form_q.eq(form), size_q.eq(size), memory_q.eq(memory_command),
                         beyond_q.eq(names_tiles & (p(0, 8) >> n_tiles != 0)),
                         end_q.eq(offset_f[:region_bits] + range_count[:region_bits]),
                         fits_q.eq((offset_f >> region_bits == 0)
                                   & (range_count >> region_bits == 0))]
        # ... and CHECK decides from them.
        in_range = Signal()
        # A count that passed its form check is at least 1, so the offset lies inside the
        # region if the end does.
        m.d.comb += in_range.eq(fits_q & (end_q <= size_q))
        verdict = Signal(4)
        with m.If(form_q != Status.OK):
            m.d.comb += verdict.eq(form_q)
        with m.Elif((memory_q & ~in_range) | beyond_q):
            m.d.comb += verdict.eq(Status.ADDRESS)
        with m.Else():
            m.d.comb += verdict.eq(Status.OK)
        with m.If(request.check):
            m.d.sync += request.verdict.eq(verdict)     # the verdict, registered
        return m


class RunEventChecker(wiring.Component):
    """The bytes the frame receiver stores in; whether every event of the frame, taken as a
    RUN request, is on the chip (the tile exists and has the axon), or, taken as an INPUT
    request, whether every axon is on every tile it names, out.

    A RUN event is the little-endian pair of bytes at body offsets 4 + 2k, 5 + 2k; an INPUT
    axon the pair at 12 + 2k, 13 + 2k, after the tiles (offsets 2-9) and the ticks. The
    checker cannot tell the CRC, the last pair of an even-length frame, from an event, so
    ``events_ok`` covers every pair but the last (an odd length is a LENGTH NAK anyway).
    The stored bytes are registered before they are checked: the receiver's unescaping is
    already a long path from the UART. The executor wants the verdict only many cycles after
    the frame's last byte. INPUT's tiles past the last are the :class:`RequestChecker`'s.

    Parameters
    ----------
    info : ChipInfo
        The chip's INFO: its mesh and its tiles' axon counts.

    Members
    -------
    store : In(1), store_addr : In(FRAME_ADDR_BITS), store_data : In(8)
        A byte of the frame being received and its offset in the body
        (:class:`~spikefab.hdl.host_link_frames.FrameReceiver`'s members of the same names).
    release : In(1)
        The frame is released: the next one starts afresh.
    events_ok : Out(1, init=1)
        Every event (axon) of the frame so far, but the last pair, is on the chip; final two
        cycles after the frame's last byte is stored.
    axon_limit : Out(AXON_BITS + 1)
        The fewest axons of a tile an INPUT or ENCODE frame names (its tile bits, offsets 2-9),
        once they are stored: ENCODE's pixels must be below it.
    """

    def __init__(self, info: ChipInfo):
        _check_info(info)
        self.info = info
        super().__init__({
            "store": In(1),
            "store_addr": In(FRAME_ADDR_BITS),
            "store_data": In(8),
            "release": In(1),
            "events_ok": Out(1, init=1),
            "axon_limit": Out(AXON_BITS + 1),
        })

    def elaborate(self, platform):
        m = Module()
        info = self.info
        n_tiles = len(info.tiles)
        # RUN's events and INPUT's axons are checked as the frame arrives, so that they are
        # injected in one pass. The stored bytes are registered first: the receiver's
        # unescaping is already a long path from the UART, and the check would follow it. The
        # verdict is due many cycles after the frame's last byte (HEADER, MEASURE, CHECK come
        # first).
        stored = Signal()
        stored_addr, stored_data = Signal(FRAME_ADDR_BITS), Signal(8)
        m.d.sync += [stored.eq(self.store), stored_addr.eq(self.store_addr),
                     stored_data.eq(self.store_data)]
        low_byte = Signal(8)
        pair = Cat(low_byte, stored_data)

        # RUN: axon counts indexed by the event's (x, y) bits themselves, 0 outside the mesh:
        # no ``y * cols + x`` (a multiplier when the mesh is not a power of two wide).
        x_bits, y_bits = EventWord["x"].shape.width, EventWord["y"].shape.width
        axons = Array(
            Const(info.tiles[y * info.cols + x].axons
                  if x < info.cols and y < info.rows else 0, AXON_BITS + 1)
            for y in range(1 << y_bits) for x in range(1 << x_bits))
        pair_event = EventWord(pair)
        run_check = Signal()
        m.d.comb += run_check.eq(pair_event.axon < axons[Cat(pair_event.x, pair_event.y)])

        # INPUT: the tiles' bits as they arrive (offsets 2 on), and the fewest axons of a tile
        # among them, registered: the first axon comes three bytes after the last tile byte.
        # The fewest is found by trying the tiles' axon counts from the smallest up.
        is_input = Signal()
        tiles = Signal(n_tiles)
        with m.If(stored & (stored_addr == 1)):
            m.d.sync += is_input.eq((stored_data == Command.INPUT)
                                    | (stored_data == Command.ENCODE))
        for b in range(-(-n_tiles // 8)):
            with m.If(stored & (stored_addr == 2 + b)):
                m.d.sync += tiles[8 * b: 8 * b + 8].eq(stored_data)
        limit = Signal(AXON_BITS + 1)
        for count in sorted({t.axons for t in info.tiles}, reverse=True):
            having = Cat(tiles[k] for k in range(n_tiles) if info.tiles[k].axons == count)
            with m.If(having.any()):
                m.d.sync += limit.eq(count)
        input_check = Signal()
        m.d.comb += [input_check.eq(pair < limit), self.axon_limit.eq(limit)]

        first_pair = Signal(FRAME_ADDR_BITS)   # the high byte of the first event or axon
        m.d.comb += first_pair.eq(Mux(is_input, INPUT_HEAD.size + 3, 5))
        pair_ok, events_ok = Signal(init=1), self.events_ok
        with m.If(stored):
            m.d.sync += low_byte.eq(stored_data)
            with m.If(stored_addr[0] & (stored_addr >= first_pair)):
                m.d.sync += [pair_ok.eq(Mux(is_input, input_check, run_check)),
                             events_ok.eq(events_ok & pair_ok)]
        with m.If(self.release):   # the frame is released: the next one starts afresh
            m.d.sync += [pair_ok.eq(1), events_ok.eq(1)]
        return m
