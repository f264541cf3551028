"""Bounded proofs of the two ends of a tile's clock crossing (yowasp-sby + Yices).

The crossing itself is Amaranth's ``AsyncFIFO``, which keeps order; what could break the tick
barrier is what is written into it and how it is read out. So, under free stimulus:

* ``IngressWriter`` (mesh side): while a TICK marker is owed, the marker is the only thing
  offered and no router event is taken; a marker is owed from the cycle after ``tick`` until it
  is written; outside that, every event taken is written in the same cycle with its axon, and
  nothing else is written.
* ``CoreSequencer`` (core side): events go to the core exactly as they are read (no loss,
  no invention); between reading a marker and writing DONE, nothing is read and no event
  reaches the core; DONE is written only after the core's update handshake; every spike of the
  core is written as a SPIKE with its neuron, and nothing else is.
"""

import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal
from amaranth.lib import wiring

from spikefab.hdl.tile import EgressKind, IngressKind, IngressWriter, CoreSequencer
from spikefab.sim.formal import free_stream_in, prove
from spikefab.sim.runner import build_dir_root


class IngressWriterProperties(wiring.Component):
    def __init__(self):
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = IngressWriter()
        m.d.comb += Assume(~ResetSignal())
        free_stream_in(m, dut.events, "events")
        m.d.comb += [dut.ingress.ready.eq(AnySeq(1)), dut.tick.eq(AnySeq(1))]
        m.d.comb += Assume(~(dut.tick & dut.owed))  # the controller waits for the last marker
        after_tick = Signal()
        m.d.sync += after_tick.eq(dut.tick)
        with m.If(after_tick):
            m.d.comb += Assert(dut.owed)
        taken = dut.events.valid & dut.events.ready
        written = dut.ingress.valid & dut.ingress.ready
        with m.If(dut.owed):
            m.d.comb += Assert(dut.ingress.valid & (dut.ingress.payload.kind == IngressKind.TICK)
                               & ~dut.events.ready)
        with m.Else():
            m.d.comb += Assert(taken == written)
            with m.If(written):
                m.d.comb += Assert((dut.ingress.payload.kind == IngressKind.EVENT) &
                                   (dut.ingress.payload.axon == dut.events.payload.body.event.axon))
        m.d.comb += Assert(dut.arrived == (taken & ~dut.owed))
        return m


class CoreSequencerProperties(wiring.Component):
    def __init__(self):
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = CoreSequencer()
        m.d.comb += Assume(~ResetSignal())
        free_stream_in(m, dut.ingress, "ingress")
        free_stream_in(m, dut.core_spikes, "spikes")
        m.d.comb += [dut.core_events.ready.eq(AnySeq(1)), dut.egress.ready.eq(AnySeq(1)),
                     dut.core_update.ready.eq(AnySeq(1))]
        m.d.comb += Assume(~dut.core_update.ready | dut.core_update.valid)
        # The core emits spikes only while it updates.
        m.d.comb += Assume(~dut.core_spikes.valid | dut.core_update.valid)

        read = dut.ingress.valid & dut.ingress.ready
        is_marker = dut.ingress.payload.kind == IngressKind.TICK
        to_core = dut.core_events.valid & dut.core_events.ready
        written = dut.egress.valid & dut.egress.ready
        spike_in = dut.core_spikes.valid & dut.core_spikes.ready
        updating = Signal()   # a marker was read and DONE not yet written
        updated = Signal()    # the core's update handshake happened, DONE not yet written
        with m.If(read & is_marker):
            m.d.sync += updating.eq(1)
        with m.If(dut.core_update.valid & dut.core_update.ready):
            m.d.sync += updated.eq(1)
        with m.If(written & (dut.egress.payload.kind == EgressKind.DONE)):
            m.d.comb += Assert(updated)
            m.d.sync += [updating.eq(0), updated.eq(0)]

        with m.If(updating):
            m.d.comb += Assert(~dut.ingress.ready & ~dut.core_events.valid)
        with m.Else():
            m.d.comb += Assert(~dut.core_update.valid & ~written)
        m.d.comb += Assert(to_core == (read & ~is_marker))
        with m.If(to_core):
            m.d.comb += Assert(dut.core_events.payload.axon == dut.ingress.payload.axon)
        with m.If(written & (dut.egress.payload.kind == EgressKind.SPIKE)):
            m.d.comb += Assert(spike_in &
                               (dut.egress.payload.neuron == dut.core_spikes.payload.neuron))
        with m.If(spike_in):
            m.d.comb += Assert(written & (dut.egress.payload.kind == EgressKind.SPIKE))
        return m


@pytest.mark.parametrize("properties, depth", [(IngressWriterProperties, 12),
                                               (CoreSequencerProperties, 12)],
                         ids=["ingress-writer", "core-sequencer"])
def test_crossing_ends(properties, depth):
    result = prove(properties(), build_dir_root() / "formal" / properties.__name__, depth=depth)
    assert result.passed, f"see {result.directory}/sby.log\n{result.log[-3000:]}"
