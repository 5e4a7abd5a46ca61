"""Small statistics helpers shared by the validation tests (no redoxfield code here)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

#: Chi-square tests in the validation suite pass when p > P_MIN. With a fixed seed a
#: correct engine fails one such test with probability 0.001; a wrong law (a factor 2
#: in a rate, a wrong A + A convention) gives p ~ 1e-10 or less with these sample sizes.
P_MIN = 1e-3


def pool_bins(expected: ArrayLike, observed: ArrayLike, min_expected: float = 5.0):
    """Merge adjacent bins (from both tails inwards) until every expected count is
    >= ``min_expected``; returns (expected, observed) of the pooled bins."""
    e = [float(v) for v in np.asarray(expected, dtype=np.float64)]
    o = [float(v) for v in np.asarray(observed, dtype=np.float64)]
    # left tail (pop first: ``e[1] += e.pop(0)`` would add to the wrong element)
    while len(e) > 1 and e[0] < min_expected:
        ev, ov = e.pop(0), o.pop(0)
        e[0] += ev
        o[0] += ov
    # right tail
    while len(e) > 1 and e[-1] < min_expected:
        ev, ov = e.pop(), o.pop()
        e[-1] += ev
        o[-1] += ov
    # a remaining small interior bin: merge it into its smaller neighbour
    while len(e) > 1 and min(e) < min_expected:
        k = int(np.argmin(e))
        j = k - 1 if e[k - 1] < e[k + 1] else k + 1
        ev, ov = e.pop(k), o.pop(k)
        j = j if j < k else j - 1
        e[j] += ev
        o[j] += ov
    return np.array(e), np.array(o)


def chi_square_pvalue(
    samples: ArrayLike, pmf: ArrayLike, min_expected: float = 5.0
) -> tuple[float, float, int]:
    """Goodness of fit of integer ``samples`` (values 0..len(pmf)-1) to ``pmf``.

    Bins with expected count < ``min_expected`` are pooled with their neighbours
    (Cochran's rule). Returns (chi2, p-value, degrees of freedom).
    """
    x = np.asarray(samples, dtype=np.int64)
    p = np.asarray(pmf, dtype=np.float64)
    if x.min() < 0 or x.max() >= p.size:
        raise AssertionError(f"sample value outside the support 0..{p.size - 1}")
    observed = np.bincount(x, minlength=p.size).astype(np.float64)
    expected = p / p.sum() * x.size
    e, o = pool_bins(expected, observed, min_expected)
    chi2 = float(np.sum((o - e) ** 2 / e))
    dof = e.size - 1
    return chi2, float(stats.chi2.sf(chi2, dof)), dof


def poisson_pmf_with_tail(mean: float, kmax: int) -> NDArray[np.float64]:
    """Poisson(mean) probabilities of 0..kmax-1 and P(X >= kmax) in the last entry."""
    k = np.arange(kmax)
    p = stats.poisson.pmf(k, mean)
    return np.append(p, stats.poisson.sf(kmax - 1, mean))
