"""Health entries on grpc_health's aio HealthServicer: overall "", per service, and "retail.eventing".

Overall (and each served service) means "can serve requests", i.e. the database is reachable. The
eventing entry is separate (DESIGN.md §4): a NATS outage degrades it without pulling pods that the
outbox keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

__all__ = ["EVENTING", "OVERALL", "HealthReporter"]

OVERALL = ""
EVENTING = "retail.eventing"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Everything starts NOT_SERVING; the runtime flips entries as dependencies come and go."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self.servicer = health_aio.HealthServicer()
        self._serving_entries = [OVERALL, *service_names]
        self._state: dict[str, bool] = {}

    async def start(self) -> None:
        # HealthServicer itself starts "" as SERVING; we only claim that once the DB answered.
        for name in [*self._serving_entries, EVENTING]:
            await self._set(name, False)

    async def _set(self, name: str, serving: bool) -> None:
        self._state[name] = serving
        await self.servicer.set(name, _SERVING if serving else _NOT_SERVING)

    async def set_serving(self, serving: bool) -> None:
        """Overall and per-service entries: can this process serve requests (is its DB reachable)?"""
        for name in self._serving_entries:
            await self._set(name, serving)

    async def set_eventing(self, serving: bool) -> None:
        await self._set(EVENTING, serving)

    def is_serving(self, name: str = OVERALL) -> bool:
        return self._state.get(name, False)

    async def shutdown(self) -> None:
        """Every entry NOT_SERVING for good: load balancers stop routing before we stop accepting."""
        await self.servicer.enter_graceful_shutdown()
        for name in self._state:
            self._state[name] = False
