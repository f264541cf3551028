"""The 8N1 UART in Amaranth's simulator, bit by bit: loopback, baud mismatch, glitches, framing
errors, overrun, the transmitter's exact waveform, parameter checks and Verilog export."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from spikefab.hdl.uart import UART, UARTReceiver, UARTTransmitter
from spikefab.sim.runner import verilog_of

from conftest import raises_in_constructor

DIVISORS = (4, 5, 12, 48)


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """The levels of one 8N1 frame: start bit, data bits LSB first, stop bit."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def serial_levels(frames, period: Fraction, *, phase: Fraction = Fraction(0),
                  gaps=None, lead: int = 8, tail: int = 0) -> list[int]:
    """The line, one level per ``sync`` cycle, of a sender with a bit period of ``period``
    cycles (a fraction: a fractional accumulator), idle high before and after.

    ``frames`` are lists of bit levels, each bit ``period`` long; ``gaps[i]`` idle bit times
    (any fraction) follow frame ``i``. The sender's clock starts ``lead + phase`` cycles in.
    Cycle ``c`` shows the level of the bit whose interval ``[start, end)`` holds ``c``, which
    is what sampling a continuous line at the clock edges gives.
    """
    gaps = gaps if gaps is not None else [0] * len(frames)
    edges = []  # (time, level): the line is `level` from `time` on
    t = Fraction(lead) + phase
    for frame, gap in zip(frames, gaps):
        for level in frame:
            edges.append((t, level))
            t += period
        edges.append((t, 1))
        t += gap * period
    end = int(t) + 1 + tail
    levels, level, k = [], 1, 0
    for c in range(end):
        while k < len(edges) and edges[k][0] <= c:
            level = edges[k][1]
            k += 1
        levels.append(level)
    return levels


def run_receiver(dut, levels, *, ready=None, after: int = 0):
    """Drive ``dut.rx`` with ``levels`` (then idle high for ``after`` cycles); return the bytes
    taken from ``dut.bytes`` and the cycles ``framing_error`` and ``overrun`` were high.

    ``ready(cycle)`` gives ``bytes.ready`` (default: always ready).
    """
    got, framing, overrun = [], [], []

    async def testbench(ctx):
        for cycle, level in enumerate(itertools.chain(levels, [1] * after)):
            ctx.set(dut.rx, level)
            rdy = 1 if ready is None else ready(cycle)
            ctx.set(dut.bytes.ready, rdy)
            *_, valid, payload, fe, ov = await ctx.tick().sample(
                dut.bytes.valid, dut.bytes.payload, dut.framing_error, dut.overrun)
            if valid and rdy:
                got.append(payload)
            if fe:
                framing.append(cycle)
            if ov:
                overrun.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return got, framing, overrun


# ---- 1. loopback ------------------------------------------------------------------------------

def _pattern(kind, rng):
    """Valid / ready over time: every cycle, the deterministic 1,1,1,0, or seeded random."""
    if kind == "full":
        return itertools.repeat(1)
    if kind == "cycle":
        return itertools.cycle([1, 1, 1, 0])
    return (int(rng.random() < 0.6) for _ in itertools.count())


@pytest.mark.parametrize("divisor", DIVISORS)
@pytest.mark.parametrize("pattern", ["full", "cycle", "random"])
def test_loopback_delivers_every_byte_in_order(base_seed, divisor, pattern):
    seed = base_seed + 1000 * divisor + {"full": 0, "cycle": 1, "random": 2}[pattern]
    rng = np.random.default_rng(seed)
    count = {4: 200, 5: 200, 12: 100}.get(divisor, 40)  # ~10 000 cycles a second
    sent = [int(b) for b in rng.integers(0, 256, count)]
    m = Module()
    m.submodules.uart = uart = UART(divisor)
    m.d.comb += uart.rx.eq(uart.tx)
    got, errors = [], {"framing": 0, "overrun": 0}
    send_valid = _pattern(pattern, np.random.default_rng(seed + 1))
    take_ready = _pattern(pattern, np.random.default_rng(seed + 2))

    async def producer(ctx):
        for byte in sent:
            # Idle gaps of whole cycles between bytes; valid, once up, waits for ready.
            while not next(send_valid):
                await ctx.tick()
            ctx.set(uart.tx_bytes.payload, byte)
            ctx.set(uart.tx_bytes.valid, 1)
            await ctx.tick().until(uart.tx_bytes.ready)
            ctx.set(uart.tx_bytes.valid, 0)

    async def consumer(ctx):
        for _ in range((count + 2) * 10 * divisor * 2):
            ready = next(take_ready)
            ctx.set(uart.rx_bytes.ready, ready)
            *_, valid, payload, fe, ov = await ctx.tick().sample(
                uart.rx_bytes.valid, uart.rx_bytes.payload, uart.framing_error, uart.overrun)
            if valid and ready:
                got.append(payload)
            errors["framing"] += fe
            errors["overrun"] += ov
            if len(got) == count:
                break
        for _ in range(20 * divisor):  # nothing more may arrive
            *_, valid, fe, ov = await ctx.tick().sample(
                uart.rx_bytes.valid, uart.framing_error, uart.overrun)
            assert not (valid or fe or ov), f"seed {seed}: activity after the last byte"

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(consumer)
    sim.run()

    assert got == sent, f"seed {seed}: {len(got)} of {count} bytes, first difference at " \
                        f"{next((i for i, (a, b) in enumerate(zip(got, sent)) if a != b), None)}"
    assert errors == {"framing": 0, "overrun": 0}, f"seed {seed}: {errors}"


# ---- 2. baud-rate mismatch --------------------------------------------------------------------

#: Bytes whose single transition (or none) sits where a drifting sample point hurts most.
EDGE_BYTES = [0x00, 0xFF, 0x80, 0x7F, 0x01, 0xFE, 0x55, 0xAA]


def _mismatch_run(seed, divisor, mismatch, count=80):
    rng = np.random.default_rng(seed)
    sent = EDGE_BYTES + [int(b) for b in rng.integers(0, 256, count)]
    period = Fraction(divisor) * (1 + Fraction(mismatch).limit_denominator(1000))
    # Mostly back to back (the sender's next start bit right after its stop bit), sometimes a
    # gap of a fraction of a bit, so the start edges fall at every phase of the clock.
    gaps = [0 if rng.random() < 0.7 else Fraction(int(rng.integers(1, 40)), 16) for _ in sent]
    phase = Fraction(int(rng.integers(0, 97)), 97)
    levels = serial_levels([frame_bits(b) for b in sent], period, phase=phase, gaps=gaps)
    got, framing, overrun = run_receiver(UARTReceiver(divisor), levels, after=4 * divisor)
    return sent, got, framing, overrun


@pytest.mark.parametrize("divisor", (4, 5, 6, 12, 48))
@pytest.mark.parametrize("mismatch", (-0.03, +0.03))
def test_receiver_tolerates_3_percent_baud_mismatch(base_seed, divisor, mismatch):
    seed = base_seed + 2000 + 10 * divisor + (mismatch > 0)
    sent, got, framing, overrun = _mismatch_run(seed, divisor, mismatch,
                                                count=80 if divisor <= 12 else 16)
    assert got == sent, f"seed {seed}: divisor {divisor}, mismatch {mismatch:+.0%}: " \
                        f"{len(got)} of {len(sent)} bytes"
    assert not framing and not overrun, f"seed {seed}: framing {framing}, overrun {overrun}"


def tolerance(divisor):
    """The documented bounds of ``e`` (module docs of :mod:`spikefab.hdl.uart`)."""
    n = (divisor - 1) // 2
    return -(divisor - n - 1) / (10 * divisor), min(n / 8, (n + 1) / 9) / divisor


@pytest.mark.parametrize("divisor", (4, 5, 7, 8, 9, 12))
@pytest.mark.parametrize("side", ("fast", "slow"))
def test_receiver_meets_the_documented_tolerance(base_seed, divisor, side):
    """Just inside the worked-out bounds, which are at least +-3% for every divisor."""
    seed = base_seed + 2200 + 10 * divisor + (side == "slow")
    fast, slow = tolerance(divisor)
    assert fast <= -0.03 and slow >= 0.03
    mismatch = fast + 0.001 if side == "fast" else slow - 0.001
    sent, got, framing, overrun = _mismatch_run(seed, divisor, mismatch, count=30)
    assert got == sent and not framing and not overrun, \
        f"seed {seed}: divisor {divisor}, mismatch {mismatch:+.1%}: {len(got)} of {len(sent)}" \
        f" bytes, framing {framing}, overrun {overrun}"


@pytest.mark.parametrize("mismatch", (-0.10, +0.10))
def test_receiver_mismatch_check_can_fail(base_seed, mismatch):
    """The harness above is not blind: a 10% mismatch at divisor 4 does corrupt bytes."""
    seed = base_seed + 2500 + (mismatch > 0)
    sent, got, framing, _ = _mismatch_run(seed, 4, mismatch, count=20)
    assert got != sent or framing, f"seed {seed}: a 10% mismatch went through unnoticed"


# ---- 3. glitches ------------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", DIVISORS + (8, 9))
def test_glitches_are_not_start_bits(base_seed, divisor):
    seed = base_seed + 3000 + divisor
    rng = np.random.default_rng(seed)
    longest = max(1, divisor // 3)
    sent, levels = [], [1] * 8
    for _ in range(30 if divisor <= 12 else 12):
        for _ in range(int(rng.integers(0, 3))):
            levels += [0] * int(rng.integers(1, longest + 1))
            levels += [1] * int(rng.integers(divisor, 3 * divisor))
        byte = int(rng.integers(0, 256))
        sent.append(byte)
        levels += [level for level in frame_bits(byte) for _ in range(divisor)]
        levels += [1] * int(rng.integers(divisor, 2 * divisor))
    got, framing, overrun = run_receiver(UARTReceiver(divisor), levels, after=2 * divisor)
    assert got == sent, f"seed {seed}: divisor {divisor}: glitches of up to {longest} cycles"
    assert not framing and not overrun, f"seed {seed}: framing {framing}, overrun {overrun}"


@pytest.mark.parametrize("divisor", (8, 9, 12))
def test_majority_vote_outvotes_a_one_cycle_spike_in_every_bit(base_seed, divisor):
    """From divisor 8 on a sample is the majority of three cycles: a one-cycle spike at any
    offset into the data bits changes nothing."""
    seed = base_seed + 3500 + divisor
    rng = np.random.default_rng(seed)
    sent, levels = [], [1] * 8
    for offset in list(range(1, divisor)) * 2:
        byte = int(rng.integers(0, 256))
        sent.append(byte)
        for k, level in enumerate(frame_bits(byte)):
            bit = [level] * divisor
            if 1 <= k <= 8:
                bit[offset] ^= 1
            levels += bit
        levels += [1] * int(rng.integers(0, divisor))
    got, framing, overrun = run_receiver(UARTReceiver(divisor), levels, after=2 * divisor)
    assert got == sent, f"seed {seed}: divisor {divisor}"
    assert not framing and not overrun, f"seed {seed}: framing {framing}, overrun {overrun}"


# ---- 4. framing errors ------------------------------------------------------------------------

@pytest.mark.parametrize("divisor", DIVISORS)
def test_framing_error_discards_the_byte_and_recovers(base_seed, divisor):
    seed = base_seed + 4000 + divisor
    rng = np.random.default_rng(seed)
    period = Fraction(divisor)
    frames, gaps, want, bad = [], [], [], 0
    for _ in range(24):
        byte = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            bad += 1
            frames.append(frame_bits(byte, stop=0))
            # A bad stop bit followed by idle, or by a break of many bit times.
            if rng.random() < 0.5:
                frames.append([0] * int(rng.integers(2, 40)))
                gaps.append(0)
            gaps.append(Fraction(int(rng.integers(1, 4))))
        else:
            want.append(byte)
            frames.append(frame_bits(byte))
            gaps.append(Fraction(int(rng.integers(0, 2))))
    # serial_levels ends every frame with idle high; a break is a frame of low bits.
    levels = serial_levels(frames, period, gaps=gaps)
    got, framing, overrun = run_receiver(UARTReceiver(divisor), levels, after=2 * divisor)
    assert got == want, f"seed {seed}: divisor {divisor}"
    assert len(framing) == bad, f"seed {seed}: {len(framing)} framing errors for {bad} bad"
    assert not overrun, f"seed {seed}: overrun {overrun}"


def test_a_long_break_is_one_framing_error(base_seed):
    divisor = 5
    levels = [1] * 10 + [0] * (50 * divisor) + [1] * (2 * divisor)
    levels += [level for level in frame_bits(0xA5) for _ in range(divisor)]
    got, framing, overrun = run_receiver(UARTReceiver(divisor), levels, after=2 * divisor)
    assert got == [0xA5] and len(framing) == 1 and not overrun, (got, framing, overrun)


# ---- 5. overrun -------------------------------------------------------------------------------

@pytest.mark.parametrize("fifo_depth", (1, 2, 4))
@pytest.mark.parametrize("divisor", (4, 12))
def test_overrun_keeps_the_oldest_bytes_and_counts_the_rest(base_seed, divisor, fifo_depth):
    seed = base_seed + 5000 + 10 * divisor + fifo_depth
    rng = np.random.default_rng(seed)
    extra = 3
    first = [int(b) for b in rng.integers(0, 256, fifo_depth + extra)]
    later = int(rng.integers(0, 256))
    period = Fraction(divisor)
    levels = serial_levels([frame_bits(b) for b in first], period)
    hold = len(levels) + 4 * divisor  # the consumer takes nothing until then
    levels += [1] * (4 * divisor) + serial_levels([frame_bits(later)], period)
    got, framing, overrun = run_receiver(UARTReceiver(divisor, fifo_depth=fifo_depth), levels,
                                         ready=lambda cycle: int(cycle >= hold),
                                         after=4 * divisor)
    assert len(overrun) == extra, f"seed {seed}: {len(overrun)} overrun pulses, want {extra}"
    assert all(c < hold for c in overrun), f"seed {seed}: overrun at {overrun}"
    assert got == first[:fifo_depth] + [later], f"seed {seed}: kept {got}"
    assert not framing, f"seed {seed}: framing {framing}"


# ---- 6. the transmitter's waveform -------------------------------------------------------------

def run_transmitter(divisor, sent, gaps):
    """Offer ``sent`` with ``gaps[i]`` idle cycles of ``valid`` before byte ``i``; return the
    line, one level per cycle, and the cycle each byte was accepted."""
    dut = UARTTransmitter(divisor)
    levels, accepted = [], []
    total = sum(gaps) + (len(sent) + 2) * 10 * divisor

    async def producer(ctx):
        for byte, gap in zip(sent, gaps):
            for _ in range(gap):
                await ctx.tick()
            ctx.set(dut.bytes.payload, byte)
            ctx.set(dut.bytes.valid, 1)
            await ctx.tick().until(dut.bytes.ready)
            ctx.set(dut.bytes.valid, 0)

    async def monitor(ctx):
        for cycle in range(total):
            *_, tx, valid, ready = await ctx.tick().sample(dut.tx, dut.bytes.valid,
                                                           dut.bytes.ready)
            levels.append(tx)
            if valid and ready:
                accepted.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return levels, accepted


def frame_starts(levels, divisor, sent, seed):
    """Check the line frame by frame and return where each frame starts: idle high between
    frames; each frame a start bit, 8 data bits and a stop bit of exactly ``divisor`` cycles."""
    starts, c = [], 0
    for index, byte in enumerate(sent):
        while c < len(levels) and levels[c] == 1:
            c += 1
        assert c < len(levels), f"seed {seed}: frame {index} never started"
        want = [level for level in frame_bits(byte) for _ in range(divisor)]
        got = levels[c:c + 10 * divisor]
        wrong = [i for i, (a, b) in enumerate(zip(got, want)) if a != b] or ["past the end"]
        assert got == want, f"seed {seed}: frame {index} (0x{byte:02x}) at cycle {c}: " \
                            f"first wrong cycle of the frame {wrong[0]}"
        starts.append(c)
        c += 10 * divisor
    assert all(levels[c:]), f"seed {seed}: the line is not idle after the last frame"
    return starts


@pytest.mark.parametrize("divisor", DIVISORS)
def test_transmitter_sends_back_to_back_at_full_rate(base_seed, divisor):
    seed = base_seed + 6000 + divisor
    rng = np.random.default_rng(seed)
    sent = EDGE_BYTES + [int(b) for b in rng.integers(0, 256, 16)]
    levels, accepted = run_transmitter(divisor, sent, [0] * len(sent))
    assert levels[0] == 1, f"seed {seed}: the line is not idle high at reset"
    starts = frame_starts(levels, divisor, sent, seed)
    assert starts[0] <= 2, f"seed {seed}: the first frame started at cycle {starts[0]}"
    assert [b - a for a, b in itertools.pairwise(starts)] == [10 * divisor] * (len(sent) - 1), \
        f"seed {seed}: frames not back to back: {starts}"
    # Each byte is taken in the last cycle of the previous stop bit.
    assert [b - a for a, b in itertools.pairwise(accepted)] == [10 * divisor] * (len(sent) - 1), \
        f"seed {seed}: accepted at {accepted}"


@pytest.mark.parametrize("divisor", DIVISORS)
def test_transmitter_with_idle_gaps(base_seed, divisor):
    seed = base_seed + 6500 + divisor
    rng = np.random.default_rng(seed)
    sent = [int(b) for b in rng.integers(0, 256, 20)]
    gaps = [int(g) for g in rng.choice([0, 1, 3, divisor * 12, divisor * 25], len(sent))]
    levels, accepted = run_transmitter(divisor, sent, gaps)
    starts = frame_starts(levels, divisor, sent, seed)
    assert [s - a for a, s in zip(accepted, starts)] == [1] * len(sent), \
        f"seed {seed}: a frame does not start the cycle after its byte is taken"
    assert all(b - a >= 10 * divisor for a, b in itertools.pairwise(starts)), f"seed {seed}"


# ---- 7. parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [UARTReceiver, UARTTransmitter, UART])
@pytest.mark.parametrize("divisor", [3, 0, -4, 4.0, "12", True, None])
def test_bad_divisor_is_rejected(cls, divisor):
    with raises_in_constructor(ValueError, rf"divisor must be an integer of at least 4 "
                                           rf"\(clock cycles per bit\), not {divisor!r}"):
        cls(divisor)


@pytest.mark.parametrize("cls", [UARTReceiver, UART])
@pytest.mark.parametrize("fifo_depth", [0, -1, 2.0, False])
def test_bad_fifo_depth_is_rejected(cls, fifo_depth):
    with raises_in_constructor(ValueError,
                               rf"fifo_depth must be a positive integer, not {fifo_depth!r}"):
        cls(12, fifo_depth=fifo_depth)


# ---- 8. Verilog -------------------------------------------------------------------------------

@pytest.mark.parametrize("component", [
    lambda: UART(4), lambda: UART(48, fifo_depth=1), lambda: UARTReceiver(12),
    lambda: UARTTransmitter(5),
], ids=["uart-4", "uart-48-depth1", "receiver-12", "transmitter-5"])
def test_converts_to_verilog(component):
    text = verilog_of(component(), "uart_top")
    assert "module uart_top" in text
