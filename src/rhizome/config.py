"""Settings from environment variables (``RHIZOME_*``) and an optional ``rhizome.toml``."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

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
    log_level: str = "INFO"
    log_format: str = Field("text", pattern="^(text|json)$")

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
