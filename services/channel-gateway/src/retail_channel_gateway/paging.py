"""Opaque page tokens and change cursors (base64url JSON bound to what they page)."""

from __future__ import annotations

import base64
import binascii
import json

from retail_common.errors import InvalidArgument

__all__ = ["decode_cursor", "decode_token", "encode_cursor", "encode_token", "page_size"]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str, field: str) -> dict[str, object]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument.field(field, "malformed") from exc
    if not isinstance(data, dict):
        raise InvalidArgument.field(field, "malformed")
    return data


def encode_token(kind: str, binding: str, after: str) -> str:
    return _b64({"k": kind, "b": binding, "a": after})


def decode_token(token: str, kind: str, binding: str) -> str:
    """The position after which the next page starts ("" for the first page)."""
    if not token:
        return ""
    data = _unb64(token, "page_token")
    if data.get("k") != kind or data.get("b") != binding or not isinstance(data.get("a"), str):
        raise InvalidArgument.field("page_token", "does not belong to this request")
    return str(data["a"])


def encode_cursor(channel_id: str, seq: int) -> str:
    return _b64({"c": channel_id, "s": seq})


def decode_cursor(cursor: str, channel_id: str) -> int:
    """The change-log seq a cursor stands for; "" means 0 (before the first change)."""
    if not cursor:
        return 0
    data = _unb64(cursor, "cursor")
    seq = data.get("s")
    if data.get("c") != channel_id or not isinstance(seq, int) or seq < 0:
        raise InvalidArgument.field("cursor", "not a cursor of this channel")
    return seq


def page_size(value: int, default: int = 50, maximum: int = 1000) -> int:
    if value < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(value or default, maximum)
