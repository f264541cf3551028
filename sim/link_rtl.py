"""The RTL chip behind its host link, as a byte transport: the ``sim`` target of the driver.

Python must not act on every clock cycle (docs/toolchain.md: a Python await per cycle caps the
simulation near 100 K cycles/s). So :class:`ChunkedPort` wraps the :class:`ChipSystem` with
wide ports that move :data:`CHUNK` bytes per handshake, the clocks run in C++, and the bench
(:mod:`spikefab.sim.benches.link_bench`) only wakes for a chunk or for the end of a response.

:class:`SimLink` starts the simulator (in a thread: the cocotb runner blocks) and talks to the
bench over a Unix socket: the host's bytes go in, the chip's answers come back. That is the
``cocotb`` target; the ``sim`` target (:mod:`spikefab.sim.link_fast`) serves the same messages
from a C++ harness around the same Verilog, cycle for cycle as the bench, about 3x faster.
"""

from __future__ import annotations

import socket
import struct
import tempfile
import threading
from pathlib import Path

from amaranth.hdl import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hdl.abi import END, Clocking
from .runner import RTLBuild, SimulationError

__all__ = ["CHUNK", "REQUEST_HEAD", "ANSWER_HEAD", "END_OF_RUN", "IDLE", "IDLE_HEAD",
           "REQUEST_TIMEOUT", "SIM_TIMEOUT_LOG2", "POWER_ON_RESET",
           "START_DELAY", "idle_drops", "power_on_reset", "ChunkedPort",
           "SimLink", "link_build", "LinkTransport", "SimTransport"]

CHUNK = 64

#: The messages between :class:`SimLink` and the link bench (sim/benches/link_bench.py) over
#: their socket: a request is ``REQUEST_HEAD`` (its length) and its bytes, a length of
#: ``END_OF_RUN`` ends the run, and a length of ``IDLE`` is followed by ``IDLE_HEAD`` (cycles
#: to let pass with the line silent, and whether the link's timeout drops a half frame in
#: them); an answer is ``ANSWER_HEAD`` (its length, the clock cycles the request took) and its
#: bytes (none for ``IDLE``).
REQUEST_HEAD = struct.Struct("<I")
ANSWER_HEAD = struct.Struct("<IQ")
IDLE_HEAD = struct.Struct("<QB")
END_OF_RUN = 0xFFFF_FFFF
IDLE = 0xFFFF_FFFE
#: The inter-byte timeout of simulated links, log2 of cycles: short, so that tests can reach
#: it (the bench feeds a frame's bytes back to back, so only a test's idle can).
SIM_TIMEOUT_LOG2 = 12
#: Mesh cycles a request may take after its last byte went in before the simulation calls it
#: a hang (the cocotb bench and the C++ harness of sim/link_fast.py alike).
REQUEST_TIMEOUT = 50_000_000


def idle_drops(cycles: int, timeout_log2: int) -> bool:
    """Whether ``cycles`` silent mesh cycles make the link drop a half frame. It drops one
    after between ``2 ** (timeout_log2 - 1)`` and ``2 ** timeout_log2`` silent cycles, so a
    count in that range, whose outcome is not known, is a ``ValueError``."""
    low, high = 1 << (timeout_log2 - 1), 1 << timeout_log2
    if low <= cycles < high:
        raise ValueError(f"{cycles} idle cycles may or may not reach the timeout "
                         f"({low} to {high}): idle fewer than {low} or at least {high}")
    return cycles >= high


#: Rising edges a one-clock :class:`ChunkedPort` holds its design in reset after power-on
#: (the benches hold a GALS design's reset inputs as long).
POWER_ON_RESET = 4
#: Clock periods after the reset before the benches count cycles and take requests (the
#: cocotb bench and the C++ harness alike: their cycle counts must agree).
START_DELAY = 8


def power_on_reset(m: Module, clk) -> None:
    """The ``sync`` domain of a design on one clock, ``clk``, with its reset from a power-on
    counter inside the design, high for the first :data:`POWER_ON_RESET` rising edges (what
    the benches held an ``rst`` input for). A reset input feeds every register's next state,
    and Verilator evaluates logic that depends on an input at every eval, twice a cycle:
    without it the C++ harnesses run the chip about 1.5 times faster."""
    m.domains.sync = ClockDomain("sync")
    m.d.comb += ClockSignal("sync").eq(clk)
    m.domains.por = ClockDomain("por", reset_less=True, local=True)
    m.d.comb += ClockSignal("por").eq(ClockSignal("sync"))
    edges = Signal(range(POWER_ON_RESET))
    reset = Signal(init=1)
    with m.If(edges != POWER_ON_RESET - 1):
        m.d.por += edges.eq(edges + 1)
    m.d.por += reset.eq(edges != POWER_ON_RESET - 1)
    m.d.comb += ResetSignal("sync").eq(reset)


class ChunkedPort(wiring.Component):
    """:data:`CHUNK` bytes per handshake into and out of a byte-stream design.

    ``rx_data`` holds ``rx_count`` bytes (byte 0 in the low bits); a chunk is taken at a rising
    edge where ``rx_valid`` and ``rx_ready``; ``rx_ready`` is high whenever the previous chunk
    has gone in. Out of the design, bytes gather in ``tx_data`` until the chunk is full or the
    ``END`` that closes a frame (the design sends ``END`` before and after every frame); then
    ``tx_valid`` stays high until ``tx_ready``.

    With ``power_on_reset`` (for a design on one clock: :func:`link_build` asks for it when
    the chip has no clock domains of its own, or ``one_clock``) the design resets itself for
    :data:`POWER_ON_RESET` rising edges after power-on and has no ``rst`` input; otherwise
    every domain's ``rst`` is an input.
    """

    def __init__(self, system, *, one_clock: bool = False, power_on_reset: bool = False):
        self.system = system
        self.one_clock = one_clock
        self.power_on_reset = power_on_reset
        super().__init__({
            # The clock of a design that makes its own reset: a domain defined here, with
            # its clock from this port (Amaranth's implicit domain would add an rst input).
            **({"clk": In(1)} if self.power_on_reset else {}),
            "rx_data": In(CHUNK * 8), "rx_count": In(range(CHUNK + 1)), "rx_valid": In(1),
            "rx_ready": Out(1),
            "tx_data": Out(CHUNK * 8), "tx_count": Out(range(CHUNK + 1)), "tx_valid": Out(1),
            "tx_ready": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.system = system = self.system
        if self.power_on_reset:
            power_on_reset(m, self.clk)
        if self.one_clock:
            # Every core on the mesh's clock: one clock for the simulator to toggle, which is
            # several times faster than one per domain. (The barrier's GALS proof is elsewhere.)
            for domain in system.chip.domains:
                m.domains += ClockDomain(domain)
                m.d.comb += [ClockSignal(domain).eq(ClockSignal("sync")),
                             ResetSignal(domain).eq(ResetSignal("sync"))]
        rx_buf = Signal(CHUNK * 8)
        rx_n = Signal(range(CHUNK + 1))
        m.d.comb += [self.rx_ready.eq(rx_n == 0), system.rx.payload.eq(rx_buf[:8]),
                     system.rx.valid.eq(rx_n != 0)]
        with m.If(rx_n == 0):
            with m.If(self.rx_valid):
                m.d.sync += [rx_buf.eq(self.rx_data), rx_n.eq(self.rx_count)]
        with m.Elif(system.rx.ready):
            m.d.sync += [rx_buf.eq(rx_buf >> 8), rx_n.eq(rx_n - 1)]

        tx_n = Signal(range(CHUNK + 1))
        full = Signal()
        in_frame = Signal()   # an END opened a frame; the next END closes it
        m.d.comb += [self.tx_count.eq(tx_n), self.tx_valid.eq(full),
                     system.tx.ready.eq(~full)]
        with m.If(full):
            with m.If(self.tx_ready):
                m.d.sync += [full.eq(0), tx_n.eq(0)]
        with m.Elif(system.tx.valid):
            m.d.sync += [self.tx_data.word_select(tx_n[:CHUNK.bit_length() - 1], 8)
                         .eq(system.tx.payload), tx_n.eq(tx_n + 1)]
            with m.If(system.tx.payload == END):
                m.d.sync += in_frame.eq(~in_frame)
            # Out when full, and at the END that closes a frame (wherever it falls in the
            # chunk: the bench waits for whole frames).
            with m.If((tx_n == CHUNK - 1) | ((system.tx.payload == END) & in_frame)):
                m.d.sync += full.eq(1)
        m.d.comb += self.busy.eq(system.busy | (rx_n != 0) | (tx_n != 0))
        return m


def link_build(chip, *, output_depth: int = 256, label: str = "link",
               one_clock: bool = False, timeout_log2: int = SIM_TIMEOUT_LOG2,
               encoder: bool = False, rx_queue: int = 0) -> RTLBuild:
    """The RTL build of ``chip`` behind its host link; ``one_clock`` runs every core on the
    mesh's clock (faster to simulate; no ``periods_ps`` then)."""
    from ..hdl.system import ChipSystem
    system = ChipSystem(chip, output_depth=output_depth, timeout_log2=timeout_log2,
                        encoder=encoder, rx_queue=rx_queue)
    port = ChunkedPort(system, one_clock=one_clock,
                       power_on_reset=one_clock or not chip.domains)
    build = RTLBuild(port, label + ("-1clk" if one_clock else ""), ports_only=True)
    build.info = system.info
    build.timeout_log2 = timeout_log2
    build.domains = [] if one_clock else chip.domains
    return build


class SimLink:
    """A running simulation of a chip behind its host link.

    :meth:`exchange` sends bytes and returns the chip's answers to every frame in them. Use it
    as a context manager; :meth:`close` ends the simulation and reports its failures.

    Parameters
    ----------
    build : RTLBuild
        From :func:`link_build`.
    periods_ps : dict, optional
        Clock period per domain (``"sync"`` and each core domain), even numbers of ps;
        10 ns everywhere by default.
    """

    def __init__(self, build: RTLBuild, *, periods_ps: dict | None = None,
                 run_name: str = "link", timeout: float = 600.0):
        self.build = build.build()
        self.timeout_log2 = build.timeout_log2
        periods = {"sync": 10_000, **{d: 10_000 for d in build.domains}, **(periods_ps or {})}
        self._tmp = tempfile.TemporaryDirectory(prefix="spikefab-link-")
        path = Path(self._tmp.name) / "link.sock"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._server.settimeout(1.0)
        self.cycles = 0
        self._error = None
        env = {"SPIKEFAB_LINK_SOCKET": str(path),
               "SPIKEFAB_LINK_CLOCKS": ",".join(f"{d}={p}" for d, p in periods.items())}

        def simulate():
            try:
                self.build.run("spikefab.sim.benches.link_bench", name=run_name, env=env)
            except Exception as exc:   # reported by close() or exchange()
                self._error = exc

        self._thread = threading.Thread(target=simulate, daemon=True)
        self._thread.start()
        waited = 0.0
        while True:
            try:
                self._conn, _ = self._server.accept()
                break
            except socket.timeout:
                waited += 1.0
                if not self._thread.is_alive() or waited > timeout:
                    self._thread.join(timeout=1)
                    self._server.close()
                    self._tmp.cleanup()
                    raise SimulationError(f"the simulator did not start serving: "
                                          f"{self._error!r}") from None
        self._conn.settimeout(timeout)

    def exchange(self, data: bytes) -> bytes:
        try:
            self._conn.sendall(REQUEST_HEAD.pack(len(data)) + data)
            length, cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
            self.cycles = cycles
            return self._recv(length)
        except (OSError, ConnectionError) as exc:
            self._thread.join(timeout=5)
            raise SimulationError(f"the simulation stopped answering ({exc}); "
                                  f"{self._error!r}") from None

    def idle(self, cycles: int) -> None:
        """Let ``cycles`` mesh cycles pass with the line silent. The link drops a half frame
        after between ``2 ** (timeout_log2 - 1)`` and ``2 ** timeout_log2`` silent cycles:
        ``cycles`` must lie outside that range, so that the outcome is known."""
        drops = idle_drops(cycles, self.timeout_log2)
        try:
            self._conn.sendall(REQUEST_HEAD.pack(IDLE) + IDLE_HEAD.pack(cycles, drops))
            length, self.cycles = ANSWER_HEAD.unpack(self._recv(ANSWER_HEAD.size))
        except (OSError, ConnectionError) as exc:
            self._thread.join(timeout=5)
            raise SimulationError(f"the simulation stopped answering ({exc}); "
                                  f"{self._error!r}") from None
        assert length == 0

    def _recv(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = self._conn.recv(n - len(chunks))
            if not chunk:
                raise ConnectionError("connection closed")
            chunks += chunk
        return bytes(chunks)

    def close(self) -> None:
        try:
            self._conn.sendall(REQUEST_HEAD.pack(END_OF_RUN))
        except OSError:
            pass
        self._thread.join()
        self._conn.close()
        self._server.close()
        self._tmp.cleanup()
        if self._error is not None:
            raise self._error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LinkTransport:
    """A simulated link (:class:`SimLink` or the C++ harness's ``FastLink``) as a driver
    transport (``firmware.driver.Transport``): bytes in, the chip's answers out, over no line
    (``window`` None: nothing is lost, so the driver sends whole batches)."""
    window = None
    link = None

    def exchange(self, data: bytes) -> bytes:
        return self.link.exchange(data)

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SimTransport(LinkTransport):
    """The RTL of a chip profile as a driver transport, in cocotb + Verilator (the first build
    takes a minute or two; later ones come from the cache).

    Without clock periods, the chip a board runs: one clock (:attr:`Clocking.SINGLE`), which is
    also much faster to simulate; with them, every core in its own clock domain.
    """

    def __init__(self, profile, *, periods_ps: dict | None = None):
        chip = profile.chip(clocking=Clocking.GALS if periods_ps else Clocking.SINGLE)
        build = link_build(chip, output_depth=profile.output_depth, encoder=profile.encoder,
                           rx_queue=profile.rx_queue,
                           label=f"link-{profile.name}-{chip.clocking.value}")
        self.link = SimLink(build, periods_ps=periods_ps)
