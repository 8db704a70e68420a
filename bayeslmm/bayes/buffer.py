"""Readers of one field of the compiled density's flat float64 buffer
(:mod:`bayeslmm.bayes.density`, whose header row of field ``k`` is ``w`` = (offset, rows,
columns)); int64 fields are stored bitwise. Shared by the density's and the Laplace
marginal's kernels (:mod:`bayeslmm.bayes.laplace`). Each takes the header row, an array,
not the field's index, so that numba compiles each reader once (a literal index would make
one specialisation per field)."""

from __future__ import annotations

import numpy as np

from ..jit import kernel


@kernel
def read_i1(data, w):
    at = int(w[0])
    return data[at : at + int(w[1])].view(np.int64)


@kernel
def read_i0(data, w):
    at = int(w[0])
    return data[at : at + 1].view(np.int64)[0]


@kernel
def read_i2(data, w):
    at, rows, cols = int(w[0]), int(w[1]), int(w[2])
    return data[at : at + rows * cols].view(np.int64).reshape((rows, cols))


@kernel
def read_f1(data, w):
    at = int(w[0])
    return data[at : at + int(w[1])]


@kernel
def read_f2(data, w):
    at, rows, cols = int(w[0]), int(w[1]), int(w[2])
    return data[at : at + rows * cols].reshape((rows, cols))
