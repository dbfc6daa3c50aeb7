"""The SPT law with this project's extras: law ``spt-regularized`` and its halves.

The same equations as the paper's law (:mod:`scaling_laws.spt_paper`), fitted with what the paper does not have:

- magnitude bounds on the exponents and the floor (``b_gap_s <= 2``, ``a3`` in [-10, 10], ``k1 >= 0``, ...), chosen
  for the small CPU pilots this project runs, where a domain set is repeated tens of times at delta up to 0.6;
- weak priors on the gap's shape (:data:`GAP_PRIORS`);
- a gap offset ``c_gap``: the held-out minus training-sample loss that memorization does not explain (the two
  samples are different texts), visible as the gap of a delta = 0 run; folded into ``k0`` when the halves are
  summed, so the summed law predicts the held-out loss.

Why they were added: on pilots fitted on small delta the unbounded exponents let the power terms swap roles (a
fit once put ``b_gap_s`` at -2 and ``b_train_s`` at +0.19, so that a 5x larger delta "never overfit"), and over a
pilot's single decade of tokens ``exp(a3 delta)`` and the gap exponent's slope in delta are nearly the same
function, so without a prior the fit drifted along that valley to a bound. The cost: a steep law (slopes per
unit fraction of tens to hundreds) lies outside these bounds, and a fit of it sits on them.
"""

from __future__ import annotations

from scaling_laws.laws import Param
from scaling_laws.spt_paper import GAP_NAMES, TRAIN_NAMES, SPTGap, SPTOverfit, SPTTrain, _params

_LINEAR = (1.0,)

#: The bounds of the regularized form: signs as in the paper, magnitudes chosen for small pilots (see above).
REGULARIZED_PARAMS = {p.name: p for p in (
    Param("A_train", 1e-10, 1e10, log=True, grid=_LINEAR, description="train-loss coefficient (nats/token)"),
    Param("b_train_s", -1.5, -0.01, grid=(-0.6, -0.3, -0.1), description="train exponent at delta=1 (< 0)"),
    Param("b_train_g", -1.5, -0.01, grid=(-0.6, -0.3, -0.1), description="train exponent at delta=0 (< 0)"),
    Param("b_gap_s", 0.0, 2.0, grid=(0.2, 0.6, 1.2), description="gap exponent at delta=1 (>= 0: the gap grows)"),
    Param("b_gap_g", -2.0, 0.0, grid=(-1.0, -0.4, -0.1), description="gap exponent at delta=0 (<= 0)"),
    Param("a1", 1e-30, 1e10, log=True, grid=_LINEAR, description="gap coefficient (nats/token)"),
    Param("a2", 0.05, 5.0, grid=(0.5, 1.0, 2.0), description="power of delta in the gap coefficient"),
    Param("a3", -10.0, 10.0, grid=(-3.0, 0.0, 3.0), description="exponential rate of delta in the gap"),
    Param("k0", -50.0, 50.0, grid=_LINEAR, description="train-loss floor offset (nats/token)"),
    Param("k1", 0.0, 10.0, grid=_LINEAR, description="weight of -log(delta + k2) in the floor (>= 0)"),
    Param("k2", 1e-4, 1.0, log=True, grid=(1e-3, 1e-2, 1e-1), description="fraction offset inside the log"),
    Param("k3", -20.0, 20.0, grid=_LINEAR, description="linear slope of the floor in delta (nats/token)"),
    Param("c_gap", -5.0, 5.0, grid=_LINEAR,
          description="held-out minus training sample loss that memorization does not explain (nats/token)"),
)}
#: Weak priors on the gap's shape in delta, ``name: (center, sd)``: a gap proportional to delta (``a2 = 1``) with
#: no extra exponential bend (``a3 = 0``).
GAP_PRIORS = {"a2": (1.0, 2.0), "a3": (0.0, 5.0)}
#: Noise (log residuals) a prior weighs as: one pilot evaluation's.
PRIOR_NOISE = 0.005
# Start grids of the halves' nonlinear parameters (the linear ones are solved by least squares at each point).
_TRAIN_GRID = {"b_train_s": (-0.8, -0.4, -0.2, -0.1, -0.04), "b_train_g": (-0.8, -0.4, -0.2, -0.1, -0.04)}
_GAP_GRID = {"b_gap_s": (0.1, 0.4, 0.8, 1.5), "b_gap_g": (-1.5, -0.6, -0.2, -0.02), "a2": (0.5, 1.0, 2.0, 3.0),
             "a3": (-4.0, 0.0, 4.0)}


class SPTRegularized(SPTOverfit):
    """The SPT law's equations for the held-out loss with the regularized form's bounds and priors."""

    name = "spt-regularized"
    keep_starts = 256
    random_count = 0
    priors = GAP_PRIORS
    prior_noise = PRIOR_NOISE
    params = _params(SPTOverfit().names, table=REGULARIZED_PARAMS)


class SPTTrainRegularized(SPTTrain):
    """The train half with the regularized form's bounds."""

    name = "spt-regularized-train"
    keep_starts = 64
    random_count = 0
    params = _params(TRAIN_NAMES, _TRAIN_GRID, REGULARIZED_PARAMS)


class SPTGapRegularized(SPTGap):
    """The gap half with the regularized form's bounds, priors and offset ``c_gap``."""

    name = "spt-regularized-gap"
    random_count = 0
    priors = GAP_PRIORS
    prior_noise = PRIOR_NOISE  # relative: the fit scales it by the held-out loss (a gap's noise is the losses')
    keep_starts = 64
    linear_names = ("a1", "c_gap")
    params = _params(GAP_NAMES + ("c_gap",), _GAP_GRID, REGULARIZED_PARAMS)
