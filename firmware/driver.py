"""The host driver: one API for the golden model, the RTL simulation and a board.

::

    chip = Chip.open("sim", profile="icebreaker")     # or "golden", "serial:/dev/ttyUSB1"
    chip.load(image)                                   # a ChipImage (firmware/image.py)
    result = chip.run(spikes)                          # (T, images, inputs) 0/1, or counts
    result.predictions, result.sops_per_image, result.cycles_per_image
    chip.status()

Layers: :class:`Link` speaks the protocol (:mod:`spikefab.firmware.protocol`) over a
*transport* — anything with ``exchange(bytes) -> bytes`` that returns the answers to every
frame sent: :class:`SerialTransport` (pyserial, a board), :class:`SimTransport` (the RTL under
cocotb + Verilator) or :class:`ModelTransport` (the golden :class:`LinkModel`, in process).
:class:`LinkChip` runs images through a :class:`Link`; :class:`GoldenChip` runs whole batches
through the golden chip model directly, with the same semantics: per image, a RESET, ``T``
ticks of input, then the image's drain ticks; outputs counted per class; the class decided by
:func:`spikefab.sim.golden.decode` on the counts and the final membranes.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np

from .protocol import (ADDRESS_BYTES, MAX_OUTPUTS, MAX_PAYLOAD, ChipInfo, Command, LinkStatus,
                       ProtocolError, Region, Register, SlipDecoder, Status, frame,
                       pack_event_word, parse_body, unpack_outputs)

__all__ = ["LinkError", "Link", "SerialTransport", "SimTransport", "ModelTransport", "Chip",
           "LinkChip", "GoldenChip", "RunResult", "image_frames"]


class LinkError(RuntimeError):
    """The chip did not answer, answered with a NAK, or answered something malformed."""


# ---- transports ----

class ModelTransport:
    """The golden chip behind the protocol, in this process (tests, and a board stand-in)."""
    window = None   # any number of frames per exchange

    def __init__(self, info: ChipInfo):
        from ..sim.link_model import LinkModel
        self.model = LinkModel(info)

    def exchange(self, data: bytes) -> bytes:
        return self.model.receive(data)

    def close(self):
        pass


class SimTransport:
    """The RTL of a chip profile in cocotb + Verilator (the first build takes a minute or two)."""
    window = None

    def __init__(self, profile, *, periods_ps: dict | None = None):
        from ..sim.link_rtl import SimLink, link_build
        # Without clock periods, the chip a board runs: one clock (``clocking="single"``), which
        # is also much faster to simulate; with them, every core in its own clock domain.
        chip = profile.chip(clocking="gals" if periods_ps else "single")
        build = link_build(chip, output_depth=profile.output_depth,
                           label=f"link-{profile.name}-{chip.clocking}")
        self.link = SimLink(build, periods_ps=periods_ps)

    def exchange(self, data: bytes) -> bytes:
        return self.link.exchange(data)

    def close(self):
        self.link.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialTransport:
    """A board on a serial port (pyserial). One frame in flight at a time: the chip holds one
    request while it works, and a UART has no flow control."""
    window = 1

    def __init__(self, port: str, *, baudrate: int = 3_000_000, timeout: float = 2.0):
        try:
            import serial
        except ImportError:
            raise LinkError("the serial target needs pyserial: pip install pyserial") from None
        try:
            self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(f"cannot open serial port {port!r}: {exc}. Is the board plugged "
                            f"in, and is this its port?") from None
        self.port = port
        self.timeout = timeout

    def exchange(self, data: bytes) -> bytes:
        expected = len(SlipDecoder().feed(data))
        self.serial.write(data)
        decoder, answer = SlipDecoder(), bytearray()
        got = 0
        deadline = time.monotonic() + self.timeout
        while got < expected:
            chunk = self.serial.read(4096)
            if chunk:
                answer += chunk
                got += len(decoder.feed(chunk))
                deadline = time.monotonic() + self.timeout
            elif time.monotonic() > deadline:
                raise LinkError(f"no answer from {self.port} within {self.timeout} s: is the "
                                f"board connected and programmed with a spikefab bitstream?")
        return bytes(answer)

    def close(self):
        self.serial.close()


# ---- the protocol client ----

class Link:
    """Requests and answers over a transport."""

    def __init__(self, transport):
        self.transport = transport
        self._seq = 0
        self.info = ChipInfo.decode(self.request(Command.INFO))

    def _frame(self, command, payload=b"") -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq, frame(self._seq, command, payload)

    def batch(self, requests: list[tuple[int, bytes]]) -> list[bytes]:
        """Send requests (pipelined where the transport allows); their OK payloads, in order."""
        window = self.transport.window or len(requests) or 1
        answers = []
        for k in range(0, len(requests), window):
            group = [self._frame(c, p) for c, p in requests[k:k + window]]
            data = self.transport.exchange(b"".join(f for _, f in group))
            frames = SlipDecoder().feed(data)
            if len(frames) != len(group):
                raise LinkError(f"sent {len(group)} requests, got {len(frames)} answers")
            for (seq, _), ((command, _), (body, error)) in zip(group, zip(requests[k:], frames)):
                try:
                    got_seq, status, payload = parse_body(body, error)
                except ProtocolError as exc:
                    raise LinkError(f"a corrupted answer from the chip: {exc}") from None
                if got_seq != seq:
                    raise LinkError(f"answer for request {got_seq}, expected {seq}")
                if status != Status.OK:
                    name = Command(command).name if command in Command._value2member_map_ \
                        else hex(command)
                    raise LinkError(f"the chip refused {name}: {Status(status).describe()}")
                answers.append(payload)
        return answers

    def request(self, command, payload=b"") -> bytes:
        return self.batch([(command, payload)])[0]

    # Commands.
    def write_requests(self, tile, region, offset, words) -> list[tuple[int, bytes]]:
        wb = self.info.word_bytes
        per = (MAX_PAYLOAD - ADDRESS_BYTES) // wb
        return [(Command.WRITE, struct.pack("<BBI", tile, region, offset + k) + b"".join(
            int(w).to_bytes(wb, "little") for w in words[k:k + per]))
            for k in range(0, len(words), per)]

    def write(self, tile, region, offset, words) -> None:
        self.batch(self.write_requests(tile, region, offset, list(words)))

    def read(self, tile, region, offset, count) -> list[int]:
        wb, per = self.info.word_bytes, self.info.max_read_words
        answers = self.batch([(Command.READ, struct.pack("<BBIH", tile, region, offset + k,
                                                         min(per, count - k)))
                              for k in range(0, count, per)])
        data = b"".join(answers)
        return [int.from_bytes(data[k:k + wb], "little") for k in range(0, len(data), wb)]

    def status(self) -> LinkStatus:
        return LinkStatus.decode(self.request(Command.STATUS))


def image_frames(link: Link, image) -> list[tuple[int, bytes]]:
    """The WRITE requests that load ``image``."""
    requests = []
    for write in image.writes:
        requests += link.write_requests(write.tile, write.region, write.offset, list(write.words))
    return requests


# ---- results ----

@dataclass
class RunResult:
    target: str
    predictions: np.ndarray        #: (images,) the decided class of each image
    counts: np.ndarray             #: (images, classes) output spikes per class
    final_v: np.ndarray            #: (images, classes) output membranes after the run
    outputs: list = field(repr=False)   #: per image, its output events (x, y, neuron, tick)
    sops: int = 0                  #: synaptic operations, all images
    cycles: int | None = None      #: mesh clock cycles, all images (the chip's own count)
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return len(self.predictions)


def _check_spikes(spikes, inputs) -> np.ndarray:
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[2] != inputs:
        raise ValueError(f"spikes must have shape (steps, images, {inputs}), not {spikes.shape}")
    if not (np.issubdtype(spikes.dtype, np.integer) or spikes.dtype == bool):
        raise ValueError(f"spikes must hold integer event counts (or booleans), "
                         f"not {spikes.dtype}")
    if spikes.size and np.issubdtype(spikes.dtype, np.signedinteger) and spikes.min() < 0:
        raise ValueError("spikes must hold non-negative event counts")
    return spikes


# ---- chips ----

class Chip:
    """Open a target: ``"golden"``, ``"sim"`` or ``"serial:PORT"``."""

    TARGETS = ("golden", "sim", "serial:PORT")

    @staticmethod
    def open(target: str, *, profile: str = "icebreaker", baudrate: int = 3_000_000,
             timeout: float = 2.0):
        from .profiles import get_profile
        chip_profile = get_profile(profile)
        if target == "golden":
            return GoldenChip(chip_profile.info(), target="golden")
        if target == "sim":
            return LinkChip(Link(SimTransport(chip_profile)), target="sim")
        if target.startswith("serial:") and len(target) > len("serial:"):
            transport = SerialTransport(target[len("serial:"):], baudrate=baudrate,
                                        timeout=timeout)
            try:
                return LinkChip(Link(transport), target=target)
            except LinkError:
                transport.close()
                raise
        raise ValueError(f"unknown target {target!r}; use one of {', '.join(Chip.TARGETS)}")


class _ChipBase:
    image = None

    def _check_image(self, image):
        if image.info != self.info:
            raise ValueError(f"the image was compiled for profile {image.profile!r}, whose chip "
                             f"differs from this target's; recompile it with --profile")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LinkChip(_ChipBase):
    """A chip behind a :class:`Link` (the RTL simulation or a board)."""

    def __init__(self, link: Link, *, target: str):
        self.link = link
        self.info = link.info
        self.target = target

    def load(self, image) -> None:
        self._check_image(image)
        self.link.batch(image_frames(self.link, image))
        self.image = image

    def status(self) -> LinkStatus:
        return self.link.status()

    def _sops(self) -> int:
        return sum(self.link.read(t, Region.REGISTER, Register.SOPS, 1)[0]
                   for t in range(len(self.info.tiles)))

    def run(self, spikes, *, progress=None, outputs: bool = True) -> RunResult:
        """Every image of ``spikes``, one after the other (``outputs`` is accepted for
        symmetry with :meth:`GoldenChip.run`; the events are always listed)."""
        image, info, link = self.image, self.info, self.link
        if image is None:
            raise ValueError("load an image first")
        spikes = _check_spikes(spikes, image.inputs)
        steps, count, _ = spikes.shape
        ix, iy = image.input_tile
        ox, oy = image.output_tile
        out_tile = info.tile_index(ox, oy)
        v_bits = info.tiles[out_tile].v_bits
        start, sops0 = time.perf_counter(), self._sops()
        cycles0 = link.status().cycles
        counts = np.zeros((count, image.classes), np.int64)
        final_v = np.zeros((count, image.classes), np.int64)
        outputs = []
        for b in range(count):
            requests = [(Command.RESET, b"")]
            for t in range(steps):
                axons = np.repeat(np.arange(image.inputs), spikes[t, b])
                words = [pack_event_word(ix, iy, int(a)) for a in axons]
                per = (MAX_PAYLOAD - 2) // 2
                chunks = [words[k:k + per] for k in range(0, len(words), per)] or [[]]
                for k, chunk in enumerate(chunks):
                    ticks = 1 if k == len(chunks) - 1 else 0
                    requests.append((Command.RUN, struct.pack("<H", ticks) + b"".join(
                        w.to_bytes(2, "little") for w in chunk)))
            if image.drain_ticks:
                requests.append((Command.RUN, struct.pack("<H", image.drain_ticks)))
            answers = link.batch(requests)
            last_tick, pending = struct.unpack("<IH", answers[-1])
            first_tick = last_tick - steps - image.drain_ticks   # ticks count from the image
            events = []
            while pending:
                got = unpack_outputs(link.request(Command.OUTPUTS,
                                                  struct.pack("<H", min(pending, MAX_OUTPUTS))))
                events += [(x, y, n, (tick - first_tick) & 0xFFFF) for x, y, n, tick in got]
                pending -= len(got)
            outputs.append(events)
            for x, y, neuron, _ in events:
                if (x, y) == (ox, oy) and neuron < image.classes:
                    counts[b, neuron] += 1
            words = link.read(out_tile, Region.MEMBRANE, 0, image.classes)
            final_v[b] = [_signed(w, v_bits) for w in words]
            if progress:
                progress(b + 1, count)
        from ..sim.golden import decode
        # The model behind ModelTransport has no clock (its count stays 0).
        cycles = (link.status().cycles - cycles0) & 0xFFFFFFFF or None
        return RunResult(self.target, decode(counts, final_v), counts, final_v, outputs,
                         self._sops() - sops0, cycles, time.perf_counter() - start)

    def close(self):
        self.link.transport.close()


def _signed(word: int, bits: int) -> int:
    word &= (1 << bits) - 1
    return word - (1 << bits) if word >> (bits - 1) else word


class GoldenChip(_ChipBase):
    """The golden chip model, a whole batch of images at once."""

    def __init__(self, info: ChipInfo, *, target: str = "golden"):
        self.info = info
        self.target = target
        self.program = None

    def load(self, image) -> None:
        # Through the protocol's own model, so the image is read exactly as a chip reads it.
        self._check_image(image)
        transport = ModelTransport(self.info)
        link = Link(transport)
        link.batch(image_frames(link, image))
        self.program = transport.model.program()
        self.image = image

    def status(self) -> LinkStatus | None:
        return None

    def run(self, spikes, *, progress=None, batch: int = 1000,
            outputs: bool = True) -> RunResult:
        """Every image of ``spikes``; ``outputs=False`` skips listing each output event
        (``RunResult.outputs`` is then empty), which is much faster for large batches."""
        from ..sim.chip import ChipModel
        from ..sim.golden import decode
        image = self.image
        if image is None:
            raise ValueError("load an image first")
        spikes = _check_spikes(spikes, image.inputs)
        steps, count, _ = spikes.shape
        start = time.perf_counter()
        in_tile, out_tile = tuple(image.input_tile), tuple(image.output_tile)
        counts = np.zeros((count, image.classes), np.int64)
        final_v = np.zeros((count, image.classes), np.int64)
        events = [[] for _ in range(count)] if outputs else []
        to_host = self.program.cores[out_tile].to_host[:image.classes]
        sops = 0
        for lo in range(0, count, batch):
            hi = min(count, lo + batch)
            model = ChipModel(self.program, batch=hi - lo)
            for t in range(steps + image.drain_ticks):
                host = {in_tile: spikes[t, lo:hi]} if t < steps else {}
                ticked = model.step(host_spikes=host, collect=outputs)
                counts[lo:hi] += model.spikes[out_tile][:, :image.classes] & to_host
                if outputs:
                    for b, got in enumerate(ticked):
                        events[lo + b] += [(x, y, n, tick & 0xFFFF) for x, y, n, tick in got]
            model.deliver_pending()   # as on the chip: the last spikes reach their cores
            final_v[lo:hi] = model.cores[out_tile].v[:, :image.classes]
            sops += sum(core.counters.sops for core in model.cores.values())
            if progress:
                progress(hi, count)
        return RunResult(self.target, decode(counts, final_v), counts, final_v, events, sops,
                         None, time.perf_counter() - start)

    def close(self):
        pass
