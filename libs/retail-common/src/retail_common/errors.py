"""Domain exceptions and their one mapping to canonical gRPC codes with `google.rpc.Status` details.

Servicers and domain code raise these; the server's error interceptor turns them into a status whose
`grpc-status-details-bin` trailer carries ErrorInfo (reason, domain, metadata) plus BadRequest /
PreconditionFailure / ResourceInfo where they apply (conventions: retail/common/v1/errors.proto).
Clients and tests read them back with `parse_error`.
"""

# Exception names mirror the canonical gRPC codes they map to (NotFound -> NOT_FOUND), hence no suffix.
# ruff: noqa: N818

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from retail.common.v1 import errors_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DomainError",
    "ErrorDetails",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PreconditionViolation",
    "Reason",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "internal_status",
    "parse_error",
]


def _reason(value: int) -> str:
    # The wire reason is the contract's enum value name without its prefix (errors.proto).
    return errors_pb2.ErrorReason.Name(value).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]


class Reason:
    """Shared reason strings, derived from retail.common.v1.ErrorReason so they cannot drift."""

    INVALID_FIELD = _reason(errors_pb2.ERROR_REASON_INVALID_FIELD)
    NOT_FOUND = _reason(errors_pb2.ERROR_REASON_NOT_FOUND)
    ALREADY_EXISTS = _reason(errors_pb2.ERROR_REASON_ALREADY_EXISTS)
    ETAG_MISMATCH = _reason(errors_pb2.ERROR_REASON_ETAG_MISMATCH)
    FAILED_PRECONDITION = _reason(errors_pb2.ERROR_REASON_FAILED_PRECONDITION)
    IDEMPOTENCY_KEY_REUSED = _reason(errors_pb2.ERROR_REASON_IDEMPOTENCY_KEY_REUSED)
    UNAUTHENTICATED = _reason(errors_pb2.ERROR_REASON_UNAUTHENTICATED)
    PERMISSION_DENIED = _reason(errors_pb2.ERROR_REASON_PERMISSION_DENIED)
    RESOURCE_EXHAUSTED = _reason(errors_pb2.ERROR_REASON_RESOURCE_EXHAUSTED)
    UNAVAILABLE = _reason(errors_pb2.ERROR_REASON_UNAVAILABLE)
    INTERNAL = _reason(errors_pb2.ERROR_REASON_INTERNAL)


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: proto field path (dotted, indexed: "lines[2].quantity") and why."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition: type (what kind of check), subject (which entity), description (why)."""

    type: str
    subject: str
    description: str


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


class DomainError(Exception):
    """Base of every error a servicer may raise on purpose. Its message is sent to the caller."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    default_reason: ClassVar[str] = Reason.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        domain: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.domain = domain

    def extra_details(self) -> list[object]:
        """Details besides ErrorInfo (BadRequest, PreconditionFailure, ...)."""
        return []

    def to_status(self, default_domain: str) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=self.domain or default_domain, metadata=self.metadata
        )
        return status_pb2.Status(
            code=self.code.value[0],
            message=self.message,
            details=[_pack(info), *(_pack(detail) for detail in self.extra_details())],
        )

    def to_grpc_status(self, default_domain: str) -> grpc.Status:
        return rpc_status.to_status(self.to_status(default_domain))


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = Reason.INVALID_FIELD

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        message: str | None = None,
        *,
        reason: str | None = None,
        domain: str | None = None,
    ) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one field violation")
        self.violations = list(violations)
        text = message or "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(text, reason=reason, domain=domain)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])

    def extra_details(self) -> list[object]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.violations
                ]
            )
        ]


class _ResourceError(DomainError):
    verb: ClassVar[str] = ""

    def __init__(self, resource_type: str, name: str, message: str | None = None) -> None:
        self.resource_type = resource_type
        self.name = name
        super().__init__(
            message or f"{resource_type} {name!r} {self.verb}",
            metadata={"resource_type": resource_type, "resource_name": name},
        )

    def extra_details(self) -> list[object]:
        return [error_details_pb2.ResourceInfo(resource_type=self.resource_type, resource_name=self.name)]


class NotFound(_ResourceError):
    code = grpc.StatusCode.NOT_FOUND
    default_reason = Reason.NOT_FOUND
    verb = "not found"


class AlreadyExists(_ResourceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = Reason.ALREADY_EXISTS
    verb = "already exists"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = Reason.FAILED_PRECONDITION

    def __init__(
        self,
        violations: Sequence[PreconditionViolation],
        message: str | None = None,
        *,
        reason: str | None = None,
        domain: str | None = None,
    ) -> None:
        if not violations:
            raise ValueError("FailedPrecondition needs at least one violation")
        self.violations = list(violations)
        text = message or "; ".join(f"{v.subject}: {v.description}" for v in violations)
        super().__init__(text, reason=reason, domain=domain)

    def extra_details(self) -> list[object]:
        return [
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=v.type, subject=v.subject, description=v.description
                    )
                    for v in self.violations
                ]
            )
        ]


class Aborted(DomainError):
    """Optimistic concurrency: the caller's etag is stale; re-read and retry."""

    code = grpc.StatusCode.ABORTED
    default_reason = Reason.ETAG_MISMATCH


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    default_reason = Reason.UNAUTHENTICATED

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message)


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    default_reason = Reason.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = Reason.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency is down; the caller may retry with the same request_id."""

    code = grpc.StatusCode.UNAVAILABLE
    default_reason = Reason.UNAVAILABLE


def internal_status(trace_id: str | None, domain: str) -> grpc.Status:
    """INTERNAL with a generic message: only the trace id leaves the server, never the exception."""
    reference = trace_id or "unavailable"
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error (trace id {reference})",
        details=[
            _pack(
                error_details_pb2.ErrorInfo(
                    reason=Reason.INTERNAL, domain=domain, metadata={"trace_id": reference}
                )
            )
        ],
    )
    return rpc_status.to_status(status)


@dataclass(frozen=True)
class ErrorDetails:
    """What a client can read from a failed call."""

    code: grpc.StatusCode
    message: str
    reason: str | None = None
    domain: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    precondition_violations: list[PreconditionViolation] = field(default_factory=list)
    resource: tuple[str, str] | None = None

    @property
    def fields(self) -> list[str]:
        return [violation.field for violation in self.field_violations]


def parse_error(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """Decode the rich status of a failed call (plain code and message when it has no details)."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return ErrorDetails(code=code, message=message)
    reason = domain = None
    metadata: dict[str, str] = {}
    fields: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    resource = None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        failure = error_details_pb2.PreconditionFailure()
        resource_info = error_details_pb2.ResourceInfo()
        if detail.Unpack(info):
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Unpack(bad_request):
            fields += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Unpack(failure):
            preconditions += [
                PreconditionViolation(v.type, v.subject, v.description) for v in failure.violations
            ]
        elif detail.Unpack(resource_info):
            resource = (resource_info.resource_type, resource_info.resource_name)
    return ErrorDetails(
        code=code,
        message=message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=fields,
        precondition_violations=preconditions,
        resource=resource,
    )
