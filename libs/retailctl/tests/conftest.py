"""Fixtures of the CLI tests: real services as separate processes (real Postgres, real NATS), operator
keys registered in their databases the way `make run` does, and `retailctl` run in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from retail_common.auth import CredentialStore
from retail_common.context import PrincipalKind
from retail_common.db import create_pool
from retail_common.testing.process import ServiceProcess
from retailctl.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`retailctl` in-process (in a worker thread: main runs its own event loop with asyncio.run)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def target(self, service: str, address: str) -> None:
        self._monkeypatch.setenv(service.upper().replace("-", "_") + "_TARGET", address)

    def key(self, key: SecretStr) -> None:
        self._monkeypatch.setenv("RETAILCTL_API_KEY", key.get_secret_value())

    async def __call__(self, *argv: str) -> Result:
        self._capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        captured = self._capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("RETAILCTL_API_KEY", raising=False)
    monkeypatch.setenv("RETAIL_RUN_DIR", "/nonexistent-retailctl-test")  # never a developer's own key
    return Cli(capsys, monkeypatch)


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield p
    finally:
        await p.close()


async def operator_key(pool: asyncpg.Pool, name: str, roles: Iterable[str]) -> SecretStr:
    """An operator credential in the service's own database (the service migrated it at start)."""
    return (await CredentialStore(pool).create(name, PrincipalKind.OPERATOR, roles)).key


@pytest.fixture
def service_env(database_url: str, nats_server: Any) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "NATS_URL": nats_server.url, "DB_POOL_MAX": "4"}


__all__ = ["Cli", "Result", "ServiceProcess", "operator_key"]
