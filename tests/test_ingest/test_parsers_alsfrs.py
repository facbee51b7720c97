"""ALSFRS-R JSON: items list or item_1..item_12 keys."""

from __future__ import annotations

import json

import pytest
from ingest_testlib import SYN

from ingest.parsers import ParseError, parse_bytes
from schemas import AlsfrsR


def test_items_list() -> None:
    (form,) = parse_bytes((SYN / "alsfrs.json").read_bytes(), "alsfrs.json")
    assert isinstance(form, AlsfrsR)
    assert form.total == 38 and form.respiratory == 9 and form.item(10) == 2  # dyspnoea item


def test_flat_items_and_decline() -> None:
    (earlier,) = parse_bytes((SYN / "alsfrs_flat.json").read_bytes(), "alsfrs_flat.json")
    (later,) = parse_bytes((SYN / "alsfrs.json").read_bytes(), "alsfrs.json")
    assert earlier.total == 43 and earlier.taken_at < later.taken_at
    assert later.total - earlier.total == -5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"items": [4] * 11}, r"field items: List should have at least 12 items"),
        ({"items": [4] * 11 + [7]}, r"field items: Value error, item 12 must be scored 0-4"),
        ({"items": None, "item_1": 4}, r"give either 'items' or 'item_1'"),
        ({"patient_id": "Jane Doe"}, r"field patient_id: String should match pattern"),
    ],
)
def test_errors(change: dict, message: str) -> None:
    doc = json.loads((SYN / "alsfrs.json").read_text()) | change
    if doc.get("items") is None and "item_1" not in change:
        doc.pop("items")
    with pytest.raises(ParseError, match=message):
        parse_bytes(json.dumps(doc).encode(), "a.json", fmt="alsfrs_json")


def test_flat_style_missing_item() -> None:
    doc = json.loads((SYN / "alsfrs_flat.json").read_text())
    del doc["item_7"]
    with pytest.raises(ParseError, match=r"^a\.json: field item_7: missing$"):
        parse_bytes(json.dumps(doc).encode(), "a.json")


@pytest.mark.parametrize("score", [True, False])
def test_boolean_score_is_refused(score: bool) -> None:
    doc = json.loads((SYN / "alsfrs_flat.json").read_text()) | {"item_3": score}  # `true` was scored 1
    with pytest.raises(ParseError, match=r"^a\.json: field items\.2: Value error, must be a number, not true/false$"):
        parse_bytes(json.dumps(doc).encode(), "a.json")


def test_score_error_does_not_quote_the_score() -> None:
    doc = json.loads((SYN / "alsfrs.json").read_text()) | {"items": [4] * 11 + [987654]}
    with pytest.raises(ParseError) as err:
        parse_bytes(json.dumps(doc).encode(), "a.json")
    assert "987654" not in str(err.value)
