"""Domain exceptions map to canonical codes with ErrorInfo / BadRequest / PreconditionFailure details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from retail.common.v1 import errors_pb2
from retail_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Reason,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    internal_status,
)


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (InvalidArgument.field("sku", "empty"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
        (NotFound("sku", "123"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        (AlreadyExists("sku", "123"), grpc.StatusCode.ALREADY_EXISTS, "ALREADY_EXISTS"),
        (
            FailedPrecondition([PreconditionViolation("STATE", "change_set/7", "not submitted")]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "FAILED_PRECONDITION",
        ),
        (Aborted("etag mismatch"), grpc.StatusCode.ABORTED, "ETAG_MISMATCH"),
        (Unauthenticated(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
        (ResourceExhausted("slow down"), grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
        (Unavailable("db down"), grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
    ],
)
def test_each_error_maps_to_its_code_and_reason(error, code, reason):
    status = error.to_status("retail.testing.v1")
    assert status.code == code.value[0]
    assert status.message == error.message
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == (reason, "retail.testing.v1")
    grpc_status = error.to_grpc_status("retail.testing.v1")
    assert grpc_status.code == code
    assert grpc_status.trailing_metadata[0][0] == "grpc-status-details-bin"


def test_reasons_are_the_contract_enum_names():
    names = {name.removeprefix("ERROR_REASON_") for name, _ in errors_pb2.ErrorReason.items()} - {
        "UNSPECIFIED"
    }
    ours = {value for key, value in vars(Reason).items() if key.isupper()}
    assert ours == names


def test_invalid_argument_lists_every_field_in_bad_request():
    error = InvalidArgument([FieldViolation("sku", "required"), FieldViolation("lines[2].quantity", "> 0")])
    bad_request = error_details_pb2.BadRequest()
    assert error.to_status("d").details[1].Unpack(bad_request)
    assert [v.field for v in bad_request.field_violations] == ["sku", "lines[2].quantity"]
    assert "sku" in error.message


def test_failed_precondition_carries_type_subject_description():
    error = FailedPrecondition([PreconditionViolation("STATE", "campaign/9", "already launched")])
    failure = error_details_pb2.PreconditionFailure()
    assert error.to_status("d").details[1].Unpack(failure)
    violation = failure.violations[0]
    assert violation.type == "STATE"
    assert (violation.subject, violation.description) == ("campaign/9", "already launched")


def test_violations_are_required():
    with pytest.raises(ValueError, match="at least one"):
        InvalidArgument([])


def test_internal_status_carries_only_the_trace_id():
    status = internal_status("abc123", "retail.testing.v1")
    assert status.code == grpc.StatusCode.INTERNAL
    assert "abc123" in status.details
