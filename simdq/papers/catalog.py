"""The published cost numbers of the seed papers, one data file per paper (simdq/papers/data/*.yaml).

A file names the paper, its cases (each an inline model.yaml, plus an optional `device:` for latency rows)
and its rows. A row is one printed number: table, row label, quantity, published value, unit, `source:`,
and how it is recounted:
- `case:` the case whose estimate gives the quantity (size_mib, stored_mib, ops_g, bops_g, flops_g, macs_g,
  latency_ms, latency_us, gemm_latency_ms: the conv and linear layers' time alone);
- `of: [ID, ID]`: a ratio of two rows (an id of another paper is PAPER/ID), computed from the recounts and,
  separately, from the printed values;
- `cases: [CASE, CASE]` with `measure:`: a ratio of two cases where the paper states a claim, not a number;
- `needs:` what simdq lacks to recount it (the row is shown, not recounted).
`tolerance` is absolute, in the row's unit. A row the recount does not reproduce carries `gap:` (the
recounted minus the printed value, as the tables' difference column shows it, and why); the test holds the recount to that gap within the tolerance,
so neither a reproduction nor an explanation can silently move. `readings:` are other cases (as coded, as
published, with scales) computed beside the main one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, model_validator

from diagnostics import read_yaml, unknown, validate

from ..errors import SimdqError

DATA = Path(__file__).parent / "data"
QUANTITIES = {"size_mib": "MiB", "stored_mib": "MiB", "ops_g": "G", "bops_g": "G", "flops_g": "G",
              "macs_g": "G", "latency_ms": "ms", "gemm_latency_ms": "ms", "latency_us": "us", "speedup": "x", "ratio": "x"}
CASE_QUANTITIES = ("size_mib", "stored_mib", "ops_g", "bops_g", "flops_g", "macs_g", "latency_ms", "latency_us",
                   "gemm_latency_ms")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gap(_Strict):
    value: float
    why: str


class Reading(_Strict):
    """Another way to recount a row: one case, or (for a ratio row) the ratio of two cases."""

    name: str
    case: Optional[str] = None
    cases: Optional[List[str]] = None
    quantity: Optional[Literal[CASE_QUANTITIES]] = None  # default: the row's quantity, or its measure

    @model_validator(mode="after")
    def _one_case(self):
        if (self.case is None) == (self.cases is None) or (self.cases is not None and len(self.cases) != 2):
            raise ValueError(f"reading {self.name!r}: give case, or cases (numerator and denominator)")
        return self


class Row(_Strict):
    id: str
    table: str
    row: str
    quantity: Literal[tuple(QUANTITIES)]
    source: str
    published: Optional[float] = None
    tolerance: Optional[float] = None
    case: Optional[str] = None
    of: Optional[List[str]] = None
    cases: Optional[List[str]] = None
    measure: Optional[Literal[CASE_QUANTITIES]] = None
    needs: Optional[str] = None
    gap: Optional[Gap] = None
    readings: List[Reading] = []
    note: str = ""

    @model_validator(mode="after")
    def _one_recount(self):
        ways = [name for name in ("case", "of", "cases", "needs") if getattr(self, name) is not None]
        if len(ways) != 1:
            raise ValueError(f"row {self.id}: give exactly one of case, of, cases, needs (got {ways or 'none'})")
        pair = self.of or self.cases
        if pair is not None and len(pair) != 2:
            raise ValueError(f"row {self.id}: of/cases take two entries, numerator and denominator")
        if self.cases is not None and self.measure is None:
            raise ValueError(f"row {self.id}: cases needs measure, the quantity whose ratio is taken")
        if self.case is not None and self.quantity not in CASE_QUANTITIES:
            raise ValueError(f"row {self.id}: a case gives {', '.join(CASE_QUANTITIES)}, not {self.quantity}")
        if self.published is not None and self.needs is None and self.tolerance is None:
            raise ValueError(f"row {self.id}: a recounted published value needs a tolerance")
        return self

    @property
    def unit(self) -> str:
        return QUANTITIES[self.quantity]


class Paper(_Strict):
    paper: str
    title: str
    defaults: Dict[str, str] = {}  # model.yaml keys every case gets unless it sets them (convention)
    cases: Dict[str, dict] = {}
    rows: List[Row]

    @model_validator(mode="after")
    def _known_references(self):
        ids = [row.id for row in self.rows]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"row ids given twice: {', '.join(twice)}")
        for row in self.rows:
            named = [row.case] if row.case else []
            named += (row.cases or []) + [case for reading in row.readings
                                          for case in ([reading.case] if reading.case else reading.cases)]
            for case in named:
                if case not in self.cases:
                    raise ValueError(f"row {row.id}: {unknown('case', case, sorted(self.cases))}")
            for ref in row.of or []:
                if "/" not in ref and ref not in ids:
                    raise ValueError(f"row {row.id}: {unknown('row', ref, ids)}")
        return self

    def case_config(self, name: str) -> dict:
        """The model.yaml of case `name`, the file's defaults under it; `device` taken out."""
        config = {key: value for key, value in self.cases[name].items() if key != "device"}
        return {**self.defaults, **config}

    def case_device(self, name: str) -> Optional[str]:
        return self.cases[name].get("device")


def paper_names() -> list:
    return sorted(path.stem for path in DATA.glob("*.yaml"))


@lru_cache(maxsize=None)
def load_paper(name: str) -> Paper:
    if name not in paper_names():
        raise SimdqError(unknown("paper", name, paper_names()))
    path = DATA / f"{name}.yaml"
    paper = validate(Paper, read_yaml(path, "paper data file"), str(path), SimdqError)
    if paper.paper != name:
        raise SimdqError(f"{path}: paper: {paper.paper!r} does not match the file name {name!r}")
    return paper
