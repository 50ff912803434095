"""The one mapping from pricing domain errors to the suite's canonical gRPC errors."""

from __future__ import annotations

from retail_common.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from retail_pricing.domain.errors import (
    BadInputError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RuleError,
)

__all__ = ["to_grpc_error"]

_PRICING_ERRORS = (BadInputError, RuleError, ForbiddenError, NotFoundError, ConflictError)


def to_grpc_error(exc: Exception) -> DomainError | None:
    """The canonical error for a domain exception; None for anything else (-> INTERNAL upstream)."""
    if isinstance(exc, BadInputError):
        return InvalidArgument([FieldViolation(v.subject, v.description) for v in exc.violations[:100]])
    if isinstance(exc, RuleError):
        return FailedPrecondition([PreconditionViolation(exc.rule, exc.subject, exc.description)])
    if isinstance(exc, ForbiddenError):
        return PermissionDenied(str(exc))
    if isinstance(exc, NotFoundError):
        return NotFound(exc.entity_type, exc.key)
    if isinstance(exc, ConflictError):
        return Aborted(str(exc))
    return None
