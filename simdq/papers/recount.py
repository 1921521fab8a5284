"""Recount every row of the paper files: each case's estimate, the quantity a row names, the ratio rows
from both the recounts and the printed values, and whether each number is reproduced, explained by its
stated gap, or has moved.

Torch-free: the caller passes `estimate(config, device, source)`, which returns a simdq.cost.estimate
Estimate (simdq.cli.tables traces the UNets and caches the traces).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import load_paper

DEFAULT_DEVICE = "h200"  # sizes and op counts do not depend on it; latency rows name their device

REPRODUCED, EXPLAINED, MOVED, NOT_RECOUNTED, COMPUTED = (
    "reproduced", "explained", "moved", "not recounted", "computed (not printed)")


@dataclass(frozen=True)
class RowResult:
    paper: str
    id: str
    table: str
    row: str
    quantity: str
    unit: str
    published: float | None
    recount: float | None
    tolerance: float | None
    status: str
    note: str
    printed_ratio: float | None = None  # a ratio row's value from the printed rows it divides
    readings: tuple = field(default_factory=tuple)  # (name, value) of the other readings

    @property
    def difference(self) -> float | None:
        if self.published is None or self.recount is None:
            return None
        return self.recount - self.published


def case_quantity(estimate, quantity: str) -> float:
    totals = estimate.totals
    if quantity == "gemm_latency_ms":  # the conv and linear kernels alone, as a kernel speed-up compares them
        return sum(r.device.latency_s for r in estimate.layers if r.layer.is_weight_layer and r.device) * 1e3
    if quantity == "stored_mib":
        return totals["weight_bytes"] / 2**20
    if quantity in ("latency_ms", "latency_us"):
        return totals["latency_s"] * (1e3 if quantity == "latency_ms" else 1e6)
    if quantity == "size_mib":
        return totals["size_mib"]
    return totals[quantity.removesuffix("_g")] / 1e9


class Recount:
    """Recounts of rows, memoised, across papers (a ratio may divide rows of two papers)."""

    def __init__(self, estimate):
        self._estimate = estimate
        self._estimates = {}
        self._results = {}

    def case(self, paper, name: str, quantity: str) -> float:
        key = (paper.paper, name)
        if key not in self._estimates:
            source = f"simdq/papers/data/{paper.paper}.yaml: cases.{name}"
            device = paper.case_device(name) or DEFAULT_DEVICE
            self._estimates[key] = self._estimate(paper.case_config(name), device, source)
        return case_quantity(self._estimates[key], quantity)

    def row(self, paper_name: str, row_id: str) -> RowResult:
        key = (paper_name, row_id)
        if key not in self._results:
            paper = load_paper(paper_name)
            row = next(r for r in paper.rows if r.id == row_id)
            self._results[key] = self.recount_row(paper, row)
        return self._results[key]

    def paper(self, name: str) -> list:
        return [self.row(name, row.id) for row in load_paper(name).rows]

    def _reading(self, paper, row, reading) -> float:
        quantity = reading.quantity or row.measure or row.quantity
        if reading.case is not None:
            return self.case(paper, reading.case, quantity)
        numerator, denominator = (self.case(paper, case, quantity) for case in reading.cases)
        return numerator / denominator

    def _referenced(self, paper, ref: str) -> RowResult:
        paper_name, _, row_id = ref.rpartition("/")
        return self.row(paper_name or paper.paper, row_id)

    def recount_row(self, paper, row) -> RowResult:
        printed_ratio = None
        if row.needs is not None:
            value = None
        elif row.case is not None:
            value = self.case(paper, row.case, row.quantity)
        elif row.cases is not None:
            numerator, denominator = (self.case(paper, case, row.measure) for case in row.cases)
            value = numerator / denominator
        else:
            numerator, denominator = (self._referenced(paper, ref) for ref in row.of)
            value = (None if numerator.recount is None or denominator.recount is None
                     else numerator.recount / denominator.recount)
            if numerator.published is not None and denominator.published is not None:
                printed_ratio = numerator.published / denominator.published
        readings = tuple((reading.name, self._reading(paper, row, reading)) for reading in row.readings)
        notes = [row.note, row.gap and row.gap.why, row.needs and f"Needs {row.needs}"]
        return RowResult(paper.paper, row.id, row.table, row.row, row.quantity, row.unit, row.published, value,
                         row.tolerance, _status(row, value), " ".join(_sentence(n) for n in notes if n),
                         printed_ratio, readings)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _status(row, value) -> str:
    if value is None:
        return NOT_RECOUNTED
    if row.published is None:
        return COMPUTED
    if row.gap is None:
        return REPRODUCED if abs(value - row.published) <= row.tolerance else MOVED
    return EXPLAINED if abs((value - row.published) - row.gap.value) <= row.tolerance else MOVED


def recount_papers(names, estimate) -> list:
    """RowResults of every row of the papers `names`, in file order."""
    recount = Recount(estimate)
    return [result for name in names for result in recount.paper(name)]
