"""Errors raised by pure domain rules. The servicer maps them to canonical gRPC errors (retail_common.errors),
so the domain stays free of gRPC."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BadInputError", "ConflictError", "ForbiddenError", "NotFoundError", "RuleError", "Violation"]


@dataclass(frozen=True)
class Violation:
    """One problem: a field path (for input) or a subject (for a rule), and why."""

    subject: str
    description: str


class BadInputError(Exception):
    """The input itself is invalid (maps to INVALID_ARGUMENT with one field violation each)."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.subject}: {v.description}" for v in violations))


class RuleError(Exception):
    """The state does not allow the operation (maps to FAILED_PRECONDITION)."""

    def __init__(self, rule: str, subject: str, description: str) -> None:
        self.rule = rule
        self.subject = subject
        self.description = description
        super().__init__(f"{rule} ({subject}): {description}")


class ForbiddenError(Exception):
    """The caller may not do this (maps to PERMISSION_DENIED)."""


class NotFoundError(Exception):
    """The addressed entity does not exist (maps to NOT_FOUND)."""

    def __init__(self, entity_type: str, key: str) -> None:
        self.entity_type = entity_type
        self.key = key
        super().__init__(f"{entity_type} {key!r} not found")


class ConflictError(Exception):
    """The etag does not match the current version (maps to ABORTED)."""
