"""Scores and fits for latency models: error measures, rank correlation, and the predictor's robust correction.

Kept apart from the predictor so the search (edgeprune.search) and the benchmarks score latency models the same way.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["fit_correction", "mape", "pearson", "spearman"]


def _ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson correlation; nan for fewer than two points or a constant series."""
    n = len(x)
    if n < 2:
        return float("nan")
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    return pearson(_ranks(list(x)), _ranks(list(y)))


def mape(pred: list[float], true: list[float]) -> float:
    """Mean absolute percentage error, in percent."""
    return 100.0 * sum(abs(p - t) / t for p, t in zip(pred, true)) / len(true)


# ---------------------------------------------------------------------------------------------------------------
# T ≈ a·S + r·R + b
# ---------------------------------------------------------------------------------------------------------------
def apply_correction(fit: tuple, X: np.ndarray) -> np.ndarray:
    return fit[1] * X[:, 0] + fit[2] * X[:, 1] + fit[3]


def _least_squares(X: np.ndarray, y: np.ndarray) -> tuple:
    """(form, a, r, b). The full form needs 5+ points with spread in R and a > 0, r ≥ 0; else a·S + b, else a·S."""
    n, fit = len(y), None
    if n >= 5 and np.ptp(X[:, 1]) > 1e-9:
        A = np.column_stack([X, np.ones(n)])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        if np.linalg.matrix_rank(A) == 3 and coef[0] > 0 and coef[1] >= 0:
            fit = ("a*S + r*R + b", float(coef[0]), float(coef[1]), float(coef[2]))
    if fit is None:
        s = X[:, 0]
        if n >= 2 and np.ptp(s) > 1e-9 * max(float(s.mean()), 1.0):
            a, b = np.polyfit(s, y, 1)
        else:
            a, b = 0.0, 0.0
        if a <= 0:  # degenerate or nonsensical fit: scale only
            a, b = (float(y.sum() / s.sum()) if s.sum() > 0 else 1.0), 0.0
        fit = ("a*S + b", float(a), 0.0, float(b))
    return fit


def fit_correction(X: np.ndarray, y: np.ndarray) -> tuple[tuple, np.ndarray]:
    """Fit `y ≈ a·X[:,0] + r·X[:,1] + b`, robust to one or two disturbed measurements (another process took a
    core). Returns ((form, a, r, b), outlier mask).

    With 7 or more points, every fit that leaves out up to two points is tried and the one with the lowest median
    error over all points wins (least median of errors); points it misses by more than 3× that median and 5 % are
    then dropped and the fit is redone on the rest.
    """
    n = len(y)
    best = _least_squares(X, y)
    if n >= 7:
        def med(f):
            return float(np.median(np.abs(apply_correction(f, X) - y) / y))

        score = med(best)
        for k in (1, 2):
            for drop in itertools.combinations(range(n), k):
                keep = np.ones(n, bool)
                keep[list(drop)] = False
                f = _least_squares(X[keep], y[keep])
                if med(f) < score:
                    best, score = f, med(f)
    rel = np.abs(apply_correction(best, X) - y) / y
    out = (rel > 3 * np.median(rel)) & (rel > 0.05)
    if out.any() and (~out).sum() >= 4:
        return _least_squares(X[~out], y[~out]), out
    return _least_squares(X, y), np.zeros(n, bool)
