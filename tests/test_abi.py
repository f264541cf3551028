"""The formats layer: host-side packing is the gateware's layout, bit for bit."""

import random

import pytest
from amaranth.lib import data

from spikefab.hdl.abi import (AERPacket, AXON_LIMIT, COUNTERS, MESH_LIMIT, NEURON_LIMIT,
                              REGISTERS, ROUTE_COUNT_LIMIT, Clocking, CoreMemoryMap, CoreShape,
                              EventWord, MemoryStyle, OutputRecord, PacketKind, Register,
                              ResetMode, RouteDest, RouteEntry, pack, pack_event,
                              pack_event_word, pack_output, route_dest, route_entry, unpack,
                              unpack_event_word, unpack_packet, unpack_route_dest,
                              unpack_route_entry)
from spikefab.sim.golden import NeuronConfig

SEED = 20261207


def _random_value(layout, rng):
    """A random ``layout.const`` initializer that fills every field."""
    values = {}
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, data.UnionLayout):
            member = rng.choice([n for n, _ in shape])
            values[name] = {member: _random_value(shape[member].shape, rng)}
        elif isinstance(shape, data.Layout):
            values[name] = _random_value(shape, rng)
        else:
            width = field.width
            values[name] = rng.randrange(1 << width)
            if isinstance(shape, type) and issubclass(shape, PacketKind):
                values[name] = PacketKind(values[name])
    return values


@pytest.mark.parametrize("layout", [AERPacket, EventWord, RouteEntry, RouteDest, OutputRecord],
                         ids=["AERPacket", "EventWord", "RouteEntry", "RouteDest",
                              "OutputRecord"])
def test_pack_is_the_layouts_own_encoding(layout):
    rng = random.Random(SEED)
    for trial in range(300):
        value = _random_value(layout, rng)
        want = layout.const(value).as_bits()
        got = pack(layout, **value)
        assert got == want, f"seed {SEED}, trial {trial}: {value}"
        back = unpack(layout, got)
        for name, v in value.items():
            if not isinstance(v, dict):
                assert back[name] == v, f"seed {SEED}, trial {trial}: {name}"


def test_packet_helpers_round_trip():
    rng = random.Random(SEED)
    for _ in range(200):
        x, y = rng.randrange(MESH_LIMIT), rng.randrange(MESH_LIMIT)
        axon, neuron, tick = rng.randrange(AXON_LIMIT), rng.randrange(NEURON_LIMIT), \
            rng.randrange(1 << 20)
        assert unpack_packet(pack_event(x, y, axon)) == ("event", x, y, axon)
        assert unpack_packet(pack_output(x, y, neuron, tick)) == \
            ("output", x, y, neuron, tick & 0xFFFF)
        assert unpack_event_word(pack_event_word(x, y, axon)) == (x, y, axon)
        assert unpack_route_dest(route_dest(x, y, axon)) == (x, y, axon)
        start, count = rng.randrange(1 << 10), rng.randrange(ROUTE_COUNT_LIMIT + 1)
        assert unpack_route_entry(route_entry(start, count, True)) == (start, count, True)


@pytest.mark.parametrize("call, message", [
    (lambda: pack_event_word(MESH_LIMIT, 0, 0), r"field 'x' is 3 bits: 8 is outside \[0, 7\]"),
    (lambda: pack_event_word(0, 0, AXON_LIMIT), r"field 'axon' is 10 bits: 1024"),
    (lambda: route_entry(count=ROUTE_COUNT_LIMIT + 1), r"field 'count' is 11 bits"),
    (lambda: pack(EventWord, axon=1, z=2), r"\['z'\] are not fields of the layout"),
    (lambda: pack(AERPacket, body={"event": {"axon": 1}, "output": {"neuron": 1}}),
     r"union field 'body' takes one member"),
])
def test_pack_refuses_what_does_not_fit(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_register_table_agrees_with_the_golden_models_validation():
    """A parameter the core accepts is one the golden model accepts, and no other."""
    shape = CoreShape(8, 4, v_bits=10)
    assert [r for r in Register] == list(REGISTERS)
    assert COUNTERS == (Register.EVENTS, Register.SOPS, Register.TICKS, Register.DROP_RANGE,
                        Register.OVER_BUDGET)
    for register in (Register.THRESHOLD, Register.LEAK, Register.RESET):
        spec = REGISTERS[register]
        for value in range(-2, (1 << shape.v_bits) + 2):
            registers = NeuronConfig(threshold=300, leak=0,
                                     reset=ResetMode.SUBTRACT).registers()
            registers[register] = value
            try:
                NeuronConfig(registers[Register.THRESHOLD], registers[Register.LEAK],
                             registers[Register.RESET]).validate(shape)
                golden = True
            except (TypeError, ValueError):
                golden = False
            assert spec.accepts(shape, value) == golden, (register, value)
    reset = {r: spec.reset_of(shape) for r, spec in REGISTERS.items()}
    assert reset[Register.THRESHOLD] == shape.v_max
    assert reset[Register.RESET] == ResetMode.SUBTRACT
    assert all(reset[r] == 0 for r in COUNTERS) and reset[Register.LEAK] == 0


def test_synapse_words_unpack_to_the_weights_they_were_packed_from():
    rng = random.Random(SEED)
    for lanes, w_bits, neurons in [(1, 8, 3), (4, 4, 10), (8, 8, 128), (16, 8, 10)]:
        shape = CoreShape(5, neurons, w_bits=w_bits)
        mm = CoreMemoryMap(shape, lanes)
        weights = [[rng.randint(shape.w_min, shape.w_max) for _ in range(neurons)]
                   for _ in range(shape.axons)]
        words = [word for _, word in mm.synapse_words_of(weights)]
        assert mm.weights_of(words) == weights, (lanes, w_bits, neurons)


@pytest.mark.parametrize("choice, good, bad, message", [
    (MemoryStyle, "spram", "sram", r"memory must be a MemoryStyle \('block', 'spram'\), "
                                   r"not 'sram'"),
    (Clocking, Clocking.GALS, "async", r"memory must be a Clocking \('gals', 'single'\)"),
])
def test_generator_choices_take_names_and_say_what_is_wrong(choice, good, bad, message):
    assert choice.cast(good, "memory") is choice(good)
    with pytest.raises(ValueError, match=message):
        choice.cast(bad, "memory")
