"""Keep credentials out of log lines: API key secrets, sensitive fields, passwords in URLs."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_sensitive_key", "redact_text", "redact_value"]

REDACTED = "[REDACTED]"

# Our API keys are `rk_<key id>_<secret>`: keep the id (useful when debugging), drop the secret.
_API_KEY = re.compile(r"(?<![A-Za-z0-9])(rk_[A-Za-z0-9]+_)[A-Za-z0-9_-]+")
# `password=...`, `"token": "..."`, `Authorization: Bearer ...` written inside a message.
_KEY_VALUE = re.compile(
    r"(?i)\b(\w*(?:authorization|password|secret|token|credential)\w*)(\"?\s*[:=]\s*\"?)"
    r"(?:bearer\s+|basic\s+)?[^\s\"',;&})\]]+"
)
# postgresql://user:password@host
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s/]+@")
_SENSITIVE_WORDS = ("authorization", "password", "secret", "token", "credential")
# Every pattern above needs "rk_", "://" or a sensitive word: one C-level scan spares the three
# substitutions on the common line (the per-call request log holds none of them).
_MAY_HOLD_SECRET = re.compile(r"rk_|://|(?i:" + "|".join(_SENSITIVE_WORDS) + ")")


@functools.lru_cache(maxsize=4096)  # log field names are a small, fixed set
def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE_WORDS)


def redact_text(text: str) -> str:
    if _MAY_HOLD_SECRET.search(text) is None:
        return text
    text = _API_KEY.sub(rf"\1{REDACTED}", text)
    text = _KEY_VALUE.sub(rf"\1\2{REDACTED}", text)
    return _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)


def redact_value(value: Any, key: str | None = None) -> Any:
    """Redact a structured value: whole values under sensitive keys, secrets inside strings."""
    if key is not None and is_sensitive_key(key) and value is not None:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    return value
