"""A token budget for a whole data set (`alit tokenize --mean-tokens N`).

Given each image's reconstruction error at every length, choose one length per image so that the
total error is smallest while the mean length is at most N. Every image starts at the shortest
length; extra blocks of tokens go, one step at a time, to the image that gains the most error per
token. The steps are those of each image's lower convex hull of (length, error), so an image whose
error stops falling (or rises) past some length is never given more; a local search then moves
one image up and another down wherever that lowers the total. That is optimal on convex curves,
and within about one image's error range of the optimum on any; for sets small enough
(`EXACT_LIMIT`), an exact dynamic programme over the budget is used instead.

`compare` sets this against the two rules with the same mean: a fixed length, and the threshold
rule (the shortest length with error below t, the longest where none is) with t chosen so its mean
is as high as the budget allows.
"""
from __future__ import annotations

import heapq

import numpy as np

EXACT_LIMIT = 30_000_000  # images x budget blocks x lengths up to which the exact programme runs


def allocate(errors: np.ndarray, lengths: list[int], mean_tokens: float) -> np.ndarray:
    """Index into `lengths` [n] for each image; errors [n, T] (error of image i at lengths[k])."""
    errors = np.asarray(errors, dtype=np.float64)
    n, T = errors.shape
    L = np.asarray(lengths, dtype=np.int64)
    if mean_tokens < L[0]:
        raise ValueError(f"a mean of {mean_tokens:g} tokens is below the shortest length {L[0]}")
    left = int(np.floor(mean_tokens * n + 1e-9)) - n * int(L[0])  # tokens beyond the shortest length
    block = int(np.gcd.reduce(np.diff(L))) if T > 1 else 1
    blocks = min(left // block, int((L[-1] - L[0]) // block) * n)
    if n * (blocks + 1) * T <= EXACT_LIMIT:
        return exact(errors, (L - L[0]) // block, blocks)
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
    return improve(errors, L, choice, left)


def exact(errors: np.ndarray, steps: np.ndarray, blocks: int) -> np.ndarray:
    """The least total error with at most `blocks` extra blocks: dynamic programme over images."""
    n, T = errors.shape
    best = np.full(blocks + 1, np.inf)  # best[b]: least error of the images so far using b blocks
    best[0] = 0.0
    picks = np.zeros((n, blocks + 1), dtype=np.int8 if T < 128 else np.int16)
    for i in range(n):
        new, pick = np.full(blocks + 1, np.inf), np.zeros(blocks + 1, dtype=picks.dtype)
        for k in range(T):
            s = int(steps[k])
            if s > blocks:
                break
            cand = np.full(blocks + 1, np.inf)
            cand[s:] = best[:blocks + 1 - s] + errors[i, k]
            better = cand < new
            new[better], pick[better] = cand[better], k
        best, picks[i] = new, pick
    b = int(np.argmin(best))
    choice = np.zeros(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        choice[i] = picks[i, b]
        b -= int(steps[choice[i]])
    return choice


def improve(errors: np.ndarray, L: np.ndarray, choice: np.ndarray, left: int, rounds: int = 100_000) -> np.ndarray:
    """Local search from `choice` (`left` tokens unspent): repeatedly make the best move of one image
    up and/or one other image down whose net cost fits what is left, while the total error falls.
    On convex curves the greedy start is already optimal; on others (error that rises past some
    length, or falls in steps) this finds what the hull steps cannot."""
    n, T = errors.shape
    rows = np.arange(n)
    choice = choice.copy()
    block = int(np.gcd.reduce(np.diff(L))) if T > 1 else 1
    steps = (L - L[0]) // block  # lengths in blocks
    for _ in range(rounds):
        cost = steps[None, :] - steps[choice][:, None]           # [n, T] blocks to move image i to k
        delta = errors - errors[rows, choice][:, None]           # [n, T] change of its error
        ups, downs = {0: (0.0, -1, -1, -1.0, -1)}, {0: (0.0, -1, -1, -1.0, -1)}  # blocks -> best two moves
        for c in range(1, T):
            for table, sign in ((ups, 1), (downs, -1)):
                d = np.where(cost == sign * c, delta, np.inf)
                if not np.isfinite(d).any():
                    continue
                best = d.min(1)                                  # [n] each image's best move of c blocks
                order = np.argsort(best, kind="stable")[:2]
                i, j = int(order[0]), int(order[1]) if len(order) > 1 else -1
                table[c] = (float(best[i]), i, int(d[i].argmin()),
                            float(best[j]) if j >= 0 else np.inf, j)
        move, gain = None, -1e-12
        for a, (du, iu, ku, du2, iu2) in ups.items():
            for b, (dd, jd, kd, dd2, jd2) in downs.items():
                if (a - b) * block > left or (a == 0 and b == 0):
                    continue
                total = du + dd
                if a and b and iu == jd:  # one image cannot move both ways: take a runner-up
                    alt = [(du2 + dd, "up"), (du + dd2, "down")]
                    total, which = min(alt)
                    if not np.isfinite(total):
                        continue
                    if which == "up":
                        iu, ku = iu2, int(np.where(cost[iu2] == a, delta[iu2], np.inf).argmin())
                    else:
                        jd, kd = jd2, int(np.where(cost[jd2] == -b, delta[jd2], np.inf).argmin())
                if total < gain:
                    gain, move = total, (a, iu, ku, b, jd, kd)
        if move is None:
            break
        a, iu, ku, b, jd, kd = move
        if a:
            choice[iu] = ku
        if b:
            choice[jd] = kd
        left -= (a - b) * block
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
