"""The per-call request log: one line per call (method, code, duration, principal, trace id), written
only when its level is enabled and the policy keeps it.

Policy (RequestLogPolicy, from REQUEST_LOG_SAMPLE_RATE and REQUEST_LOG_SLOW_MS in ServiceSettings):
every failed call (any code but OK) and every call at least `slow_ms` long is logged; OK calls below
that with probability `ok_sample_rate`. The default rate 1.0 logs every call (as before the policy
existed); a busy service can lower it, and then each sampled line carries `log_sample_rate` so counts
taken from the log can be scaled back.

The record is built with Logger.makeRecord + handle rather than Logger.log: the line never shows the
caller's file and line, so the stack walk Logger.log does to find them (findCaller) is skipped.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from retail_common.context import CallContext

__all__ = ["QUIET_METHODS", "RequestLogPolicy", "log_call"]

logger = logging.getLogger("retail_common.grpcx")

# Probes call these every few seconds; their request log lines go to DEBUG.
QUIET_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True)
class RequestLogPolicy:
    ok_sample_rate: float = 1.0  # share of OK calls faster than slow_ms that are logged
    slow_ms: float | None = None  # calls at least this long are always logged (None: no such rule)
    draw: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ok_sample_rate <= 1.0:
            raise ValueError("ok_sample_rate must be between 0 and 1")
        if self.slow_ms is not None and self.slow_ms < 0:
            raise ValueError("slow_ms must not be negative")

    def keeps(self, code: grpc.StatusCode, duration_ms: float) -> bool:
        if self.ok_sample_rate >= 1.0 or code is not grpc.StatusCode.OK:
            return True
        if self.slow_ms is not None and duration_ms >= self.slow_ms:
            return True
        return self.ok_sample_rate > 0.0 and self.draw() < self.ok_sample_rate


def log_call(
    method: str,
    code: grpc.StatusCode,
    duration_ms: float,
    call: CallContext | None,
    policy: RequestLogPolicy,
) -> None:
    """Write the call's line if its level is enabled and the policy keeps it. Metadata values are never
    logged (they carry credentials)."""
    level = logging.DEBUG if method in QUIET_METHODS else logging.INFO
    if not logger.isEnabledFor(level) or not policy.keeps(code, duration_ms):
        return
    principal = call.principal if call else None
    extra: dict[str, object] = {
        "rpc_method": method,
        "rpc_code": code.name,
        "duration_ms": duration_ms,
        "principal_id": principal.id if principal else None,
        "principal_kind": principal.kind.value if principal else None,
        "trace_id": call.trace_id if call else None,
    }
    drawn = code is grpc.StatusCode.OK and (policy.slow_ms is None or duration_ms < policy.slow_ms)
    if drawn and policy.ok_sample_rate < 1.0:  # kept by the draw, not for failing or being slow
        extra["log_sample_rate"] = policy.ok_sample_rate
    record = logger.makeRecord(
        logger.name, level, "", 0, "rpc %s %s %.1fms", (method, code.name, duration_ms), None, extra=extra
    )
    logger.handle(record)
