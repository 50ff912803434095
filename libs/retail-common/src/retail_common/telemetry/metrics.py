"""One way to get a Meter, so every module creates its instruments against the configured provider."""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.metrics import Meter

__all__ = ["meter"]


def meter(name: str, version: str = "") -> Meter:
    """A meter named after the instrumenting module (e.g. `meter(__name__)`).

    Safe to call at import time: the API proxies to the real provider once setup_telemetry runs.
    """
    return metrics.get_meter(name, version)
