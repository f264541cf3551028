"""PLL settings for the boards' clocks: the frequency a board top runs at, and how to make it.

The same search the vendor tools' helpers (``icepll``, ``ecppll``, both shipped by YoWASP) do,
written out so a top can be built for any frequency without running a tool at elaboration;
``tests/test_boards.py`` checks the results against ``yowasp-icepll``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Ice40Pll", "Ecp5Pll", "ice40_pll", "ecp5_pll"]


@dataclass(frozen=True)
class Ice40Pll:
    """``SB_PLL40_PAD`` parameters, SIMPLE feedback: ``f_in * (divf + 1) / ((divr + 1) * 2**divq)``."""
    f_in_mhz: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    @property
    def f_out_mhz(self) -> float:
        return self.f_in_mhz * (self.divf + 1) / ((self.divr + 1) * (1 << self.divq))


def ice40_pll(f_in_mhz: float, f_out_mhz: float) -> Ice40Pll:
    """The settings whose output is closest to ``f_out_mhz`` (ties: the first found, as icepll).

    Limits (iCE40 sysCLOCK PLL guide, and icepll): PFD 10-133 MHz, VCO 533-1066 MHz, output
    16-275 MHz.
    """
    if not 16 <= f_out_mhz <= 275:
        raise ValueError(f"an iCE40 PLL makes 16-275 MHz, not {f_out_mhz} MHz")
    best = None
    for divr in range(16):
        pfd = f_in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if best is None or abs(out - f_out_mhz) < abs(best[0] - f_out_mhz):
                    best = (out, divr, divf, divq, pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes {f_out_mhz} MHz from {f_in_mhz} MHz")
    _, divr, divf, divq, pfd = best
    # Loop filter by PFD frequency (icepll's table).
    filter_range = next(i for i, top in enumerate((17, 26, 44, 66, 101, 133)) if pfd < top) + 1
    return Ice40Pll(f_in_mhz, divr, divf, divq, filter_range)


@dataclass(frozen=True)
class Ecp5Pll:
    """``EHXPLLL`` parameters, CLKOP feedback: ``f_in * clkfb_div / clki_div``."""
    f_in_mhz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def f_out_mhz(self) -> float:
        return self.f_in_mhz * self.clkfb_div / self.clki_div

    @property
    def clkop_cphase(self) -> int:
        return (self.clkop_div - 1) // 2     # as ecppll writes it (0 degrees)


def ecp5_pll(f_in_mhz: float, f_out_mhz: float) -> Ecp5Pll:
    """The settings whose output is closest to ``f_out_mhz``, preferring the VCO nearest 600
    MHz (as ecppll). Limits: PFD 3.125-400 MHz, VCO 400-800 MHz, output 3.125-400 MHz."""
    if not 3.125 <= f_out_mhz <= 400:
        raise ValueError(f"an ECP5 PLL makes 3.125-400 MHz, not {f_out_mhz} MHz")
    best = None
    for clki_div in range(1, 129):
        pfd = f_in_mhz / clki_div
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            for clkop_div in range(1, 129):
                vco = out * clkop_div
                if not 400 <= vco <= 800:
                    continue
                key = (abs(out - f_out_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, clki_div, clkfb_div, clkop_div)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {f_out_mhz} MHz from {f_in_mhz} MHz")
    return Ecp5Pll(f_in_mhz, *best[1:])
