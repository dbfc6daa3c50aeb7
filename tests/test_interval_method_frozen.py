"""The interval method's constants, frozen before the coverage study on data the bootstrap does not assume
(issue 23, item 2: ``scaling_laws/stress.py``, ``benchmarks/interval_coverage.py``).

A change to any of these changes the method whose coverage was measured: it needs a new study on fresh seeds,
in a separate change, and this test updated with it (never retuned on the study's own sweeps).

Studies: the first (pilots 5000-5059 of each generator) ran after the freeze of fb2b963; the second (pilots
20000-20059) after the fix that draws the noise part all runs share at a budget (868ddbf), with these constants
frozen again, unchanged, plus ``noise.SMOOTH_REMOVED`` (the residuals as they are); the third (pilots
70000-70059) runs after delta*'s interval became the basic bootstrap interval (21d6dc2), frozen here with
``optimal.FRACTION_INTERVAL``, the other constants unchanged.
"""

from __future__ import annotations

from scaling_laws.decision import optimal
from scaling_laws.fitting import evaluations, noise, refits, search, spt

FROZEN = {
    "noise.PRIOR_DEGREES": (noise.PRIOR_DEGREES, 2.0),
    "noise.ASSUMED_OFFSET": (noise.ASSUMED_OFFSET, 1.25),
    "noise.MAX_CORRELATION": (noise.MAX_CORRELATION, 0.95),
    "noise.MIN_SHARING_RUNS": (noise.MIN_SHARING_RUNS, 3),
    "noise.MIN_SHARED_BUDGETS": (noise.MIN_SHARED_BUDGETS, 4),
    "noise.MAX_ABSORPTION": (noise.MAX_ABSORPTION, 4.0),
    "noise.SMOOTH_REMOVED": (noise.SMOOTH_REMOVED, None),
    "refits.REFIT_MINIMA": (refits.REFIT_MINIMA, 3),
    "refits.REFIT_DIVERSE": (refits.REFIT_DIVERSE, 3),
    "search.AT_BEST_TOLERANCE": (search.AT_BEST_TOLERANCE, 1e-4),
    "spt.SWEEP_HUBER_DELTA": (spt.SWEEP_HUBER_DELTA, 1e-2),
    "spt.LACK_OF_FIT_RATIO": (spt.LACK_OF_FIT_RATIO, 3.0),
    "evaluations.DEFAULT_REPLICATES": (evaluations.DEFAULT_REPLICATES, 200),
    "optimal.FRACTION_INTERVAL": (optimal.FRACTION_INTERVAL, "basic"),
}


def test_the_interval_method_is_the_one_whose_coverage_was_measured():
    changed = {name: value for name, (value, frozen) in FROZEN.items() if value != frozen}
    assert changed == {}, f"constants of the interval method changed since the coverage study: {changed}"
