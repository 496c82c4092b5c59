"""A token budget for a whole data set (`alit tokenize --mean-tokens N`).

Given each image's reconstruction error at every length, choose one length per image so that the
total error is smallest while the mean length is at most N. Every image starts at the shortest
length; extra blocks of tokens go, one step at a time, to the image that gains the most error per
token. The steps are those of each image's lower convex hull of (length, error), so an image whose
error stops falling (or rises) past some length is never given more; what budget is left when no
hull step fits is spent on the best single moves that still fit.

`compare` sets this against the two rules with the same mean: a fixed length, and the threshold
rule (the shortest length with error below t, the longest where none is) with t chosen so its mean
is as high as the budget allows.
"""
from __future__ import annotations

import heapq

import numpy as np


def allocate(errors: np.ndarray, lengths: list[int], mean_tokens: float) -> np.ndarray:
    """Index into `lengths` [n] for each image; errors [n, T] (error of image i at lengths[k])."""
    errors = np.asarray(errors, dtype=np.float64)
    n, T = errors.shape
    L = np.asarray(lengths, dtype=np.int64)
    if mean_tokens < L[0]:
        raise ValueError(f"a mean of {mean_tokens:g} tokens is below the shortest length {L[0]}")
    left = int(np.floor(mean_tokens * n + 1e-9)) - n * int(L[0])  # tokens beyond the shortest length
    choice = np.zeros(n, dtype=np.int64)
    hulls = [_lower_hull(L, e) for e in errors]
    heap = []  # (-gain per token, image, position on its hull)
    for i, hull in enumerate(hulls):
        if len(hull) > 1:
            heap.append((-_rate(L, errors[i], hull[0], hull[1]), i, 0))
    heapq.heapify(heap)
    while heap:
        _, i, h = heapq.heappop(heap)
        a, b = hulls[i][h], hulls[i][h + 1]
        cost = int(L[b] - L[a])
        if cost > left:
            continue  # its later steps cost more still: this image is done
        choice[i], left = b, left - cost
        if h + 2 < len(hulls[i]):
            heapq.heappush(heap, (-_rate(L, errors[i], b, hulls[i][h + 2]), i, h + 1))
    # what is left is smaller than any hull step still open: spend it on the best moves that fit
    rows = np.arange(n)
    while left > 0:
        cost = L[None, :] - L[choice][:, None]                  # [n, T]
        gain = errors[rows, choice][:, None] - errors           # [n, T]
        ok = (cost > 0) & (cost <= left) & (gain > 0)
        if not ok.any():
            break
        rate = np.where(ok, gain / np.maximum(cost, 1), -np.inf)
        i, k = np.unravel_index(int(np.argmax(rate)), rate.shape)
        left -= int(cost[i, k])
        choice[i] = k
    return choice


def _lower_hull(L: np.ndarray, e: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of (L, e) from the shortest length to the lowest error."""
    hull: list[int] = []
    for k in range(len(L)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # drop b when it lies on or above the segment from a to k
            if (e[b] - e[a]) * (L[k] - L[a]) >= (e[k] - e[a]) * (L[b] - L[a]):
                hull.pop()
            else:
                break
        hull.append(k)
    best = int(np.argmin(e))
    end = next(j for j, k in enumerate(hull) if e[k] <= e[best])  # the hull reaches the minimum here
    out = hull[:end + 1]
    return [k for j, k in enumerate(out) if j == 0 or e[k] < e[out[j - 1]]]


def _rate(L: np.ndarray, e: np.ndarray, a: int, b: int) -> float:
    return float((e[a] - e[b]) / (L[b] - L[a]))


def threshold_choice(errors: np.ndarray, threshold: float) -> np.ndarray:
    """The threshold rule: the first length with error below `threshold`, the last where none is."""
    ok = np.asarray(errors) < threshold
    ok[:, -1] = True
    return ok.argmax(1)


def compare(errors: np.ndarray, lengths: list[int], mean_tokens: float) -> dict:
    """The budget allocation against a fixed length and the threshold rule, at the same mean."""
    errors = np.asarray(errors, dtype=np.float64)
    L = np.asarray(lengths)
    rows = np.arange(len(errors))
    choice = allocate(errors, lengths, mean_tokens)
    fixed = max(k for k in range(len(L)) if L[k] <= mean_tokens)
    # the threshold rule's mean falls as t rises: the lowest t whose mean fits the budget
    candidates = np.unique(np.nextafter(errors.reshape(-1), np.inf))
    means = [float(L[threshold_choice(errors, t)].mean()) for t in candidates]
    fits = [j for j, m in enumerate(means) if m <= mean_tokens + 1e-9]
    t = float(candidates[fits[0]]) if fits else float("inf")
    rule = threshold_choice(errors, t)
    return {
        "target_mean_tokens": float(mean_tokens),
        "images": int(len(errors)),
        "budget": {"mean_tokens": float(L[choice].mean()), "mean_l1": float(errors[rows, choice].mean())},
        "fixed_length": {"tokens": int(L[fixed]), "mean_tokens": float(L[fixed]),
                         "mean_l1": float(errors[:, fixed].mean())},
        "threshold_rule": {"threshold": t, "mean_tokens": float(L[rule].mean()),
                           "mean_l1": float(errors[rows, rule].mean())},
        "histogram": {int(L[k]): int((choice == k).sum()) for k in range(len(L)) if (choice == k).any()},
    }
