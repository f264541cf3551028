"""The UP5K core maps its synapse memory into the four SPRAM blocks and fits the device."""

from spikefab.boards.synthesis import synthesize_ice40
from spikefab.hdl.core import LIFCore
from spikefab.hdl.abi import CoreShape
from spikefab.sim.runner import build_dir_root


def test_up5k_core_uses_the_four_sprams_and_fits():
    core = LIFCore(CoreShape(axons=1024, neurons=128, w_bits=8), lanes=8, memory="spram")
    report = synthesize_ice40(core, build_dir_root() / "synth" / "up5k-core")
    print(f"yosys cells: {report.cells}")
    print(f"nextpnr packing: {report.packed}")
    # 1024 x 128 x 8 bit = 1 Mbit = all four 16K x 16 SPRAMs, 64 bits (8 weights) per read.
    assert report.cells.get("SB_SPRAM256KA") == 4
    assert report.packed["ICESTORM_SPRAM"] == (4, 4)
    # Accumulators, membranes, biases and the spike queue stay in EBR, well within the 30.
    assert report.packed["ICESTORM_RAM"][0] <= 16
    assert report.fits(), report.packed
