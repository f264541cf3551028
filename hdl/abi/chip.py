"""The chip's formats: limits, shapes, enums, the register table, the core's address map, and
the packet and route-table layouts, with the integer packing host code uses for every layout.
"""

from __future__ import annotations

import enum as py_enum
from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import data, enum
from amaranth.utils import bits_for, exact_log2

__all__ = [
    # limits and shapes
    "AXON_LIMIT", "NEURON_LIMIT", "MESH_LIMIT", "AXON_BITS", "NEURON_BITS", "COORD_BITS",
    "TICK_BITS", "COUNTER_BITS", "ROUTE_INDEX_BITS", "ROUTE_COUNT_LIMIT", "CoreShape",
    "check_int", "to_signed", "signed_bits",
    # enums, registers, the address map
    "ResetMode", "MemoryStyle", "LUT_RAM", "Clocking", "Region", "CORE_REGIONS", "Register",
    "RegisterSpec", "REGISTERS", "COUNTERS", "PacketKind", "CoreMemoryMap",
    # layouts and their packing
    "AERPacket", "RouteEntry", "RouteDest", "pack", "unpack", "pack_event", "pack_output",
    "unpack_packet", "route_entry", "unpack_route_entry", "route_dest", "unpack_route_dest",
]


# ---- limits ----

#: Largest number of axons a core may have; an axon field is this wide.
AXON_LIMIT = 1024
#: Largest number of neurons a core may have; a neuron field is this wide.
NEURON_LIMIT = 256
#: Largest mesh side: chips have up to ``MESH_LIMIT x MESH_LIMIT`` cores.
MESH_LIMIT = 8

AXON_BITS = exact_log2(AXON_LIMIT)
NEURON_BITS = exact_log2(NEURON_LIMIT)
COORD_BITS = exact_log2(MESH_LIMIT)
#: The tick stamp of an output event (wrapping).
TICK_BITS = 16
#: Every counter (a core's, the chip's, the host link's) is this wide and wraps.
COUNTER_BITS = 32
#: A route table has at most ``2 ** ROUTE_INDEX_BITS`` destinations.
ROUTE_INDEX_BITS = 10
#: A route entry's count field holds up to this value.
ROUTE_COUNT_LIMIT = (1 << (ROUTE_INDEX_BITS + 1)) - 1


def check_int(name: str, value, lo: int, hi: int | None) -> int:
    """``value`` as an int; ``TypeError`` unless it is an integer, ``ValueError`` unless it lies
    in ``[lo, hi]`` (``hi`` None: no upper bound). Messages name ``name`` and the value."""
    if isinstance(value, bool) or not (isinstance(value, int) or hasattr(value, "__index__")):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    return value


def to_signed(word: int, bits: int) -> int:
    """The low ``bits`` of ``word`` read as a two's complement number."""
    word &= (1 << bits) - 1
    return word - (1 << bits) if word >> (bits - 1) else word


def signed_bits(lo: int, hi: int) -> int:
    """Smallest two's complement width that holds every integer in ``[lo, hi]``."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


@dataclass(frozen=True)
class CoreShape:
    """The generics of one core: what the hardware is built with.

    Parameters
    ----------
    axons : int
        ``A``, number of input axons, 1 to :data:`AXON_LIMIT`.
    neurons : int
        ``N``, number of neurons, 1 to :data:`NEURON_LIMIT`.
    w_bits : int
        Width of a signed synaptic weight: 4 or 8.
    v_bits : int
        Width of the signed, saturating membrane (and of the bias): 8 to 24; 16 by default.
    events_per_tick : int or None
        ``E``, the in-range events per tick the accumulator holds exactly: its width follows
        from it. Further events are still delivered, and counted in ``OVER_BUDGET``; the
        accumulator wraps, so the result stays independent of arrival order (docs/semantics.md,
        "Event budget"). ``None`` means ``A`` (every axon once per tick).

    Raises
    ------
    TypeError, ValueError
        A parameter is not an integer or is out of range; the message names it and its value.
    """
    axons: int
    neurons: int
    w_bits: int = 8
    v_bits: int = 16
    events_per_tick: int | None = None

    def __post_init__(self):
        check_int("axons", self.axons, 1, AXON_LIMIT)
        check_int("neurons", self.neurons, 1, NEURON_LIMIT)
        if isinstance(self.w_bits, bool) or self.w_bits not in (4, 8):
            raise ValueError(f"w_bits must be 4 or 8, not {self.w_bits!r}")
        check_int("v_bits", self.v_bits, 8, 24)
        if self.events_per_tick is None:
            object.__setattr__(self, "events_per_tick", self.axons)
        check_int("events_per_tick", self.events_per_tick, 1, 65535)

    # Ranges that the hardware widths are derived from.
    @property
    def w_min(self) -> int:
        return -(1 << (self.w_bits - 1))

    @property
    def w_max(self) -> int:
        return (1 << (self.w_bits - 1)) - 1

    @property
    def v_min(self) -> int:
        return -(1 << (self.v_bits - 1))

    @property
    def v_max(self) -> int:
        return (1 << (self.v_bits - 1)) - 1

    @property
    def accumulator_bits(self) -> int:
        """Width of ``I``: holds ``events_per_tick`` weights of either extreme, so within the
        budget it never wraps."""
        return signed_bits(self.events_per_tick * self.w_min, self.events_per_tick * self.w_max)


# ---- enums ----

class ResetMode(enum.IntEnum, shape=1):
    """What a neuron's membrane becomes after it spikes (the value is the RESET register's)."""
    SUBTRACT = 0  #: ``V' - theta``
    ZERO = 1      #: ``0``


class _Choice(py_enum.Enum):
    """A generator parameter chosen by name: a member, or its value as a string."""

    @classmethod
    def cast(cls, value, name: str):
        """``value`` as a member; ``ValueError`` naming ``name`` and the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"{name} must be a {cls.__name__} ({choices}), "
                             f"not {value!r}") from None


class MemoryStyle(_Choice):
    """Where a core's synapse memory lives (a generator parameter, never on a wire)."""
    BLOCK = "block"  #: block RAM (iCE40 EBR, ECP5 DP16KD), any shape
    SPRAM = "spram"  #: the iCE40 UP5K's four 16K x 16 single-port RAMs (1 Mbit)


#: A memory's attributes that build it in LUT RAM (yosys's ``ram_style = "distributed"``: ECP5
#: ``TRELLIS_DPR16X4``, 16 x 4 bits each) instead of block RAM, for the small memories of a
#: tile whose board has more logic than block RAM to spare (``TileConfig.lut_ram``; a generator
#: parameter, never on a wire).
LUT_RAM = {"ram_style": "distributed"}


class Clocking(_Choice):
    """How a chip's cores are clocked (a generator parameter, never on a wire)."""
    GALS = "gals"      #: every core in its own clock domain, crossings on AsyncFIFOs
    SINGLE = "single"  #: every core on the mesh's clock, crossings on synchronous FIFOs


class Region(enum.IntEnum, shape=3):
    """What a memory access addresses on a tile. The core's own regions come first; the route
    tables belong to the tile. A write to an ACCUMULATOR word, or to a counter in REGISTER,
    clears it (the value written is ignored)."""
    SYNAPSE = 0      #: ``P`` weights of one row of ``W`` per word
    MEMBRANE = 1     #: ``V[n]``
    BIAS = 2         #: ``B[n]``
    ACCUMULATOR = 3  #: ``I[n]``
    REGISTER = 4     #: parameters and counters, at :class:`Register` offsets
    ROUTE_INDEX = 5  #: a :data:`RouteEntry` per neuron
    ROUTE_DEST = 6   #: :data:`RouteDest` words the entries point into


#: The regions a core decodes on its own bus.
CORE_REGIONS = (Region.SYNAPSE, Region.MEMBRANE, Region.BIAS, Region.ACCUMULATOR,
                Region.REGISTER)


class Register(enum.IntEnum, shape=3):
    """Offsets in the REGISTER region: parameters, then counters (see :data:`REGISTERS`)."""
    THRESHOLD = 0
    LEAK = 1
    RESET = 2
    EVENTS = 3
    SOPS = 4
    TICKS = 5
    DROP_RANGE = 6
    OVER_BUDGET = 7


@dataclass(frozen=True)
class RegisterSpec:
    """One register: a parameter with its valid range and its value after reset, or a
    :data:`COUNTER_BITS` wrapping counter (reset 0; a write clears it, whatever is written).

    ``name`` is how host code and the golden model call it (a counter's name is also its
    field in the golden model's ``CoreCounters``). A parameter write outside ``range_of``
    is ignored by the core, so its register always holds a value the golden model accepts.
    """
    register: Register
    counter: bool
    doc: str

    @property
    def name(self) -> str:
        return self.register.name.lower()

    def range_of(self, shape: CoreShape) -> tuple[int, int]:
        """The values the register can hold on a core of ``shape``, inclusive."""
        if self.counter:
            return 0, (1 << COUNTER_BITS) - 1
        return {
            Register.THRESHOLD: (1, shape.v_max),
            Register.LEAK: (0, shape.v_bits - 1),
            Register.RESET: (0, max(ResetMode)),
        }[self.register]

    def reset_of(self, shape: CoreShape) -> int:
        """The value after reset: the largest threshold, no leak, subtract reset, counters 0."""
        if self.register == Register.THRESHOLD:
            return shape.v_max
        if self.register == Register.RESET:
            return int(ResetMode.SUBTRACT)
        return 0

    def accepts(self, shape: CoreShape, value: int) -> bool:
        lo, hi = self.range_of(shape)
        return lo <= value <= hi


#: Every register, in offset order.
REGISTERS: dict[Register, RegisterSpec] = {spec.register: spec for spec in (
    RegisterSpec(Register.THRESHOLD, False, "theta: a neuron spikes when V' >= theta"),
    RegisterSpec(Register.LEAK, False, "leak shift k: L = V - (V >>> k); 0 is no leak"),
    RegisterSpec(Register.RESET, False, "a ResetMode: V' after a spike"),
    RegisterSpec(Register.EVENTS, True, "events delivered (every in-range event)"),
    RegisterSpec(Register.SOPS, True, "synaptic operations: N per delivered event"),
    RegisterSpec(Register.TICKS, True, "updates done"),
    RegisterSpec(Register.DROP_RANGE, True, "events for an axon the core does not have"),
    RegisterSpec(Register.OVER_BUDGET, True,
                 "in-range events past events_per_tick in a tick (delivered; I may wrap)"),
)}
assert list(REGISTERS) == list(Register)

#: The counters, in offset order.
COUNTERS: tuple[Register, ...] = tuple(r for r, spec in REGISTERS.items() if spec.counter)


# ---- a core's address map ----

class CoreMemoryMap:
    """Widths and addresses of one core configuration's memory bus.

    Addresses on a core's bus are word addresses ``region << offset_bits | offset``:

    ============  ==============================  =================================================
    region        offset                          word
    ============  ==============================  =================================================
    SYNAPSE       ``a * R + r``, ``R = ceil(N/P)``  ``P`` weights: lane ``j`` (bits ``j*w_bits``
                                                  up) is ``W[a][r*P + j]``; lanes past ``N`` unused
    MEMBRANE      neuron ``n``                    ``V[n]``, signed ``v_bits``
    BIAS          neuron ``n``                    ``B[n]``, signed ``v_bits``
    ACCUMULATOR   neuron ``n``                    ``I[n]``, signed ``accumulator_bits``; a write
                                                  clears it
    REGISTER      :class:`Register` offset        parameters and 32-bit wrapping counters
    ============  ==============================  =================================================

    Signed values read back sign-extended to the bus width. A write to an offset outside its region
    (or to an unknown region) changes nothing; such a read returns 0. A write to a counter or to an
    accumulator clears it, whatever the value written: I is zero between ticks anyway, and a
    sum or zero is what the accumulator's adder writes without a multiplexer per bit; a counter
    that could be loaded with any value would cost a logic cell more per bit on the iCE40, whose
    adder cell has no room for the load multiplexer.

    Parameters
    ----------
    shape : CoreShape
    lanes : int
        ``P``, weights per synapse word.
    """

    #: A core decodes the same region numbers as the host link (:class:`Region`).
    REGION_BITS = Region.as_shape().width

    def __init__(self, shape: CoreShape, lanes: int):
        self.shape = shape
        self.lanes = lanes
        self.rows = -(-shape.neurons // lanes)
        self.synapse_words = shape.axons * self.rows
        self.offset_bits = bits_for(max(self.synapse_words, shape.neurons, len(Register)) - 1)
        self.data_bits = max(COUNTER_BITS, lanes * shape.w_bits)
        self.addr_layout = data.StructLayout({
            "offset": unsigned(self.offset_bits),
            "region": unsigned(self.REGION_BITS),
        })
        self.request_layout = data.StructLayout({
            "addr": self.addr_layout,
            "write": unsigned(1),
            "data": unsigned(self.data_bits),
        })

    @property
    def addr_bits(self) -> int:
        return self.offset_bits + self.REGION_BITS

    def region_size(self, region: Region) -> int:
        return {
            Region.SYNAPSE: self.synapse_words,
            Region.MEMBRANE: self.shape.neurons,
            Region.BIAS: self.shape.neurons,
            Region.ACCUMULATOR: self.shape.neurons,
            Region.REGISTER: len(Register),
        }[Region(region)]

    def addr(self, region: Region, offset: int) -> int:
        """The bus address of ``offset`` in ``region``; raises if it lies outside the region."""
        size = self.region_size(region)
        if not 0 <= offset < size:
            raise ValueError(f"offset {offset!r} is outside region {Region(region).name} "
                             f"(size {size})")
        return int(region) << self.offset_bits | offset

    def request(self, addr: int, *, write: bool, data: int = 0) -> int:
        """A bus request as the integer a bench or a host link puts on ``req.payload``."""
        layout = self.request_layout
        if not 0 <= addr < (1 << self.addr_bits):
            raise ValueError(f"address {addr!r} does not fit {self.addr_bits} bits")
        if not 0 <= data < (1 << self.data_bits):
            raise ValueError(f"data {data!r} does not fit {self.data_bits} bits")
        return (addr << layout["addr"].offset | int(write) << layout["write"].offset
                | data << layout["data"].offset)

    # Host-side packing of the synapse region.
    def synapse_region(self, weights) -> list[int]:
        """The SYNAPSE region's words, by offset, that hold a full ``(A, N)`` weight matrix."""
        shape, lanes = self.shape, self.lanes
        mask = (1 << shape.w_bits) - 1
        words = []
        for a in range(shape.axons):
            for r in range(self.rows):
                word = 0
                for j in range(lanes):
                    n = r * lanes + j
                    if n < shape.neurons:
                        word |= (int(weights[a][n]) & mask) << (j * shape.w_bits)
                words.append(word)
        return words

    def synapse_words_of(self, weights) -> list[tuple[int, int]]:
        """``(bus address, word)`` pairs that load a full ``(A, N)`` weight matrix."""
        return [(self.addr(Region.SYNAPSE, offset), word)
                for offset, word in enumerate(self.synapse_region(weights))]

    def to_signed(self, word: int, bits: int | None = None) -> int:
        """Interpret a read-back bus word as a signed value of ``bits`` (the bus width if None)."""
        return to_signed(word, self.data_bits if bits is None else bits)

    def weights_of(self, words) -> list[list[int]]:
        """The ``(A, N)`` weight matrix that the synapse region's ``words`` (in address order)
        hold: the inverse of :meth:`synapse_words_of`."""
        shape, lanes, w = self.shape, self.lanes, self.shape.w_bits
        weights = [[0] * shape.neurons for _ in range(shape.axons)]
        for a in range(shape.axons):
            for r in range(self.rows):
                word = words[a * self.rows + r]
                for j in range(min(lanes, shape.neurons - r * lanes)):
                    weights[a][r * lanes + j] = self.to_signed(word >> (j * w), w)
        return weights

    def to_word(self, value: int) -> int:
        """A signed value as a bus word (two's complement in ``data_bits``)."""
        return value & ((1 << self.data_bits) - 1)


class PacketKind(enum.IntEnum, shape=1):
    """What an :data:`AERPacket` carries."""
    EVENT = 0   #: an event for axon ``body.event.axon`` of core ``(x, y)``
    OUTPUT = 1  #: a spike of core ``(x, y)`` for the host


# ---- layouts ----

#: An address-event packet, the one format of everything that travels between cores::
#:
#:     kind (1) | x (3) | y (3) | body (24)
#:
#: ``EVENT`` packets go to core ``(x, y)``. ``OUTPUT`` packets go to the host port; ``(x, y)``
#: is the core they come from, ``body.output.tick`` the tick of that update (wrapping).
#: ``x`` grows eastwards, ``y`` southwards.
AERPacket = data.StructLayout({
    "kind": PacketKind,
    "x": unsigned(COORD_BITS),
    "y": unsigned(COORD_BITS),
    "body": data.UnionLayout({
        "event": data.StructLayout({"axon": unsigned(AXON_BITS)}),
        "output": data.StructLayout({"neuron": unsigned(NEURON_BITS),
                                     "tick": unsigned(TICK_BITS)}),
    }),
})

#: A ROUTE_INDEX word, per neuron: its destinations are ``ROUTE_DEST[start : start + count]``
#: (addresses wrap at the table's size); ``to_host`` also reports its spikes to the host.
RouteEntry = data.StructLayout({
    "start": unsigned(ROUTE_INDEX_BITS), "count": unsigned(ROUTE_INDEX_BITS + 1),
    "to_host": unsigned(1)})

#: A ROUTE_DEST word: an event for axon ``axon`` of core ``(x, y)``.
RouteDest = data.StructLayout({
    "x": unsigned(COORD_BITS), "y": unsigned(COORD_BITS), "axon": unsigned(AXON_BITS)})

def _plan(layout) -> list:
    """``[(name, offset, width, signed, sub), ...]`` for a layout's fields (``sub``: the
    field's own layout, or its enum class, or None)."""
    plan = _PLANS.get(id(layout))
    if plan is None or plan[0] is not layout:
        fields = []
        for name, fld in layout:
            shape = fld.shape
            sub = shape if isinstance(shape, (data.Layout, py_enum.EnumMeta)) else None
            cast = shape.as_shape() if hasattr(shape, "as_shape") else shape
            cast = cast.as_shape() if hasattr(cast, "as_shape") else cast
            fields.append((name, fld.offset, fld.width, getattr(cast, "signed", False), sub))
        plan = _PLANS[id(layout)] = (layout, fields)
    return plan[1]


_PLANS: dict = {}


def pack(layout, **values) -> int:
    """The integer whose bits are ``values`` laid out by ``layout`` (fields not given: 0).

    A nested layout's value is a dict (a union's: one member), as for ``layout.const``.
    Raises ``ValueError`` naming the field when a value does not fit it.
    """
    word = 0
    known = set()
    for name, offset, width, is_signed, sub in _plan(layout):
        known.add(name)
        if name not in values:
            continue
        value = values[name]
        if isinstance(sub, data.Layout):
            if isinstance(sub, data.UnionLayout) and len(value) != 1:
                raise ValueError(f"union field {name!r} takes one member, not {value!r}")
            value = pack(sub, **value)
        value = int(value)
        lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else \
                 (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"field {name!r} is {width} bits: {value!r} is outside "
                             f"[{lo}, {hi}]")
        word |= (value & ((1 << width) - 1)) << offset
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not fields of the layout; its fields are "
                         f"{sorted(known)}")
    return word


def unpack(layout, word: int) -> dict:
    """The fields of ``word`` as laid out by ``layout``: ints (signed fields sign-extended),
    enum members, and dicts for nested layouts (a union's: every member's view)."""
    out = {}
    for name, offset, width, is_signed, sub in _plan(layout):
        value = (word >> offset) & ((1 << width) - 1)
        if is_signed and value >> (width - 1):
            value -= 1 << width
        if isinstance(sub, data.Layout):
            value = unpack(sub, value)
        elif sub is not None:
            value = sub(value)
        out[name] = value
    return out


def pack_event(x: int, y: int, axon: int) -> int:
    """An EVENT :data:`AERPacket` as an integer (what a bench or host puts on a stream)."""
    return pack(AERPacket, kind=PacketKind.EVENT, x=x, y=y, body={"event": {"axon": axon}})


def pack_output(x: int, y: int, neuron: int, tick: int) -> int:
    """An OUTPUT :data:`AERPacket` as an integer; ``tick`` wraps to :data:`TICK_BITS`."""
    return pack(AERPacket, kind=PacketKind.OUTPUT, x=x, y=y,
                body={"output": {"neuron": neuron, "tick": tick & ((1 << TICK_BITS) - 1)}})


def unpack_packet(word: int) -> tuple:
    """``("event", x, y, axon)`` or ``("output", x, y, neuron, tick)``."""
    p = unpack(AERPacket, word)
    if p["kind"] == PacketKind.EVENT:
        return ("event", p["x"], p["y"], p["body"]["event"]["axon"])
    out = p["body"]["output"]
    return ("output", p["x"], p["y"], out["neuron"], out["tick"])


def route_entry(start: int = 0, count: int = 0, to_host: bool = False) -> int:
    """A ROUTE_INDEX word (:data:`RouteEntry`)."""
    return pack(RouteEntry, start=start, count=count, to_host=int(to_host))


def unpack_route_entry(word: int) -> tuple[int, int, bool]:
    """``(start, count, to_host)`` of a ROUTE_INDEX word (bits above the entry ignored)."""
    e = unpack(RouteEntry, word)
    return e["start"], e["count"], bool(e["to_host"])


def route_dest(x: int, y: int, axon: int) -> int:
    """A ROUTE_DEST word (:data:`RouteDest`)."""
    return pack(RouteDest, x=x, y=y, axon=axon)


def unpack_route_dest(word: int) -> tuple[int, int, int]:
    """``(x, y, axon)`` of a ROUTE_DEST word (bits above the word ignored)."""
    d = unpack(RouteDest, word)
    return d["x"], d["y"], d["axon"]
