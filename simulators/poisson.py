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

``MultiLaw`` samples many laws at once (a row of probabilities per law, one law index per draw): a
guide table per law of 2**11 to 2**16 buckets (up to 32 laws, all their buckets share one 16-bit index;
2**12 beyond), built for all rows in a few vectorised steps (cheap enough to rebuild every frame when
the light changes), resolved exactly like ``DiscreteLaw`` (a fresh 53-bit uniform in the buckets that
hold a step of a row's cumulative distribution); it gives float32 values (offset + outcome: what a
camera frame needs). ``poisson_pmf_rows``:
the Poisson probabilities of many means on one range of counts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

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


def poisson_pmf_rows(lams: np.ndarray) -> np.ndarray:
    """Probabilities (rows: one per mean, float64) of 0..n-1 counts under Poisson(lam), n such that
    the rest of every row is far below double precision (a mean of 0: all on 0 counts)."""
    lams = np.asarray(lams, dtype=np.float64)
    top = float(lams.max()) if lams.size else 0.0
    n = int(top + 14.0 * math.sqrt(top) + 25.0)
    k = np.arange(n, dtype=np.float64)
    positive = lams > 0
    safe = np.where(positive, lams, 1.0)
    log_pmf = -safe[:, None] + k[None, :] * np.log(safe)[:, None] - special.gammaln(k + 1.0)[None, :]
    pmf: np.ndarray = np.exp(log_pmf)
    pmf[~positive] = 0.0
    pmf[~positive, 0] = 1.0
    return pmf


def _bits(rows: int) -> int:
    """Bits of a MultiLaw bucket for ``rows`` laws: up to 32 laws, all buckets of all laws fit a
    16-bit index (at least 11 bits each); more laws: 12 bits and a wide index."""
    return 16 - max(rows - 1, 0).bit_length() if rows <= 32 else 12


class MultiLaw:
    """Exact sampler of several laws on offset + (0..n-1) (rows of ``pmf``, each summing to 1 up to
    rounding; n < 65535): ``draw(rng, which)`` gives one outcome of law ``which[i]`` for every i."""

    def __init__(self, pmf: np.ndarray, offset: float = 0.0) -> None:
        rows, n = pmf.shape
        if n >= np.iinfo(np.uint16).max:
            raise ValueError("MultiLaw takes laws of fewer than 65535 outcomes")
        self.bits = _bits(rows)
        buckets = 1 << self.bits
        cdf = np.cumsum(pmf, axis=1, dtype=np.float64)
        cdf[:, -1] = 2.0  # every u < 1 ends at the last outcome at the latest
        scaled = cdf[:, :-1] * buckets  # a power of 2: exact
        first = np.minimum(np.ceil(scaled), buckets).astype(np.intp)  # nondecreasing per row
        counts = np.diff(first, axis=1, prepend=0, append=buckets)
        outcomes = np.broadcast_to(np.arange(n, dtype=np.float32), (rows, n))
        table = np.repeat(outcomes.reshape(-1), counts.reshape(-1))  # outcome = number of cdf steps <= b / buckets
        table += np.float32(offset)
        floor = np.floor(scaled)
        row, col = np.nonzero((scaled != floor) & (floor < buckets))
        table[row * buckets + floor[row, col].astype(np.intp)] = np.nan  # a bucket that holds a step of the cdf
        cdf.flags.writeable = False
        table.flags.writeable = False
        self.cdf, self.table, self.offset = cdf, table, offset

    @staticmethod
    def base(which: np.ndarray, rows: int) -> np.ndarray:
        """What ``draw`` needs of the law indices ``which`` for ``rows`` laws (worth keeping when they
        repeat)."""
        bits = _bits(rows)
        base = which.astype(np.uint16 if rows << bits <= 1 << 16 else np.intp)
        if bits < 16:  # (one law: which is 0)
            base <<= bits
        base.flags.writeable = False
        return base

    def draw(self, rng: np.random.Generator, which: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
        """Outcomes of the laws ``which`` (integer row indices), one each, as float32 (exact below
        2**24); ``base``: ``MultiLaw.base(which, rows)`` if known."""
        n = which.size
        bucket = rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]  # 16 random bits each
        bucket >>= 16 - self.bits
        index = np.add(self.base(which, self.cdf.shape[0]) if base is None else base, bucket)  # the low bits of base are 0
        out: np.ndarray = np.take(self.table, index)
        fine = np.flatnonzero(np.isnan(out))
        if fine.size:
            u = (bucket[fine] + rng.random(fine.size)) * (1.0 / (1 << self.bits))
            rows = which[fine]
            for row in np.unique(rows):
                at = rows == row
                out[fine[at]] = np.searchsorted(self.cdf[row], u[at], side="right") + self.offset
        return out


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
