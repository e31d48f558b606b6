"""Per-pixel statistics of a set of frames that are read one at a time (streamed): never more than
one frame and a few float64 running sums are held, whatever the number of frames.

- ``mean``: the float64 sum of the frames in the order given, divided by their number: what
  ``np.mean(np.stack(frames).astype(np.float64), axis=0)`` gives (bit for bit: numpy sums along the
  first axis in the same order; integer frames sum exactly in float64 up to 2**53);
- ``variance_of_mean``: the frame-to-frame variance of each pixel (``ddof=1``) over the number of
  frames, averaged over the pixels (0 for one frame): how noisy one pixel of ``mean`` is. The
  variance comes from sums of the differences to the first frame (the shifted-data formula, which
  does not lose precision to a large mean) and agrees with numpy's two-pass
  ``np.var(..., axis=0, ddof=1)`` within floating-point rounding; the per-pixel array is kept
  (``variance``) only when asked (``keep_variance``: one more float64 frame);
- ``saturated``: when a saturation level is given, the pixels at or above it in at least one frame
  (bool), and ``saturated_values``, how many pixel values were (pixels x frames).

Frames must all have the first frame's shape; a frame of another shape raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameStats:
    count: int
    mean: np.ndarray  # float64, the frames' shape
    variance_of_mean: float  # mean over the pixels of (frame-to-frame variance, ddof=1) / count; 0 for one frame
    variance: np.ndarray | None = None  # per pixel, ddof=1 (zeros for one frame); None unless asked
    saturated: np.ndarray | None = None  # bool: at or above the saturation level in >= 1 frame; None unless a level was given
    saturated_values: int = 0  # pixel values at or above the level, all frames together


def frame_stats(frames: Iterable[np.ndarray], saturation_adu: float | None = None, keep_variance: bool = False) -> FrameStats:
    """Statistics of ``frames`` (an iterable that yields them one at a time); ValueError for none.
    ``saturation_adu``: count the pixels at or above it; ``keep_variance``: keep the per-pixel variance."""
    iterator = iter(frames)
    try:
        start = np.asarray(next(iterator))
    except StopIteration:
        raise ValueError("no frames") from None
    saturated = None if saturation_adu is None else start >= saturation_adu
    saturated_values = 0 if saturated is None else int(np.count_nonzero(saturated))
    total: np.ndarray = start.astype(np.float64)
    first = start.copy()  # in its own type: the differences are taken in float64
    s1, s2, diff = np.zeros_like(total), np.zeros_like(total), np.empty_like(total)
    n = 1
    for frame in iterator:
        frame = np.asarray(frame)
        if frame.shape != total.shape:
            raise ValueError(f"a frame of {'x'.join(map(str, frame.shape))} px among frames of {'x'.join(map(str, total.shape))} px")
        np.add(total, frame, out=total)
        if saturated is not None:
            hit = frame >= saturation_adu
            saturated_values += int(np.count_nonzero(hit))
            np.logical_or(saturated, hit, out=saturated)
        np.subtract(frame, first, out=diff, dtype=np.float64)
        np.add(s1, diff, out=s1)
        np.multiply(diff, diff, out=diff)
        np.add(s2, diff, out=s2)
        n += 1
    np.divide(total, n, out=total)
    if n < 2:
        return FrameStats(n, total, 0.0, np.zeros_like(total) if keep_variance else None, saturated, saturated_values)
    # sum of squared deviations = s2 - s1**2 / n; never below 0 (rounding of a constant pixel)
    np.multiply(s1, s1, out=s1)
    np.divide(s1, n, out=s1)
    np.subtract(s2, s1, out=s2)
    np.maximum(s2, 0.0, out=s2)
    np.divide(s2, n - 1, out=s2)
    return FrameStats(n, total, float(np.mean(s2)) / n, s2 if keep_variance else None, saturated, saturated_values)
