"""Raw baseline for RPC benchmarks: a bare grpc.aio echo server in its own process.

A service's calls/s are printed beside this server's, called the same way in the same run, so the ratio
says what our stack costs per call on whatever machine runs it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from retail_common.service import run_loop

__all__ = ["ECHO_METHOD", "start_echo"]

ECHO_METHOD = "/bench.Echo/Echo"


async def _serve(port_file: Path) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(echo)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    # Write then rename: the parent never reads a half-written port.
    partial = port_file.with_suffix(".partial")
    await asyncio.to_thread(partial.write_text, str(port))
    await asyncio.to_thread(os.replace, partial, port_file)
    await server.wait_for_termination()


async def start_echo(tmp: Path, event_loop: str = "asyncio") -> tuple[asyncio.subprocess.Process, str]:
    """Start the echo server as a child process; returns it and its address. Terminate it when done.

    The baseline runs on asyncio's own loop (bare grpc.aio); `event_loop="uvloop"` is for reference
    rows only (the services run on uvloop, ServiceSettings.event_loop)."""
    port_file = tmp / f"echo-{event_loop}.port"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_grpc_echo", str(port_file), event_loop
    )
    for _ in range(1200):  # up to a minute for the child to bind on a loaded machine
        if port_file.exists():
            return process, f"127.0.0.1:{port_file.read_text()}"
        await asyncio.sleep(0.05)
    process.kill()
    raise RuntimeError("echo server did not start")


if __name__ == "__main__":
    run_loop(_serve(Path(sys.argv[1])), sys.argv[2] if len(sys.argv) > 2 else "asyncio")
