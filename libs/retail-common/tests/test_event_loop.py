"""run_loop runs the service on the configured event loop (uvloop by default, asyncio's on request)."""

import asyncio
import sys

import uvloop

from retail_common.service import run_loop


def _loop_type(event_loop: str) -> type[asyncio.AbstractEventLoop]:
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_loop(main(), event_loop)
    return seen[0]


def test_uvloop_runs_the_service_when_asked() -> None:
    assert _loop_type("uvloop") is uvloop.Loop


def test_asyncio_runs_the_standard_loop() -> None:
    loop_type = _loop_type("asyncio")
    assert loop_type is not uvloop.Loop
    assert loop_type.__module__.startswith("asyncio")


def test_without_uvloop_the_standard_loop_runs_with_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what a platform without the package sees
    loop_type = _loop_type("uvloop")
    assert loop_type.__module__.startswith("asyncio")
    assert "uvloop is not installed" in caplog.text
