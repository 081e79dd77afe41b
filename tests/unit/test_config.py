"""Settings from RHIZOME_* environment variables and rhizome.toml (DESIGN §11)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rhizome.config import Settings, debug_enabled, load_settings
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


# --- every setting the README lists, from rhizome.toml ------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_SETTINGS = {"RHIZOME_TEST_PG"}  # the test suite's PostgreSQL, not a setting of the app

# a non-default value per setting, as it would be written in rhizome.toml
SAMPLES: dict[str, object] = {
    "database_url": "postgresql://rz@db.example:5432/rz",
    "storage_url": "s3://bucket/prefix",
    "host": "0.0.0.0",
    "port": 8123,
    "api_token": "t0ken",
    "concurrency": 7,
    "heartbeat_seconds": 2.5,
    "lease_seconds": 11.0,
    "poll_seconds": 0.25,
    "shutdown_grace_seconds": 3.0,
    "retry_base_seconds": 5.0,
    "retry_cap_seconds": 99.0,
    "job_retention_days": 7.0,
    "log_level": "DEBUG",
    "log_format": "json",
    "embedder": "http",
    "embedding_url": "http://127.0.0.1:11434/v1",
    "embedding_model": "nomic-embed-text",
    "embedding_api_key": "k3y",
    "embedding_precision": "fp32",
    "model_cache_dir": "/var/cache/rhizome-models",
    "semantic_weight": 0.5,
    "contradiction_weight": 0.3,
    "thematic_weight": 0.0,
    "apps": ["my_jobs", "lab.tasks"],
    "debug": True,
    "api_cache_seconds": 2.5,
    "trusted_proxy": "10.0.0.5,192.168.0.0/24",
    "fetch_allow_private": True,
    "job_memory_limits": {"process_document": 512},
    "extract_cpu_seconds": 30,
    "extract_timeout_seconds": 45.0,
    "max_document_words": 1000,
    "max_document_chunks": 50,
    "job_time_limits": {"process_document": 7200.0},
    "max_takeovers": 5,
    "readwise_api_url": "http://127.0.0.1:9999/api/v2",
}


def _configuration_table() -> dict[str, str]:
    """Variable → its default as the README's Configuration table states it."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`RHIZOME_"):
            continue
        names = [n.strip().strip("`") for n in cells[0].split("/")]
        defaults = [d.strip().strip("`") for d in cells[1].split(" / ")]
        if len(defaults) == 1:
            defaults = defaults * len(names)
        assert len(defaults) == len(names), line
        rows.update(zip(names, defaults, strict=True))
    return rows


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def test_the_readme_table_lists_every_setting_and_nothing_else() -> None:
    table = _configuration_table()
    fields = {f"RHIZOME_{name.upper()}" for name in Settings.model_fields}
    assert set(table) == fields
    assert set(SAMPLES) == set(Settings.model_fields), "add a sample value for a new setting"


def test_every_rhizome_variable_in_the_readme_is_a_setting() -> None:
    mentioned = set(re.findall(r"RHIZOME_[A-Z_]*[A-Z]", README.read_text(encoding="utf-8")))
    fields = {f"RHIZOME_{name.upper()}" for name in Settings.model_fields}
    assert mentioned - NOT_SETTINGS - fields == set()


def test_the_readme_defaults_are_the_real_ones() -> None:
    defaults = load_settings()
    for variable, stated in _configuration_table().items():
        value = getattr(defaults, variable.removeprefix("RHIZOME_").lower())
        if value is None or value in ([], {}):
            assert stated == "—", variable
        elif isinstance(value, bool):
            assert stated == str(value).lower(), variable
        elif isinstance(value, float):
            assert float(stated) == value, variable
        else:
            assert stated == str(value), variable


def test_rhizome_toml_sets_every_setting_the_readme_lists(clean_env: Path) -> None:
    lines = []
    for variable in _configuration_table():
        name = variable.removeprefix("RHIZOME_").lower()
        lines.append(f"{name} = {_toml_value(SAMPLES[name])}")
    (clean_env / "rhizome.toml").write_text("\n".join(lines) + "\n")
    s = load_settings()
    for name, value in SAMPLES.items():
        assert getattr(s, name) == value, name
        assert getattr(s, name) != Settings.model_fields[name].get_default(
            call_default_factory=True
        ), f"the sample for {name} is its default"


def test_the_environment_sets_every_setting_too(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SAMPLES.items():
        if isinstance(value, list):
            text = ",".join(value)
        elif isinstance(value, dict):
            text = json.dumps(value)
        else:
            text = str(value)
        monkeypatch.setenv(f"RHIZOME_{name.upper()}", text)
    s = load_settings()
    for name, value in SAMPLES.items():
        assert getattr(s, name) == value, name


# --- RHIZOME_APPS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "apps"),
    [
        ("", []),
        ("my_jobs", ["my_jobs"]),
        ("mod_a,mod_b", ["mod_a", "mod_b"]),
        (" mod_a , lab.tasks ,, ", ["mod_a", "lab.tasks"]),
        ("mod_a,mod_b,mod_a", ["mod_a", "mod_b"]),  # each once, in order
        ('["mod_a", "pkg.mod_b"]', ["mod_a", "pkg.mod_b"]),  # a JSON list works too
    ],
)
def test_apps_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, apps: list[str]
) -> None:
    monkeypatch.setenv("RHIZOME_APPS", raw)
    assert load_settings().apps == apps


def test_apps_default_to_none() -> None:
    assert load_settings().apps == []


def test_apps_from_toml_and_the_environment_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "rhizome.toml").write_text('apps = ["count", "lab.jobs"]\n')
    assert load_settings().apps == ["count", "lab.jobs"]
    monkeypatch.setenv("RHIZOME_APPS", "other")
    assert load_settings().apps == ["other"]


@pytest.mark.parametrize("raw", ["my-jobs", "mod a", "./count.py", "a..b", "1mod", "[1, 2]", "[x"])
def test_bad_apps_are_a_clear_config_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("RHIZOME_APPS", raw)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.message.startswith("Invalid configuration: RHIZOME_APPS:")
    assert "Traceback" not in str(info.value)


def test_bad_apps_in_toml(clean_env: Path) -> None:
    (clean_env / "rhizome.toml").write_text('apps = ["ok", 3]\n')
    with pytest.raises(ConfigError, match="RHIZOME_APPS"):
        load_settings()


# --- the embedder and debug read their settings like everything else ---------------------


def test_the_embedder_comes_from_rhizome_toml(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rhizome.pipeline import embed

    monkeypatch.setattr(embed, "_CACHE", {})
    (clean_env / "rhizome.toml").write_text('embedder = "hash"\n')
    assert isinstance(embed.get_embedder(), embed.HashEmbedder)
    (clean_env / "rhizome.toml").write_text(
        'embedder = "http"\nembedding_url = "http://127.0.0.1:9/v1"\n'
        'embedding_model = "m1"\nembedding_api_key = "k"\n'
    )
    http = embed.get_embedder()
    assert isinstance(http, embed.HttpEmbedder)
    assert (http.base_url, http.model, http.api_key) == ("http://127.0.0.1:9/v1", "m1", "k")
    monkeypatch.setenv("RHIZOME_EMBEDDING_MODEL", "m2")  # the environment wins
    again = embed.get_embedder()
    assert isinstance(again, embed.HttpEmbedder) and again.model == "m2"
    # settings handed over explicitly win over both
    explicit = embed.get_embedder(settings=Settings(embedder="hash"))
    assert isinstance(explicit, embed.HashEmbedder)


def test_debug(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert debug_enabled() is False
    (clean_env / "rhizome.toml").write_text("debug = true\n")
    assert debug_enabled() is True
    (clean_env / "rhizome.toml").write_text("")
    monkeypatch.setenv("RHIZOME_DEBUG", "1")
    assert debug_enabled() is True
    monkeypatch.setenv("RHIZOME_PORT", "0")  # invalid settings: the variable still counts
    assert debug_enabled() is True


def test_no_module_but_config_reads_rhizome_variables() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "rhizome"
    readers = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "config.py"
        and re.search(
            r"environ(\.get)?\s*[\[(]\s*[\"']RHIZOME_|getenv\([\"']RHIZOME_", path.read_text()
        )
    ]
    assert readers == []
