"""A service under test as a separate process: ephemeral port, captured log, waits for SERVING.

Methods that wait are async so the test's own event loop (which may host an OTLP receiver the
service exports to) keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["ServiceProcess"]

_LOG_TAIL_LINES = 40
# Settings a service requires that tests and benches need not care about; a caller's env overrides.
# WEBHOOK_SECRETS_KEY: the channel gateway's at-rest key for webhook secrets (a fixed test-only key,
# the same in every process, so several gateways on one database read each other's rows).
_TEST_DEFAULTS = {"WEBHOOK_SECRETS_KEY": "dGVzdC1vbmx5LXdlYmhvb2stc2VjcmV0cy1rZXktMzI="}


class ServiceProcess:
    """`python -m <module>` listening on `listen` (default any free port), reporting its port through a
    GRPC_PORT_FILE; output in a log file."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        *,
        workdir: str | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.module = module
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="retail-svc-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._dir / f"{module.rsplit('.', 1)[-1]}.log"
        self._port_file = self._dir / "grpc.port"
        self._env = {
            **_TEST_DEFAULTS,
            **os.environ,
            **env,
            "GRPC_LISTEN": listen,
            "GRPC_PORT_FILE": str(self._port_file),
            "PYTHONUNBUFFERED": "1",
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.module} has not reported its port yet")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.module} was not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _tail(self) -> str:
        return "\n".join(self.log_text().splitlines()[-_LOG_TAIL_LINES:])

    def start(self) -> None:
        self._port_file.unlink(missing_ok=True)
        self.port = None
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self.module], env=self._env, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_serving(self, within: float = 60.0) -> None:
        """Wait for the port file, then for overall health SERVING; fail with the log tail."""
        deadline = time.monotonic() + within
        while self.port is None:
            self._check_alive()
            if self._port_file.exists() and self._port_file.read_text().strip():
                self.port = int(self._port_file.read_text())
                break
            await self._pause(deadline, "to report its port")
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await self._pause(deadline, "to become SERVING")

    async def _pause(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.module} took too long {what}; log tail:\n{self._tail()}")
        await asyncio.sleep(0.1)

    def _check_alive(self) -> None:
        code = self.returncode
        if code is not None:
            raise RuntimeError(f"{self.module} exited with code {code}; log tail:\n{self._tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown path at all, like a crashed pod."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()

    async def terminate(self, within: float = 30.0) -> int:
        """SIGTERM and wait for exit (async, so the caller's loop keeps serving); returns the exit code."""
        if self._process is None:
            raise RuntimeError(f"{self.module} was not started")
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        return await self.wait_exit(within)

    async def wait_exit(self, within: float = 30.0) -> int:
        assert self._process is not None
        deadline = time.monotonic() + within
        while (code := self._process.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.module} did not exit in {within}s; log tail:\n{self._tail()}")
            await asyncio.sleep(0.05)
        return code
