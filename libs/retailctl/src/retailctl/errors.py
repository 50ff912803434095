"""Exit codes and the one mapping of failed calls to a one-line message that says what to do.

Every failure ends as a CliError: a message for stderr and an exit code scripts can branch on.
A failed gRPC call is decoded with retail_common.errors.parse_error, so the field violations,
precondition failures and resource names the services send end up in the message.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import grpc

from retail_common.errors import ErrorDetails, parse_error

__all__ = ["CliError", "ExitCode", "FieldNamer", "env_var", "from_rpc_error"]


class ExitCode(enum.IntEnum):
    OK = 0
    # The call worked and reported something not in the desired state (degraded channel, partial
    # deployment, no price): a finding, not an error.
    FINDING = 1
    # Bad command line or local setup (unknown option, missing file, no operator key).
    USAGE = 2
    # The service could not be reached or did not answer in time; retrying later may work.
    UNAVAILABLE = 3
    # The service (or the CLI's own check of the input) refused the request: invalid argument, not
    # found, permission, failed precondition, conflict. Retrying unchanged fails again.
    REFUSED = 4
    # The service failed internally (INTERNAL, UNKNOWN, ...): its log and trace tell why.
    SERVER_ERROR = 5


class CliError(Exception):
    """A failure to report on one line of stderr, ending the command with `exit_code`."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# Rewrites a wire field path ("products[3].sku") into words about the user's input ("row 5, column
# sku") so import errors point into the CSV file; None keeps the path as it is.
FieldNamer = Callable[[str], str | None]

_UNAVAILABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}


def env_var(service: str) -> str:
    return service.upper().replace("-", "_") + "_TARGET"


def _exit_code(code: grpc.StatusCode) -> ExitCode:
    if code in _UNAVAILABLE:
        return ExitCode.UNAVAILABLE
    if code in _REFUSED:
        return ExitCode.REFUSED
    return ExitCode.SERVER_ERROR


def _fields(details: ErrorDetails, name_field: FieldNamer | None) -> str:
    parts = []
    for violation in details.field_violations:
        where = (name_field(violation.field) if name_field else None) or f"field {violation.field}"
        parts.append(f"{where}: {violation.description}")
    return "; ".join(parts)


def _advice(details: ErrorDetails, service: str, target: str, timeout: float | None) -> str:
    code = details.code
    if code == grpc.StatusCode.UNAVAILABLE and details.reason:
        # The service answered (a rich status comes from its error mapping): a dependency is down.
        return f"{service} at {target} is up but cannot serve this now ({details.message}); retry later"
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"cannot reach {service} at {target} ({details.message or 'unavailable'}); is the suite "
            f"running (`make run`)? Set {env_var(service)} to point elsewhere, or retry in a moment"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        waited = f" within {timeout:g}s" if timeout else ""
        return f"{service} at {target} did not answer{waited}; retry, or allow longer with --timeout"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"{service} is overloaded ({details.message}); retry later"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return (
            f"{service} refused the operator key ({details.message}); set RETAILCTL_API_KEY or pass "
            "--api-key (`make run` writes .run/credentials/operator.key)"
        )
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return f"{service} denied the call ({details.message}); the operator key lacks the role it needs"
    if code == grpc.StatusCode.NOT_FOUND:
        if details.resource:
            kind, name = details.resource
            return f"{kind.rsplit('.', 1)[-1]} {name!r} not found in {service}; check the id"
        return f"not found in {service}: {details.message}"
    if code == grpc.StatusCode.FAILED_PRECONDITION and details.precondition_violations:
        found = "; ".join(f"{v.subject}: {v.description}" for v in details.precondition_violations)
        return f"{service} refused: {found}"
    if code == grpc.StatusCode.ABORTED:
        return f"{service} refused a concurrent change ({details.message}); re-read and retry"
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        trace = details.metadata.get("trace_id")
        where = f" (trace id {trace}: look it up in Jaeger or the service log)" if trace else ""
        return f"{service} failed internally: {details.message}{where}"
    return f"{service} refused ({code.name}): {details.message}"


def from_rpc_error(
    error: grpc.aio.AioRpcError,
    *,
    service: str,
    target: str,
    timeout: float | None = None,
    name_field: FieldNamer | None = None,
    subject: str = "the input",
) -> CliError:
    """One line naming the service, the bad fields (in the user's terms) and what to do next."""
    details = parse_error(error)
    if details.code == grpc.StatusCode.INVALID_ARGUMENT and details.field_violations:
        message = f"{service} refused {subject}: {_fields(details, name_field)}; correct it and retry"
    else:
        message = _advice(details, service, target, timeout)
    return CliError(" ".join(message.split()), _exit_code(details.code))
