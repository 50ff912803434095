"""Progress of long imports on stderr: a redrawn bar on a terminal, a line per 10% otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

_BAR = 30
_REDRAW_EVERY = 0.1  # seconds: redrawing on every message would cost more than the import on a TTY


class Progress:
    """`advance(n)` as rows are handed to gRPC, `finish()` once the server has answered; use it as a
    context manager so a failure ends a half-drawn bar's line."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "rows",
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.unit = unit
        self.done = 0
        self._enabled = enabled
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._drawn_at = 0.0
        self._reported_tenth = 0

    def advance(self, count: int) -> None:
        self.done += count
        if not self._enabled:
            return
        if self._tty:
            now = time.monotonic()
            if now - self._drawn_at >= _REDRAW_EVERY:
                self._drawn_at = now
                self._stream.write("\r" + self._render())
                self._stream.flush()
            return
        tenth = self.done * 10 // self.total if self.total else 10
        if tenth > self._reported_tenth and tenth < 10:
            self._reported_tenth = tenth
            self._stream.write(self._render() + "\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        # A failed import leaves a half-drawn bar: end its line so the error starts on its own.
        if error is not None and self._enabled and self._tty and self._drawn_at:
            self._stream.write("\n")
            self._stream.flush()

    def finish(self, note: str = "") -> None:
        if not self._enabled:
            return
        line = self._render() + (f"  {note}" if note else "")
        self._stream.write(("\r" + line + "\n") if self._tty else line + "\n")
        self._stream.flush()

    def _render(self) -> str:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * _BAR)
        bar = "#" * filled + "-" * (_BAR - filled)
        return f"{self.label} [{bar}] {self.done:,}/{self.total:,} {self.unit} sent ({fraction:.0%})"
