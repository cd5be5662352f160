"""Configuration from the environment: defaults that work, and errors that name the variable."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.settings import (
    DEFAULT_START_DATE,
    REPO_ROOT,
    ConfigError,
    IngestSettings,
    RateLimitSettings,
    data_dir_from_env,
    start_date_from_env,
)


def test_defaults_need_no_environment() -> None:
    assert IngestSettings.from_env({}) == IngestSettings()
    assert start_date_from_env({}) == DEFAULT_START_DATE
    assert data_dir_from_env({}) == REPO_ROOT / "data"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNCTERA_MAX_AGE": "-1"}, "SYNCTERA_MAX_AGE must be at least 0"),
        ({"SYNCTERA_MAX_AGE": "ten"}, "SYNCTERA_MAX_AGE must be an integer"),
        ({"SYNCTERA_ACCOUNT_CONCURRENCY": "0"}, "SYNCTERA_ACCOUNT_CONCURRENCY must be at least 1"),
        ({"SYNCTERA_INCLUDE_HISTORY": "maybe"}, "SYNCTERA_INCLUDE_HISTORY must be true or false"),
        ({"SYNCTERA_BALANCE_ERROR_THRESHOLD": "1.5"}, "between 0.0 and 1.0"),
        ({"SYNCTERA_MAX_LISTING_PAGES": "0"}, "SYNCTERA_MAX_LISTING_PAGES must be at least 1"),
        ({"SYNCTERA_PROGRESS_SECONDS": "0"}, "SYNCTERA_PROGRESS_SECONDS must be at least 0.01"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IngestSettings.from_env(env)


def test_start_date_must_be_a_past_date() -> None:
    today = dt.date(2026, 11, 23)
    assert start_date_from_env({"SYNCTERA_START_DATE": "2026-01-01"}, today=today) == dt.date(2026, 1, 1)
    with pytest.raises(ConfigError, match="not in the past"):
        start_date_from_env({"SYNCTERA_START_DATE": "2026-11-23"}, today=today)
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        start_date_from_env({"SYNCTERA_START_DATE": "23/11/2026"}, today=today)


def test_a_relative_data_dir_is_taken_from_the_repository_not_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir("/")
    assert data_dir_from_env({"SYNCTERA_DATA_DIR": "lake"}) == REPO_ROOT / "lake"
    assert data_dir_from_env({"SYNCTERA_DATA_DIR": "/srv/lake"}).as_posix() == "/srv/lake"


def test_the_request_budget_settings() -> None:
    assert RateLimitSettings.from_env({}) == RateLimitSettings(requests_per_second=None, redis=False)
    assert RateLimitSettings.from_env({"SYNCTERA_REQUESTS_PER_SECOND": "0"}).requests_per_second is None
    shared = RateLimitSettings.from_env(
        {
            "SYNCTERA_REQUESTS_PER_SECOND": "12.5",
            "SYNCTERA_RATE_LIMIT_REDIS_URL": "rediss://user:s3cret@redis.internal:6380/1",
            "SYNCTERA_RATE_LIMIT_NAME": "key-2",
        }
    )
    assert shared == RateLimitSettings(requests_per_second=12.5, redis=True, name="key-2")
    assert "s3cret" not in repr(shared)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SYNCTERA_REQUESTS_PER_SECOND": "-1"}, "SYNCTERA_REQUESTS_PER_SECOND must be at least 0"),
        ({"SYNCTERA_RATE_LIMIT_REDIS_URL": "redis://127.0.0.1"}, "SYNCTERA_REQUESTS_PER_SECOND is not"),
        (
            {"SYNCTERA_REQUESTS_PER_SECOND": "5", "SYNCTERA_RATE_LIMIT_REDIS_URL": "http://:s3cret@host"},
            "must be a redis://, rediss:// or unix:// URL$",
        ),
        ({"SYNCTERA_RATE_LIMIT_NAME": "a b"}, "SYNCTERA_RATE_LIMIT_NAME must be 1 to 64 letters"),
    ],
)
def test_bad_budget_settings_name_the_variable_never_the_url(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RateLimitSettings.from_env(env)
