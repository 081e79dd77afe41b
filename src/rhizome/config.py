"""Settings from environment variables (``RHIZOME_*``) and an optional ``rhizome.toml``.

Every setting of the product is a field of :class:`Settings` (the README's Configuration
table lists them); nothing else reads ``RHIZOME_*`` variables. The environment beats the
file; in the file, names are the lower-case variable names without the prefix.
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rhizome.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RHIZOME_", toml_file="rhizome.toml", extra="ignore"
    )

    database_url: str = "sqlite:///./.rhizome/rhizome.db"
    storage_url: str = "./.rhizome/storage"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_token: str | None = None
    concurrency: int = Field(4, ge=1, le=256)
    heartbeat_seconds: float = Field(5.0, gt=0)
    lease_seconds: float = Field(30.0, gt=0)
    poll_seconds: float = Field(1.0, gt=0)
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    retry_base_seconds: float = Field(60.0, ge=0)
    retry_cap_seconds: float = Field(1800.0, ge=0)
    job_retention_days: float = Field(30.0, ge=0)
    """Finished jobs (completed, cancelled, failed without a retry due) are deleted with
    their timeline and checkpoints this many days after their last change, by the reaper
    (0: keep them forever)."""
    log_level: str = "INFO"
    log_format: str = Field("text", pattern="^(text|json)$")
    embedder: str = "minilm"
    """``minilm`` (local model), ``http`` (an OpenAI-compatible service) or ``hash``."""
    embedding_url: str | None = None
    embedding_model: str | None = None
    embedding_api_key: str | None = None
    embedding_precision: str = Field("int8", pattern="^(int8|fp32|torch)$")
    """The local model's runtime: ``int8`` (ONNX Runtime, quantized; default), ``fp32``
    (ONNX Runtime, the same vectors as PyTorch) or ``torch`` (PyTorch)."""
    model_cache_dir: str | None = None
    """Where the local model's ONNX export is cached (default: ``models/`` beside a local
    storage folder, else ``./.rhizome/models``)."""
    semantic_weight: float = Field(0.25, ge=0)
    contradiction_weight: float = Field(0.40, ge=0)
    thematic_weight: float = Field(0.35, ge=0)
    """Weights of the connection engines in the combined score: the weighted mean over
    the engines that judged a pair (README, *Connection scores*); 0 turns an engine off."""
    apps: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Modules that register job types. Environment: ``RHIZOME_APPS=mod_a,mod_b``;
    ``rhizome.toml``: ``apps = ["mod_a", "mod_b"]``."""
    debug: bool = False
    """Let unexpected errors of the command line show their traceback."""
    api_cache_seconds: float = Field(30.0, ge=0)
    """How long ``rhizome serve`` keeps an answer of the job and document read endpoints at
    most; the change feed and the API's own writes drop it sooner when it may have
    changed (answers on the clock: 1 s). 0 turns the cache off."""
    trusted_proxy: str | None = None
    """Reverse proxies whose X-Rhizome-User header names the user: ``1`` (a proxy on this
    machine), ``*`` (any peer) or addresses and networks, comma-separated."""
    fetch_allow_private: bool = False
    """Let URL documents fetch loopback, private, link-local and multicast addresses."""
    extract_cpu_seconds: int = Field(300, ge=1)
    extract_timeout_seconds: float = Field(600.0, gt=0)
    max_document_words: int = Field(2_000_000, ge=1)
    max_document_chunks: int = Field(20_000, ge=1)
    job_time_limits: dict[str, float] = Field(default_factory=dict)
    """Per job type, the longest one run may take (seconds), over the type's own limit
    (4 hours unless the type declares another):
    ``RHIZOME_JOB_TIME_LIMITS='{"process_document": 7200}'``."""
    job_memory_limits: dict[str, Annotated[int, Field(ge=64)]] = Field(default_factory=dict)
    """Per job type, the address-space limit (MB) of the child process in which a run reads
    untrusted input, over the type's own limit (``process_document``: 2048):
    ``RHIZOME_JOB_MEMORY_LIMITS='{"process_document": 4096}'``."""
    max_takeovers: int = Field(3, ge=0)
    """Times a job whose worker died (lease expired) is handed to another worker; the
    next death fails it as ``permanent`` (a crash loop)."""
    readwise_api_url: str = "https://readwise.io/api/v2"
    """The Readwise API that ``readwise_import --api`` pages through (``/export/``)."""

    @field_validator("apps", mode="before")
    @classmethod
    def _parse_apps(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):  # a JSON list is fine too
                try:
                    value = json.loads(text)
                except ValueError:
                    raise ValueError("not a valid JSON list of module names") from None
            else:
                value = text.split(",")
        if isinstance(value, list | tuple):
            names = [v.strip() if isinstance(v, str) else v for v in value]
            value = list(dict.fromkeys(n for n in names if n != ""))
            for name in value:
                if not isinstance(name, str) or not _MODULE.fullmatch(name):
                    raise ValueError(
                        f"{name!r} is not a module name (give importable dotted names, "
                        "separated by commas, e.g. my_jobs,lab.tasks)"
                    )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,
        env_settings: Any,
        dotenv_settings: Any,
        file_secret_settings: Any,
    ) -> tuple[Any, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def validate_lease(self) -> None:
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ConfigError(
                f"The lease ({self.lease_seconds}s) must be at least twice the heartbeat "
                f"interval ({self.heartbeat_seconds}s).",
                "Raise RHIZOME_LEASE_SECONDS or lower RHIZOME_HEARTBEAT_SECONDS.",
            )


_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def debug_enabled() -> bool:
    """``RHIZOME_DEBUG`` (or ``debug = true`` in ``rhizome.toml``)."""
    try:
        return Settings().debug
    except Exception:  # unreadable settings: a plain non-empty variable still counts
        return bool(os.environ.get("RHIZOME_DEBUG", "").strip())


def load_settings(**overrides: Any) -> Settings:
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"RHIZOME_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"Invalid configuration: {problems}.") from None
    settings.validate_lease()
    return settings
