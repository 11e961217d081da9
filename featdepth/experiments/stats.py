"""Paired statistics of the ablation: per seed, variant minus baseline, with 95 % confidence intervals.

Every variant and the baseline are trained with the same seeds (same initialisation of the shared parts,
same data order), so the comparison is paired: for each seed ``d = metric(variant) - metric(baseline)``
and the question is whether the mean of ``d`` differs from 0. Two intervals for that mean:

- the paired *t* interval ``mean ± t_{1-a/2, n-1} sd / sqrt(n)`` (``sd`` with ddof 1); the Student-t
  quantile is computed here (:func:`student_t_quantile`, the regularised incomplete beta function inverted
  by bisection), so scipy is not needed at run time;
- the percentile bootstrap of the mean (seeded, 10 000 resamples by default), which does not assume
  normal differences but is too narrow for very few seeds (with n = 4 it can only take 35 distinct values).

Negative differences of an error metric (abs_rel, sq_rel, ATE) mean the variant is better than the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "student_t_cdf",
    "student_t_quantile",
    "paired_differences",
    "t_interval",
    "bootstrap_interval",
    "paired_summary",
    "paired_statistics",
    "SYNTHETIC_COMPARISONS",
    "REAL_COMPARISONS",
]

#: (region, metric) pairs compared on the synthetic scenes.
SYNTHETIC_COMPARISONS: tuple[tuple[str, str], ...] = (
    ("all", "abs_rel"), ("all", "sq_rel"), ("textureless", "abs_rel"), ("textureless", "sq_rel"))
#: (region, metric) pairs compared on the real clip: depth on the 7 raw frames, ATE5 on the odometry clip.
REAL_COMPARISONS: tuple[tuple[str, str], ...] = (("all", "abs_rel"), ("all", "sq_rel"), ("odometry", "ate5"))


# --------------------------------------------------------------------------------------------------
# Student-t distribution
# --------------------------------------------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), valid for ``x < (a+1)/(a+b+2)``."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df > 0`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. ``(0.975, 3)`` -> 3.1824).

    Bisection on :func:`student_t_cdf` to 1e-12 relative; exact to the printed digits of the usual tables.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------------------------
# paired differences and their intervals
# --------------------------------------------------------------------------------------------------


def paired_differences(variant: Mapping[Any, float | None], baseline: Mapping[Any, float | None]) -> tuple[list[Any], np.ndarray]:
    """``variant[seed] - baseline[seed]`` for the seeds present, and finite, in both (sorted by seed).

    Args:
        variant, baseline: ``{seed: metric value}`` (``None`` or NaN values are left out).

    Returns:
        ``(seeds, differences)``, ``differences`` a float64 array of the same length.
    """

    def ok(x: Any) -> bool:
        return x is not None and np.isfinite(float(x))

    seeds = sorted(s for s in variant if s in baseline and ok(variant[s]) and ok(baseline[s]))
    return seeds, np.asarray([float(variant[s]) - float(baseline[s]) for s in seeds], dtype=np.float64)


def t_interval(differences: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample sd (ddof 1) and the paired t confidence interval of the mean of ``differences``.

    Returns:
        ``{"n", "mean", "sd", "t_quantile", "half_width", "low", "high"}``; with fewer than two values the
        sd and the interval are NaN.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = int(d.size)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "sd": nan, "t_quantile": nan, "half_width": nan, "low": nan, "high": nan}
    mean = float(d.mean())
    if n < 2:
        return {"n": n, "mean": mean, "sd": nan, "t_quantile": nan, "half_width": nan, "low": nan, "high": nan}
    sd = float(d.std(ddof=1))
    q = student_t_quantile(0.5 + confidence / 2.0, n - 1)
    half = q * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "t_quantile": q, "half_width": half, "low": mean - half, "high": mean + half}


def bootstrap_interval(differences: Sequence[float] | np.ndarray, confidence: float = 0.95, resamples: int = 10000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (``resamples`` resamples with
    replacement drawn by ``numpy.random.default_rng(seed)``); ``(nan, nan)`` with fewer than two values."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(int(resamples), d.size))].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def paired_summary(variant: Mapping[Any, float | None], baseline: Mapping[Any, float | None], *,
                   confidence: float = 0.95, resamples: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Everything about one paired comparison: seeds, differences, mean, sd, t and bootstrap intervals, and
    ``sign``: ``-1`` when the t interval lies below 0 (variant lower), ``+1`` above 0, ``0`` otherwise."""
    seeds, d = paired_differences(variant, baseline)
    t = t_interval(d, confidence)
    b_low, b_high = bootstrap_interval(d, confidence, resamples, seed)
    sign = 0
    if np.isfinite(t["high"]) and t["high"] < 0:
        sign = -1
    elif np.isfinite(t["low"]) and t["low"] > 0:
        sign = 1
    return {"seeds": seeds, "differences": [float(x) for x in d], **t, "boot_low": b_low, "boot_high": b_high,
            "sign": sign}


# --------------------------------------------------------------------------------------------------
# from the experiment's results
# --------------------------------------------------------------------------------------------------


def _synthetic_value(run: Mapping[str, Any], region: str, metric: str) -> float | None:
    return run["eval"]["depth"].get(region, {}).get("metrics", {}).get(metric)


def _real_value(run: Mapping[str, Any], region: str, metric: str) -> float | None:
    if region == "odometry":
        return run.get("odometry", {}).get(metric)
    return run["eval"]["metrics"].get(metric)


def _compare(runs_in: Sequence[Mapping[str, Any]], comparisons: Sequence[tuple[str, str]],
             value: Callable[[Mapping[str, Any], str, str], float | None], baseline: str, extra: Mapping[str, Any],
             **kw: Any) -> list[dict[str, Any]]:
    rows = []
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs_in:
        by_variant.setdefault(run["variant"], []).append(run)
    if baseline not in by_variant:
        return rows
    for variant, runs in by_variant.items():
        if variant == baseline:
            continue
        for region, metric in comparisons:
            v = {r["seed"]: value(r, region, metric) for r in runs}
            b = {r["seed"]: value(r, region, metric) for r in by_variant[baseline]}
            rows.append({**extra, "variant": variant, "region": region, "metric": metric,
                         **paired_summary(v, b, **kw)})
    return rows


def paired_statistics(results: Mapping[str, Any], *, baseline: str = "baseline", confidence: float = 0.95,
                      resamples: int = 10000, seed: int = 0) -> dict[str, Any]:
    """The paired comparisons of every variant with ``baseline`` in an experiment's ``results.json``.

    Synthetic runs (``results["runs"]``): :data:`SYNTHETIC_COMPARISONS`; real-data runs
    (``results["real"]["runs"]``, per training source): :data:`REAL_COMPARISONS`.

    Returns:
        ``{"baseline", "confidence", "bootstrap_resamples", "bootstrap_seed", "synthetic": [row, ...],
        "real": [row, ...]}``, each row :func:`paired_summary` plus ``variant``, ``region``, ``metric``
        (and ``source`` for the real rows).
    """
    kw = {"confidence": confidence, "resamples": resamples, "seed": seed}
    synthetic = _compare(results.get("runs", []), SYNTHETIC_COMPARISONS, _synthetic_value, baseline, {}, **kw)
    real_rows: list[dict[str, Any]] = []
    real_runs = (results.get("real") or {}).get("runs", [])
    for source in dict.fromkeys(r["source"] for r in real_runs):
        group = [r for r in real_runs if r["source"] == source]
        real_rows += _compare(group, REAL_COMPARISONS, _real_value, baseline, {"source": source}, **kw)
    return {"baseline": baseline, "confidence": confidence, "bootstrap_resamples": resamples, "bootstrap_seed": seed,
            "synthetic": synthetic, "real": real_rows}
