"""The host link: framed commands over a byte stream, executed on the chip.

The protocol is defined once, in :mod:`spikefab.firmware.protocol`; this is its gateware.
:class:`HostLink` is made of these parts, a request going through them in this order:

* :class:`~spikefab.hdl.host_link_frames.FrameReceiver` unescapes SLIP into a frame buffer,
  checking the CRC on the fly, and holds the frame until the executor is done with it, so a
  frame is only acted upon once it is known to be whole and correct: **a bad frame never
  changes state**.
* :class:`~spikefab.hdl.host_link_checks.RunEventChecker` checks RUN's events and INPUT's
  axons as the receiver stores them; :class:`~spikefab.hdl.host_link_checks.RequestChecker`
  checks the header (command, length, arguments, address range, INPUT's tiles).
* :class:`~spikefab.hdl.host_link_executor.CommandExecutor` reads the header, acts only on
  a request found valid in every respect, and executes it on the chip's bus, host port and
  tick handshake.
* :class:`~spikefab.hdl.host_link_outputs.OutputQueue` keeps the chip's output events for
  OUTPUTS, counting those it drops.
* :class:`~spikefab.hdl.host_link_frames.ResponsePath` takes the response piece by piece into
  :class:`~spikefab.hdl.host_link_frames.FrameSender`, which escapes it into SLIP and appends
  its CRC.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .abi import CORE_REGIONS, AERPacket, ChipInfo, CoreMemoryMap, TileInfo
from .chip import Chip, chip_request_layout
from .host_link_checks import RequestChecker, RunEventChecker
from .host_link_executor import CommandExecutor, chip_ports
from .host_link_frames import FrameReceiver, FrameSender, ResponseByte, ResponsePath
from .host_link_outputs import OutputQueue

__all__ = ["chip_info", "FrameReceiver", "FrameSender", "ResponseByte", "HostLink"]


def chip_info(*, cols: int, rows: int, host, tiles: dict, output_depth: int,
              encoder: bool = False, rx_queue: int = 0) -> ChipInfo:
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
    return ChipInfo(cols, rows, tuple(host), (data_bits + 7) // 8, output_depth, tuple(infos),
                    encoder, rx_queue)


class HostLink(wiring.Component):
    """The chip's end of the host link: protocol bytes in and out, the chip driven.

    Parameters
    ----------
    chip : Chip
        The chip this link drives (its tiles decide the address checks and INFO).
    output_depth : int
        Output events kept for OUTPUTS; further ones are dropped and counted.
    timeout_log2 : int
        A half-received frame is dropped after between ``2 ** (timeout_log2 - 1)`` and
        ``2 ** timeout_log2`` silent cycles (boards: tens of milliseconds).
    encoder : bool
        Draw spikes from pixels on the chip (the ENCODE command): the executor's scan of a
        frame's pixel groups and its generator.
    rx_queue : int
        Bytes queued (a block RAM) in front of the frame receiver, which takes none while it
        holds a frame: with it a host sends the next requests while the chip executes and
        answers one (0: none).

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        Bytes to the host.
    host_in, host_out, tick, quiet, bus, mesh_drops, ticks
        To the chip's members of the same names.
    line_error : In(1)
        One cycle for each byte the UART lost (a framing error or an overrun): counted in
        STATUS.
    busy : Out(1)
        A frame is being received, executed or answered.
    nak : Out(1)
        One cycle for every NAK sent (e.g. an error LED).
    """

    def __init__(self, chip: Chip, *, output_depth: int = 256, timeout_log2: int = 21,
                 encoder: bool = False, rx_queue: int = 0):
        if not isinstance(chip, Chip):
            raise TypeError(f"chip must be a Chip, not {chip!r}")
        if isinstance(output_depth, bool) or not isinstance(output_depth, int) \
                or not 1 <= output_depth <= 4096:
            raise ValueError(f"output_depth must be an integer in [1, 4096], "
                             f"not {output_depth!r}")
        if isinstance(rx_queue, bool) or not isinstance(rx_queue, int) \
                or not 0 <= rx_queue <= 0xFFFF:
            raise ValueError(f"rx_queue must be an integer in [0, 65535], not {rx_queue!r}")
        self.chip = chip
        self.output_depth = output_depth
        self.rx_queue = rx_queue
        self.timeout_log2 = timeout_log2
        self.info = chip_info(cols=chip.cols, rows=chip.rows, host=chip.host, tiles=chip.tiles,
                              output_depth=output_depth, encoder=bool(encoder),
                              rx_queue=rx_queue)
        bus_signature = chip.signature.members["bus"].signature.flip()
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "host_in": Out(stream.Signature(AERPacket)),
            "host_out": In(stream.Signature(AERPacket)),
            "line_error": In(1),
            **chip_ports(bus_signature),
        })

    def elaborate(self, platform):
        m = Module()
        info, chip = self.info, self.chip
        m.submodules.receiver = receiver = FrameReceiver()
        m.submodules.run_events = run_events = RunEventChecker(info)
        m.submodules.checker = checker = RequestChecker(info)
        m.submodules.executor = executor = CommandExecutor(
            info, self.bus.signature, dsp_counters=chip.dsp_counters,
            timeout_log2=self.timeout_log2)
        m.submodules.outputs = outputs = OutputQueue(self.output_depth,
                                                     registered=chip.registered_reads)
        m.submodules.response = response = ResponsePath(executor.pieces)
        m.submodules.sender = sender = FrameSender()

        # A request: its bytes into the receiver, checked as they are stored (RUN's events);
        # the frame to the executor, which reads it from the receiver's buffer and has its
        # header checked.
        if self.rx_queue:
            m.submodules.rx_queue = rx_queue = SyncFIFOBuffered(width=8, depth=self.rx_queue)
            wiring.connect(m, wiring.flipped(self.rx), rx_queue.w_stream)
            # The queue's block RAM hands its byte over late in the cycle (about 6 ns on the
            # ECP5), and the receiver's unescaping and CRC follow it: a register after it
            # starts the receiver's path afresh (taking a byte whenever it is empty or being
            # emptied, so a byte a cycle still gets through).
            held, byte = Signal(), Signal(8)
            queue_out = rx_queue.r_stream
            m.d.comb += [queue_out.ready.eq(~held | receiver.bytes.ready),
                         receiver.bytes.valid.eq(held), receiver.bytes.payload.eq(byte)]
            with m.If(queue_out.ready):
                m.d.sync += [held.eq(queue_out.valid), byte.eq(queue_out.payload)]
            queued = rx_queue.r_rdy | held
        else:
            wiring.connect(m, wiring.flipped(self.rx), receiver.bytes)
            queued = 0
        m.d.comb += [run_events.store.eq(receiver.store),
                     run_events.store_addr.eq(receiver.store_addr),
                     run_events.store_data.eq(receiver.store_data),
                     # A frame answered, or a half frame dropped: the next is judged afresh.
                     run_events.release.eq(receiver.frame.ready | receiver.timed_out),
                     executor.events_ok.eq(run_events.events_ok),
                     executor.axon_limit.eq(run_events.axon_limit)]
        wiring.connect(m, receiver.frame, executor.frame)
        m.d.comb += [receiver.read_addr.eq(executor.read_addr),
                     executor.read_data.eq(receiver.read_data),
                     receiver.silence.eq(executor.silence),
                     executor.line_error.eq(self.line_error)]
        wiring.connect(m, executor.request, checker.request)

        # Its execution on the chip, whose output events wait in the output queue.
        wiring.connect(m, executor.host_in, wiring.flipped(self.host_in))
        wiring.connect(m, executor.tick, wiring.flipped(self.tick))
        wiring.connect(m, executor.bus, wiring.flipped(self.bus))
        wiring.connect(m, wiring.flipped(self.host_out), outputs.host_out)
        wiring.connect(m, outputs.events, executor.outputs)
        m.d.comb += [executor.quiet.eq(self.quiet), executor.arriving.eq(self.host_out.valid),
                     executor.mesh_drops.eq(self.mesh_drops), executor.ticks.eq(self.ticks),
                     executor.pending.eq(outputs.pending), executor.taken.eq(outputs.taken),
                     outputs.commit.eq(executor.commit), outputs.rewind.eq(executor.rewind),
                     outputs.clear.eq(executor.clear), outputs.mark.eq(executor.mark),
                     outputs.rollback.eq(executor.rollback),
                     executor.overflowed.eq(outputs.overflowed),
                     executor.output_drops.eq(outputs.output_drops)]

        # Its response, piece by piece, into the sender.
        wiring.connect(m, executor.piece, response.piece)
        m.d.comb += response.values.eq(executor.values)
        wiring.connect(m, response.response, sender.response)
        wiring.connect(m, sender.bytes, wiring.flipped(self.tx))

        m.d.comb += [self.nak.eq(executor.nak),
                     self.busy.eq(executor.busy | receiver.frame.valid | sender.busy
                                  | response.response.valid | queued)]
        return m
