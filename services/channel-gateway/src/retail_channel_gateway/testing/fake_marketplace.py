"""A fake marketplace webhook endpoint: the outside world the gateway delivers to, for tests.

A real HTTP/1.1 server (asyncio streams, keep-alive) that does what a careful receiver does: verifies
the HMAC signature (domain/signing.py) and refuses stale timestamps and replayed signatures; applies
each change only if its version is newer than the one it holds. It records every violation of the
gateway's promises instead of hiding it:
- `out of order`: a change whose version is not newer than one already applied (and not a resync);
- `resent after 2xx`: a request whose idempotency key it already answered 2xx;
- `concurrent deliveries`: a request arriving while another is in flight (two senders for one channel).
It can be told to fail (503), time out (never answer), or rate-limit (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from retail_channel_gateway.domain.signing import (
    H_IDEMPOTENCY_KEY,
    H_SIGNATURE,
    H_TIMESTAMP,
    SignatureError,
    verify,
)

__all__ = ["FakeMarketplace", "Mode", "Received"]


class Mode(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"


@dataclass(frozen=True)
class Received:
    entity_key: str
    version: int
    kind: str
    resync: bool
    at: float  # time.monotonic() when applied
    change: dict[str, object] = field(hash=False, compare=False)


class FakeMarketplace:
    def __init__(
        self, secret: bytes, *, window_seconds: int = 300, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.secret = secret
        self.window_ms = window_seconds * 1000
        self._wall = wall_clock
        self.mode = Mode.OK
        # Stores (Retail-Location header of a store group's per-store request) answered 503: a store
        # gateway whose store is offline.
        self.failing_locations: set[str] = set()
        self.retry_after = "1"
        self.applied: dict[str, int] = {}
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.status_counts: dict[int, int] = {}
        self.refusals: dict[str, int] = {}
        self._answered_2xx: set[str] = set()
        self.resent_keys: list[str] = []
        self._in_flight = 0
        self._seen_signatures: set[str] = set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._hold = asyncio.Event()
        self._changed = asyncio.Condition()
        self.url = ""

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/webhook"
        return self.url

    async def close(self) -> None:
        self._hold.set()
        if self._server is not None:
            self._server.close()
            # Keep-alive connections outlive the listening socket; a handler left waiting on one is
            # cancelled at loop shutdown, and asyncio logs that as an error on Python 3.11.
            for writer in list(self._connections):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode is not Mode.TIMEOUT:
            self._hold.set()
            self._hold = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], *, within: float = 120.0) -> None:
        """Wait for a condition on what was received (a generous ceiling, not a timing assertion)."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    # ----------------------------------------------------------------------------------------- http

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                headers, body = request
                status, extra = await self._handle(headers, body)
                if status == 0:
                    return  # timeout mode: never answer, drop the connection when released
                self.status_counts[status] = self.status_counts.get(status, 0) + 1
                lines = [
                    f"HTTP/1.1 {status} X",
                    "Content-Length: 0",
                    *(f"{k}: {v}" for k, v in extra.items()),
                ]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                await writer.drain()
                async with self._changed:
                    self._changed.notify_all()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._connections.discard(writer)
            writer.close()

    def _seen(self, signature: str) -> bool:
        before = signature in self._seen_signatures
        self._seen_signatures.add(signature)
        return before

    async def _handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        if self.mode is Mode.TIMEOUT:  # hold it unanswered; the sender gives up and retries meanwhile
            await self._hold.wait()
            return 0, {}
        self._in_flight += 1
        try:
            if self._in_flight > 1:
                self.violations.append("concurrent deliveries: a request arrived while another was in flight")
            return await self._handle_one(headers, body)
        finally:
            self._in_flight -= 1

    async def _handle_one(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        key = headers.get(H_IDEMPOTENCY_KEY.lower(), "")
        try:
            verify(
                self.secret,
                timestamp=headers.get(H_TIMESTAMP.lower(), ""),
                idempotency_key=key,
                body=body,
                signature=headers.get(H_SIGNATURE.lower(), ""),
                now_ms=int(self._wall() * 1000),
                window_ms=self.window_ms,
                seen=self._seen,
            )
        except SignatureError as exc:
            self.refusals[exc.reason] = self.refusals.get(exc.reason, 0) + 1
            return (409 if exc.reason == "replay" else 401), {}
        if self.mode is Mode.FAIL or headers.get("retail-location", "") in self.failing_locations:
            return 503, {}
        if self.mode is Mode.RATE_LIMIT:
            return 429, {"Retry-After": self.retry_after}
        if key in self._answered_2xx:
            self.violations.append(f"resent after 2xx: idempotency key {key}")
            self.resent_keys.append(key)
            return 200, {}
        now = time.monotonic()
        for change in json.loads(body)["changes"]:
            entity, version = str(change["entity_key"]), int(change["version"])
            resync = bool(change.get("resync", False))
            held = self.applied.get(entity, 0)
            if version <= held and not resync:
                self.violations.append(f"out of order or resent: {entity} v{version} after v{held}")
                continue
            self.applied[entity] = max(held, version)
            kind = str(change.get("kind", ""))
            self.received.append(Received(entity, version, kind, resync, now, change))
        self._answered_2xx.add(key)
        return 200, {}


async def _read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body
