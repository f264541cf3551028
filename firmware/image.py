"""The chip image: every memory write that loads a compiled network, and how to run it.

A :class:`ChipImage` is what ``spikefab compile`` writes and the driver loads: the chip it was
compiled for (everything it is generated from, :meth:`ChipProfile.to_dict
<spikefab.hdl.profiles.ChipProfile.to_dict>`, and its :class:`~spikefab.hdl.abi.ChipInfo`,
which the driver compares with the chip's INFO answer), the memory writes (each one WRITE
frame), and where the network's inputs and classes are.

**File format** (version 2; all integers little-endian)::

    magic          8 bytes   b"SPKFIMG\\x00"
    version        u16       2
    header length  u32       n
    header         n bytes   UTF-8 JSON object (keys sorted, no whitespace):
                             profile (the chip's name), chip (ChipProfile.to_dict()),
                             info (hex of ChipInfo.encode()), input_tiles [[x, y], ...],
                             inputs, outputs [[x, y, first class, count], ...], classes,
                             drain_ticks, steps (or null), encoder (the model's rate
                             encoder; "pcg64" if absent), meta (model name, sha256, sizes,
                             layer placement)
    record count   u32
    records        each: tile (u8, y * cols + x), region (u8, protocol.Region),
                   offset (u32, in words), count (u32), then count words of
                   info.word_bytes bytes each
    checksum       32 bytes  SHA-256 of every byte before it

Every record addresses words inside one region of one tile (``ChipInfo.check_range``) and
holds at most :data:`MAX_RECORD_WORDS` words for the image's word size, so it is exactly one
WRITE frame. The same image always gives the same bytes.

Running an image: write every record, then for each input sample inject input ``i`` of the
network as an event for axon ``i`` of every tile of ``input_tiles`` (one INPUT axon), run ``steps`` ticks, then
``drain_ticks`` more without input; class ``first + j`` is neuron ``j`` of the tile of the
``outputs`` entry ``[x, y, first, count]`` that holds it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..hdl.abi import ADDRESS_BYTES, MAX_PAYLOAD, ChipInfo, ProtocolError, TileInfo
from ..hdl.profiles import ChipProfile
from ..sim.encoding import check_encoder

__all__ = ["MAGIC", "IMAGE_VERSION", "ImageError", "MemoryWrite", "OutputSlice", "ChipImage",
           "max_record_words"]

MAGIC = b"SPKFIMG\x00"
IMAGE_VERSION = 2
_CHECKSUM = 32
_RECORD = struct.Struct("<BBII")


def max_record_words(word_bytes: int) -> int:
    """Most words one record (one WRITE frame) carries."""
    return (MAX_PAYLOAD - ADDRESS_BYTES) // word_bytes


class ImageError(ValueError):
    """A file that is not a valid chip image, or an image inconsistent with its chip."""


@dataclass(frozen=True)
class MemoryWrite:
    """``words`` written from word ``offset`` of ``region`` on tile ``tile`` (y * cols + x)."""
    tile: int
    region: int
    offset: int
    words: tuple[int, ...]

    def payload(self, word_bytes: int) -> bytes:
        """The WRITE request's payload."""
        return (bytes([self.tile, self.region]) + self.offset.to_bytes(4, "little")
                + b"".join(w.to_bytes(word_bytes, "little") for w in self.words))


@dataclass(frozen=True)
class OutputSlice:
    """Classes ``first .. first + count - 1`` are neurons ``0 .. count - 1`` of ``tile``."""
    tile: tuple[int, int]
    first: int
    count: int


@dataclass
class ChipImage:
    """A compiled network for one chip (see the module's documentation)."""
    profile: str
    info: ChipInfo
    chip: dict
    writes: list[MemoryWrite]
    input_tiles: tuple[tuple[int, int], ...]
    inputs: int
    outputs: tuple[OutputSlice, ...]
    classes: int
    drain_ticks: int
    steps: int | None = None
    meta: dict = field(default_factory=dict)
    encoder: str = "pcg64"       #: the rate encoder of the model (sim.encoding.ENCODERS)

    def chip_profile(self) -> ChipProfile:
        """The chip this image was compiled for (to simulate it, or build its bitstream)."""
        return ChipProfile.from_dict(self.chip)

    def tile_index(self, tile: tuple[int, int]) -> int:
        return self.info.tile_index(*tile)

    # ---- checking ----
    def validate(self) -> "ChipImage":
        """Raise :class:`ImageError` unless every write and field fits ``info``."""
        info = self.info
        limit = max_record_words(info.word_bytes)
        word_limit = 1 << (8 * info.word_bytes)
        for k, write in enumerate(self.writes):
            where = (f"record {k} (tile {write.tile}, region {write.region}, offset "
                     f"{write.offset}, {len(write.words)} words)")
            if not 1 <= len(write.words) <= limit:
                raise ImageError(f"{where}: a record holds 1 to {limit} words (one WRITE frame)")
            try:
                info.check_range(write.tile, write.region, write.offset, len(write.words))
            except ProtocolError as exc:
                raise ImageError(f"{where} does not fit the chip: {exc}") from None
            if any(not 0 <= w < word_limit for w in write.words):
                raise ImageError(f"{where}: a word does not fit {info.word_bytes} bytes")
        try:
            described = self.chip_profile().info()
        except ValueError as exc:
            raise ImageError(f"its chip description is invalid: {exc}") from None
        if described != info:
            raise ImageError("its chip description and its chip info disagree")

        def tile_of(name, tile) -> TileInfo:
            x, y = tile
            if not (0 <= x < info.cols and 0 <= y < info.rows):
                raise ImageError(f"{name} {(x, y)} is outside the {info.cols} x {info.rows} "
                                 f"mesh")
            return info.tiles[info.tile_index(x, y)]

        if not self.input_tiles:
            raise ImageError("no input tiles")
        for tile in self.input_tiles:
            axons = tile_of("input tile", tile).axons
            if not 1 <= self.inputs <= axons:
                raise ImageError(f"inputs = {self.inputs}, but input tile {tuple(tile)} has "
                                 f"{axons} axons")
        covered = []
        for out in self.outputs:
            neurons = tile_of("output tile", out.tile).neurons
            if not 1 <= out.count <= neurons:
                raise ImageError(f"classes {out.first}.. on tile {tuple(out.tile)}: "
                                 f"{out.count} classes, but the tile has {neurons} neurons")
            covered += range(out.first, out.first + out.count)
        if sorted(covered) != list(range(self.classes)) or self.classes < 1:
            raise ImageError(f"the outputs must hold each of the {self.classes} classes "
                             f"exactly once")
        try:
            check_encoder(self.encoder)
        except ValueError as exc:
            raise ImageError(f"encoder: {exc}") from None
        if self.drain_ticks < 0 or (self.steps is not None and self.steps < 1):
            raise ImageError(f"drain_ticks ({self.drain_ticks}) must be >= 0 and steps "
                             f"({self.steps}) >= 1")
        return self

    # ---- bytes ----
    def header(self) -> dict:
        return {
            "profile": self.profile,
            "chip": self.chip,
            "info": self.info.encode().hex(),
            "input_tiles": [list(t) for t in self.input_tiles],
            "inputs": self.inputs,
            "outputs": [[*o.tile, o.first, o.count] for o in self.outputs],
            "classes": self.classes,
            "drain_ticks": self.drain_ticks,
            "steps": self.steps,
            "encoder": self.encoder,
            "meta": self.meta,
        }

    def to_bytes(self) -> bytes:
        self.validate()
        head = json.dumps(self.header(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
        wb = self.info.word_bytes
        out = bytearray(MAGIC)
        out += struct.pack("<HI", IMAGE_VERSION, len(head))
        out += head
        out += struct.pack("<I", len(self.writes))
        for write in self.writes:
            out += _RECORD.pack(write.tile, write.region, write.offset, len(write.words))
            out += b"".join(w.to_bytes(wb, "little") for w in write.words)
        out += hashlib.sha256(out).digest()
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "the image") -> "ChipImage":
        data = bytes(data)
        if not data:
            raise ImageError(f"{name} is empty: not a spikefab chip image")
        if data[:len(MAGIC)] != MAGIC:
            if len(data) < len(MAGIC) and MAGIC.startswith(data):
                raise ImageError(f"{name} is truncated ({len(data)} bytes)")
            raise ImageError(f"{name} is not a spikefab chip image (bad magic: expected "
                             f"{MAGIC!r}, found {data[:len(MAGIC)]!r})")
        if len(data) < len(MAGIC) + 2:
            raise ImageError(f"{name} is truncated ({len(data)} bytes)")
        (version,) = struct.unpack_from("<H", data, len(MAGIC))
        if version != IMAGE_VERSION:
            raise ImageError(f"{name} has image format version {version}; this spikefab reads "
                             f"version {IMAGE_VERSION}: compile the model again with "
                             f"spikefab compile")
        intact = (len(data) >= _CHECKSUM
                  and hashlib.sha256(data[:-_CHECKSUM]).digest() == data[-_CHECKSUM:])
        try:
            parsed, end = cls._parse(data)
        except _Truncated as exc:
            if intact:   # a consistent checksum over a malformed body: a broken writer
                raise ImageError(f"{name} is inconsistent: {exc}") from None
            raise ImageError(f"{name} is truncated: it has {len(data)} bytes, but its "
                             f"records need at least {exc.need} (the file is incomplete or "
                             f"corrupted)") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            if not intact:
                raise ImageError(f"checksum mismatch: {name} is corrupted") from None
            raise ImageError(f"{name} is inconsistent: {exc}") from None
        if end + _CHECKSUM > len(data):
            raise ImageError(f"{name} is truncated: it has {len(data)} bytes, but needs "
                             f"{end + _CHECKSUM} (the checksum is missing)")
        if hashlib.sha256(data[:end]).digest() != data[end:end + _CHECKSUM]:
            raise ImageError(f"checksum mismatch: {name} is corrupted")
        if end + _CHECKSUM != len(data):
            raise ImageError(f"{name} has {len(data) - end - _CHECKSUM} bytes after its "
                             f"checksum")
        try:
            return parsed.validate()
        except ImageError as exc:
            raise ImageError(f"{name} is inconsistent: {exc}") from None

    @classmethod
    def _parse(cls, data: bytes) -> tuple["ChipImage", int]:
        """Decode the body; raises _Truncated if it runs past the end of ``data``."""
        pos = len(MAGIC) + 2

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(data):
                raise _Truncated(pos + n + _CHECKSUM)
            chunk = data[pos:pos + n]
            pos += n
            return chunk

        (head_len,) = struct.unpack("<I", take(4))
        head = json.loads(take(head_len).decode("utf-8"))
        if not isinstance(head, dict):
            raise ValueError("the header is not a JSON object")
        try:
            info = ChipInfo.decode(bytes.fromhex(head["info"]))
        except ProtocolError as exc:
            raise ValueError(f"the header's chip info is invalid: {exc}") from None
        wb = info.word_bytes
        (count,) = struct.unpack("<I", take(4))
        writes = []
        for _ in range(count):
            tile, region, offset, n = _RECORD.unpack(take(_RECORD.size))
            if n > max_record_words(wb):
                raise ValueError(f"a record of {n} words (at most {max_record_words(wb)})")
            raw = take(n * wb)
            words = tuple(int.from_bytes(raw[k:k + wb], "little") for k in range(0, n * wb, wb))
            writes.append(MemoryWrite(tile, region, offset, words))
        steps = head["steps"]
        if not isinstance(head["chip"], dict):
            raise ValueError("the header's chip is not a JSON object")
        outputs = []
        for entry in head["outputs"]:
            if not isinstance(entry, list) or len(entry) != 4:
                raise ValueError(f"an output entry is [x, y, first, count], not {entry!r}")
            outputs.append(OutputSlice(_pair(entry[:2]), _int(entry[2]), _int(entry[3])))
        image = cls(profile=str(head["profile"]), info=info, chip=head["chip"], writes=writes,
                    input_tiles=tuple(_pair(t) for t in head["input_tiles"]),
                    inputs=_int(head["inputs"]), outputs=tuple(outputs),
                    classes=_int(head["classes"]),
                    drain_ticks=_int(head["drain_ticks"]),
                    steps=None if steps is None else _int(steps), meta=dict(head["meta"]),
                    encoder=str(head.get("encoder", "pcg64")))
        return image, pos

    def save(self, path) -> None:
        data = self.to_bytes()
        try:
            Path(path).write_bytes(data)
        except OSError as exc:
            raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path) -> "ChipImage":
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, name=str(path))

    # ---- summary ----
    @property
    def word_count(self) -> int:
        return sum(len(w.words) for w in self.writes)

    def region_words(self) -> dict[tuple[int, int], int]:
        """Words written per ``(tile, region)``."""
        out: dict[tuple[int, int], int] = {}
        for w in self.writes:
            out[w.tile, w.region] = out.get((w.tile, w.region), 0) + len(w.words)
        return out


class _Truncated(Exception):
    def __init__(self, need: int):
        super().__init__(f"the records run past the end (need {need} bytes)")
        self.need = need


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, not {value!r}")
    return value


def _pair(value) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"expected [x, y], not {value!r}")
    return _int(value[0]), _int(value[1])
