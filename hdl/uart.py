"""An 8N1 UART for the host link: 1 to 3 Mbaud from the ``sync`` domain (FT2232H on iCEBreaker).

Design choices
--------------
**One divisor, no fractional baud generator.** ``divisor`` is the number of ``sync`` cycles per
bit (12 MHz / 3 Mbaud = 4, 48 MHz / 1 Mbaud = 48). The FT2232H makes exactly 3 Mbaud, 2 Mbaud,
1 Mbaud, ... from its 12 MHz clock, so an integer divisor is exact at the rates the link uses,
and the receiver's tolerance (below) absorbs what an inexact one would cost.

**Receiver timing.** The line is asynchronous: it goes through a two-stage
:class:`~amaranth.lib.cdc.FFSynchronizer` (reset high, the idle level) and everything after that
is counted from the cycle the synchronized line is first seen low, ``n = (divisor - 1) // 2``
cycles before the middle of the start bit. The true edge lies somewhere in the cycle before,
so every sample carries up to one cycle of phase uncertainty; ``n`` puts the sample point up
to a cycle before the true middle rather than after it (at ``divisor = 4`` the later choice
would fail a sender 3% fast at its stop bit). Bit ``k`` (start = 0, data 1..8, stop = 9) is
sampled ``n + k * divisor`` cycles after that first low cycle.

* The start bit is checked at its middle: a low pulse shorter than about half a bit (a glitch)
  is high again there and is ignored.
* With ``divisor >= 8`` every sample is the majority of the three cycles around the sample
  point (a bit is then at least 7 cycles long, so one cycle either side stays inside it);
  below 8 a bit is too short for that and the single middle cycle is used.
* The stop bit is good if it is high at its middle *or one cycle later*. At ``divisor = 4``
  that cycle is a quarter bit and is what lets a sender 3% slow through: its stop bit begins
  ``9 * 1.03 = 9.27`` bits after the start edge, later than the plain middle sample can be
  with the phase uncertainty. A line held low (a break) still fails both samples.
* The receiver looks for the next start bit in the very cycle it accepts a stop bit, half a
  bit before the sender's stop bit ends, so bytes sent back to back by a fast sender are
  neither missed nor timed a cycle late.

For a sender whose bit period is ``divisor * (1 + e)``, at any phase of its start edge, every
sample stays inside its bit while ``e <= min(n / 8, (n + 1) / 9) / divisor`` (slow sender:
the data bit 7 and the late stop sample) and ``-e <= (divisor - n - 1) / (10 * divisor)`` (fast
sender: the stop sample). That is ``-5% <= e <= +3.1%`` at ``divisor = 4``, at least ``+-4%``
from 5 up and ``-5% <= e <= +5.5%`` at large divisors: at least ``+-3%`` everywhere. The tests
check ``+-3%`` and these bounds, with bytes sent back to back.

**Errors.** A stop bit that is low is a framing error: the byte is discarded, ``framing_error``
is high for one cycle, and the receiver waits for the line to be high again before it looks
for another start bit (so a break gives one framing error, not one per ten bit times).

**Overrun.** Received bytes go into a queue of ``fifo_depth`` bytes (the output register
included) in front of ``bytes``. A byte completed while the queue is full is discarded and
``overrun`` is high for one cycle: the queue keeps the *oldest* ``fifo_depth`` bytes, and
every byte lost is counted by one pulse. The pulses are meant for the counters of whoever
uses the UART; the UART itself keeps no count.

**Transmitter.** A 10-bit frame from a shift register; ``tx`` is a register (no glitches on
the pin) and ``bytes.ready`` is high while idle and in the last cycle of a stop bit, so a byte
that is waiting starts right after the previous stop bit: 10 bit times per byte, full
throughput.
"""

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["UART", "UARTReceiver", "UARTTransmitter"]

#: The smallest divisor: below 4 cycles per bit the one-cycle phase uncertainty of the start
#: edge leaves no margin for a baud-rate mismatch.
MIN_DIVISOR = 4
#: From this divisor on a sample is the majority of three cycles.
MAJORITY_DIVISOR = 8


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR} "
                         f"(clock cycles per bit), not {divisor!r}")


def _check_fifo_depth(fifo_depth):
    if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int) or fifo_depth < 1:
        raise ValueError(f"fifo_depth must be a positive integer, not {fifo_depth!r}")


class UARTReceiver(wiring.Component):
    """Receives 8N1 bytes from ``rx``: 1 start bit, 8 data bits LSB first, 1 stop bit.

    Timing, glitch rejection, baud-rate tolerance and error handling are described in the
    module documentation (:mod:`spikefab.hdl.uart`).

    Parameters
    ----------
    divisor : int
        ``sync`` clock cycles per bit, at least 4.
    fifo_depth : int
        Bytes kept for a consumer that is not ready, at least 1 (the output register).

    Members
    -------
    rx : In(1)
        The serial line, idle high; asynchronous to ``sync``.
    bytes : Out(stream.Signature(8))
        The received bytes, in order.
    framing_error : Out(1)
        High for one cycle for a byte discarded because its stop bit was low.
    overrun : Out(1)
        High for one cycle for a byte discarded because ``fifo_depth`` bytes were waiting.

    Raises
    ------
    ValueError
        On a bad parameter; the message names it and shows its value.
    """

    rx: In(1, init=1)
    bytes: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int, *, fifo_depth: int = 4):
        _check_divisor(divisor)
        _check_fifo_depth(fifo_depth)
        self.divisor = divisor
        self.fifo_depth = fifo_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        majority = divisor >= MAJORITY_DIVISOR

        line = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, line, init=1)

        # With majority voting the vote over cycles c-2, c-1, c is ready at c: one cycle after
        # the middle sample it is centred on.
        if majority:
            history = Signal(2, init=0b11)
            m.d.sync += history.eq(Cat(line, history[0]))
            sample = Signal()
            m.d.comb += sample.eq((line & history[0]) | (line & history[1])
                                  | (history[0] & history[1]))
        else:
            sample = line
        first_sample = (divisor - 1) // 2 + int(majority)  # cycles from the first low cycle

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        wiring.connect(m, wiring.flipped(self.bytes), fifo.r_stream)

        timer = Signal(range(divisor))
        bit = Signal(range(8))
        shift = Signal(8)
        done = Signal()  # a byte with a good stop bit is complete this cycle
        m.d.comb += fifo.w_data.eq(shift)
        m.d.comb += fifo.w_en.eq(done)
        m.d.sync += [self.overrun.eq(done & ~fifo.w_rdy), self.framing_error.eq(0)]

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        def look_for_start():
            # Also in the cycle a frame ends: with majority voting that cycle is one after the
            # middle of the stop bit, and may already show the start bit of a fast sender.
            with m.If(line):
                m.next = "IDLE"
            with m.Else():
                m.d.sync += timer.eq(first_sample - 1)
                m.next = "START"

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                look_for_start()
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(sample):
                        look_for_start()  # high again at the middle: a glitch
                    with m.Else():
                        m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], sample)), bit.eq(bit + 1),
                                 timer.eq(divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(sample):
                        m.d.comb += done.eq(1)
                        look_for_start()
                    with m.Else():
                        m.next = "STOP_LATE"
            with m.State("STOP_LATE"):
                # The second chance, one cycle later, for a slow sender (module docs).
                with m.If(sample):
                    m.d.comb += done.eq(1)
                    look_for_start()
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Sends the bytes of ``bytes`` as 8N1 frames on ``tx``, back to back when they wait.

    Parameters
    ----------
    divisor : int
        ``sync`` clock cycles per bit, at least 4.

    Members
    -------
    bytes : In(stream.Signature(8))
        The bytes to send. ``ready`` is high while idle and in the last cycle of a stop bit.
    tx : Out(1)
        The serial line: idle high, a registered output.

    Raises
    ------
    ValueError
        On a bad parameter; the message names it and shows its value.
    """

    bytes: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor

        busy = Signal()
        timer = Signal(range(divisor))
        bits_left = Signal(range(10))  # bits of the frame after the one on the line
        shift = Signal(9)  # those bits, next one first: the data bits, then the stop bit
        bit_ends = timer == 0

        m.d.comb += self.bytes.ready.eq(~busy | (bit_ends & (bits_left == 0)))
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.bytes.payload, C(1, 1))),
                         bits_left.eq(9), timer.eq(divisor - 1), busy.eq(1)]
        with m.Elif(busy):
            with m.If(~bit_ends):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(bits_left == 0):
                m.d.sync += busy.eq(0)  # the stop bit stays on the line: idle
            with m.Else():
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1),
                             bits_left.eq(bits_left - 1), timer.eq(divisor - 1)]
        return m


class UART(wiring.Component):
    """A :class:`UARTReceiver` and a :class:`UARTTransmitter` with the same divisor.

    Parameters
    ----------
    divisor : int
        ``sync`` clock cycles per bit, at least 4.
    fifo_depth : int
        Receive queue depth, at least 1 (see :class:`UARTReceiver`).

    Members
    -------
    rx : In(1)
        The receive line, asynchronous, idle high.
    tx : Out(1)
        The transmit line, idle high.
    rx_bytes : Out(stream.Signature(8))
        Received bytes.
    tx_bytes : In(stream.Signature(8))
        Bytes to send.
    framing_error, overrun : Out(1)
        The receiver's one-cycle error pulses.

    Raises
    ------
    ValueError
        On a bad parameter; the message names it and shows its value.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    rx_bytes: Out(stream.Signature(8))
    tx_bytes: In(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor: int, *, fifo_depth: int = 4):
        _check_divisor(divisor)
        _check_fifo_depth(fifo_depth)
        self.divisor = divisor
        self.fifo_depth = fifo_depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.divisor,
                                                        fifo_depth=self.fifo_depth)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        wiring.connect(m, wiring.flipped(self.rx_bytes), receiver.bytes)
        wiring.connect(m, wiring.flipped(self.tx_bytes), transmitter.bytes)
        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            self.framing_error.eq(receiver.framing_error),
            self.overrun.eq(receiver.overrun),
        ]
        return m
