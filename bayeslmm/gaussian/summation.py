"""Sums over rows that do not depend on the order of the rows.

Every statistic of a Gaussian LMM is a sum over rows (:mod:`bayeslmm.gaussian.statistics`),
and rows in memory, or the partitions of a Dask DataFrame added up in a tree, sum them in
different orders. Accumulated in plain floating point the results differ in their last
bits, and NUTS, a chaotic dynamical system, turns last-bit differences of its log density
into different draws within a few hundred steps. So each sum is accumulated in
double-double arithmetic (Knuth's error-free TwoSum: a value and its rounding error,
about 32 significant digits, Dekker 1971) and rounded to a double once at the end: the
result is the correctly rounded exact sum (unless the exact sum lies within ~1e-25 of its
size from a rounding boundary), whatever the order of the rows and however they are
split. Row products (``z_i x_j``) are made in double precision, the same in every order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..jit import kernel


@kernel
def _accumulate_products(index, left, right, hi, lo):  # pragma: no cover - compiled
    """``hi + lo`` of row k += ``left_r right_r'`` (flattened) for every row r of key k."""
    n, a = left.shape
    b = right.shape[1]
    for r in range(n):
        k = index[r]
        for i in range(a):
            li = left[r, i]
            base = i * b
            for j in range(b):
                v = li * right[r, j]
                h = hi[k, base + j]
                s = h + v
                t = s - h
                lo[k, base + j] += (h - (s - t)) + (v - t)
                hi[k, base + j] = s


@kernel
def _accumulate_pairs(index, hi_in, lo_in, hi, lo):  # pragma: no cover - compiled
    """Double-double sums of double-double values by key."""
    n, w = hi_in.shape
    for r in range(n):
        k = index[r]
        for c in range(w):
            h = hi[k, c]
            v = hi_in[r, c]
            s = h + v
            t = s - h
            lo[k, c] += ((h - (s - t)) + (v - t)) + lo_in[r, c]
            hi[k, c] = s


@kernel
def _accumulate_powers(values, hi, lo):  # pragma: no cover - compiled
    """Per column, double-double sums of the values (row 0) and of their exact squares
    (row 1: each square with its rounding error, Dekker's product, so that a column far
    from 0 keeps its variance)."""
    n, m = values.shape
    split = 134217729.0  # 2^27 + 1
    for r in range(n):
        for c in range(m):
            x = values[r, c]
            h = hi[0, c]
            s = h + x
            t = s - h
            lo[0, c] += (h - (s - t)) + (x - t)
            hi[0, c] = s
            p = x * x
            cx = split * x
            x_hi = cx - (cx - x)
            x_lo = x - x_hi
            err = ((x_hi * x_hi - p) + 2.0 * x_hi * x_lo) + x_lo * x_lo
            h = hi[1, c]
            s = h + p
            t = s - h
            lo[1, c] += (h - (s - t)) + (p - t) + err
            hi[1, c] = s


def _normalised(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = hi + lo
    return s, lo - (s - hi)


def _index(keys: np.ndarray, n_keys: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (sorted) and every row's position among them."""
    keys = np.asarray(keys, dtype=np.int64)
    if n_keys is not None and n_keys <= 4 * len(keys) + 4096:  # dense enough: no sort
        present = np.bincount(keys, minlength=n_keys) > 0
        position = np.cumsum(present) - 1
        return np.flatnonzero(present).astype(np.int64), position[keys].astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _float(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


@dataclass
class KeyedSums:
    """Per key (a level, or a pair of levels), order-independent sums over its rows of a row
    vector, and its rows: ``keys`` sorted and distinct; ``hi + lo`` (keys, width) the sums in
    double-double; ``counts`` (keys,) the rows."""

    keys: np.ndarray
    hi: np.ndarray
    lo: np.ndarray
    counts: np.ndarray

    @classmethod
    def products(cls, keys: np.ndarray, left: np.ndarray, right: np.ndarray,
                 n_keys: int | None = None) -> KeyedSums:  # fmt: skip
        """Sums by key of the rows' outer products ``left_r right_r'`` (flattened row-major);
        ``n_keys`` bounds the keys (``0 .. n_keys - 1``) where known."""
        uniq, index = _index(keys, n_keys)
        width = left.shape[1] * right.shape[1]
        hi, lo = np.zeros((len(uniq), width)), np.zeros((len(uniq), width))
        if len(index):
            _accumulate_products(index, _float(left), _float(right), hi, lo)
        counts = np.bincount(index, minlength=len(uniq)).astype(np.int64)
        return cls(uniq, *_normalised(hi, lo), counts)

    def combine(self, other: KeyedSums) -> KeyedSums:
        if not len(other.keys):
            return self
        if not len(self.keys):
            return other
        uniq, index = _index(np.concatenate([self.keys, other.keys]), None)
        width = self.hi.shape[1]
        hi, lo = np.zeros((len(uniq), width)), np.zeros((len(uniq), width))
        _accumulate_pairs(index, np.concatenate([self.hi, other.hi]),
                          np.concatenate([self.lo, other.lo]), hi, lo)  # fmt: skip
        counts = np.bincount(index, weights=np.concatenate([self.counts, other.counts]),
                             minlength=len(uniq)).astype(np.int64)  # fmt: skip
        return KeyedSums(uniq, *_normalised(hi, lo), counts)

    @property
    def values(self) -> np.ndarray:
        """The sums, each rounded once to a double."""
        return self.hi + self.lo

    def dense(self, n_keys: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        """The sums and rows of keys ``0 .. n_keys - 1`` (zeros for a key without rows: a
        level absent from weighted pseudo-rows)."""
        if len(self.keys) and (self.keys[0] < 0 or self.keys[-1] >= n_keys):
            raise ValueError(f"{what}: sums of keys outside 0 .. {n_keys - 1}")
        if len(self.keys) == n_keys:
            return self.values, self.counts
        values = np.zeros((n_keys, self.hi.shape[1]))
        counts = np.zeros(n_keys, dtype=np.int64)
        values[self.keys], counts[self.keys] = self.values, self.counts
        return values, counts


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a * b`` exactly as a double-double (Dekker's splitting)."""
    p = a * b
    split = 134217729.0  # 2^27 + 1
    ca, cb = split * a, split * b
    a_hi, b_hi = ca - (ca - a), cb - (cb - b)
    a_lo, b_lo = a - a_hi, b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    t = s - a
    return s, (a - (s - t)) + (b - t)


@dataclass
class PowerSums:
    """Per column: rows, order-independent sums of the values and of their squares
    (double-double), minimum and maximum; pieces add up to the same numbers in any order."""

    n: int
    hi: np.ndarray  # (2, columns): sums of values, of squares
    lo: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray) -> PowerSums | None:
        if not len(values):
            return None
        m = values.shape[1]
        hi, lo = np.zeros((2, m)), np.zeros((2, m))
        _accumulate_powers(_float(values), hi, lo)
        return cls(len(values), *_normalised(hi, lo), values.min(axis=0), values.max(axis=0))

    def combine(self, other: PowerSums | None) -> PowerSums:
        if other is None:
            return self
        s, e = _two_sum(self.hi, other.hi)
        hi, lo = _normalised(s, e + self.lo + other.lo)
        low, high = np.minimum(self.low, other.low), np.maximum(self.high, other.high)
        return PowerSums(self.n + other.n, hi, lo, low, high)

    @property
    def mean(self) -> np.ndarray:
        return (self.hi[0] + self.lo[0]) / self.n

    @property
    def sd(self) -> np.ndarray:
        """Standard deviations (divisor n, as ``np.std``)."""
        return np.sqrt(self.m2 / self.n)

    @property
    def abs_max(self) -> np.ndarray:
        return np.maximum(np.abs(self.low), np.abs(self.high))

    @property
    def m2(self) -> np.ndarray:
        """Sums of squared deviations from the mean, ``S2 - S1^2 / n`` in double-double (the
        cancellation costs the extra digits, not the double's)."""
        h1, l1 = self.hi[0], self.lo[0]
        p, e = _two_product(h1, h1)
        e = e + 2.0 * h1 * l1  # (h1 + l1)^2, to double-double accuracy
        q = p / self.n
        qp, qe = _two_product(q, np.full_like(q, float(self.n)))
        q_lo = ((p - qp) - qe + e) / self.n  # the remainder of the division
        s, t = _two_sum(self.hi[1], -q)
        return np.maximum(s + (t + self.lo[1] - q_lo), 0.0)
