"""Generate and check the Python code of the gRPC contracts in protos/.

    python scripts/protogen.py generate   # regenerate libs/retail-proto/src/retail (commit the result)
    python scripts/protogen.py check      # fail on stale generated code, buf lint, buf breaking
    python scripts/protogen.py baseline   # accept the current contracts as the breaking-change baseline

Generated code goes to a temporary directory first and is then synced (stale files deleted), so the
output depends only on the .proto files and the pinned tool versions. buf comes from npm at the version
pinned in tools/buf/package-lock.json and is installed there with `npm ci` when missing.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "libs" / "retail-proto" / "src"
# Only this subtree of OUT_DIR is generated (and therefore owned and pruned by this script).
GENERATED_PACKAGE = "retail"
BASELINE = PROTO_DIR / "baseline" / "image.binpb"
# Imported google/type and google/rpc protos are copied here for buf (gitignored, see protos/.gitignore).
THIRD_PARTY_DIR = PROTO_DIR / "third_party"
THIRD_PARTY_PACKAGES = ("google/type", "google/rpc")
SERVICE_RE = re.compile(r"^\s*service\s+\w+", re.MULTILINE)
BUF_TOOL_DIR = ROOT / "tools" / "buf"
BUF_BIN = BUF_TOOL_DIR / "node_modules" / ".bin" / "buf"


class ProtogenError(Exception):
    """A failure with a message meant for the person running the script."""


def _module_file(name: str) -> Path:
    """Where an installed module lives, found without importing it (neither ships type hints)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ProtogenError(f"{name} is not installed (run `make setup`)")
    return Path(spec.origin).resolve()


def _wkt_include_dir() -> Path:
    """Well-known types (google/protobuf/*.proto) shipped with grpcio-tools."""
    return _module_file("grpc_tools").parent / "_proto"


def _googleapis_include_dir() -> Path:
    """The site-packages root holding googleapis-common-protos' google/type and google/rpc protos."""
    root = _module_file("google.rpc.status_pb2").parents[2]
    if not (root / "google" / "type" / "money.proto").is_file():
        raise ProtogenError(f"googleapis-common-protos .proto files not found under {root}")
    return root


def _proto_files() -> list[str]:
    """Our .proto files, relative to PROTO_DIR, sorted for a deterministic protoc invocation."""
    files = sorted(
        p.relative_to(PROTO_DIR).as_posix() for p in (PROTO_DIR / GENERATED_PACKAGE).rglob("*.proto")
    )
    if not files:
        raise ProtogenError(f"no .proto files under {PROTO_DIR / GENERATED_PACKAGE}")
    return files


def _run(cmd: Sequence[str | Path], *, cwd: Path = ROOT, what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise ProtogenError(f"{what} failed (exit {proc.returncode}):\n{output}")
    return proc


def _finish_package(out: Path, protos: Sequence[str]) -> None:
    """Tidy protoc's output into the package layout we commit.

    `retail` stays an implicit namespace package (no __init__.py; setuptools uses namespaces=true and
    mypy finds the modules through its PEP 561 py.typed marker), so other distributions could add
    subpackages. The gRPC plugin writes a *_pb2_grpc module for every file; we keep only those of
    files that define a service.
    """
    for proto in protos:
        if not SERVICE_RE.search((PROTO_DIR / proto).read_text()):
            stem = out / proto.removesuffix(".proto")
            for suffix in ("_pb2_grpc.py", "_pb2_grpc.pyi"):
                Path(f"{stem}{suffix}").unlink(missing_ok=True)
    (out / GENERATED_PACKAGE / "py.typed").touch()


def generate_into(out: Path) -> None:
    """Run protoc with the Python, gRPC and mypy-protobuf plugins into an empty directory."""
    protos = _proto_files()
    bin_dir = Path(sys.executable).parent
    plugins = {name: bin_dir / f"protoc-gen-{name}" for name in ("mypy", "mypy_grpc")}
    for name, path in plugins.items():
        if not path.is_file():
            raise ProtogenError(f"protoc plugin protoc-gen-{name} missing at {path} (run `make setup`)")
    cmd: list[str | Path] = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}",
        f"--proto_path={_wkt_include_dir()}",
        f"--proto_path={_googleapis_include_dir()}",
        *(f"--plugin=protoc-gen-{name}={path}" for name, path in plugins.items()),
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *protos,
    ]
    _run(cmd, what="protoc")
    _finish_package(out, protos)


def _tree(root: Path) -> set[str]:
    """Relative paths of the files under root, ignoring bytecode caches."""
    if not root.exists():
        return set()
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Human-readable differences between a fresh generation and the committed one."""
    want, have = _tree(expected), _tree(actual)
    problems = [f"missing: {p}" for p in sorted(want - have)]
    problems += [f"stale (not generated any more): {p}" for p in sorted(have - want)]
    problems += [
        f"out of date: {p}"
        for p in sorted(want & have)
        if not filecmp.cmp(expected / p, actual / p, shallow=False)
    ]
    return problems


def sync_tree(source: Path, target: Path) -> list[str]:
    """Make target identical to source: copy new/changed files, delete stale files and empty dirs."""
    changes = diff_trees(source, target)
    want = _tree(source)
    for rel in _tree(target) - want:
        (target / rel).unlink()
    for rel in sorted(want):
        dst = target / rel
        if not dst.exists() or not filecmp.cmp(source / rel, dst, shallow=False):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, dst)
    for directory in sorted((d for d in target.rglob("*") if d.is_dir()), reverse=True):
        if "__pycache__" not in directory.parts and not any(directory.iterdir()):
            directory.rmdir()
    return changes


def cmd_generate() -> None:
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        generate_into(Path(tmp))
        changes = sync_tree(Path(tmp) / GENERATED_PACKAGE, OUT_DIR / GENERATED_PACKAGE)
    rel_out = (OUT_DIR / GENERATED_PACKAGE).relative_to(ROOT)
    print(f"generated {rel_out}: " + ("\n  ".join(["changes", *changes]) if changes else "no changes"))


def _pinned_buf_version() -> str:
    lock = json.loads((BUF_TOOL_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/@bufbuild/buf"]["version"]
    assert isinstance(version, str)
    return version


def ensure_buf() -> Path:
    """Return the pinned buf CLI, installing it with `npm ci` into tools/buf when missing or wrong."""
    pinned = _pinned_buf_version()
    if BUF_BIN.exists():
        current = subprocess.run([BUF_BIN, "--version"], capture_output=True, text=True, check=False)
        if current.returncode == 0 and current.stdout.strip() == pinned:
            return BUF_BIN
    npm = shutil.which("npm")
    if npm is None:
        raise ProtogenError(f"buf {pinned} is installed from npm, but npm is not on PATH (install Node.js)")
    print(f"installing buf {pinned} into {BUF_TOOL_DIR.relative_to(ROOT)} (npm ci)", file=sys.stderr)
    _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BUF_TOOL_DIR, what="npm ci (buf)")
    if not BUF_BIN.exists():
        raise ProtogenError(f"npm ci succeeded but {BUF_BIN} is missing")
    return BUF_BIN


def stage_third_party() -> None:
    """Copy the google/type and google/rpc protos we import into protos/third_party for buf.

    They come from the installed googleapis-common-protos, the same files protoc compiles against, so
    buf and protoc can never see different versions. buf.yaml excludes them from lint and breaking.
    """
    source_root = _googleapis_include_dir()
    with tempfile.TemporaryDirectory(prefix="buf-deps-") as tmp:
        staged = Path(tmp)
        for package in THIRD_PARTY_PACKAGES:
            for proto in (source_root / package).rglob("*.proto"):
                dst = staged / proto.relative_to(source_root)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(proto, dst)
        THIRD_PARTY_DIR.mkdir(exist_ok=True)
        sync_tree(staged, THIRD_PARTY_DIR)


def _buf(buf: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _run([buf, *args], cwd=PROTO_DIR, what=f"buf {args[0]}")


def build_baseline_image(buf: Path, out: Path) -> None:
    # Source info only carries comments and positions, which breaking checks ignore; dropping it keeps
    # the committed baseline small and unaffected by comment edits.
    _buf(buf, "build", "--exclude-source-info", "--path", GENERATED_PACKAGE, "-o", out)


def cmd_baseline() -> None:
    buf = ensure_buf()
    stage_third_party()
    _buf(buf, "lint")
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    build_baseline_image(buf, BASELINE)
    print(f"wrote {BASELINE.relative_to(ROOT)}; commit it with the contract change it accepts")


def _check_generated() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        generate_into(Path(tmp))
        stale = diff_trees(Path(tmp) / GENERATED_PACKAGE, OUT_DIR / GENERATED_PACKAGE)
    if not stale:
        return []
    return ["generated code is out of date; run `make proto` and commit:\n  " + "\n  ".join(stale)]


def _check_buf() -> list[str]:
    buf = ensure_buf()
    stage_third_party()
    failures: list[str] = []
    try:
        _buf(buf, "lint")
    except ProtogenError as exc:
        failures.append(str(exc))
    if not BASELINE.is_file():
        failures.append(f"no baseline at {BASELINE.relative_to(ROOT)}; run `scripts/protogen.py baseline`")
        return failures
    try:
        # Only our files: buf cannot compare the two-module workspace with a one-image baseline otherwise.
        _buf(buf, "breaking", "--against", BASELINE, "--path", GENERATED_PACKAGE)
    except ProtogenError as exc:
        failures.append(
            f"{exc}\nIf the break is intended (e.g. a new major version), accept it with "
            "`scripts/protogen.py baseline` and say so in the commit."
        )
    return failures


def cmd_check() -> None:
    failures = _check_generated() + _check_buf()
    if failures:
        raise ProtogenError("\n\n".join(failures))
    print("contracts ok: generated code up to date, buf lint clean, no breaking changes vs baseline")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["generate", "check", "baseline"])
    args = parser.parse_args(argv)
    commands = {"generate": cmd_generate, "check": cmd_check, "baseline": cmd_baseline}
    try:
        commands[args.command]()
    except ProtogenError as exc:
        print(f"protogen {args.command}: FAILED\n{exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
