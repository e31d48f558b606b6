"""Exact draws from discrete laws for camera frames, several times faster than ``Generator.poisson``
when many pixels share one law (the background of a bead field, a dark frame).

``DiscreteLaw`` samples a law on 0..n-1 given by its probabilities: a 2**16-bucket guide table picks the
outcome from 16 random bits of the generator's stream; the few buckets that hold a step of the
cumulative distribution are resolved with a fresh 53-bit uniform, so every outcome has its exact
probability to double precision (what is left beyond the last outcome, far below that, goes to it).

``poisson_frame``: a frame's pixels have means ``m_i = b + x_i`` with ``b`` the smallest of them. A sum
of independent Poisson variables is Poisson, so ``Poisson(m_i) = Poisson(b) + Poisson(x_i)``: the
common part is drawn for every pixel from the table of ``Poisson(b)``, and ``Generator.poisson`` draws
the rest only where ``x_i > 0``. When most pixels differ from the smallest mean (a low-light flat
field), ``Generator.poisson`` draws every pixel directly.
"""

from __future__ import annotations

import math

import numpy as np

from .lru import Lru

_BITS = 16
_BUCKETS = 1 << _BITS


class DiscreteLaw:
    """Exact sampler of the law ``pmf`` (probabilities of 0..n-1, summing to 1 up to rounding)."""

    def __init__(self, pmf: np.ndarray) -> None:
        n = len(pmf)
        cdf = np.cumsum(pmf, dtype=np.float64)
        cdf[-1] = 2.0  # every u < 1 ends at the last outcome at the latest
        # outcome for u = number of cdf steps <= u; cdf[j] <= b/M  <=>  b >= ceil(cdf[j] * M) (M a power of 2: exact)
        scaled = cdf[:-1] * _BUCKETS
        first = np.minimum(np.ceil(scaled), _BUCKETS).astype(np.intp)  # nondecreasing
        dtype = np.uint8 if n < 255 else np.uint16 if n < 65535 else np.uint32
        guide = np.repeat(np.arange(n, dtype=dtype), np.diff(first, prepend=0, append=_BUCKETS))
        floor = np.floor(scaled)
        inside = (scaled != floor) & (floor < _BUCKETS)
        self.unresolved = np.iinfo(dtype).max  # marks a bucket that holds a step of the cdf
        guide[floor[inside].astype(np.intp)] = self.unresolved
        cdf.flags.writeable = False
        guide.flags.writeable = False
        self.cdf, self.guide = cdf, guide

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent outcomes (an unsigned integer array)."""
        bucket = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]  # 16 random bits each
        out = np.take(self.guide, bucket, mode="clip")  # every bucket is an index of the guide
        fine = np.flatnonzero(out == self.unresolved)
        if fine.size:
            u = (bucket[fine] + rng.random(fine.size)) * (1.0 / _BUCKETS)
            out[fine] = np.searchsorted(self.cdf, u, side="right")
        return out


def poisson_pmf(lam: float) -> np.ndarray:
    """Probabilities of 0..n-1 counts under Poisson(lam), n such that the rest is far below double
    precision."""
    n = int(lam + 14.0 * math.sqrt(lam) + 25.0)
    k = np.arange(n, dtype=np.float64)
    log_pmf = -lam + k * math.log(lam) - np.array([math.lgamma(v + 1.0) for v in k])
    pmf: np.ndarray = np.exp(log_pmf)
    return pmf


_TABLES: Lru[DiscreteLaw] = Lru(8)


def poisson_same(rng: np.random.Generator, lam: float, n: int) -> np.ndarray:
    """``n`` independent Poisson(lam) counts (an unsigned integer array)."""
    if lam <= 0.0:
        return np.zeros(n, dtype=np.uint8)
    if not lam < 1e4:
        raise ValueError("poisson_same is for means below 1e4")
    return _TABLES.get(lam, lambda: DiscreteLaw(poisson_pmf(lam))).draw(rng, n)


def poisson_frame(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    """Independent Poisson draws with the given means (any shape), as float32."""
    flat = mean.reshape(-1)
    if flat.size == 0:
        return np.zeros(mean.shape, dtype=np.float32)
    smallest = flat.min()
    if not smallest >= 0:
        raise ValueError("Poisson means must be >= 0")
    rest = np.flatnonzero(flat != smallest)  # the pixels above the common mean
    if 2 * rest.size > flat.size:
        return rng.poisson(flat).astype(np.float32).reshape(mean.shape)
    base = float(smallest)
    out = poisson_same(rng, base, flat.size).astype(np.float32)
    if rest.size:
        out[rest] += rng.poisson(flat[rest].astype(np.float64) - base)
    return out.reshape(mean.shape)
