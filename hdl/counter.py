"""A wrapping event counter, in logic or, on an iCE40, in one of its DSP blocks."""

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Counter"]


def _is_ice40(platform) -> bool:
    try:
        from amaranth.vendor import SiliconBluePlatform
    except ImportError:    # pragma: no cover - every Amaranth 0.5 has it
        return False
    return isinstance(platform, SiliconBluePlatform)


class Counter(wiring.Component):
    """``value`` grows by ``step`` (wrapping) in every cycle ``en`` is high; ``clear`` sets it
    to zero instead.

    In logic, a counter bit is one iCE40 logic cell: the adder's LUT and carry, and a
    flip-flop whose synchronous reset is ``clear``. With ``dsp`` on an iCE40 platform it takes
    no logic cell: an ``SB_MAC16`` (the UP5K has eight) is a 32-bit accumulator, its two
    16-bit adders chained through their carry, loaded with zero to clear. Elsewhere (Amaranth's
    simulator, Verilog for cocotb, other FPGAs) ``dsp`` changes nothing, and the board's
    post-synthesis check simulates the DSP form with Yosys's model of the cell.

    Parameters
    ----------
    width : int
        1 to 32 bits.
    step_width : int
        Width of ``step``, 1 to 16 bits.
    dsp : bool
        Use a DSP block on an iCE40 platform.

    Members
    -------
    en, clear : In(1)
    step : In(step_width)
    value : Out(width)
    """

    def __init__(self, width: int = 32, *, step_width: int = 1, dsp: bool = False):
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 32:
            raise ValueError(f"width must be an integer in [1, 32], not {width!r}")
        if (isinstance(step_width, bool) or not isinstance(step_width, int)
                or not 1 <= step_width <= 16):
            raise ValueError(f"step_width must be an integer in [1, 16], not {step_width!r}")
        self.width = width
        self.dsp = bool(dsp)
        super().__init__({
            "en": In(1),
            "clear": In(1),
            "step": In(step_width),
            "value": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        if self.dsp and _is_ice40(platform):
            out = Signal(32)
            m.submodules.mac = Instance(
                "SB_MAC16",
                # Both halves add their input (A on top, B below) to their own output
                # register; the lower adder's carry goes into the upper one; the outputs are
                # the registers. OLOAD puts C and D (zero) into the registers instead.
                p_TOPOUTPUT_SELECT=C(1, 2), p_TOPADDSUB_LOWERINPUT=C(0, 2),
                p_TOPADDSUB_UPPERINPUT=C(0, 1), p_TOPADDSUB_CARRYSELECT=C(2, 2),
                p_BOTOUTPUT_SELECT=C(1, 2), p_BOTADDSUB_LOWERINPUT=C(0, 2),
                p_BOTADDSUB_UPPERINPUT=C(0, 1), p_BOTADDSUB_CARRYSELECT=C(0, 2),
                p_MODE_8x8=C(1, 1), p_A_SIGNED=C(0, 1), p_B_SIGNED=C(0, 1),
                i_CLK=ClockSignal(), i_CE=C(1, 1),
                i_A=C(0, 16), i_B=self.step.as_value().as_unsigned() if len(self.step) == 16
                else Cat(self.step, C(0, 16 - len(self.step))),
                i_C=C(0, 16), i_D=C(0, 16),
                i_AHOLD=C(0, 1), i_BHOLD=C(0, 1), i_CHOLD=C(0, 1), i_DHOLD=C(0, 1),
                # The output registers' reset is asynchronous: the domain's reset, held for a
                # while after configuration, gives the same zero a logic counter starts from.
                i_IRSTTOP=C(0, 1), i_IRSTBOT=C(0, 1),
                i_ORSTTOP=ResetSignal(), i_ORSTBOT=ResetSignal(),
                i_OLOADTOP=self.clear, i_OLOADBOT=self.clear,
                i_ADDSUBTOP=C(0, 1), i_ADDSUBBOT=C(0, 1),
                i_OHOLDTOP=~(self.en | self.clear), i_OHOLDBOT=~(self.en | self.clear),
                i_CI=C(0, 1), i_ACCUMCI=C(0, 1), i_SIGNEXTIN=C(0, 1),
                o_O=out)
            m.d.comb += self.value.eq(out)
        else:
            with m.If(self.clear):
                m.d.sync += self.value.eq(0)
            with m.Elif(self.en):
                m.d.sync += self.value.eq(self.value + self.step)
        return m
