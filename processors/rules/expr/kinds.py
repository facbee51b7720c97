"""The record kinds an expression names (``spiro``, ``oxi``, ...) and the type of each field.

One declaration, :data:`KINDS`, kept apart so it can be derived from the canonical records later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from processors.rules.expr.types import BOOL, NUM, STR

__all__ = ["KINDS", "KindSpec"]


@dataclass(frozen=True)
class KindSpec:
    name: str
    family: str
    """Kinds of one family join on their row key (nights join on night_date)."""
    fields: Mapping[str, str]
    doc: str


KINDS: dict[str, KindSpec] = {
    "spiro": KindSpec(
        "spiro",
        "session",
        {
            "fvc_l": NUM, "fvc_pct_pred": NUM, "svc_l": NUM, "svc_pct_pred": NUM, "fev1_l": NUM,
            "vc_l": NUM, "vc_pct_pred": NUM, "mip_cmh2o": NUM, "mep_cmh2o": NUM, "snip_cmh2o": NUM,
            "pcf_unassisted_lpm": NUM, "pcf_assisted_lpm": NUM, "grade": STR, "usable": BOOL,
            "supine_drop_pct": NUM, "pct_pred_not_computable": BOOL, "fvc_pct_pred_source": STR,
        },
        "sitting spirometry / respiratory-muscle sessions (valid = usable grade)",
    ),
    "supine": KindSpec(
        "supine",
        "supine",
        {"fvc_l": NUM, "fvc_pct_pred": NUM, "svc_l": NUM, "vc_l": NUM, "grade": STR, "usable": BOOL},
        "supine spirometry sessions",
    ),
    "oxi": KindSpec(
        "oxi",
        "night",
        {
            "valid": BOOL, "recording_min": NUM, "vrt_min": NUM, "mean_spo2": NUM, "min_spo2": NUM,
            "t90_pct": NUM, "t90_min": NUM, "t88_pct": NUM, "t88_min": NUM, "longest_le88_min": NUM,
            "odi3": NUM, "odi4": NUM, "mean_pulse": NUM, "on_o2": BOOL, "under_niv": BOOL,
            "invalid_reason": STR,
        },
        "overnight oximetry nights (valid = valid recording time >= 4 h)",
    ),
    "niv": KindSpec(
        "niv",
        "night",
        {
            "usage_hours": NUM, "leak_p95_lpm": NUM, "leak_kind": STR, "ahi": NUM, "resp_rate": NUM,
            "tidal_volume_ml": NUM, "minute_vent_lpm": NUM, "spo2_mean": NUM, "spo2_t90_pct": NUM,
            "pct_spont_triggered": NUM,
        },
        "NIV device nights (noon to noon)",
    ),
    "alsfrs": KindSpec(
        "alsfrs",
        "form",
        {"total": NUM, "bulbar": NUM, "respiratory": NUM},
        "ALSFRS-R questionnaires; alsfrs.item(n) is item n (1-12)",
    ),
}

