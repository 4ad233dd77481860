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
