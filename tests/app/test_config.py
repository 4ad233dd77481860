"""app.core.config: settings that cannot be what was meant refuse to start."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.core.config import Settings
from tests.app.conftest import ROOT


@pytest.mark.parametrize("value", [",", " , ", ",,", " ,\t, "])
def test_api_keys_set_without_a_key_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEYS", value)
    with pytest.raises(ValidationError, match="CONVEYOR_API_KEYS is set but holds no key"):
        Settings()
    with pytest.raises(ValidationError, match="holds no key"):
        Settings(api_keys=[" ", ""])


@pytest.mark.parametrize(("value", "keys"), [("", []), ("  ", []), (" a ,, b ", ["a", "b"])])
def test_api_keys(monkeypatch: pytest.MonkeyPatch, value: str, keys: list[str]) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEYS", value)
    assert Settings().api_keys == keys  # empty: no authentication


def test_the_cli_refuses_api_keys_without_a_key() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env={"CONVEYOR_API_KEYS": " , ", "PATH": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("conveyor: invalid settings:")
    assert "CONVEYOR_API_KEYS is set but holds no key" in result.stderr


def test_max_body_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_body_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("CONVEYOR_MAX_BODY_BYTES", "1000")
    assert Settings().max_body_bytes == 1000
    monkeypatch.setenv("CONVEYOR_MAX_BODY_BYTES", "0")
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings()


def test_the_bounds_of_issue_11(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bound is a setting with a safe default, read from CONVEYOR_*."""
    settings = Settings()
    assert (settings.max_item_bytes, settings.max_upload_bytes) == (1 << 20, 256 << 20)
    assert (settings.store_timeout_s, settings.body_timeout_s) == (2.0, 60.0)
    names = {
        "MAX_ITEM_BYTES": "5",
        "MAX_UPLOAD_BYTES": "6",
        "STORE_TIMEOUT_S": "0.5",
        "BODY_TIMEOUT_S": "7",
        "MAX_CONNECTIONS": "8",
        "HEADER_TIMEOUT_S": "9",
        "KEEP_ALIVE_S": "3",
        "STREAM_BUFFER_BYTES": "10",
        "JOB_STORE_MAX_BYTES": "11",
        "JOB_STORE_MAX_JOBS": "12",
    }
    for name, value in names.items():
        monkeypatch.setenv(f"CONVEYOR_{name}", value)
    read = Settings()
    for name, value in names.items():
        assert str(getattr(read, name.lower())) in (value, f"{value}.0"), name
    monkeypatch.setenv("CONVEYOR_STORE_TIMEOUT_S", "0")
    with pytest.raises(ValidationError, match="store_timeout_s"):
        Settings()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@redis:6379/2?prefix=staging:",
        "rediss://user:secret@redis.example:6380",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_redis_url_accepted(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x", "must specify one of the following schemes"),
        ("127.0.0.1:6379", "must specify one of the following schemes"),
        ("redis://h:70000/0", "Port out of range"),
        ("redis://h:6379/db0", "the database must be a number"),
        ("redis://h:6379/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_redis_url_refused_at_start_up(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(redis_url=url)
