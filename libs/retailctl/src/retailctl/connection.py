"""Where the suite listens and which credential to present, from the environment.

Defaults match `make run`: services on 127.0.0.1:50061-50064 and the dev operator key it writes under
.run/credentials/ (RETAIL_RUN_DIR moves that directory). `<SERVICE>_TARGET` (e.g. PRICING_TARGET) and
RETAILCTL_API_KEY override them, so the same commands work against any deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from pydantic import SecretStr

from retail_common.grpcx import connect

__all__ = ["DEFAULT_TARGETS", "SERVICES", "SetupError", "Suite", "approver_key", "operator_key_path"]

SERVICES = ("pricing", "inventory-reservation", "promotion", "channel-gateway")
DEFAULT_TARGETS = {
    "pricing": "127.0.0.1:50061",
    "inventory-reservation": "127.0.0.1:50062",
    "promotion": "127.0.0.1:50063",
    "channel-gateway": "127.0.0.1:50064",
}


class SetupError(Exception):
    """The CLI cannot tell where to connect or with which key; the message says what to set."""


def _env_name(service: str) -> str:
    return service.upper().replace("-", "_") + "_TARGET"


def operator_key_path(name: str = "operator") -> Path:
    run_dir = os.environ.get("RETAIL_RUN_DIR") or str(Path.cwd() / ".run")
    return Path(run_dir) / "credentials" / f"{name}.key"


def approver_key() -> SecretStr:
    """A second operator's key (approvals need someone other than the author): RETAILCTL_APPROVER_API_KEY,
    else the dev approver key `make run` writes."""
    key = os.environ.get("RETAILCTL_APPROVER_API_KEY")
    if not key:
        path = operator_key_path("approver")
        if not path.exists():
            raise SetupError(
                f"no approver key: set RETAILCTL_APPROVER_API_KEY or start the suite with `make run` "
                f"(it writes {path})"
            )
        key = path.read_text().strip()
    return SecretStr(key)


@dataclass(frozen=True)
class Suite:
    """Targets of the four services and the operator credential; `channel(service)` opens a channel."""

    targets: dict[str, str]
    credential: SecretStr

    @classmethod
    def from_env(cls, api_key: str | None = None) -> Suite:
        targets = {name: os.environ.get(_env_name(name), dflt) for name, dflt in DEFAULT_TARGETS.items()}
        key = api_key or os.environ.get("RETAILCTL_API_KEY")
        if not key:
            path = operator_key_path()
            if not path.exists():
                raise SetupError(
                    f"no operator key: set RETAILCTL_API_KEY, pass --api-key, or start the suite with "
                    f"`make run` (it writes {path})"
                )
            key = path.read_text().strip()
        return cls(targets=targets, credential=SecretStr(key))

    def channel(self, service: str, *, timeout: float = 30.0) -> grpc.aio.Channel:
        return connect(self.targets[service], credential=self.credential, default_timeout=timeout)
