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
from numpy.lib.stride_tricks import sliding_window_view

from schemas.oximetry import OximetryNight

__all__ = [
    "BASELINE_MIN_VALID_S",
    "BASELINE_WINDOW_S",
    "EVENT_MAX_S",
    "EVENT_MIN_S",
    "ODI_DEFINITION",
    "OximetryMetrics",
    "PULSE_RANGE",
    "RESAT_WITHIN_POINTS",
    "RUN_GAP_BRIDGE_S",
    "SPO2_RANGE",
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
    with np.errstate(invalid="ignore"):
        valid = (spo2 >= SPO2_RANGE[0]) & (spo2 <= SPO2_RANGE[1])  # NaN (None) -> False
        pulse_bad = (pulse < PULSE_RANGE[0]) | (pulse > PULSE_RANGE[1])  # NaN -> False
    valid &= ~pulse_bad
    if motion_limit is not None and motion is not None:
        valid &= np.asarray(motion, dtype=float) <= motion_limit
    return valid


def _longest_run_s(values_v: np.ndarray, idx_v: np.ndarray, joinable: np.ndarray, dt: float) -> float:
    """Longest span (s) of consecutive valid samples <= 88 joined across bridgeable gaps."""
    low = values_v <= 88.0
    if not low.any():
        return 0.0
    cont = low[:-1] & low[1:] & joinable
    prev_join = np.concatenate(([False], cont))
    next_join = np.concatenate((cont, [False]))
    starts = idx_v[low & ~prev_join]
    ends = idx_v[low & ~next_join]
    return float((ends - starts + 1).max()) * dt


def _desaturation_events(
    s_nan: np.ndarray,
    baseline: np.ndarray,
    drop: np.ndarray,
    idx_v: np.ndarray,
    seg_first: np.ndarray,
    seg_last: np.ndarray,
    dt: float,
) -> tuple[int, int]:
    """Count ODI3 and ODI4 events (``respmon-odi/1``).

    A trigger candidate's resaturation point and fall start depend only on its own frozen
    baseline, so for the candidates that can open an event in practice (the first sample of
    each run of consecutive candidates) they are found all at once over 120 s windows with
    numpy. The loop then walks events one by one (non-overlap, clipping) with scalar work,
    falling back to a per-event slice search for the rare candidate inside a run. ODI4 counts
    the ODI3 events whose nadir is >= 4 points below their frozen baseline (nested: ODI4 <= ODI3).
    """
    cands = np.flatnonzero(drop >= 3.0 - _EPS)
    if cands.size == 0:
        return 0, 0
    n = s_nan.size
    back = int(math.floor(EVENT_MAX_S / dt + _EPS))  # samples an event may span
    level = baseline[cands] - RESAT_WITHIN_POINTS - _EPS
    head = np.ones(cands.size, dtype=bool)  # first candidate of each run of candidates
    head[1:] = np.diff(cands) > 1
    heads = np.flatnonzero(head)
    last_above = np.full(cands.size, -2, dtype=np.int64)  # -2: not computed yet
    first_resat = np.full(cands.size, -2, dtype=np.int64)
    pad = np.full(n + 2 * back, np.nan)
    pad[back : back + n] = s_nan
    win = sliding_window_view(pad, back)  # win[i] = s[i-back:i]; win[i+1+back] = s[i+1:i+1+back]
    chunk = max(1, _BLOCK_ELEMENTS // back)  # bounded memory on nights that sit below baseline
    for c0 in range(0, heads.size, chunk):
        h = heads[c0 : c0 + chunk]
        ci = cands[h]
        lv = level[h, None]
        b = win[ci] >= lv
        last_above[h] = np.where(b.any(1), ci - 1 - b[:, ::-1].argmax(1), -1)
        f = win[ci + 1 + back] >= lv
        first_resat[h] = np.where(f.any(1), ci + 1 + f.argmax(1), -1)
    seg = np.searchsorted(seg_first, cands, side="right") - 1
    lo_u = np.maximum(seg_first[seg], cands - back)
    seg_end = seg_last[seg] + 1
    cand_l, lo_l, end_l, lvl_l = cands.tolist(), lo_u.tolist(), seg_end.tolist(), level.tolist()
    la_l, rs_l = last_above.tolist(), first_resat.tolist()
    base_l = baseline[cands].tolist()
    s_l = s_nan.item

    def fill(k: int) -> None:  # the slice search for one candidate (same result as the block)
        i, lv = cand_l[k], lvl_l[k]
        above = np.flatnonzero(s_nan[max(i - back, 0) : i] >= lv)
        la_l[k] = max(i - back, 0) + int(above[-1]) if above.size else -1
        resat = np.flatnonzero(s_nan[i + 1 : i + 1 + back] >= lv)
        rs_l[k] = i + 1 + int(resat[0]) if resat.size else -1

    s_inf = np.where(np.isnan(s_nan), np.inf, s_nan)

    def walk() -> tuple[int, int]:
        cand = cand_l
        events = events4 = 0
        pos = 0
        while True:
            k = bisect.bisect_left(cand, pos)
            if k >= len(cand):
                return events, events4
            i = cand_l[k]
            if rs_l[k] == -2:
                fill(k)
            # fall start: first valid sample after the last one still within 1 point of Bf,
            # searched back no further than 120 s, the segment start or the previous event end
            lo = max(lo_l[k], pos)
            q = la_l[k] + 1 if la_l[k] >= lo else lo
            if q >= i:
                start = i
            elif s_l(q) == s_l(q):  # q is valid (not NaN): the usual case
                start = q
            else:  # q falls in a bridged gap: first valid sample after it
                start = int(idx_v[np.searchsorted(idx_v, q)])
            hi = min(end_l[k], start + back + 1)
            end = rs_l[k]
            if end < 0 or end >= hi:
                # no resaturation within 120 s of the start, or a > 10 s gap cut the event: discard
                pos = max(hi, i + 1)
                continue
            if (end - start) * dt >= EVENT_MIN_S - _EPS:
                events += 1
                if float(s_inf[start:end].min()) <= base_l[k] - 4.0 + _EPS:
                    events4 += 1  # nadir at least 4 points below the frozen baseline
            pos = end

    return walk()


def night_metrics(
    night: OximetryNight, min_valid_hours: float = 4.0, *, motion_limit: int | None = None
) -> OximetryMetrics:
    """Compute the metrics of one oximetry night (definitions: ``DEFINITIONS.md``).

    :param night: canonical night; ``None`` samples are dropouts.
    :param min_valid_hours: VRT needed for ``valid`` (4 h for trend use; CMS uses 2 h).
    :param motion_limit: when set and the night carries ``motion``, samples whose motion value
        exceeds it are artefacts. Default: motion is ignored.
    """
    dt = float(night.interval_s)
    n = len(night.spo2)
    s = np.array(night.spo2, dtype=float)
    p = np.array(night.pulse, dtype=float)
    valid = _valid_mask(s, p, night.motion, motion_limit)
    idx_v = np.flatnonzero(valid)
    n_valid = idx_v.size
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
    minutes_per_sample = dt / 60.0
    t90_min = int(np.count_nonzero(sv < 90.0)) * minutes_per_sample
    t88_min = int(np.count_nonzero(sv <= 88.0)) * minutes_per_sample
    has_pulse = valid & ~np.isnan(p)
    n_pulse = int(np.count_nonzero(has_pulse))
    mean_pulse = float(np.sum(p, where=has_pulse)) / n_pulse if n_pulse else None

    # Segments: consecutive valid samples separated by an invalid gap > 10 s start a new one.
    max_gap = int(math.floor(RUN_GAP_BRIDGE_S / dt + _EPS))  # invalid samples a bridge may span
    joinable = np.diff(idx_v) <= max_gap + 1
    longest_s = _longest_run_s(sv, idx_v, joinable, dt)

    seg_break = np.flatnonzero(~joinable)
    seg_first = idx_v[np.concatenate(([0], seg_break + 1))]
    seg_last = idx_v[np.concatenate((seg_break, [n_valid - 1]))]

    # Baseline: mean of valid samples in [t - 120 s, t), needs >= 60 s of valid samples.
    win = int(round(BASELINE_WINDOW_S / dt))
    s_nan = np.where(valid, s, np.nan)
    csum = np.zeros(n + 1)
    np.cumsum(np.where(valid, s, 0.0), out=csum[1:])
    ccnt = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(valid, out=ccnt[1:])
    w_sum = csum[:n].copy()  # sum over [i - win, i) = csum[i] - csum[max(i - win, 0)]
    w_sum[win:] -= csum[: n - win] if n > win else 0.0
    w_cnt = ccnt[:n].copy()
    w_cnt[win:] -= ccnt[: n - win] if n > win else 0
    ok = valid & (w_cnt >= math.ceil(BASELINE_MIN_VALID_S / dt - _EPS))
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = w_sum / w_cnt
        drop = np.where(ok, baseline - s_nan, -np.inf)

    counts = _desaturation_events(s_nan, baseline, drop, idx_v, seg_first, seg_last, dt)
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
