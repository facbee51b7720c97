"""The night view: one night's SpO2 and pulse from the stored per-minute arrays, the 88 % and 90 % lines,
the ODI3 desaturation events (found by the metrics' own steps on the raw samples), the night's metrics and
the same night's NIV summary; and `signal.json`, the raw samples of a window, which `static/charts.js`
fetches when the reader zooms in under half an hour (the chart never loads the raw night otherwise).
"""

import json
import math
from datetime import date, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import Markup

from respmon.queries import charts as q
from respmon.web.auth import Person
from respmon.web.context import Web
from respmon.web.render import page

MAX_WINDOW_S = 4 * 3600
"""The widest window `signal.json` answers: 4 h of 1 s samples is 14,400 points per series."""
RAW_BELOW_S = 30 * 60
"""charts.js asks for the raw samples once the zoomed window is narrower than this."""
SPO2_LINES = (88.0, 90.0)
"""The levels of T88 and T90 (`processors/metrics/DEFINITIONS.md`), drawn on the SpO2 chart."""


def tenths(values: np.ndarray, digits: int = 1) -> list[float | None]:
    """A float array as JSON numbers, None for NaN."""
    return [None if math.isnan(v) else round(v, digits) for v in values.tolist()]


def events_of(conn: Any, patient_id: str, night: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The night's ODI3 events with their times, None when its raw samples are not stored."""
    signal = q.raw_signal(conn, patient_id, night["start_at"], night["source"])
    if signal is None:
        return None
    step = float(signal["interval_s"])
    t0 = night["start_at"].timestamp()
    return [{"start": t0 + e.start * step, "end": t0 + e.end * step, "seconds": (e.end - e.start) * step,
             "nadir": e.nadir, "baseline": e.baseline,
             "at": datetime.fromtimestamp(t0 + e.start * step, night["start_at"].tzinfo)}
            for e in q.desaturation_events(signal["spo2"], signal["pulse"], step)]


def night_json(night: dict[str, Any], minutes: dict[str, Any] | None, events: list[dict[str, Any]] | None,
               signal_url: str) -> Markup:
    """The JSON block charts.js reads: per-minute columns from `start` at 60 s steps, events, lines."""
    data: dict[str, Any] = {"start": int(night["start_at"].timestamp()), "step": 60, "lines": list(SPO2_LINES),
                            "rawBelow": RAW_BELOW_S, "signal": signal_url,
                            "events": [[round(e["start"]), round(e["end"])] for e in events or []]}
    if minutes is not None:
        data.update(spo2_min=tenths(minutes["spo2_min"]), spo2_mean=tenths(minutes["spo2_mean"]),
                    spo2_max=tenths(minutes["spo2_max"]), pulse=tenths(minutes["pulse_mean"]))
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def night_view(conn: Any, patient_id: str, night_date: date, source: str | None) -> dict[str, Any]:
    oxi = q.oximetry_night(conn, patient_id, night_date, source)
    niv = q.niv_night(conn, patient_id, night_date)
    if oxi is None and niv is None:
        raise HTTPException(404, "no night recorded on that date")
    minutes = events = None
    if oxi is not None:
        minutes = q.night_minutes(conn, patient_id, oxi["start_at"], oxi["source"])
        events = events_of(conn, patient_id, oxi)
    base = f"/patients/{patient_id}/nights/{night_date.isoformat()}"
    signal_url = f"{base}/signal.json" + (f"?source={oxi['source']}" if oxi is not None else "")
    return {"patient_id": patient_id, "night_date": night_date, "oxi": oxi, "niv": niv, "minutes": minutes,
            "events": events, "night_data": night_json(oxi, minutes, events, signal_url) if oxi else None}


def window(conn: Any, patient_id: str, night_date: date, source: str | None, lo: float, hi: float) -> dict[str, Any]:
    oxi = q.oximetry_night(conn, patient_id, night_date, source)
    if oxi is None:
        raise HTTPException(404, "no oximetry night recorded on that date")
    samples = q.signal_window(conn, patient_id, oxi["start_at"], oxi["source"], lo, hi)
    if samples is None:
        raise HTTPException(404, "the night's samples are not stored")
    first = float(samples["t"][0]) if len(samples["t"]) else lo
    return {"start": round(first, 3), "step": samples["interval_s"], "spo2": tenths(samples["spo2"]),
            "pulse": tenths(samples["pulse"])}


def night_routes(web: Web) -> APIRouter:
    router = APIRouter()

    @router.get("/patients/{patient_id}/nights/{night_date}", response_class=HTMLResponse)
    def night_page(request: Request, patient_id: str, night_date: date, who: Annotated[Person, Depends(web.person)],
                   source: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
        with web.reading(request, who, "night_view", patient_id) as conn:
            view = night_view(conn, patient_id, night_date, source)
        return page(request, "night.html", who, f"Night {night_date.isoformat()} · {patient_id}", **view)

    @router.get("/patients/{patient_id}/nights/{night_date}/signal.json")
    def night_signal(request: Request, patient_id: str, night_date: date, who: Annotated[Person, Depends(web.person)],
                     lo: Annotated[float, Query(alias="from")], hi: Annotated[float, Query(alias="to")],
                     source: Annotated[str | None, Query(max_length=64)] = None) -> JSONResponse:
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or hi - lo > MAX_WINDOW_S:
            raise HTTPException(422, f"`to` must be after `from` and at most {MAX_WINDOW_S} s later")
        with web.reading(request, who, "night_signal", patient_id) as conn:
            body = window(conn, patient_id, night_date, source, lo, hi)
        return JSONResponse(body, headers={"Cache-Control": "private, no-store"})

    return router
