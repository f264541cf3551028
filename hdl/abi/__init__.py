"""The formats of spikefab: limits, shapes, enums, and every packet, word and register layout.

This is the lowest layer of the code: it imports ``amaranth.lib`` and the standard library,
nothing else of spikefab. Every other layer takes its formats from here, so a field is defined
once:

* the gateware uses the enums and layouts as signal shapes
  (``Signal(AERPacket)``, ``m.Case(Region.SYNAPSE)``);
* host code (golden model, protocol codec, compiler, driver, benches) packs and unpacks the
  same layouts as integers with :func:`pack` and :func:`unpack`, which read the fields'
  offsets and widths off the layout (the same bits ``layout.const(...)`` gives, without its
  cost per call).

Widening a field means changing its limit or its layout here, and nothing else.

Import everything from this package (``from spikefab.hdl.abi import CoreShape``); its two
modules only sort the formats:

* :mod:`.chip` -- the limits and :class:`CoreShape`; the enums (:class:`ResetMode`,
  :class:`MemoryStyle`, :class:`Clocking`, :class:`Region`, :class:`Register`,
  :class:`PacketKind`); the register table (:data:`REGISTERS`); a core's address map
  (:class:`CoreMemoryMap`); the packet and route-table layouts (:data:`AERPacket`,
  :data:`RouteEntry`, :data:`RouteDest`) and :func:`pack` / :func:`unpack`.
* :mod:`.link` -- the host link's: :class:`Command`, :class:`Status`, the RUN event and OUTPUTS
  record words (:data:`EventWord`, :data:`OutputRecord`), the frame constants, the payload
  fields, and the INFO and STATUS records (:class:`TileInfo`, :class:`ChipInfo`,
  :class:`LinkStatus`).
"""

from .chip import *
from .chip import __all__ as _chip_all
from .link import *
from .link import __all__ as _link_all

__all__ = [*_chip_all, *_link_all]
