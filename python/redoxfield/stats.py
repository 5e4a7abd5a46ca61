"""Streaming ensemble statistics: Welford accumulators that merge (Chan et al.),
and Welch comparisons of two sweep arms.

:class:`Moments` holds ``(n, mean, M2)`` for an array of any shape. Adding one
replicate is Welford's update; two partial aggregates (for example from two
workers, each having folded its own replicates) combine with the pairwise
formula of Chan, Golub and LeVeque (1979)::

    n = na + nb,  d = mean_b - mean_a,
    mean = mean_a + d * nb / n,
    M2 = M2a + M2b + d**2 * na * nb / n

so memory is two float64 arrays of the sample's shape whatever the number of
replicates, and the result does not depend on how the replicates were split
(up to floating-point rounding, ~1e-15 relative).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Moments", "merge_all", "welch"]


@dataclass
class Moments:
    """Count, mean and sum of squared deviations (M2) of a stream of arrays."""

    n: int
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> Moments:
        return cls(0, np.zeros(shape, dtype=np.float64), np.zeros(shape, dtype=np.float64))

    @classmethod
    def of(cls, x: ArrayLike) -> Moments:
        """The aggregate of one observation."""
        a = np.asarray(x, dtype=np.float64)
        return cls(1, a.copy(), np.zeros_like(a))

    def add(self, x: ArrayLike) -> Moments:
        """Welford's update with one observation (in place; returns self)."""
        a = np.asarray(x, dtype=np.float64)
        if a.shape != self.mean.shape:
            raise ValueError(f"observation of shape {a.shape}, expected {self.mean.shape}")
        self.n += 1
        delta = a - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (a - self.mean)
        return self

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s pairwise combination (a new aggregate)."""
        if other.n == 0:
            return Moments(self.n, self.mean.copy(), self.m2.copy())
        if self.n == 0:
            return Moments(other.n, other.mean.copy(), other.m2.copy())
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge shapes {self.mean.shape} and {other.mean.shape}")
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return Moments(n, mean, m2)

    @property
    def var(self) -> NDArray[np.float64]:
        """Unbiased sample variance (``M2 / (n - 1)``; NaN for n < 2)."""
        if self.n < 2:
            return np.full_like(self.mean, np.nan)
        return self.m2 / (self.n - 1)

    @property
    def std(self) -> NDArray[np.float64]:
        return np.sqrt(self.var)

    @property
    def sem(self) -> NDArray[np.float64]:
        """Standard error of the mean, ``sqrt(var / n)``."""
        return np.sqrt(self.var / self.n) if self.n else np.full_like(self.mean, np.nan)


def merge_all(parts: list[Moments]) -> Moments:
    """Pairwise (tree) merge of partial aggregates."""
    if not parts:
        raise ValueError("nothing to merge")
    while len(parts) > 1:
        parts = [
            parts[k].merge(parts[k + 1]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    return parts[0]


def welch(
    mean_a: ArrayLike,
    var_a: ArrayLike,
    n_a: int,
    mean_b: ArrayLike,
    var_b: ArrayLike,
    n_b: int,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Difference of means ``b - a`` with Welch's t confidence interval.

    ``se = sqrt(var_a/n_a + var_b/n_b)``; degrees of freedom by
    Welch-Satterthwaite; interval ``diff ± t_{(1+confidence)/2, dof} · se``;
    two-sided p-value of Welch's t-test; Hedges' g (difference over the pooled
    standard deviation, small-sample corrected) as the effect size. Where both
    variances are 0 the interval collapses to the difference and p is NaN.
    """
    from scipy import stats as st

    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence!r} must be between 0 and 1")
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch needs at least 2 replicates per arm (got {n_a} and {n_b})")
    ma, mb = np.asarray(mean_a, dtype=float), np.asarray(mean_b, dtype=float)
    va, vb = np.asarray(var_a, dtype=float), np.asarray(var_b, dtype=float)
    qa, qb = va / n_a, vb / n_b
    se = np.sqrt(qa + qb)
    with np.errstate(invalid="ignore", divide="ignore"):
        dof = (qa + qb) ** 2 / (qa**2 / (n_a - 1) + qb**2 / (n_b - 1))
        diff = mb - ma
        tq = st.t.ppf(0.5 + confidence / 2, np.where(se > 0, dof, 1.0))
        half = np.where(se > 0, tq * se, 0.0)
        tstat = diff / se
        p = np.where(se > 0, 2 * st.t.sf(np.abs(tstat), np.where(se > 0, dof, 1.0)), np.nan)
        pooled = np.sqrt(((n_a - 1) * va + (n_b - 1) * vb) / (n_a + n_b - 2))
        j = 1 - 3 / (4 * (n_a + n_b) - 9)  # Hedges' small-sample correction
        g = j * diff / pooled
    return {
        "diff": diff,
        "se": se,
        "dof": dof,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "t": tstat,
        "p_value": p,
        "hedges_g": g,
        "confidence": confidence,
        "n_a": n_a,
        "n_b": n_b,
    }
