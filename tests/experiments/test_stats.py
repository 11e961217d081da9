"""Paired statistics of the ablation (featdepth.experiments.stats): the Student-t quantile and the intervals
against hand-computed values and closed forms, against scipy where it is installed, and the comparisons
built from a results dict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featdepth.experiments.stats import (
    bootstrap_interval,
    paired_differences,
    paired_statistics,
    paired_summary,
    student_t_cdf,
    student_t_quantile,
    t_interval,
)


# ------------------------------------------------------------------------------------------ Student t


@pytest.mark.parametrize("p, df, table", [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 7, 2.365), (0.975, 15, 2.131),
    (0.995, 10, 3.169), (0.95, 4, 2.132), (0.9, 30, 1.310),
])
def test_t_quantile_matches_printed_tables(p, df, table):
    assert student_t_quantile(p, df) == pytest.approx(table, abs=6e-4)
    assert student_t_quantile(1 - p, df) == pytest.approx(-table, abs=6e-4)  # symmetric


def test_t_cdf_closed_forms():
    # df = 1 is the Cauchy distribution, df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-7.0, -1.0, -0.2, 0.0, 0.5, 3.0, 40.0):
        assert student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    # df = 1 quantile: tan(pi (p - 1/2))
    assert student_t_quantile(0.9, 1) == pytest.approx(math.tan(0.4 * math.pi), rel=1e-9)
    # large df: the normal quantile
    assert student_t_quantile(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)
    assert student_t_quantile(0.5, 5) == 0.0
    with pytest.raises(ValueError, match="quantile probability"):
        student_t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_cdf(1.0, 0)


def test_t_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy (the dev extra) not installed")
    for df in (1, 2, 3, 5, 7, 11, 30, 200):
        for p in (0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.01):
            assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)
        for t in (-4.0, -0.7, 0.3, 2.5, 12.0):
            assert student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)


# ------------------------------------------------------------------------------------------ intervals


def test_t_interval_hand_computed():
    # d = [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.2910, t_{0.975,3} = 3.1824 -> 2.5 ± 3.1824 * 1.2910 / 2 = 2.5 ± 2.0543
    r = t_interval([1.0, 2.0, 3.0, 4.0])
    assert r["n"] == 4 and r["mean"] == 2.5
    assert r["sd"] == pytest.approx(1.2909944, abs=1e-6)
    assert r["t_quantile"] == pytest.approx(3.18245, abs=1e-5)
    assert r["half_width"] == pytest.approx(2.05426, abs=1e-5)
    assert (r["low"], r["high"]) == pytest.approx((0.44574, 4.55426), abs=1e-5)
    # d = [-0.02, -0.01, -0.03]: mean -0.02, sd 0.01, t_{0.975,2} = 4.3027 -> -0.02 ± 0.024841
    r = t_interval([-0.02, -0.01, -0.03])
    assert r["mean"] == pytest.approx(-0.02) and r["sd"] == pytest.approx(0.01)
    assert r["half_width"] == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    # 90 % interval uses t_{0.95,3} = 2.3534
    assert t_interval([1.0, 2.0, 3.0, 4.0], confidence=0.9)["half_width"] == pytest.approx(2.35336 * 1.2909944 / 2, rel=1e-5)
    # too few values: no interval
    one = t_interval([0.5])
    assert one["n"] == 1 and one["mean"] == 0.5 and math.isnan(one["sd"]) and math.isnan(one["low"])
    assert t_interval([])["n"] == 0


def test_t_interval_against_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy (the dev extra) not installed")
    d = np.array([0.031, -0.012, 0.044, 0.005, 0.019, -0.003, 0.027, 0.011])
    r = t_interval(d)
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (r["low"], r["high"]) == pytest.approx((low, high), rel=1e-9)
    # the interval excludes 0 exactly when the paired t test rejects at 5 %
    a = np.linspace(0.2, 0.3, 8)
    p_value = stats.ttest_rel(a + d, a).pvalue
    assert (r["low"] > 0) == (p_value < 0.05)


def test_bootstrap_interval_hand_computed():
    # [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4 -> the 2.5 % and 97.5 % points are 0 and 1
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    # [1, 2, 3, 4]: P(mean <= 1.25) = 5/256 < 2.5 % < P(mean <= 1.5) = 15/256 -> 1.5; symmetrically 3.5
    assert bootstrap_interval([1.0, 2.0, 3.0, 4.0]) == pytest.approx((1.5, 3.5))
    assert bootstrap_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    assert all(math.isnan(x) for x in bootstrap_interval([1.0]))


def test_bootstrap_is_seeded_and_close_to_t_for_many_values():
    d = np.random.default_rng(5).normal(0.1, 1.0, size=400)
    assert bootstrap_interval(d, seed=3) == bootstrap_interval(d, seed=3)
    assert bootstrap_interval(d, seed=3) != bootstrap_interval(d, seed=4)
    low, high = bootstrap_interval(d, resamples=20000)
    t = t_interval(d)
    assert low == pytest.approx(t["low"], abs=0.03) and high == pytest.approx(t["high"], abs=0.03)


# ------------------------------------------------------------------------------------------ pairing


def test_paired_differences_pairs_by_seed():
    seeds, d = paired_differences({3: 0.5, 0: 0.2, 1: None, 2: 0.4, 7: 0.1}, {0: 0.25, 1: 0.3, 2: float("nan"), 3: 0.3})
    assert seeds == [0, 3]  # seed 1: variant missing; 2: baseline NaN; 7: no baseline
    np.testing.assert_allclose(d, [-0.05, 0.2])


def test_paired_summary_sign():
    base = {s: 0.3 for s in range(4)}
    lower = paired_summary({s: 0.3 - 0.01 * (s + 1) for s in range(4)}, base)
    assert lower["sign"] == -1 and lower["high"] < 0 and lower["seeds"] == [0, 1, 2, 3]
    assert lower["differences"] == pytest.approx([-0.01, -0.02, -0.03, -0.04])
    assert paired_summary({s: 0.3 + 0.01 * (s + 1) for s in range(4)}, base)["sign"] == 1
    mixed = paired_summary({0: 0.31, 1: 0.29, 2: 0.32, 3: 0.28}, base)
    assert mixed["sign"] == 0 and mixed["low"] < 0 < mixed["high"]
    assert paired_summary({0: 0.2}, base)["sign"] == 0  # one seed: no interval, no verdict


def _synthetic_run(variant: str, seed: int, all_abs: float, tl_abs: float) -> dict:
    def m(x: float) -> dict:
        return {"metrics": {"abs_rel": x, "sq_rel": 10 * x}}
    return {"variant": variant, "seed": seed, "eval": {"depth": {"all": m(all_abs), "textureless": m(tl_abs)}}}


def test_paired_statistics_from_results():
    runs = []
    for seed in range(4):
        runs.append(_synthetic_run("baseline", seed, 0.30 + 0.01 * seed, 0.50))
        runs.append(_synthetic_run("fm_rec", seed, 0.30 + 0.01 * seed + 0.002, 0.50 - 0.1 * (seed + 1)))
    real = []
    for seed in range(4):
        for v, off in (("baseline", 0.0), ("fm_dis_cvt", -0.01)):
            run = {"source": "raw", "variant": v, "seed": seed,
                   "eval": {"metrics": {"abs_rel": 0.13 + off + 0.001 * seed, "sq_rel": 0.9}}}
            if seed != 2:
                run["odometry"] = {"ate5": 0.03 + (0.005 if v == "fm_dis_cvt" else 0.0) * seed}
            real.append(run)
    ps = paired_statistics({"runs": runs, "real": {"runs": real}})
    assert ps["baseline"] == "baseline" and ps["confidence"] == 0.95 and ps["bootstrap_resamples"] == 10000
    rows = {(r["variant"], r["region"], r["metric"]): r for r in ps["synthetic"]}
    assert set(rows) == {("fm_rec", reg, m) for reg in ("all", "textureless") for m in ("abs_rel", "sq_rel")}
    r = rows[("fm_rec", "all", "abs_rel")]
    assert r["n"] == 4 and r["mean"] == pytest.approx(0.002) and r["sd"] == pytest.approx(0.0, abs=1e-12)
    r = rows[("fm_rec", "textureless", "abs_rel")]
    # differences -0.1, -0.2, -0.3, -0.4: mean -0.25, sd 0.1291, t CI -0.25 ± 0.20543
    assert r["mean"] == pytest.approx(-0.25) and r["half_width"] == pytest.approx(0.205426, abs=1e-6) and r["sign"] == -1
    assert rows[("fm_rec", "textureless", "sq_rel")]["mean"] == pytest.approx(-2.5)
    real_rows = {(r["source"], r["variant"], r["region"], r["metric"]): r for r in ps["real"]}
    assert real_rows[("raw", "fm_dis_cvt", "all", "abs_rel")]["mean"] == pytest.approx(-0.01)
    ate = real_rows[("raw", "fm_dis_cvt", "odometry", "ate5")]
    assert ate["seeds"] == [0, 1, 3] and ate["differences"] == pytest.approx([0.0, 0.005, 0.015])
    # without a baseline there is nothing to compare
    assert paired_statistics({"runs": [r for r in runs if r["variant"] != "baseline"]})["synthetic"] == []
    assert paired_statistics({})["real"] == []
