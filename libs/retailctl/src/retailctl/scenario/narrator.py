"""Narration of the scenario on a text stream: numbered steps, then the facts read back under each."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Narrator"]


class Narrator:
    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._step = 0
        self._started = time.monotonic()

    def step(self, title: str) -> None:
        self._step += 1
        elapsed = time.monotonic() - self._started
        self._out.write(f"\n[{elapsed:5.1f}s] {self._step}. {title}\n")
        self._out.flush()

    def fact(self, text: str) -> None:
        self._out.write(f"         - {text}\n")
        self._out.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self._started
