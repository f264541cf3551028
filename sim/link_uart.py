"""The RTL chip behind a board's UART, clocked from C++: a board's serial line, bit for bit.

The ``sim`` target (:mod:`spikefab.sim.link_fast`) hands the host link a chunk of bytes per
cycle, so it says what the chip computes and how many cycles the chip itself takes, but not
how long a board takes, whose bytes cross a UART at 10 bit times each. Here the chip's
:class:`~spikefab.hdl.system.ChipSystem` sits behind the UART of :mod:`spikefab.hdl.uart`
(:class:`UartPort`, wired as ``boards/top.py``'s ``BoardTop`` wires it, at the board's divisor),
and a C++ main (``harness/uart_main.cpp``) plays the host's UART on its pins: it sends each bit
for ``divisor`` clock cycles and samples the chip's bits in their middles. It serves the
messages of :mod:`spikefab.sim.link_rtl` like the ``sim`` harness (so
:class:`~spikefab.sim.link_fast.FastLink` drives it), and one more, :data:`LINE_COUNTS`: the
cycles each line was busy, and those with neither busy (the chip's own time).

Two ways to drive it: :class:`UartTransport` sends a frame and runs the clock until its answer
is complete (:data:`~spikefab.sim.link_rtl.REQUEST_HEAD`), one frame at a time; and
:class:`UartLineTransport` is a board's serial port, with ``send``, ``read_frame`` and
``drain`` as the driver's ``SerialTransport`` has them (:data:`SEND`, :data:`RECEIVE`,
:data:`DRAIN`): the host's transmitter keeps a queue of bytes that outlives each message, so a
host can send requests ahead while the chip works on one (``Link.stream``).

The host it plays is ideal: what it sends after an answer starts in the cycle after that
answer's last stop bit, and the clock stands still between messages. A real host adds a
turnaround between an answer and its next request (a USB-serial adapter's latency, the
operating system's scheduling), which this does not model.

Builds are cached like :class:`~spikefab.sim.link_fast.HarnessBuild`'s (by the Verilog, the
harness source, the Verilator version and the flags), with the same Verilator flags.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..firmware.protocol import SlipDecoder
from ..hdl.uart import UART
from .link_fast import VERILATOR_FLAGS, FastLink, HarnessBuild
from .link_rtl import ANSWER_HEAD, REQUEST_HEAD, LinkTransport, power_on_reset
from .runner import RTLBuild, SimulationError

__all__ = ["UART_HARNESS_SOURCE", "LINE_COUNTS", "LINE_COUNTS_HEAD", "SEND", "SEND_HEAD",
           "RECEIVE", "DRAIN", "CYCLES_HEAD", "UartPort", "uart_build", "UartHarnessBuild",
           "UartLink", "LineExchange", "UartTransport", "LineFrame", "UartLineTransport"]

UART_HARNESS_SOURCE = Path(__file__).parent / "harness" / "uart_main.cpp"

#: A request length that asks the harness for its line counts instead (the other special
#: lengths are :mod:`spikefab.sim.link_rtl`'s): answered with ``ANSWER_HEAD`` and
#: :data:`LINE_COUNTS_HEAD`.
LINE_COUNTS = 0xFFFF_FFFD
#: Clock cycles since the start in which the host was sending (rx busy), the chip was sending
#: (tx busy), and neither was.
LINE_COUNTS_HEAD = struct.Struct("<QQQ")
#: Request lengths for a host that drives the line as a board's serial port (the harness
#: keeps a queue of bytes to send across messages):
#:
#: * ``SEND``, then :data:`SEND_HEAD` (a length) and the bytes: queued behind any still being
#:   sent, answered at once with no bytes (no cycle passes);
#: * ``RECEIVE``, then :data:`CYCLES_HEAD` (most cycles to run): the clock runs until a whole
#:   frame from the chip has been received, or that many cycles passed without one. Answered
#:   with ``ANSWER_HEAD``, :data:`LINE_COUNTS_HEAD`, then the bytes received since the previous
#:   frame up to this one's closing END (none when no frame came in time); the cycle count is
#:   that of the end of the frame's last stop bit;
#: * ``DRAIN``, then :data:`CYCLES_HEAD` (quiet cycles): the clock runs until the chip's line
#:   has been idle that long; answered with the bytes thrown away (a half frame included).
SEND = 0xFFFF_FFFC
RECEIVE = 0xFFFF_FFFB
DRAIN = 0xFFFF_FFFA
SEND_HEAD = struct.Struct("<I")
CYCLES_HEAD = struct.Struct("<Q")


class UartPort(wiring.Component):
    """A board's chip between its UART pins, on one clock that resets itself.

    The receive queue, the register stage a deep one gets, and the error pulses into the link
    are wired as in ``BoardTop`` (``boards/top.py``); its clock, PLL and LEDs are left out. The
    reset comes from a power-on counter, high for the first
    :data:`~spikefab.sim.link_rtl.POWER_ON_RESET` rising edges, as in
    :class:`~spikefab.sim.link_rtl.ChunkedPort`: a reset input would make Verilator evaluate
    every register's reset logic at every eval.

    Parameters
    ----------
    system : ChipSystem
        The chip and its host link, on one clock (a board's: ``Clocking.SINGLE``).
    divisor : int
        Clock cycles per bit of the UART.
    rx_fifo_depth : int
        Bytes of receive queue.

    Members
    -------
    clk : In(1)
        The clock.
    rx : In(1)
        The line from the host, idle high.
    tx : Out(1)
        The line to the host, idle high.
    """

    def __init__(self, system, *, divisor: int, rx_fifo_depth: int = 2):
        if system.chip.domains:
            raise SimulationError("a chip with several clock domains cannot sit behind the "
                                  "UART harness: build it with Clocking.SINGLE, as a board does")
        self.system = system
        self.divisor = divisor
        self.rx_fifo_depth = rx_fifo_depth
        super().__init__({"clk": In(1), "rx": In(1, init=1), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        power_on_reset(m, self.clk)

        m.submodules.system = system = self.system
        m.submodules.uart = uart = UART(self.divisor, fifo_depth=self.rx_fifo_depth)
        m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx)]
        if self.rx_fifo_depth > 16:
            # BoardTop's register between a block-RAM queue and the frame receiver.
            m.submodules.rx_stage = rx_stage = SyncFIFOBuffered(width=8, depth=1)
            wiring.connect(m, uart.rx_bytes, rx_stage.w_stream)
            wiring.connect(m, rx_stage.r_stream, system.rx)
        else:
            wiring.connect(m, uart.rx_bytes, system.rx)
        wiring.connect(m, system.tx, uart.tx_bytes)
        m.d.comb += system.line_error.eq(uart.overrun | uart.framing_error)
        return m


def uart_build(system, *, divisor: int, clock_hz: float, rx_fifo_depth: int = 2,
               label: str = "uart") -> RTLBuild:
    """The RTL build of ``system`` behind a UART of ``divisor`` clock cycles per bit (a board's:
    ``sim/board_timing.py`` takes them from the board's top). ``clock_hz``, the clock the
    board runs it at, only turns cycles into seconds."""
    build = RTLBuild(UartPort(system, divisor=divisor, rx_fifo_depth=rx_fifo_depth), label,
                     ports_only=True)
    build.info = system.info
    build.timeout_log2 = system.link.timeout_log2
    build.domains = []
    build.divisor = divisor
    build.clock_hz = clock_hz
    return build


class UartHarnessBuild(HarnessBuild):
    """``harness/uart_main.cpp`` compiled with Verilator's model of a :func:`uart_build`, with
    :class:`~spikefab.sim.link_fast.HarnessBuild`'s flags and the divisor."""

    def __init__(self, build: RTLBuild):
        super().__init__(build, source=UART_HARNESS_SOURCE, kind="uart-harness",
                         flags=(*VERILATOR_FLAGS, "-CFLAGS", f"-DDIVISOR={build.divisor}"))
        self.divisor = build.divisor
        self.clock_hz = build.clock_hz


class UartLink(FastLink):
    """A running UART-accurate simulation of a chip behind its board's UART.

    :meth:`exchange` sends one frame's bytes bit by bit and returns the chip's answer:
    :attr:`cycles` is the clock cycles since the start as of the end of the answer's last stop
    bit, :attr:`rx_busy`, :attr:`tx_busy` and :attr:`quiet` the cycles since the start with the
    host sending, the chip sending, and neither. One frame per exchange, as a board's serial
    transport sends requests it does not stream: the chip's frame receiver takes no byte
    while it executes a frame, so without a queue in front of it (``ChipInfo.rx_queue``) the
    UART's 2 bytes would lose the next frame's.

    :meth:`send`, :meth:`receive` and :meth:`drain` drive the line as a board's serial port
    does: bytes queued on the host's transmitter, frames read as they come. Once they are in
    use, :meth:`exchange` and :meth:`idle` need the line settled (everything sent answered).

    Parameters
    ----------
    build : RTLBuild or UartHarnessBuild
        From :func:`uart_build`.
    timeout, request_timeout
        As for :class:`~spikefab.sim.link_fast.FastLink`.
    """

    def __init__(self, build, **kwargs):
        harness = build if isinstance(build, UartHarnessBuild) else UartHarnessBuild(build)
        super().__init__(harness, **kwargs)
        self.divisor = harness.divisor
        self.clock_hz = harness.clock_hz
        self.rx_busy = self.tx_busy = self.quiet = 0

    def exchange(self, data: bytes) -> bytes:
        frames = len(SlipDecoder().feed(data))
        if frames > 1:
            raise ValueError(f"{frames} frames in one exchange: a UART link carries one frame "
                             f"at a time (the chip takes no bytes while it executes one), so "
                             f"send each alone and wait for its answer")
        answer = super().exchange(data)
        self._send(REQUEST_HEAD.pack(LINE_COUNTS))
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        if length != LINE_COUNTS_HEAD.size:
            raise SimulationError(f"the UART harness answered LINE_COUNTS with {length} bytes, "
                                  f"not {LINE_COUNTS_HEAD.size}")
        self.rx_busy, self.tx_busy, self.quiet = LINE_COUNTS_HEAD.unpack(self._recv(length))
        return answer

    def send(self, data: bytes) -> None:
        """Queue ``data`` on the host's transmitter, behind whatever it is still sending; no
        time passes."""
        if not data:
            return
        self._send(REQUEST_HEAD.pack(SEND) + SEND_HEAD.pack(len(data)) + bytes(data))
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        if length:
            raise SimulationError(f"the UART harness answered a SEND with {length} bytes")

    def receive(self, cycles: int) -> bytes | None:
        """Run the clock until a whole frame from the chip has come, at most ``cycles``
        cycles: the bytes since the previous frame up to its closing END, or None if none came
        in time. :attr:`cycles` and the line counts are those at the end of its last stop bit
        (or of the wait)."""
        if cycles < 0:
            raise ValueError(f"cannot wait {cycles} cycles for a frame")
        self._send(REQUEST_HEAD.pack(RECEIVE) + CYCLES_HEAD.pack(cycles))
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        self.rx_busy, self.tx_busy, self.quiet = LINE_COUNTS_HEAD.unpack(
            self._recv(LINE_COUNTS_HEAD.size))
        return self._recv(length) if length else None

    def drain(self, cycles: int) -> bytes:
        """Run the clock until the chip's line has been idle ``cycles`` cycles: the bytes
        thrown away (a half frame received before included)."""
        self._send(REQUEST_HEAD.pack(DRAIN) + CYCLES_HEAD.pack(max(0, cycles)))
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        return self._recv(length)


@dataclass(frozen=True)
class LineExchange:
    """One request over a :class:`UartTransport`: what it sent and got, and its clock cycles
    (from its first start bit to its answer's last stop bit), split by which line was busy."""
    command: int | None   #: the request's command byte (None: no readable frame)
    sent: int             #: bytes to the chip
    received: int         #: bytes from the chip
    cycles: int
    rx_busy: int          #: cycles the host was sending
    tx_busy: int          #: cycles the chip was sending
    quiet: int            #: cycles with neither line busy: the chip at work


class UartTransport(LinkTransport):
    """A chip behind its board's UART as a driver transport: the driver's serial line, bit for
    bit. ``window`` 1: the driver sends one frame and waits for its answer, as over a board's
    line (where it uses ``SerialTransport``); nothing is lost, so no ``read_frame``.

    :attr:`exchanges` lists a :class:`LineExchange` per request, in order.

    Parameters
    ----------
    build : RTLBuild or UartHarnessBuild
        From :func:`uart_build`.
    """
    window = 1

    def __init__(self, build, **kwargs):
        self.link = UartLink(build, **kwargs)
        self.divisor = self.link.divisor
        self.clock_hz = self.link.clock_hz
        self.exchanges: list[LineExchange] = []

    def exchange(self, data: bytes) -> bytes:
        link = self.link
        before = (link.cycles, link.rx_busy, link.tx_busy, link.quiet)
        answer = link.exchange(data)
        frames = SlipDecoder().feed(data)
        command = frames[0][0][1] if frames and len(frames[0][0]) > 1 else None
        cycles, rx_busy, tx_busy, quiet = (now - then for now, then in zip(
            (link.cycles, link.rx_busy, link.tx_busy, link.quiet), before))
        self.exchanges.append(LineExchange(command, len(data), len(answer), cycles, rx_busy,
                                           tx_busy, quiet))
        return answer


@dataclass(frozen=True)
class LineFrame:
    """One frame a :class:`UartLineTransport` read from the chip, and the line as its last stop
    bit ended (every count since the start of the simulation, so that a span's time is the
    difference of its ends')."""
    seq: int | None       #: the answer's seq (None: no readable frame)
    command: int | None   #: the command of the request it answers (None: none sent with its seq)
    sent: int             #: bytes of that request
    received: int         #: bytes from the chip since the previous frame, up to its closing END
    cycles: int
    rx_busy: int          #: cycles the host was sending
    tx_busy: int          #: cycles the chip was sending
    quiet: int            #: cycles with neither line busy


class UartLineTransport:
    """A chip behind its board's UART as a board's serial line: ``send``, ``read_frame``,
    ``drain``, ``timeout`` and ``port`` as the driver's ``SerialTransport`` has them, so the
    driver's :class:`~spikefab.firmware.driver.Link` drives it as it drives a board (request by
    request, and ``Link.stream``'s requests sent ahead as far as the chip's queue takes them).

    Time is the simulation's: ``read_frame(timeout)`` runs the clock for at most ``timeout``
    seconds at the board's clock and returns None when no frame came in them, as a board's
    port does on its timeout; between calls no time passes (the host is ideal).

    :attr:`frames` lists a :class:`LineFrame` per frame read, in order.

    Parameters
    ----------
    build : RTLBuild or UartHarnessBuild
        From :func:`uart_build`.
    timeout : float
        Seconds (simulated) the driver waits for an answer: ``SerialTransport``'s default.
    """
    window = 1

    def __init__(self, build, *, timeout: float = 2.0, **kwargs):
        self.link = UartLink(build, **kwargs)
        self.divisor = self.link.divisor
        self.clock_hz = self.link.clock_hz
        self.timeout = timeout
        self.port = f"uart-sim:{getattr(build, 'label', None) or self.link.build.directory.name}"
        self.frames: list[LineFrame] = []
        # The harness hands over one whole frame at a time, so the decoder never holds more
        # than the frames' bytes between two calls.
        self._decoder = SlipDecoder()
        self._unanswered = deque()   # (seq, command, bytes) of requests sent, not yet answered

    def cycles(self, seconds: float) -> int:
        """``seconds`` at the board's clock, in whole cycles."""
        return max(0, round(seconds * self.clock_hz))

    def send(self, data: bytes) -> None:
        # Whose answer each frame read is (by seq, the oldest request first): its bytes go to
        # the first request of the data, so that the requests' bytes add up to those sent.
        size = len(data)
        for body, _ in SlipDecoder().feed(data):
            if len(body) >= 2:
                self._unanswered.append((body[0], body[1], size))
                size = 0
        self.link.send(data)

    def read_frame(self, timeout: float):
        """The next frame the chip sends, ``(body, error)``, or None after ``timeout``
        simulated seconds without one."""
        data = self.link.receive(self.cycles(timeout))
        if data is None:
            return None
        frames = self._decoder.feed(data)
        if len(frames) != 1:
            raise SimulationError(f"the UART harness said a frame was complete, but its "
                                  f"{len(data)} bytes hold {len(frames)}")
        (body, error), = frames
        seq = body[0] if body else None
        request = next((r for r in self._unanswered if r[0] == seq), None)
        if request is not None:
            self._unanswered.remove(request)
        command, sent = (request[1], request[2]) if request else (None, 0)
        link = self.link
        self.frames.append(LineFrame(seq, command, sent, len(data), link.cycles, link.rx_busy,
                                     link.tx_busy, link.quiet))
        return body, error

    def drain(self, quiet: float = 0.02) -> int:
        """Throw away whatever the chip is still sending, until its line has been quiet for
        ``quiet`` simulated seconds; the bytes thrown away (a half frame included)."""
        dropped = len(self.link.drain(self.cycles(quiet)))
        self._decoder.discard()
        return dropped

    def close(self) -> None:
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
