"""Paired tests of two token counts per image (the tokens a task needs against those a
reconstruction rule needs): which is smaller, image by image, and how sure.

Wilcoxon signed-rank (scipy, two-sided; images with equal counts are dropped, `zero_method="wilcox"`)
when scipy is installed, and always an exact two-sided sign test (binomial with p = 1/2 over the
images whose counts differ), which needs nothing.
"""
from __future__ import annotations

from math import comb

import numpy as np


def sign_test(fewer: int, more: int) -> float:
    """Two-sided exact p-value of `fewer` against `more` successes under p = 1/2 (ties left out)."""
    n = fewer + more
    if n == 0:
        return 1.0
    k = min(fewer, more)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_test(a: list[float], b: list[float]) -> dict:
    """Compare a[i] with b[i] per image: counts of a < b, a == b, a > b, the mean and median of a - b,
    the sign test's p, and Wilcoxon's statistic and p (None, with `wilcoxon_reason`, when scipy is
    missing or no image differs). `test` names the one to quote: wilcoxon, else sign."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"a paired test needs two equal-length, non-empty lists, got {x.shape} and {y.shape}")
    d = x - y
    fewer, more = int((d < 0).sum()), int((d > 0).sum())
    result = {"n": int(d.size), "fewer": fewer, "equal": int(d.size) - fewer - more, "more": more,
              "mean_difference": float(d.mean()), "median_difference": float(np.median(d)),
              "sign_p": sign_test(fewer, more), "wilcoxon": None, "wilcoxon_p": None}
    try:
        from scipy import stats
    except ImportError:
        result["wilcoxon_reason"] = "scipy is not installed (pip install scipy): the sign test only"
    else:
        if fewer + more == 0:
            result["wilcoxon_reason"] = "every image needs the same number of tokens under both"
        else:
            w = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
            result.update(wilcoxon=float(w.statistic), wilcoxon_p=float(w.pvalue))
    result["test"] = "wilcoxon" if result["wilcoxon_p"] is not None else "sign"
    result["p"] = result["wilcoxon_p"] if result["wilcoxon_p"] is not None else result["sign_p"]
    return result


def verdict(test: dict, alpha: float = 0.05) -> str:
    """One sentence: does the first count (the task's) come out smaller, larger or not different?"""
    p, name = test["p"], "Wilcoxon signed-rank" if test["test"] == "wilcoxon" else "sign test"
    if p >= alpha or test["fewer"] == test["more"]:
        return f"no significant difference ({name} p = {p:.3g}, {test['n']} images)"
    side = "fewer" if test["mean_difference"] < 0 else "more"
    return (f"the task needs {side} tokens ({test['fewer']} images fewer, {test['equal']} equal, {test['more']} more; "
            f"{name} p = {p:.3g})")
