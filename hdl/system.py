"""The chip and its host link, joined: what a board (or the simulation transport) talks to."""

from amaranth.hdl import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .chip import Chip
from .host_link import HostLink

__all__ = ["ChipSystem"]


class ChipSystem(wiring.Component):
    """A :class:`~spikefab.hdl.chip.Chip` driven by a :class:`~spikefab.hdl.host_link.HostLink`.

    The mesh and the link run in ``sync``; the cores in their own domains
    (:meth:`Chip.domain`), which the platform or the simulator provides.

    Parameters
    ----------
    chip : Chip
    output_depth : int
        Output events the link keeps for the host.
    timeout_log2 : int
        The link's inter-byte timeout (:class:`HostLink`).
    encoder : bool
        The link's encoder (:class:`HostLink`).
    rx_queue : int
        The link's queue of request bytes (:class:`HostLink`).

    Members
    -------
    rx : In(stream.Signature(8)), tx : Out(stream.Signature(8))
        The protocol's bytes (:mod:`spikefab.firmware.protocol`).
    line_error : In(1)
        See :class:`HostLink`.
    busy, nak : Out(1)
        See :class:`HostLink`.
    """

    def __init__(self, chip: Chip, *, output_depth: int = 256, timeout_log2: int = 21,
                 encoder: bool = False, rx_queue: int = 0):
        self.chip = chip
        self.link = HostLink(chip, output_depth=output_depth, timeout_log2=timeout_log2,
                             encoder=encoder, rx_queue=rx_queue)
        self.info = self.link.info
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "line_error": In(1),
            "busy": Out(1),
            "nak": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = self.chip
        m.submodules.link = link = self.link
        wiring.connect(m, wiring.flipped(self.rx), link.rx)
        wiring.connect(m, link.tx, wiring.flipped(self.tx))
        wiring.connect(m, link.host_in, chip.host_in)
        wiring.connect(m, chip.host_out, link.host_out)
        wiring.connect(m, link.tick, chip.tick)
        wiring.connect(m, link.bus, chip.bus)
        m.d.comb += [link.quiet.eq(chip.quiet), link.mesh_drops.eq(chip.mesh_drops),
                     link.ticks.eq(chip.ticks), link.line_error.eq(self.line_error),
                     self.busy.eq(link.busy), self.nak.eq(link.nak)]
        return m
