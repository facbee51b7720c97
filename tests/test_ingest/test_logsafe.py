"""Device-supplied text in logs: printable ASCII only, escaped like repr, cut short (issue 13)."""

from hypothesis import given
from hypothesis import strategies as st

from ingest.logsafe import LIMIT, device_text


def test_plain_names_are_kept() -> None:
    assert device_text("O2Ring_20260308223000.csv") == "O2Ring_20260308223000.csv"


def test_controls_and_non_ascii_are_escaped() -> None:
    assert device_text('a\nb\r\x00"é€\U0001f600\\') == 'a\\nb\\r\\x00"\\xe9\\u20ac\\U0001f600\\\\'


def test_long_text_is_cut_with_a_mark() -> None:
    cut = device_text("x" * 1000 + "PATIENT-42")
    assert len(cut) == LIMIT and cut.endswith("...") and "PATIENT" not in cut
    assert device_text("x" * LIMIT) == "x" * LIMIT


def test_an_escape_is_never_cut_in_half() -> None:
    assert device_text("\x01" * 40) == "\\x01" * 15 + "..."


@given(st.text())
def test_always_short_printable_ascii(text: str) -> None:
    out = device_text(text)
    assert len(out) <= LIMIT and all(" " <= ch <= "~" for ch in out)
