"""Which of a file's samples fill what the boxes did not hear. Where a second was heard live and is
in the file, one counts: the live one, which the box's clock placed among the gate crossings
directly (the file's place rests on an estimated offset)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Filled:
    times: Array  # box time
    power: Array
    cadence: Array
    kept_live_s: int  # seconds the file has that were heard live (the live samples count there)


def fill(file_t: Array, file_p: Array, file_c: Array, live_t: Array, span: tuple[float, float]) -> Filled:
    """The file's samples (already on the box's clock) within ``span`` whose second no live sample
    falls in."""
    live_seconds = set(np.floor(live_t).astype(np.int64).tolist())
    seconds = np.floor(file_t).astype(np.int64)
    heard = np.fromiter((s in live_seconds for s in seconds.tolist()), dtype=bool, count=seconds.size)
    inside = (file_t >= span[0]) & (file_t <= span[1]) & ~np.isnan(file_p)
    take = inside & ~heard
    return Filled(file_t[take], file_p[take], file_c[take], int(np.sum(inside & heard)))
