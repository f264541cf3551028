"""The targets an image runs on, by the names users give them, and how to open one.

============  ===============================================================================
``golden``    the golden chip model, a batch of images at once (:mod:`spikefab.sim.golden_chip`)
``sim``       the chip's RTL in Verilator, clocked from a C++ harness, bytes straight into
              its host link (:class:`spikefab.sim.link_fast.FastTransport`)
``cocotb``    the same RTL, the same answers and cycle counts, in a cocotb bench: about 3x
              slower (:class:`spikefab.sim.link_rtl.SimTransport`)
``serial:P``  a board on serial port ``P`` (:class:`spikefab.firmware.driver.SerialTransport`)
============  ===============================================================================

Every target answers the same :class:`~spikefab.firmware.driver.ChipBase` API. This module
sits above the driver and the simulator: it is where the CLI, the demos and the benchmarks
choose a transport, so that the driver itself never imports a simulator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..hdl.profiles import ChipProfile, get_profile
from .driver import Link, LinkChip, LinkError, SerialTransport

__all__ = ["TargetKind", "Target", "TARGET_NAMES", "open_chip"]


class TargetKind(enum.Enum):
    GOLDEN = "golden"
    SIM = "sim"
    COCOTB = "cocotb"
    SERIAL = "serial"


#: How users name targets (the CLI's ``--target``).
TARGET_NAMES = ("golden", "sim", "cocotb", "serial:PORT")


@dataclass(frozen=True)
class Target:
    """A target: its kind, and a board's serial port."""
    kind: TargetKind
    port: str | None = None

    @classmethod
    def parse(cls, text) -> "Target":
        """``"golden"``, ``"sim"``, ``"cocotb"`` or ``"serial:PORT"`` (a :class:`Target`
        passes through); ``ValueError`` naming the choices otherwise."""
        if isinstance(text, Target):
            return text
        if text in (TargetKind.GOLDEN.value, TargetKind.SIM.value, TargetKind.COCOTB.value):
            return cls(TargetKind(text))
        prefix = TargetKind.SERIAL.value + ":"
        if isinstance(text, str) and text.startswith(prefix) and len(text) > len(prefix):
            return cls(TargetKind.SERIAL, text[len(prefix):])
        raise ValueError(f"unknown target {text!r}; use one of {', '.join(TARGET_NAMES)} "
                         f"(e.g. serial:/dev/ttyUSB1)")

    @property
    def simulated(self) -> bool:
        """Whether this is an RTL simulation (``sim`` or ``cocotb``): what ``--workers``
        shards and ``spikefab verify`` checks."""
        return self.kind in (TargetKind.SIM, TargetKind.COCOTB)

    def __str__(self) -> str:
        return self.kind.value if self.port is None else f"{self.kind.value}:{self.port}"


def open_chip(target, *, profile: ChipProfile | str = "icebreaker",
              baudrate: int = 3_000_000, timeout: float = 2.0):
    """The chip of ``profile`` (a :class:`ChipProfile`, e.g. an image's ``chip_profile()``, or
    a profile's name) on ``target`` (a :class:`Target` or its name), ready to ``load`` an
    image; use it as a context manager, or ``close`` it."""
    target = Target.parse(target)
    chip_profile = profile if isinstance(profile, ChipProfile) else get_profile(profile)
    if target.kind is TargetKind.GOLDEN:
        from ..sim.golden_chip import GoldenChip
        return GoldenChip(chip_profile.info(), target=str(target))
    if target.kind is TargetKind.SIM:
        from ..sim.link_fast import FastTransport
        return LinkChip(Link(FastTransport(chip_profile)), target=str(target))
    if target.kind is TargetKind.COCOTB:
        from ..sim.link_rtl import SimTransport
        return LinkChip(Link(SimTransport(chip_profile)), target=str(target))
    transport = SerialTransport(target.port, baudrate=baudrate, timeout=timeout)
    try:
        return LinkChip(Link(transport), target=str(target))
    except LinkError:
        transport.close()
        raise
