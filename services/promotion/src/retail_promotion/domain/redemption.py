"""Which single-use codes an order's applied promotions consume."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from retail_promotion.domain.model import Promotion

__all__ = ["codes_to_consume"]


def codes_to_consume(
    applied: Iterable[Promotion], public_codes: frozenset[str], batch_codes: Mapping[str, str]
) -> dict[str, list[str]]:
    """promotion id -> the single-use codes it consumes: none when an entered public code qualifies it,
    else the smallest unused entered code of one of its batches. A code serves one promotion only."""
    free = dict(sorted(batch_codes.items()))
    out: dict[str, list[str]] = {}
    for p in sorted(applied, key=lambda p: p.promotion_id):
        e = p.eligibility
        if not e.code_batches or e.codes & public_codes:
            continue
        code = next((c for c, batch in free.items() if batch in e.code_batches), None)
        if code is not None:
            del free[code]
            out[p.promotion_id] = [code]
    return out
