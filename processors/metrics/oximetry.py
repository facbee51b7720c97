"""Overnight pulse-oximetry metrics: validity, T90/T88, longest run <= 88 %, ODI3/ODI4.

Every definition used here is written out in ``processors/metrics/DEFINITIONS.md``; the
numbers below are the pinned constants. Summary of the desaturation (ODI) rule, version
``respmon-odi/1``:

* Only valid samples take part (SpO2 50-100 %, plausible pulse, optional motion limit).
* Baseline ``B(t)`` = mean of the valid SpO2 samples in the 120 s *before* ``t``
  (window ``[t - 120 s, t)``), defined only when that window holds >= 60 s of valid samples.
* An event is triggered at the first valid sample with ``SpO2 <= B - 3`` (percentage
  points). The baseline is frozen at that sample's ``B`` (``Bf``) for the event.
* The event starts at the first sample of the fall, i.e. just after the last valid sample
  before the trigger that was still within 1 point of ``Bf`` (``SpO2 >= Bf - 1``), and ends
  at the first valid sample after the trigger that is back within 1 point of ``Bf``
  (resaturation). Duration = end - start; it must be >= 10 s and <= 120 s to count.
* An event is discarded if no resaturation occurs within 120 s of its start or if an invalid
  gap > 10 s interrupts it (gaps <= 10 s are bridged). Events never overlap: the search for
  the next trigger resumes at the end of the previous one.
* ODI3 = counted events per hour of valid recording time (VRT), not per hour of sleep.
  ODI4 counts the same events whose nadir (lowest valid SpO2 from start to end) is
  ``<= Bf - 4``, so every ODI4 event is an ODI3 event and ODI4 <= ODI3.

Everything except the per-event loop is vectorised with numpy; durations use
``interval_s``, never sample counts, so 1, 2 and 4 s oximeters give the same minutes.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from schemas.oximetry import OximetryNight
from schemas.samples import series_array

__all__ = [
    "BASELINE_MIN_VALID_S",
    "BASELINE_WINDOW_S",
    "EVENT_MAX_S",
    "EVENT_MIN_S",
    "ODI_DEFINITION",
    "PULSE_RANGE",
    "RESAT_WITHIN_POINTS",
    "RUN_GAP_BRIDGE_S",
    "SPO2_RANGE",
    "OximetryMetrics",
    "night_metrics",
]

ODI_DEFINITION = "respmon-odi/1"
"""Version tag of the desaturation rule; bump it when any constant or step below changes."""

SPO2_RANGE = (50.0, 100.0)
"""Inclusive plausible SpO2 range (%); anything else (0, 127, 255, > 100, None) is invalid."""
PULSE_RANGE = (25.0, 250.0)
"""Inclusive plausible pulse range (bpm); a recorded pulse outside it (incl. 0) voids the sample."""
RUN_GAP_BRIDGE_S = 10.0
"""Invalid gaps up to this long are bridged by the longest-run and ODI logic; longer gaps break."""
BASELINE_WINDOW_S = 120.0
BASELINE_MIN_VALID_S = 60.0
EVENT_MIN_S = 10.0
EVENT_MAX_S = 120.0
RESAT_WITHIN_POINTS = 1.0

_BLOCK_ELEMENTS = 1_000_000  # window-block size cap (8 MB of float64) for the event search
_EPS = 1e-9  # tolerance for float comparisons at exact thresholds (e.g. 92 <= 95 - 3)


@dataclass(frozen=True, slots=True)
class OximetryMetrics:
    """Metrics of one oximetry night. Minutes are wall-clock minutes of valid samples.

    ``*_pct`` are percentages of valid recording time (VRT); ``odi3``/``odi4`` are events per
    valid hour. Values are None when undefined (no valid samples).
    """

    night_date: date
    valid: bool
    invalid_reason: str | None
    recording_min: float
    vrt_min: float
    mean_spo2: float | None
    min_spo2: float | None
    t90_pct: float | None
    t90_min: float
    t88_pct: float | None
    t88_min: float
    longest_le88_min: float
    odi3: float | None
    odi4: float | None
    mean_pulse: float | None
    odi3_events: int = 0
    odi4_events: int = 0


def _night_date(night: OximetryNight) -> date:
    """Evening date of the night: start shifted back 12 h, in the timestamp's own UTC offset."""
    return (night.start - timedelta(hours=12)).date()


def _valid_mask(
    spo2: np.ndarray, pulse: np.ndarray, motion: Any, motion_limit: int | None
) -> np.ndarray:
    """Valid samples (DEFINITIONS.md 1.1); NaN (None) compares False, so dropouts drop out."""
    valid = (spo2 >= SPO2_RANGE[0]) & (spo2 <= SPO2_RANGE[1])
    valid &= ~((pulse < PULSE_RANGE[0]) | (pulse > PULSE_RANGE[1]))  # NaN pulse does not void
    if motion_limit is not None and motion is not None:
        valid &= np.asarray(motion, dtype=float) <= motion_limit
    return valid


def _longest_run_s(low_v: np.ndarray, valid_before: np.ndarray, max_gap: int, dt: float) -> float:
    """Longest span (s) of consecutive valid samples <= 88 joined across bridgeable gaps.

    Works on the low samples only (few on most nights): two of them belong to one run when no
    valid sample lies between them (neighbours in valid order) and the gap is bridgeable.
    ``valid_before[i]`` = number of valid samples before sample ``i`` (`_running_sum`).
    """
    pos = np.flatnonzero(low_v)  # positions in valid order
    if pos.size == 0:
        return 0.0
    at = np.searchsorted(valid_before, pos + 1) - 1  # sample index of each
    breaks = np.flatnonzero((np.diff(pos) != 1) | (np.diff(at) > max_gap + 1))
    starts = at[np.concatenate(([0], breaks + 1))]
    ends = at[np.concatenate((breaks, [pos.size - 1]))]
    return float((ends - starts + 1).max()) * dt


def _segments(valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last sample of each segment: valid samples joined across invalid gaps of at
    most ``max_gap`` samples. Built from the gap edges (few), not from every valid sample."""
    edge = np.diff(valid.view(np.int8))
    gap_first = np.flatnonzero(edge < 0) + 1  # valid -> invalid
    gap_last = np.flatnonzero(edge > 0)  # invalid -> valid
    if gap_last.size and (gap_first.size == 0 or gap_last[0] < gap_first[0]):
        gap_last = gap_last[1:]  # invalid samples before the first valid one: not a gap
    gap_first = gap_first[: gap_last.size]  # nor those after the last valid one
    long = gap_last - gap_first + 1 > max_gap
    first, last = int(valid.argmax()), valid.size - 1 - int(valid[::-1].argmax())
    return np.concatenate(([first], gap_last[long] + 1)), np.concatenate((gap_first[long] - 1, [last]))


def _running_sum(x: np.ndarray, dtype: type) -> np.ndarray:
    """``[0, x0, x0 + x1, ...]`` (sequential cumulative sum, in ``dtype``)."""
    run: np.ndarray = np.empty(x.size + 1, dtype=dtype)
    run[0] = 0
    np.cumsum(x, out=run[1:])
    return run


def _window_sum(run: np.ndarray, win: int) -> np.ndarray:
    """Sum over ``[i - win, i)`` for every ``i`` from a `_running_sum`.

    This is how respmon-odi/1 has always computed the baseline (difference of two running
    sums), so the baseline and every threshold decision stay bit for bit the same.
    """
    n = run.size - 1
    out = run[:n].copy()
    if n > win:
        out[win:] -= run[: n - win]
    return out


def _search_pad(s: np.ndarray, valid: np.ndarray, s_int: np.ndarray | None, back: int) -> np.ndarray:
    """Valid SpO2 with ``back`` never-matching samples on each side, for the window searches.

    Whole per cent: uint8 with 0 for invalid samples, 8x fewer bytes to gather than float64
    (for an integer ``s``, ``s >= L`` exactly when ``s >= ceil(L)``). Otherwise float64, NaN.
    """
    n = s.size
    if s_int is None:
        pad = np.full(n + 2 * back, np.nan)
        np.copyto(pad[back : back + n], s, where=valid)
    else:
        pad = np.zeros(n + 2 * back, dtype=np.uint8)
        pad[back : back + n] = s_int  # 0 or 50..100
    return pad


def _nadirs(pad: np.ndarray, valid: np.ndarray, back: int, starts: list[int], ends: list[int]) -> np.ndarray:
    """Lowest valid SpO2 in each ``[start, end)`` (non-overlapping, ascending), one reduceat."""
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2] = starts
    bounds[1::2] = ends
    s = pad[back : pad.size - back]
    if pad.dtype == np.uint8:  # invalid samples (0) must not be the minimum
        return np.minimum.reduceat(np.where(valid, s, np.uint8(255)), bounds)[0::2]
    return np.fmin.reduceat(s, bounds)[0::2]  # fmin ignores the NaN of invalid samples


def _search_level(level: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``level`` in the pad's dtype such that ``pad >= result`` exactly when ``SpO2 >= level``."""
    if dtype == np.uint8:  # >= 1 keeps invalid (0) samples out; baselines are 50..100 anyway
        return np.clip(np.ceil(level), 1, 255).astype(np.uint8)
    return level


def _windows(x: np.ndarray, width: int) -> np.ndarray:
    """Read-only view ``w[i] = x[i : i + width]`` (no copy)."""
    step = x.strides[0]
    return as_strided(x, shape=(x.size - width + 1, width), strides=(step, step), writeable=False)


def _first_hit(hit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: column of the first True, and whether there is one."""
    col = hit.argmax(1)
    return col, hit[np.arange(hit.shape[0]), col]


def _fall_and_resat(
    pad: np.ndarray, trig: np.ndarray, level: np.ndarray, back: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each trigger: the last sample before it and the first after it with SpO2 >= ``level``.

    Both are searched within ``back`` samples (-1: none there) with one gather of windows per
    side, nearest sample first: forward windows from ``pad``, backward ones from ``pad``
    reversed (see `_search_pad`). Blocks are capped for bounded memory.
    """
    m = pad.size
    forward = _windows(pad, back)
    backward = _windows(pad[::-1].copy(), back)
    lv = _search_level(level, pad.dtype)
    last_above = np.empty(trig.size, dtype=np.int64)
    first_resat = np.empty(trig.size, dtype=np.int64)
    chunk = max(1, _BLOCK_ELEMENTS // back)
    for c0 in range(0, trig.size, chunk):
        t, c = trig[c0 : c0 + chunk], slice(c0, c0 + chunk)
        # sample t sits at pad[t + back]: pad[t + back - 1] (just before it) is reversed[m - t - back]
        col, found = _first_hit(backward[m - t - back] >= lv[c, None])
        last_above[c] = np.where(found, t - 1 - col, -1)
        col, found = _first_hit(forward[t + back + 1] >= lv[c, None])
        first_resat[c] = np.where(found, t + 1 + col, -1)
    return last_above, first_resat


@dataclass(slots=True)
class _Runs:
    """Runs of consecutive trigger candidates, as Python lists for the scalar event walk.

    Per run: first and last candidate, segment start and end (exclusive), and the fall start /
    resaturation of its first candidate (the only one that opens an event unless an earlier
    event or discard ends inside the run).
    """

    head: list[int]
    tail: list[int]
    seg_lo: list[int]
    seg_end: list[int]
    last_above: list[int]
    first_resat: list[int]


def _candidate_runs(
    cands: np.ndarray,
    baseline: np.ndarray,
    pad: np.ndarray,
    seg_first: np.ndarray,
    seg_last: np.ndarray,
    back: int,
) -> _Runs:
    """Group candidates into runs and search the fall start / resaturation of each run's head."""
    brk = np.flatnonzero(np.diff(cands) > 1)
    head = cands[np.concatenate(([0], brk + 1))]
    tail = cands[np.concatenate((brk, [cands.size - 1]))]
    level = baseline[head] - RESAT_WITHIN_POINTS - _EPS
    last_above, first_resat = _fall_and_resat(pad, head, level, back)
    seg = np.searchsorted(seg_first, head, side="right") - 1  # a run never spans a gap
    return _Runs(
        head.tolist(), tail.tolist(), seg_first[seg].tolist(), (seg_last[seg] + 1).tolist(),
        last_above.tolist(), first_resat.tolist(),
    )


def _search_one(pad: np.ndarray, i: int, level: float, back: int) -> tuple[int, int]:
    """`_fall_and_resat` for one trigger (same result, slice search; sample j is pad[j + back])."""
    lv = _search_level(np.array([level]), pad.dtype)[0]
    above = np.flatnonzero(pad[i : i + back] >= lv)
    resat = np.flatnonzero(pad[i + back + 1 : i + 2 * back + 1] >= lv)
    return (i - back + int(above[-1]) if above.size else -1), (i + 1 + int(resat[0]) if resat.size else -1)


def _walk_events(
    runs: _Runs, pad: np.ndarray, baseline: np.ndarray, valid: np.ndarray, back: int, dt: float
) -> tuple[list[int], list[int], list[int]]:
    """Scan forward event by event (no overlap): (trigger, start, end) of every counted event.

    The sequential part of respmon-odi/1: where scanning resumes depends on the previous event,
    and the fall-start search is clipped at the previous event's end. Scalar work per event.
    """
    head, tail, seg_lo, seg_end = runs.head, runs.tail, runs.seg_lo, runs.seg_end
    is_valid = valid.item
    trig: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    n_runs = len(head)
    pos = k = 0
    while True:
        k = bisect.bisect_left(tail, pos, k)  # first run not wholly before pos
        if k >= n_runs:
            return trig, starts, ends
        i = head[k]
        if pos <= i:
            la, end = runs.last_above[k], runs.first_resat[k]
        else:  # pos is inside the run: pos itself is the next candidate
            i = pos
            la, end = _search_one(pad, i, baseline.item(i) - RESAT_WITHIN_POINTS - _EPS, back)
        # fall start: first valid sample after the last one still within 1 point of Bf,
        # searched back no further than 120 s, the segment start or the previous event end
        lo = max(seg_lo[k], i - back, pos)
        q = la + 1 if la >= lo else lo
        if q >= i:
            start = i
        elif is_valid(q):  # the usual case
            start = q
        else:  # q falls in a bridged gap: first valid sample after it (i is valid)
            start = q + int(valid[q : i + 1].argmax())
        hi = min(seg_end[k], start + back + 1)
        if end < 0 or end >= hi:
            # no resaturation within 120 s of the start, or a > 10 s gap cut the event: discard
            pos = max(hi, i + 1)
            continue
        if (end - start) * dt >= EVENT_MIN_S - _EPS:
            trig.append(i)
            starts.append(start)
            ends.append(end)
        pos = end


def _baseline(s: np.ndarray, valid: np.ndarray, valid_before: np.ndarray, dt: float
              ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The night in whole per cent (None when it is not one), each sample's frozen baseline, and the
    candidate samples (valid, >= 3 points below their baseline)."""
    # Baseline: mean of valid samples in [t - 120 s, t), needs >= 60 s of valid samples.
    # Whole per cent (what oximeters report): window sums in int32 are exact, so they equal the
    # float running sums bit for bit (every partial sum is an exact integer) at a third of the cost.
    win = round(BASELINE_WINDOW_S / dt)
    s_zero = np.where(valid, s, 0.0)
    whole = s_zero.astype(np.int32)  # 0 or 50..100: no overflow (n <= 200,000)
    s_int: np.ndarray | None = None
    if np.array_equal(whole, s_zero):
        s_int = whole
        w_sum = _window_sum(_running_sum(s_int, np.int32), win)
        del s_zero
    else:
        del whole  # not whole per cent: no integer shortcuts
        w_sum = _window_sum(_running_sum(s_zero, np.float64), win)
    w_cnt = _window_sum(valid_before, win)
    ok = valid & (w_cnt >= math.ceil(BASELINE_MIN_VALID_S / dt - _EPS))
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = w_sum / w_cnt  # float64; NaN/inf where the window is empty, only used where ok
        cands = np.flatnonzero(ok & (baseline - s >= 3.0 - _EPS))  # ok: valid samples only
    return s_int, baseline, cands


def _events(s: np.ndarray, valid: np.ndarray, s_int: np.ndarray | None, baseline: np.ndarray, cands: np.ndarray,
            seg_first: np.ndarray, seg_last: np.ndarray, dt: float
            ) -> tuple[list[int], list[int], list[int], np.ndarray]:
    """The ODI3 events (``respmon-odi/1``): their triggering candidate, first and end sample, and nadir.

    A candidate's fall start and resaturation depend only on its own frozen baseline, so they
    are searched with numpy for the first candidate of every run of consecutive candidates
    (the ones that open events in practice); the walk then places events one by one with
    scalar work; the nadirs are one ``reduceat`` over all events, which never overlap. ``s_int``:
    the night in whole per cent (0 where invalid) when it is one, for the uint8 search.
    """
    if cands.size == 0:
        return [], [], [], np.empty(0)
    back = math.floor(EVENT_MAX_S / dt + _EPS)  # samples an event may span
    pad = _search_pad(s, valid, s_int, back)
    runs = _candidate_runs(cands, baseline, pad, seg_first, seg_last, back)
    trig, starts, ends = _walk_events(runs, pad, baseline, valid, back, dt)
    if not trig:
        return [], [], [], np.empty(0)
    return trig, starts, ends, _nadirs(pad, valid, back, starts, ends)


def _desaturation_events(
    s: np.ndarray,
    valid: np.ndarray,
    s_int: np.ndarray | None,
    baseline: np.ndarray,
    cands: np.ndarray,
    seg_first: np.ndarray,
    seg_last: np.ndarray,
    dt: float,
) -> tuple[int, int]:
    """Count ODI3 and ODI4 events (``respmon-odi/1``): ODI4 counts the ODI3 events whose nadir is
    >= 4 points below their frozen baseline, so ODI4 <= ODI3."""
    trig, _, _, nadirs = _events(s, valid, s_int, baseline, cands, seg_first, seg_last, dt)
    if not trig:
        return 0, 0
    deep = nadirs <= baseline[trig] - 4.0 + _EPS
    return len(trig), int(np.count_nonzero(deep))


@dataclass(frozen=True)
class DesaturationEvent:
    """One counted ODI3 event (respmon-odi/1): sample offsets [start, end), its nadir and frozen baseline."""

    start: int
    end: int
    nadir: float
    baseline: float


def desaturation_events(spo2: np.ndarray, pulse: np.ndarray, interval_s: float) -> list[DesaturationEvent]:
    """Where the night's ODI3 events are (the night view marks them): `night_metrics` only counts them.
    The same steps as `night_metrics` (`_baseline`, `_events`), so the count equals its `odi3_events`
    (tested). Motion ignored, as `night_metrics` does by default."""
    s, p = np.asarray(spo2, dtype=float), np.asarray(pulse, dtype=float)
    valid = _valid_mask(s, p, None, None)
    if not valid.any():
        return []
    valid_before = _running_sum(valid, np.int32)
    seg_first, seg_last = _segments(valid, math.floor(RUN_GAP_BRIDGE_S / interval_s + _EPS))
    s_int, baseline, cands = _baseline(s, valid, valid_before, interval_s)
    trig, starts, ends, nadirs = _events(s, valid, s_int, baseline, cands, seg_first, seg_last, interval_s)
    return [DesaturationEvent(a, b, float(n), float(baseline[t]))
            for a, b, n, t in zip(starts, ends, nadirs, trig, strict=True)]


def samples(night: OximetryNight) -> tuple[np.ndarray, np.ndarray]:
    """SpO2 and pulse as the record holds them: read-only float64 arrays, NaN for no reading (no
    conversion, no copy: the record's series are arrays, `schemas.samples`)."""
    return series_array(night.spo2), series_array(night.pulse)


def night_metrics(
    night: OximetryNight, min_valid_hours: float = 4.0, *, motion_limit: int | None = None
) -> OximetryMetrics:
    """Compute the metrics of one oximetry night (definitions: ``DEFINITIONS.md``).

    The record's series are numpy arrays already (`samples`): nothing is converted.

    :param night: canonical night; ``None`` samples are dropouts.
    :param min_valid_hours: VRT needed for ``valid`` (4 h for trend use; CMS uses 2 h).
    :param motion_limit: when set and the night carries ``motion``, samples whose motion value
        exceeds it are artefacts. Default: motion is ignored.
    """
    dt = float(night.interval_s)
    s, p = samples(night)
    n = s.size
    valid = _valid_mask(s, p, None if night.motion is None else series_array(night.motion), motion_limit)
    valid_before = _running_sum(valid, np.int32)  # exact: n <= 200,000
    n_valid = int(valid_before[-1])
    recording_min = n * dt / 60.0
    vrt_min = n_valid * dt / 60.0
    valid_night = vrt_min >= min_valid_hours * 60.0 - _EPS
    reason = None
    if not valid_night:
        reason = (
            "no valid samples"
            if n_valid == 0
            else f"valid recording time {vrt_min:.1f} min is below the {min_valid_hours:g} h minimum"
        )
    night_date = _night_date(night)
    if n_valid == 0:
        return OximetryMetrics(
            night_date=night_date, valid=False, invalid_reason=reason, recording_min=recording_min,
            vrt_min=0.0, mean_spo2=None, min_spo2=None, t90_pct=None, t90_min=0.0, t88_pct=None,
            t88_min=0.0, longest_le88_min=0.0, odi3=None, odi4=None, mean_pulse=None,
        )

    sv = s[valid]
    low_v = sv <= 88.0
    minutes_per_sample = dt / 60.0
    t90_min = int(np.count_nonzero(sv < 90.0)) * minutes_per_sample
    t88_min = int(np.count_nonzero(low_v)) * minutes_per_sample
    has_pulse = valid & ~np.isnan(p)
    n_pulse = int(np.count_nonzero(has_pulse))
    mean_pulse = float(np.sum(p, where=has_pulse)) / n_pulse if n_pulse else None
    del p, has_pulse  # keep the working set small (it is cache-bound on a busy machine)

    # Segments: consecutive valid samples separated by an invalid gap > 10 s start a new one.
    max_gap = math.floor(RUN_GAP_BRIDGE_S / dt + _EPS)  # invalid samples a bridge may span
    longest_s = _longest_run_s(low_v, valid_before, max_gap, dt)
    seg_first, seg_last = _segments(valid, max_gap)

    s_int, baseline, cands = _baseline(s, valid, valid_before, dt)
    counts = _desaturation_events(s, valid, s_int, baseline, cands, seg_first, seg_last, dt)
    valid_hours = n_valid * dt / 3600.0
    return OximetryMetrics(
        night_date=night_date,
        valid=bool(valid_night),
        invalid_reason=reason,
        recording_min=recording_min,
        vrt_min=vrt_min,
        mean_spo2=float(sv.mean()),
        min_spo2=float(sv.min()),
        t90_pct=100.0 * t90_min / vrt_min,
        t90_min=t90_min,
        t88_pct=100.0 * t88_min / vrt_min,
        t88_min=t88_min,
        longest_le88_min=longest_s / 60.0,
        odi3=counts[0] / valid_hours,
        odi4=counts[1] / valid_hours,
        mean_pulse=mean_pulse,
        odi3_events=counts[0],
        odi4_events=counts[1],
    )
