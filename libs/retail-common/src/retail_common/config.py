"""Configuration from the environment, validated at start with one clear message per bad value.

Every service declares a subclass of ServiceSettings; `load_settings` reads it from the environment
and raises ConfigError naming each missing or invalid variable, so a misconfigured pod fails fast
with a message an operator can act on.
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ConfigError", "ServiceSettings", "load_settings"]


class ConfigError(Exception):
    """Raised at start when the environment does not describe a runnable service."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class ServiceSettings(BaseSettings):
    """Settings every service has. Environment variable names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    database_url: str = Field(description="asyncpg DSN of this service's own database")
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="comma-separated NATS servers")
    grpc_listen: str = Field(default="127.0.0.1:50051", description="host:port to serve on; port 0 = any")
    grpc_port_file: str | None = Field(default=None, description="file to write the bound port to")
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    migrate_on_start: bool = Field(default=True, description="apply pending migrations, else refuse to start")
    db_pool_min: int = Field(default=1, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=200)
    service_credential: SecretStr | None = Field(
        default=None, description="API key this service presents when calling other services"
    )
    stream_replicas: int = Field(default=1, ge=1, le=5, description="JetStream replicas (1 dev, 3 prod)")
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    log_level: str = Field(default="INFO")
    # The per-call request log (grpcx/request_log.py): failed calls and calls at least
    # request_log_slow_ms long are always logged, other OK calls with this probability (1.0: all).
    request_log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    request_log_slow_ms: float = Field(default=500.0, ge=0.0)
    # uvloop (libuv) runs the same asyncio code with ~10% less CPU per gRPC call (bench/README.md);
    # "asyncio" is the standard library's loop, kept for platforms without uvloop and for diagnosis.
    event_loop: Literal["uvloop", "asyncio"] = Field(default="uvloop")

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: str) -> str:
        if not value.startswith(("postgres://", "postgresql://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_urls(cls, value: str) -> str:
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"{url!r} is not a nats:// URL")
        return value

    @field_validator("grpc_listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 0.0.0.0:50051")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return upper


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Read `cls` from the environment; raise ConfigError listing every problem by variable name."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper() or "<settings>"
            message = "is required but not set" if error["type"] == "missing" else error["msg"]
            problems.append(f"{variable}: {message}")
        raise ConfigError(problems) from None
