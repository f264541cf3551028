"""The RTL chip behind its host link, clocked from C++: the ``sim`` target of the driver.

cocotb's scheduler caps :class:`~spikefab.sim.link_rtl.SimLink` near 420 K cycles/s even
though Python only wakes per chunk. Here a small C++ main (``harness/link_main.cpp``, shipped
with the package) drives Verilator's model of the same Verilog (:func:`link_build`'s
``ChunkedPort`` around ``ChipSystem``) and serves the link bench's messages
(``REQUEST_HEAD`` ... ``END_OF_RUN``, sim/link_rtl.py) on its stdin and stdout, so no Python
runs per cycle and no thread is needed. It feeds and takes chunks with the bench's cycle
timing, so its answers, the chip's STATUS cycle count among them, and the cycles it reports
equal the cocotb bench's (tests/test_fast_link.py).

Builds are cached beside :class:`~spikefab.sim.runner.RTLBuild`'s, by the hash of the
Verilog, the harness source, the Verilator version and the build flags, through the same
cached, locked build step (:func:`~spikefab.sim.runner.cached_build`); the environment Verilator needs comes from :mod:`spikefab.sim.runner`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import selectors
import subprocess
import tempfile
import time
from pathlib import Path

from ..hdl.abi import Clocking
from .link_rtl import (ANSWER_HEAD, CHUNK, END_OF_RUN, IDLE, IDLE_HEAD, POWER_ON_RESET,
                       REQUEST_HEAD, REQUEST_TIMEOUT, START_DELAY, LinkTransport, idle_drops,
                       link_build)
from .runner import RTLBuild, SimulationError, _build_environment, build_dir_root, cached_build

__all__ = ["HARNESS_SOURCE", "HARNESS_HEADER", "HarnessBuild", "FastLink", "FastTransport"]

HARNESS_SOURCE = Path(__file__).parent / "harness" / "link_main.cpp"
#: What the harnesses share (the message stream with Python): included by each.
HARNESS_HEADER = Path(__file__).parent / "harness" / "messages.h"

#: Verilator's options for the harness: its own build flow (--build) and -O3. The C++
#: compiler's -O2 comes after Verilator's default -Os (verilated.mk puts OPT_FAST first), which
#: favours size over the speed a model run for millions of cycles wants.
VERILATOR_FLAGS = ("--cc", "--exe", "--build", "-O3", "-Wno-fatal", "--x-assign", "fast",
                   "-CFLAGS", "-O2", "-CFLAGS", f"-DCHUNK={CHUNK}",
                   "-CFLAGS", f"-DPOWER_ON_RESET={POWER_ON_RESET}",
                   "-CFLAGS", f"-DSTART_DELAY={START_DELAY}")


class HarnessBuild:
    """The harness compiled with Verilator's C++ model of one link build's Verilog.

    Parameters
    ----------
    build : RTLBuild
        From :func:`~spikefab.sim.link_rtl.link_build`: its Verilog (one clock: a build with
        several clock domains needs the cocotb bench, which runs a clock per domain).
    """

    def __init__(self, build: RTLBuild, *, source: Path = HARNESS_SOURCE,
                 flags: tuple = VERILATOR_FLAGS, kind: str = "harness"):
        if build.domains:
            raise SimulationError(f"{build.label}: a chip with several clock domains runs "
                                  f"only in the cocotb bench (SimLink), not the C++ harness")
        self.verilog = build.verilog
        self.toplevel = build.toplevel
        self.timeout_log2 = build.timeout_log2
        self.source_path = source
        self.source = source.read_text()
        self.header = HARNESS_HEADER.read_text()
        self.flags = tuple(flags)
        version = importlib.metadata.version("verilator")
        key = hashlib.sha256(json.dumps([
            self.verilog, self.source, self.header, version, self.flags,
        ]).encode()).hexdigest()[:16]
        # LABEL-verilator-harness-...: the CLI's "already built?" check (firmware/cli_args.py:
        # _rtl_cached(harness=True)) globs for it.
        self.directory = build_dir_root() / "rtl" / f"{build.label}-verilator-{kind}-{key}"
        self.executable = self.directory / source.stem
        self.log = self.directory / "build.log"

    def build(self) -> "HarnessBuild":
        """Compile the harness, unless an identical build exists already."""
        cached_build(self.directory, self._compile)
        return self

    def _compile(self) -> None:
        source = self.directory / f"{self.toplevel}.v"
        source.write_text(self.verilog)
        harness = self.directory / self.source_path.name
        harness.write_text(self.source)
        (self.directory / HARNESS_HEADER.name).write_text(self.header)
        env = {**os.environ, **_build_environment("verilator")}
        command = [str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), *self.flags,
                   "--top-module", self.toplevel, "--prefix", "Vtop",
                   "-Mdir", str(self.directory / "obj"), "-o", str(self.executable),
                   "-j", str(os.cpu_count() or 1), str(harness), str(source)]
        with open(self.log, "w") as log:
            log.write(" ".join(command) + "\n\n")
            log.flush()
            try:
                done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      cwd=self.directory)
            except OSError as exc:
                raise SimulationError(f"building {self.directory.name} failed: {exc}; "
                                      f"see {self.log}") from None
        if done.returncode or not self.executable.exists():
            raise SimulationError(f"building {self.directory.name} failed (Verilator "
                                  f"exited with {done.returncode}); see {self.log}")


class FastLink:
    """A running C++ simulation of a chip behind its host link, with
    :class:`~spikefab.sim.link_rtl.SimLink`'s API and answers.

    :meth:`exchange` sends bytes and returns the chip's answers to every frame in them;
    :attr:`cycles` is the mesh cycles since the start, as of the last answer. Use it as a
    context manager; :meth:`close` ends the simulation.

    Parameters
    ----------
    build : RTLBuild or HarnessBuild
        From :func:`~spikefab.sim.link_rtl.link_build` (one clock domain).
    timeout : float
        Seconds of wall time to wait for an answer before giving up on the harness.
    request_timeout : int
        Mesh cycles a request may take after its last byte went in: past them the harness
        stops with an error (the cocotb bench's limit by default).
    """

    def __init__(self, build, *, timeout: float = 600.0,
                 request_timeout: int = REQUEST_TIMEOUT):
        self.build = (build if isinstance(build, HarnessBuild) else HarnessBuild(build)).build()
        self.timeout_log2 = self.build.timeout_log2
        self.timeout = timeout
        self.cycles = 0
        self._stderr = tempfile.TemporaryFile(prefix="spikefab-harness-")
        try:
            self._process = subprocess.Popen(
                [str(self.build.executable), str(request_timeout)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, bufsize=0)
        except OSError as exc:
            self._stderr.close()
            raise SimulationError(f"cannot start the RTL harness {self.build.executable}: "
                                  f"{exc}") from None
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._process.stdout, selectors.EVENT_READ)
        self._closed = False
        self._failed = False   # a failure has been reported; close() does not repeat it

    @property
    def pid(self) -> int:
        """The harness process's id."""
        return self._process.pid

    def exchange(self, data: bytes) -> bytes:
        self._send(REQUEST_HEAD.pack(len(data)) + data)
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        return self._recv(length)

    def idle(self, cycles: int) -> None:
        """Let ``cycles`` mesh cycles pass with the line silent (as
        :meth:`SimLink.idle <spikefab.sim.link_rtl.SimLink.idle>`: ``cycles`` must lie
        outside the range where the link's timeout may or may not drop a half frame)."""
        drops = idle_drops(cycles, self.timeout_log2)
        self._send(REQUEST_HEAD.pack(IDLE) + IDLE_HEAD.pack(cycles, drops))
        length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        if length:
            raise SimulationError(f"the RTL harness answered an IDLE with {length} bytes")

    def _send(self, data: bytes) -> None:
        if self._closed:
            raise SimulationError("the RTL harness is closed")
        try:
            self._process.stdin.write(data)
        except (OSError, ValueError):   # ValueError: our end of the pipe is closed
            raise self._died("stopped taking requests") from None

    def _recv(self, n: int) -> bytes:
        data = bytearray()
        deadline = time.monotonic() + self.timeout
        stdout = self._process.stdout
        while len(data) < n:
            left = deadline - time.monotonic()
            ready = left > 0 and self._selector.select(left)
            if not ready and self._process.poll() is None:
                self._process.kill()
                raise SimulationError(f"the RTL harness (pid {self.pid}) gave no answer "
                                      f"within {self.timeout:g} s; stopped it")
            # Ready, or the harness has ended: either way the read does not block.
            chunk = os.read(stdout.fileno(), n - len(data))
            if not chunk:
                raise self._died("stopped answering")
            data += chunk
        return bytes(data)

    def _died(self, what: str) -> SimulationError:
        """The harness's end, with the tail of what it wrote to stderr."""
        self._failed = True
        try:
            code = self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        how = (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
        return SimulationError(f"the RTL harness {self.build.executable} {what} ({how})"
                               + (f": {tail}" if tail else ": it wrote nothing to stderr"))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        error = None
        try:
            self._process.stdin.write(REQUEST_HEAD.pack(END_OF_RUN))
            self._process.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        if code and not self._failed:
            error = self._died("failed")
        self._selector.close()
        self._process.stdout.close()
        self._stderr.close()
        if error is not None:
            raise error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FastTransport(LinkTransport):
    """The RTL of a chip profile as a driver transport, in the C++ harness: the chip a board
    runs, on one clock (:attr:`Clocking.SINGLE`), with the same Verilog, answers and cycle
    counts as :class:`~spikefab.sim.link_rtl.SimTransport`.
    """

    def __init__(self, profile):
        chip = profile.chip(clocking=Clocking.SINGLE)
        build = link_build(chip, output_depth=profile.output_depth, encoder=profile.encoder,
                           rx_queue=profile.rx_queue,
                           label=f"link-{profile.name}-{chip.clocking.value}")
        self.link = FastLink(build)
