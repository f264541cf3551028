"""Operations per inference, and what they would cost: a literature estimate, not a measurement.

Counts are exact: synaptic operations (SOPs) come from the golden model's counters or, on the
RTL and on a board, from the hardware's own SOPS counters; the dense ANN equivalent is one
multiply-accumulate per weight per image (one pass through the same layers).

Energies are **estimates from published per-operation figures**, for compute alone (no memory
traffic, no control, no static power), in a 45 nm ASIC process at 0.9 V — not an FPGA, and not
spikefab's silicon. Source: M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, table of energy per operation: 8-bit integer add 0.03 pJ, 32-bit integer add
0.1 pJ, 8-bit integer multiply 0.2 pJ, 32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ.
A SOP is one accumulate (an integer add of a weight into a 16- to 24-bit accumulator; the
32-bit add is used, the conservative choice); an ANN MAC is a multiply plus an add.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PJ_PER_OP", "SOURCE", "OperationsReport", "operations_report"]

SOURCE = "M. Horowitz, ISSCC 2014: 45 nm, 0.9 V"

#: Picojoules per operation (see the module docstring for the source).
PJ_PER_OP = {
    "int8_add": 0.03, "int32_add": 0.1, "int8_mult": 0.2, "fp32_add": 0.9, "fp32_mult": 3.7,
}


@dataclass(frozen=True)
class OperationsReport:
    sops_per_image: float
    ann_macs_per_image: int
    counted_by: str   #: "golden model" or "hardware counters"

    @property
    def snn_pj(self) -> float:
        return self.sops_per_image * PJ_PER_OP["int32_add"]

    @property
    def ann_fp32_pj(self) -> float:
        return self.ann_macs_per_image * (PJ_PER_OP["fp32_mult"] + PJ_PER_OP["fp32_add"])

    @property
    def ann_int8_pj(self) -> float:
        return self.ann_macs_per_image * (PJ_PER_OP["int8_mult"] + PJ_PER_OP["int8_add"])

    def as_dict(self) -> dict:
        return {"sops_per_image": self.sops_per_image, "counted_by": self.counted_by,
                "ann_macs_per_image": self.ann_macs_per_image,
                "estimate_source": SOURCE,
                "snn_nj_per_image": self.snn_pj / 1e3,
                "ann_fp32_nj_per_image": self.ann_fp32_pj / 1e3,
                "ann_int8_nj_per_image": self.ann_int8_pj / 1e3}

    def __str__(self) -> str:
        return "\n".join([
            f"synaptic ops per image: {self.sops_per_image:,.0f} ({self.counted_by}); "
            f"dense ANN equivalent: {self.ann_macs_per_image:,} MACs",
            f"energy estimate per image, compute only ({SOURCE}): SNN {self.snn_pj / 1e3:.1f} nJ"
            f" vs ANN fp32 {self.ann_fp32_pj / 1e3:.1f} nJ, ANN int8 "
            f"{self.ann_int8_pj / 1e3:.1f} nJ",
        ])


def operations_report(layer_sizes, sops_per_image: float, *, counted_by: str) -> OperationsReport:
    """``layer_sizes``: the network's widths, inputs first (e.g. ``[784, 128, 10]``)."""
    sizes = list(layer_sizes)
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise ValueError(f"layer sizes must list at least two positive widths, not {sizes!r}")
    macs = sum(int(a) * int(b) for a, b in zip(sizes, sizes[1:]))
    return OperationsReport(float(sops_per_image), macs, counted_by)
