"""Board top levels: a chip profile's :class:`~spikefab.hdl.system.ChipSystem` on a real board.

What every board gets:

* the clock: the board's oscillator through a PLL to ``clock_mhz``; the mesh and every core run
  on it (the chip is built with ``clocking=Clocking.SINGLE``: synchronous queues where the GALS chip
  has clock crossings), held in reset until the PLL locks and 16 us more (iCE40 block RAM reads
  zero for a few microseconds after configuration);
* the host link on the board's USB UART (8N1 at ``baudrate``), behind a receive queue of
  ``rx_fifo_depth`` bytes (the driver keeps one frame in flight);
* LEDs: green blinks with link traffic, red lights for a second after a NAK or a byte the
  UART lost (also counted in STATUS ``line_errors``).

The gateware between the pins is exactly what ``tests/test_host_link_rtl.py`` simulates, so the
driver's ``serial:PORT`` transport works unchanged.
"""

from __future__ import annotations

import enum
import math

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from ..hdl.abi import Clocking
from ..hdl.profiles import ChipProfile, get_profile
from ..hdl.system import ChipSystem
from ..hdl.uart import UART
from .clocks import ecp5_pll, ice40_pll

__all__ = ["Family", "BoardTop", "ICEBreakerTop", "ULX3STop", "BOARDS", "board_top"]


class Family(enum.Enum):
    """An FPGA family: which open flow (Yosys's synth script, nextpnr, packer) builds it."""
    ICE40 = "ice40"
    ECP5 = "ecp5"


class BoardTop(Elaboratable):
    """The chip of ``profile`` on a board; subclasses make the clock and name the LEDs.

    Parameters
    ----------
    profile : str or ChipProfile
        The chip: a profile's name (:mod:`spikefab.hdl.profiles`), or a profile, such as a
        chip image's (``ChipImage.chip_profile()``).
    clock_mhz : float
        The PLL's target; the achieved frequency is :attr:`clock_mhz` afterwards.
    baudrate : int
        UART bits per second; the clock must give at least 4 cycles per bit, within 1 %.
    rx_fifo_depth : int
        Bytes of receive queue. The frame receiver takes a byte every cycle except while it
        holds a finished frame, and the driver's serial transport sends nothing then (one
        frame in flight: it waits for the answer), so two bytes are enough; a host that
        sends anyway overruns the queue, which lights the error LED, counts in STATUS
        (``line_errors``) and costs the frame its CRC (NAK), never state.
    pll : bool
        Without it the chip runs straight from the oscillator pin, at a nominal
        ``clock_mhz``: the form the post-synthesis simulation uses (a PLL has no simulation
        model), otherwise the same design.
    """

    #: Board name as the ``spikefab build --board`` option spells it.
    name = None
    #: amaranth-boards platform class.
    platform_class = None
    #: Input clock of the PLL, MHz.
    osc_mhz = None

    def __init__(self, *, profile: str | ChipProfile, clock_mhz: float,
                 baudrate: int = 3_000_000, rx_fifo_depth: int = 2, pll: bool = True):
        self.profile = profile if isinstance(profile, ChipProfile) else get_profile(profile)
        if self.profile.board not in (None, self.name):
            raise ValueError(f"chip {self.profile.name!r} was generated for the "
                             f"{self.profile.board}, not the {self.name}: compile the model "
                             f"with --board {self.name}")
        self.pll = self.make_pll(clock_mhz) if pll else None
        self.clock_mhz = self.pll.f_out_mhz if pll else clock_mhz
        divisor = round(self.clock_mhz * 1e6 / baudrate)
        error = abs(self.clock_mhz * 1e6 / divisor - baudrate) / baudrate if divisor else 1
        if divisor < 4 or error > 0.01:
            raise ValueError(f"{baudrate} baud from {self.clock_mhz:g} MHz: {divisor} cycles per "
                             f"bit, {error:.1%} off; the UART needs >= 4 cycles per bit within "
                             f"1 %: pick another --baud or --clock")
        self.baudrate = baudrate
        self.divisor = divisor
        self.rx_fifo_depth = rx_fifo_depth
        # The link drops a half-received frame after 2**(k-1) to 2**k silent cycles: 20 to
        # 40 ms here, far longer than a USB adapter pauses inside a frame.
        self.timeout_log2 = math.ceil(math.log2(self.clock_mhz * 1e6 * 0.02)) + 1
        self.system = ChipSystem(self.profile.chip(clocking=Clocking.SINGLE),
                                 output_depth=self.profile.output_depth,
                                 timeout_log2=self.timeout_log2,
                                 encoder=self.profile.encoder,
                                 rx_queue=self.profile.rx_queue)

    def make_pll(self, clock_mhz: float):
        raise NotImplementedError

    def clocking(self, m: Module, platform) -> Signal:
        """Drive ``ClockSignal("sync")`` from the PLL; return its lock signal."""
        raise NotImplementedError

    def leds(self, platform) -> tuple[Value, Value]:
        """``(activity, error)`` LED outputs."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        if self.pll is None:
            clk, lock = platform.request(platform.default_clk, 0).i, Const(1)
            m.d.comb += ClockSignal("sync").eq(clk)
        else:
            lock = self.clocking(m, platform)
        m.d.comb += ClockSignal("por").eq(ClockSignal("sync"))
        # Reset until the PLL has locked and then 16 us more. The reset comes from a register
        # of its own: it reaches every flip-flop of the chip, across the die, and a comparison
        # in front of that route would be in the clock's critical path.
        hold = int(16e-6 * self.clock_mhz * 1e6)
        timer = Signal(range(hold + 1))
        reset = Signal(init=1)
        with m.If(~lock):
            m.d.por += timer.eq(0)
        with m.Elif(timer != hold):
            m.d.por += timer.eq(timer + 1)
        m.d.por += reset.eq(timer != hold)
        m.d.comb += ResetSignal("sync").eq(reset)

        m.submodules.system = system = self.system
        chip = system.chip
        for domain in chip.domains:      # none: the board's chip is built with one clock
            m.domains += ClockDomain(domain)
            m.d.comb += [ClockSignal(domain).eq(ClockSignal("sync")),
                         ResetSignal(domain).eq(ResetSignal("sync"))]

        m.submodules.uart = uart = UART(self.divisor, fifo_depth=self.rx_fifo_depth)
        pins = platform.request("uart", 0)
        m.d.comb += [uart.rx.eq(pins.rx.i), pins.tx.o.eq(uart.tx)]
        if self.rx_fifo_depth > 16:
            # A register between the queue and the frame receiver: the queue's read data (late
            # in the cycle from block RAM, 5.8 ns on the ECP5, where a queue this deep goes)
            # would otherwise feed the SLIP and CRC logic in the same cycle. A few bytes of
            # queue are flip-flops, whose data is early.
            m.submodules.rx_stage = rx_stage = SyncFIFOBuffered(width=8, depth=1)
            wiring.connect(m, uart.rx_bytes, rx_stage.w_stream)
            wiring.connect(m, rx_stage.r_stream, system.rx)
        else:
            wiring.connect(m, uart.rx_bytes, system.rx)
        wiring.connect(m, system.tx, uart.tx_bytes)
        m.d.comb += system.line_error.eq(uart.overrun | uart.framing_error)

        activity, error = self.leds(platform)
        traffic = (uart.rx_bytes.valid & uart.rx_bytes.ready) | \
                  (uart.tx_bytes.valid & uart.tx_bytes.ready)
        # The LEDs count in steps of 2**14 cycles (a few hundred microseconds), from one
        # shared prescaler: two counters of 7 and 12 bits instead of 22 and 26.
        prescaler = Signal(14)
        step = Signal()
        m.d.sync += [prescaler.eq(prescaler + 1), step.eq(prescaler == (1 << 14) - 1)]
        steps_per_second = max(1, int(self.clock_mhz * 1e6) >> 14)
        m.d.comb += [activity.eq(_stretch(m, traffic, step, max(1, steps_per_second // 20))),
                     error.eq(_stretch(m, system.nak | uart.overrun | uart.framing_error, step,
                                       steps_per_second))]
        return m


def _stretch(m: Module, pulse: Value, step: Value, steps: int) -> Value:
    """High from a cycle ``pulse`` is high until ``steps`` more ``step`` cycles have passed."""
    count = Signal(range(steps + 2))
    with m.If(pulse):
        m.d.sync += count.eq(steps + 1)
    with m.Elif(step & (count != 0)):
        m.d.sync += count.eq(count - 1)
    return count != 0


class ICEBreakerTop(BoardTop):
    """iCEBreaker (iCE40 UP5K, 12 MHz oscillator, FTDI channel B as the UART)."""
    name = "icebreaker"
    family = Family.ICE40
    osc_mhz = 12

    @property
    def platform_class(self):
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        return ICEBreakerPlatform

    def make_pll(self, clock_mhz):
        return ice40_pll(self.osc_mhz, clock_mhz)

    def clocking(self, m, platform):
        pll, lock, clk = self.pll, Signal(), Signal()
        platform.add_clock_constraint(clk, self.clock_mhz * 1e6)
        m.d.comb += ClockSignal("sync").eq(clk)
        # The 12 MHz pin feeds the PLL pad directly (SB_PLL40_PAD), as the board wires it.
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq,
            p_FILTER_RANGE=pll.filter_range,
            i_PACKAGEPIN=platform.request("clk12", dir="-").io,
            i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk, o_LOCK=lock)
        return lock

    def leds(self, platform):
        return platform.request("led_g", 0).o, platform.request("led_r", 0).o


class ULX3STop(BoardTop):
    """ULX3S with an ECP5-85F (25 MHz oscillator, FT231X as the UART)."""
    name = "ulx3s-85f"
    family = Family.ECP5
    osc_mhz = 25

    @property
    def platform_class(self):
        from amaranth_boards.ulx3s import ULX3S_85F_Platform
        return ULX3S_85F_Platform

    def make_pll(self, clock_mhz):
        return ecp5_pll(self.osc_mhz, clock_mhz)

    def clocking(self, m, platform):
        pll, lock, clk = self.pll, Signal(), Signal()
        platform.add_clock_constraint(clk, self.clock_mhz * 1e6)
        m.d.comb += ClockSignal("sync").eq(clk)
        clk25 = platform.request("clk25", 0)
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=str(self.osc_mhz), a_FREQUENCY_PIN_CLKOP=f"{self.clock_mhz:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=pll.clki_div, p_CLKFB_DIV=pll.clkfb_div, p_CLKOP_DIV=pll.clkop_div,
            p_CLKOP_CPHASE=pll.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_CLKI=clk25.i, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clk, o_LOCK=lock)
        return lock

    def leds(self, platform):
        return platform.request("led", 0).o, platform.request("led", 7).o


#: Supported boards: name -> (top class, default profile, default clock in MHz).
BOARDS = {
    "icebreaker": (ICEBreakerTop, "icebreaker", 27.0),
    "ulx3s-85f": (ULX3STop, "ulx3s", 90.0),
}


def board_top(board: str, *, profile: str | ChipProfile | None = None,
              clock_mhz: float | None = None, **kwargs) -> BoardTop:
    """The top level for ``board`` (one of :data:`BOARDS`), with its defaults (``None``: the
    board's own profile and clock)."""
    try:
        cls, default_profile, default_clock = BOARDS[board]
    except KeyError:
        raise ValueError(f"unknown board {board!r}; supported: {', '.join(BOARDS)}") from None
    if clock_mhz is None:
        clock_mhz = default_clock
    elif (isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float))
          or not 0 < clock_mhz < float("inf")):
        raise ValueError(f"the clock must be a positive number of MHz (--clock), not "
                         f"{clock_mhz!r}; omit it for the {board}'s own {default_clock:g} MHz")
    return cls(profile=profile or default_profile, clock_mhz=clock_mhz, **kwargs)
