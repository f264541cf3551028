"""A board stand-in: the golden chip behind its host link (:class:`~spikefab.sim.link_model.
LinkModel`) on a pseudo-terminal or a TCP socket, reached like a board with ``--target
serial:PATH`` (``serial:socket://127.0.0.1:PORT`` for the socket), optionally behind a noisy
line.

:class:`LineFaults` describes the line: each byte, in either direction, meets a fault with
probability ``rate``: a bit flipped, the byte dropped, the byte sent twice, the byte held back
``delay`` seconds (with every byte after it), or, host to board only, the rest of the request
lost (a host that disappears mid-frame). The faults come from one seeded generator, so a run is
reproducible as far as the operating system's scheduling lets it be.

The stand-in keeps the chip's inter-byte timeout: when the line has been silent for
``timeout`` seconds with a frame half received, it tells the model (:meth:`LinkModel.idle`),
which drops the half frame as the gateware does.
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
from dataclasses import dataclass

from ..hdl.abi import ChipInfo
from .link_model import LinkModel

__all__ = ["FAULT_KINDS", "LineFaults", "FaultyLine", "BoardStandIn"]

#: What can happen to a byte on the line.
FAULT_KINDS = ("flip", "drop", "duplicate", "delay", "cut")


@dataclass(frozen=True)
class LineFaults:
    """A noisy line: each byte meets one of ``kinds`` with probability ``rate``."""
    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    delay: float = 0.02   #: seconds a delayed byte is held back

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"a fault rate is a probability in [0, 1], not {self.rate!r}")
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds are some of {', '.join(FAULT_KINDS)}; "
                             f"not {sorted(unknown) or 'none'}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, not {self.delay!r}")


class FaultyLine:
    """One direction of a noisy line. :meth:`carry` returns the pieces to send in order, each
    ``(delay_before, bytes)``; ``counts`` says how many faults of each kind were applied."""

    def __init__(self, faults: LineFaults, rng: random.Random, *, host_side: bool):
        self.faults = faults
        self.rng = rng
        # A host that disappears mid-frame is a fault of the host's side only.
        self.kinds = tuple(k for k in faults.kinds if host_side or k != "cut") or ("flip",)
        self.counts = dict.fromkeys(FAULT_KINDS, 0)

    def carry(self, data: bytes) -> list[tuple[float, bytes]]:
        faults, rng = self.faults, self.rng
        if faults.rate == 0.0:
            return [(0.0, bytes(data))]
        pieces, current, wait = [], bytearray(), 0.0
        for byte in data:
            if rng.random() >= faults.rate:
                current.append(byte)
                continue
            kind = rng.choice(self.kinds)
            self.counts[kind] += 1
            if kind == "flip":
                current.append(byte ^ (1 << rng.randrange(8)))
            elif kind == "duplicate":
                current += bytes([byte, byte])
            elif kind == "delay":
                pieces.append((wait, bytes(current)))
                current, wait = bytearray([byte]), faults.delay
            elif kind == "cut":
                break
            # "drop": nothing
        pieces.append((wait, bytes(current)))
        return [(w, b) for w, b in pieces if b or w]


class BoardStandIn:
    """The golden chip of ``info`` on a pty (``kind="pty"``) or a TCP socket on localhost
    (``kind="socket"``, ``port`` 0 picks a free one), served by a thread until :meth:`close`.

    :attr:`path` is what ``serial:`` takes (the pty's device, or ``socket://127.0.0.1:PORT``).
    ``answer=False`` makes a board that never answers. :attr:`model` is the chip.
    """

    def __init__(self, info: ChipInfo, *, kind: str = "pty", port: int = 0,
                 faults: LineFaults | None = None, timeout: float = 0.05,
                 answer: bool = True):
        if kind not in ("pty", "socket"):
            raise ValueError(f"a stand-in is a 'pty' or a 'socket', not {kind!r}")
        self.model = LinkModel(info)
        self.faults = faults or LineFaults()
        rng = random.Random(self.faults.seed)
        self.rx = FaultyLine(self.faults, rng, host_side=True)    # host to board
        self.tx = FaultyLine(self.faults, rng, host_side=False)   # board to host
        self.timeout = timeout
        self.answer = answer
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self.kind = kind
        if kind == "pty":
            import pty
            import tty
            self._master, self._slave = pty.openpty()
            tty.setraw(self._slave)
            self.path = os.ttyname(self._slave)
            self._listener = None
        else:
            self._listener = socket.create_server(("127.0.0.1", port))
            self.port = self._listener.getsockname()[1]
            self.path = f"socket://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # ---- serving ----
    def _serve(self):
        if self._listener is None:
            self._serve_stream(lambda n: os.read(self._master, n),
                               lambda b: os.write(self._master, b), self._master)
            return
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                self._serve_stream(conn.recv, conn.sendall, conn)

    def _serve_stream(self, read, write, handle):
        last = time.monotonic()
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([handle], [], [], min(self.timeout, 0.05))
            except (OSError, ValueError):
                return
            if not ready:
                if time.monotonic() - last >= self.timeout:
                    with self._lock:
                        self.model.idle()
                continue
            try:
                data = read(4096)
            except OSError:
                return
            if not data:
                return
            for wait, piece in self.rx.carry(data):
                if wait:   # bytes held back: past the timeout, the chip drops a half frame
                    time.sleep(wait)
                    if wait >= self.timeout:
                        with self._lock:
                            self.model.idle()
                with self._lock:
                    reply = self.model.receive(piece)
                if reply and self.answer:
                    for wait_out, out in self.tx.carry(reply):
                        if wait_out:
                            time.sleep(wait_out)
                        try:
                            write(out)
                        except OSError:
                            return
            last = time.monotonic()

    def faults_applied(self) -> dict[str, int]:
        """How many faults of each kind the line applied, both ways."""
        return {k: self.rx.counts[k] + self.tx.counts[k] for k in FAULT_KINDS}

    def close(self):
        self._closed.set()
        if self._listener is not None:
            self._listener.close()
        else:
            for fd in (self._slave, self._master):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
