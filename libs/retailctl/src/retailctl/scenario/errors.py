"""How the scenario fails: a ScenarioError names the state it expected and what the services said."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

__all__ = ["RETRYABLE", "ScenarioError", "eventually", "expect", "retrying"]

T = TypeVar("T")

# Codes a restarting service or a lost connection produces; every mutation the scenario sends carries
# an idempotency key, so resending it after one of these is safe.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ScenarioError(AssertionError):
    """A state read back from the services is not the one the scenario narrates."""


def expect(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise ScenarioError(f"{what}: expected {expected!r}, the services say {actual!r}")


async def retrying(call: Callable[[], Awaitable[T]], what: str, *, within: float = 90.0) -> T:
    """Run an idempotent call, resending it while its service is unreachable (restarts, failovers)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or time.monotonic() > deadline:
                raise ScenarioError(f"{what}: {exc.code().name}: {exc.details()}") from exc
        await asyncio.sleep(0.25)


async def eventually(
    read: Callable[[], Awaitable[T]], holds: Callable[[T], bool], what: str, *, within: float = 90.0
) -> T:
    """Read until the state holds; on timeout, fail with the last state read (not a timing assertion:
    the bound is generous, the state is what is checked)."""
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        try:
            last = await read()
            if holds(last):
                return last
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE:
                raise ScenarioError(f"{what}: {exc.code().name}: {exc.details()}") from exc
        if time.monotonic() > deadline:
            raise ScenarioError(f"{what}: not reached within {within:.0f}s; last state: {last!r}")
        await asyncio.sleep(0.2)
