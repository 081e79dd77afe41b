"""Settings from RHIZOME_* environment variables and rhizome.toml (DESIGN §11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rhizome.config import Settings, load_settings
from rhizome.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RHIZOME_* variables from the outside and no rhizome.toml in the working folder."""
    for name in list(os.environ):
        if name.upper().startswith("RHIZOME_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    s = load_settings()
    assert s.database_url == "sqlite:///./.rhizome/rhizome.db"
    assert s.storage_url == "./.rhizome/storage"
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.api_token is None
    assert s.concurrency == 4
    assert s.heartbeat_seconds == 5.0
    assert s.lease_seconds == 30.0
    assert s.retry_base_seconds == 60.0
    assert s.retry_cap_seconds == 1800.0
    assert s.log_format == "text"


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_DATABASE_URL", "postgresql://u@db:5432/r")
    monkeypatch.setenv("RHIZOME_STORAGE_URL", "/data/storage")
    monkeypatch.setenv("RHIZOME_HOST", "0.0.0.0")
    monkeypatch.setenv("RHIZOME_PORT", "9123")
    monkeypatch.setenv("RHIZOME_API_TOKEN", "s3cret")
    monkeypatch.setenv("RHIZOME_CONCURRENCY", "16")
    monkeypatch.setenv("RHIZOME_HEARTBEAT_SECONDS", "2.5")
    monkeypatch.setenv("RHIZOME_LEASE_SECONDS", "10")
    monkeypatch.setenv("RHIZOME_LOG_FORMAT", "json")
    s = load_settings()
    assert s.database_url == "postgresql://u@db:5432/r"
    assert s.storage_url == "/data/storage"
    assert s.host == "0.0.0.0"
    assert s.port == 9123
    assert s.api_token == "s3cret"
    assert s.concurrency == 16
    assert s.heartbeat_seconds == 2.5
    assert s.lease_seconds == 10.0
    assert s.log_format == "json"


def test_env_var_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("rhizome_port", "9001")
    assert load_settings().port == 9001


def test_overrides_win_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_PORT", "9123")
    assert load_settings(port=7000).port == 7000
    assert load_settings(port=None).port == 9123


def test_toml_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "rhizome.toml").write_text('port = 8123\nstorage_url = "/srv/rz"\n')
    s = load_settings()
    assert s.port == 8123
    assert s.storage_url == "/srv/rz"
    monkeypatch.setenv("RHIZOME_PORT", "8124")  # the environment beats the file
    assert load_settings().port == 8124


@pytest.mark.parametrize("value", ["0", "70000", "-1", "http", "80.5"])
def test_invalid_port(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RHIZOME_PORT", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message.startswith("Invalid configuration: RHIZOME_PORT:")
    assert "RHIZOME_" in info.value.hint
    assert "Traceback" not in str(info.value)


def test_several_problems_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_PORT", "0")
    monkeypatch.setenv("RHIZOME_CONCURRENCY", "0")
    monkeypatch.setenv("RHIZOME_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError) as info:
        load_settings()
    for name in ("RHIZOME_PORT", "RHIZOME_CONCURRENCY", "RHIZOME_LOG_FORMAT"):
        assert name in info.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RHIZOME_CONCURRENCY", "0"),
        ("RHIZOME_CONCURRENCY", "1000"),
        ("RHIZOME_HEARTBEAT_SECONDS", "0"),
        ("RHIZOME_LEASE_SECONDS", "-5"),
        ("RHIZOME_POLL_SECONDS", "0"),
        ("RHIZOME_SHUTDOWN_GRACE_SECONDS", "-1"),
        ("RHIZOME_LOG_FORMAT", "yaml"),
    ],
)
def test_invalid_values(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_lease_must_be_twice_the_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_HEARTBEAT_SECONDS", "10")
    monkeypatch.setenv("RHIZOME_LEASE_SECONDS", "19.9")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "19.9s" in info.value.message
    assert "10.0s" in info.value.message
    assert "RHIZOME_LEASE_SECONDS" in info.value.hint
    monkeypatch.setenv("RHIZOME_LEASE_SECONDS", "20")  # exactly twice is enough
    assert load_settings().lease_seconds == 20


def test_lease_check_applies_to_overrides() -> None:
    with pytest.raises(ConfigError, match="twice the heartbeat"):
        load_settings(heartbeat_seconds=5, lease_seconds=6)


def test_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHIZOME_NO_SUCH_SETTING", "1")
    assert isinstance(load_settings(), Settings)
