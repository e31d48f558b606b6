"""Exact Poisson draws for camera frames, several times faster than ``Generator.poisson`` when many
pixels share one mean (the background of a bead field, a dark frame).

A frame's low-signal pixels have means ``m_i = b + x_i`` with ``b`` the smallest of them. A sum of
independent Poisson variables is Poisson, so ``Poisson(m_i) = Poisson(b) + Poisson(x_i)``: the common
part is drawn for every pixel by inverting the cumulative distribution of ``Poisson(b)`` (a 2**16-bucket
guide table picks the count from 16 random bits of the generator's stream; the few buckets that hold a
step of the distribution are resolved with a fresh 53-bit uniform, so every count has its exact
probability to double precision), and
``Generator.poisson`` draws the rest only where ``x_i > 0``. When most pixels differ from the smallest
mean (a low-light flat field), ``Generator.poisson`` draws every pixel directly.
"""

from __future__ import annotations

import math

import numpy as np

from .lru import Lru

_BITS = 16
_BUCKETS = 1 << _BITS
_TABLES: Lru[tuple[np.ndarray, np.ndarray]] = Lru(8)


def _table(lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(cdf, guide) for Poisson(lam): ``guide[b]`` is the count for every uniform u in the bucket
    [b/M, (b+1)/M), or the dtype's largest value where a step of the cdf lies inside the bucket."""
    n = int(lam + 14.0 * math.sqrt(lam) + 25.0)  # P(count >= n) far below double precision
    k = np.arange(n, dtype=np.float64)
    log_pmf = -lam + k * math.log(lam) - np.array([math.lgamma(v + 1.0) for v in k])
    cdf = np.cumsum(np.exp(log_pmf))
    cdf[-1] = 2.0  # every u < 1 ends at the last count at the latest
    # count for u = number of cdf steps <= u; cdf[j] <= b/M  <=>  b >= ceil(cdf[j] * M) (M a power of 2: exact)
    scaled = cdf[:-1] * _BUCKETS
    first = np.minimum(np.ceil(scaled), _BUCKETS).astype(np.intp)  # nondecreasing
    dtype = np.uint8 if n < 255 else np.uint16
    guide = np.repeat(np.arange(n, dtype=dtype), np.diff(first, prepend=0, append=_BUCKETS))
    floor = np.floor(scaled)
    inside = (scaled != floor) & (floor < _BUCKETS)
    guide[floor[inside].astype(np.intp)] = np.iinfo(dtype).max
    cdf.flags.writeable = False
    guide.flags.writeable = False
    return cdf, guide


def poisson_same(rng: np.random.Generator, lam: float, n: int) -> np.ndarray:
    """``n`` independent Poisson(lam) counts (an unsigned integer array)."""
    if lam <= 0.0:
        return np.zeros(n, dtype=np.uint8)
    if not lam < 1e4:
        raise ValueError("poisson_same is for means below 1e4")
    cdf, guide = _TABLES.get(lam, lambda: _table(lam))
    bucket = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]  # 16 random bits each
    counts = np.take(guide, bucket)
    fine = np.flatnonzero(counts == np.iinfo(guide.dtype).max)
    if fine.size:
        u = (bucket[fine] + rng.random(fine.size)) * (1.0 / _BUCKETS)
        counts[fine] = np.searchsorted(cdf, u, side="right")
    return counts


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
