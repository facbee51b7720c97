"""The one Settings object: what an operator may write in the environment, and what each service gets."""

import pytest
from pydantic import ValidationError

from respmon.core.settings import Settings


@pytest.mark.parametrize(("written", "level", "faust"), [
    ("warning", "WARNING", "warn"), ("INFO", "INFO", "info"), ("Critical", "CRITICAL", "crit"),
    ("debug", "DEBUG", "debug"), ("ERROR", "ERROR", "error"),
])
def test_log_level_in_any_case_reaches_faust_in_its_spelling(monkeypatch: pytest.MonkeyPatch, written: str,
                                                            level: str, faust: str) -> None:
    monkeypatch.setenv("RESPMON_LOG_LEVEL", written)
    settings = Settings()
    assert settings.log_level == level
    assert settings.faust_log_level == faust


def test_unknown_log_level_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPMON_LOG_LEVEL", "loud")
    with pytest.raises(ValidationError, match="log_level"):
        Settings()


def test_worker_batch_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESPMON_WORKER_BATCH_MAX", "0")
    with pytest.raises(ValidationError, match="worker_batch_max"):
        Settings()
