"""Subjects: `retail.<domain>.v1.<event>.<key token>...` and the one encoder for ids used as tokens.

Every producer names the event in snake_case (`PriceChanged` -> `price_changed`, `event_name`) and
appends its aggregate key as tokens, so a consumer filters one event type with
`event_filter(domain, event)` (`retail.<domain>.v1.<event>.>`) and one key with a full subject.

A NATS subject token must not contain '.', '*', '>' or whitespace, and must not be empty. Ids come
from the outside world (SKUs like "A.B 12", channel names, ...), so every id that becomes a token goes
through `subject_token`: a percent-style escape of everything outside [A-Za-z0-9_-], reversible by
`decode_subject_token`. The empty id becomes "%" alone (never a valid escape, so still reversible).
"""

from __future__ import annotations

import re

__all__ = [
    "deadletter_subject",
    "decode_subject_token",
    "domain_wildcard",
    "event_filter",
    "event_name",
    "event_subject",
    "subject_token",
]

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_EMPTY = "%"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def subject_token(value: str) -> str:
    """Encode an id as one NATS subject token (reversible; only [A-Za-z0-9_%-] in the result)."""
    if value == "":
        return _EMPTY
    out: list[str] = []
    for char in value:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_subject_token(token: str) -> str:
    """Inverse of `subject_token`; raises ValueError on a token it could not have produced."""
    if token == _EMPTY:
        return ""
    raw = bytearray()
    index = 0
    while index < len(token):
        char = token[index]
        if char == "%":
            pair = token[index + 1 : index + 3]
            if len(pair) != 2 or not all(c in "0123456789ABCDEF" for c in pair):
                raise ValueError(f"bad escape in subject token {token!r}")
            raw.append(int(pair, 16))
            index += 3
        elif char in _SAFE:
            raw.append(ord(char))
            index += 1
        else:
            raise ValueError(f"character {char!r} cannot appear in an encoded subject token")
    decoded = raw.decode("utf-8")
    if subject_token(decoded) != token:
        raise ValueError(f"non-canonical subject token {token!r}")
    return decoded


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{kind} must match {_NAME.pattern}, got {value!r}")
    return value


def event_name(message_name: str) -> str:
    """The subject form of an event message name: `PriceChanged` -> `price_changed`."""
    return _check_name("event", re.sub(r"(?<!^)(?=[A-Z])", "_", message_name).lower())


def event_filter(domain: str, event: str) -> str:
    """`retail.<domain>.v1.<event>.>`: every key of one event type (event in snake_case)."""
    return f"retail.{_check_name('domain', domain)}.v1.{_check_name('event', event)}.>"


def event_subject(domain: str, event: str, *ids: str) -> str:
    """`retail.<domain>.v1.<event>[.<id token>...]`, ids encoded with `subject_token`."""
    parts = ["retail", _check_name("domain", domain), "v1", _check_name("event", event)]
    parts.extend(subject_token(i) for i in ids)
    return ".".join(parts)


def domain_wildcard(domain: str) -> str:
    """`retail.<domain>.>`: every subject of one domain's stream."""
    return f"retail.{_check_name('domain', domain)}.>"


def deadletter_subject(consumer: str) -> str:
    """Where a consumer's dead letters go: `retail.deadletter.v1.<consumer token>`."""
    return f"retail.deadletter.v1.{subject_token(consumer)}"
