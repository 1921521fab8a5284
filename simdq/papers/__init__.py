"""The seed papers' published cost numbers as data, and their recount (simdq tables)."""

from .catalog import load_paper, paper_names
from .recount import RowResult, recount_papers

__all__ = ["RowResult", "load_paper", "paper_names", "recount_papers"]
