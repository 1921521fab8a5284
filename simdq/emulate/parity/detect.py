"""Which named conventions reproduce an installed reference bit for bit.

For each candidate convention: first the reference's boundary cases (every tie, overflow point and
special of the format, evaluated as one batch), then a hypothesis search of `examples` small cases
drawn with the same boundaries on purpose. A convention that differs anywhere is out, with the first
counterexample cut down to the one unit (element or block) that shows it; hypothesis shrinks the
counterexamples it finds. The search is derandomized: the same versions give the same report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .conventions import Convention
from .refs.base import Reference
from .versions import reference_version

DEFAULT_EXAMPLES = 200


@dataclass(frozen=True)
class Counterexample:
    convention: Convention
    case: str
    reference_output: str
    convention_output: str

    def line(self) -> str:
        return (f"{self.case}: reference gives {self.reference_output}, "
                f"{self.convention.name} gives {self.convention_output}")


@dataclass(frozen=True)
class Finding:
    reference: Reference
    version: str
    matches: tuple[Convention, ...]
    counterexamples: tuple[Counterexample, ...] = field(default=())
    examples: int = DEFAULT_EXAMPLES

    def counterexample_for(self, convention: Convention) -> Counterexample | None:
        return next((c for c in self.counterexamples if c.convention == convention), None)


def _differing_units(reference: Reference, convention: Convention, case: dict, expected=None) -> np.ndarray:
    if expected is None:
        expected = reference.reference(case)
    got = reference.emulate(convention, case)
    if got.shape != expected.shape:
        return np.arange(max(len(expected), 1))
    return np.nonzero((got != expected).any(axis=1))[0]


def _counterexample(reference: Reference, convention: Convention, case: dict, unit: int) -> Counterexample:
    small = reference.narrow(case, unit)
    if not _differing_units(reference, convention, small).size:  # the unit depends on the rest of the case
        small = case
    return Counterexample(convention, reference.show(small), reference.show_output(reference.reference(small)),
                          reference.show_output(reference.emulate(convention, small)))


def _search(reference: Reference, convention: Convention, examples: int) -> dict | None:
    """The minimal drawn case on which the convention differs, or None after `examples` cases."""
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    profile = settings(max_examples=examples, database=None, derandomize=True, deadline=None,
                       phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    try:
        return find(reference.strategy(), lambda case: _differing_units(reference, convention, case).size > 0,
                    settings=profile)
    except NoSuchExample:
        return None


def detect(reference: Reference, examples: int = DEFAULT_EXAMPLES) -> Finding:
    """Run the reference against every candidate convention; see the module docstring."""
    survivors = list(reference.conventions)
    found: list[Counterexample] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and overflow warnings of the libraries under test
        for case in reference.boundary_cases():
            expected = reference.reference(case)
            for convention in list(survivors):
                units = _differing_units(reference, convention, case, expected)
                if units.size:
                    found.append(_counterexample(reference, convention, case, int(units[0])))
                    survivors.remove(convention)
        if examples > 0:
            for convention in list(survivors):
                case = _search(reference, convention, examples)
                if case is not None:
                    units = _differing_units(reference, convention, case)
                    found.append(_counterexample(reference, convention, case, int(units[0]) if units.size else 0))
                    survivors.remove(convention)
    return Finding(reference, reference_version(reference) or "?", tuple(survivors), tuple(found), examples)
