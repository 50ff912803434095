"""The audit trail on the wire: one page of `retail.common.v1.AuditRecord`s for any service's List RPC."""

from __future__ import annotations

from google.protobuf.struct_pb2 import Struct

from retail.common.v1 import audit_pb2, principal_pb2
from retail_common.db import MAX_PAGE_SIZE, AuditRecord, Connection, InvalidPageTokenError, list_audit
from retail_common.errors import FieldViolation, InvalidArgument

__all__ = ["audit_page", "audit_record_proto"]

_KINDS = {
    "channel": principal_pb2.PRINCIPAL_KIND_CHANNEL,
    "operator": principal_pb2.PRINCIPAL_KIND_OPERATOR,
    "service": principal_pb2.PRINCIPAL_KIND_SERVICE,
}


def audit_record_proto(record: AuditRecord) -> audit_pb2.AuditRecord:
    message = audit_pb2.AuditRecord(
        audit_id=str(record.id),
        principal_id=record.actor_id or "",
        principal_kind=_KINDS.get(record.actor_kind or "", principal_pb2.PRINCIPAL_KIND_UNSPECIFIED),
        action=record.action,
        entity_type=record.entity_type,
        entity_key=record.entity_key,
        request_id=record.request_id or "",
        trace_id=record.trace_id or "",
    )
    message.occurred_at.FromDatetime(record.occurred_at)
    for field, value in (("before", record.before), ("after", record.after)):
        if isinstance(value, dict):  # JSON objects map to Struct; anything else has no wire form here
            struct = Struct()
            struct.update(value)
            getattr(message, field).CopyFrom(struct)
    return message


async def audit_page(
    conn: Connection,
    *,
    entity_type: str = "",
    entity_key: str = "",
    actor_id: str = "",
    page_size: int = 0,
    page_token: str = "",
) -> tuple[list[audit_pb2.AuditRecord], str]:
    """Validate the paging request (INVALID_ARGUMENT naming the field) and read one page, newest first."""
    violations = []
    if page_size < 0:  # AIP-158: 0 means the default, above the maximum is coerced to it
        violations.append(FieldViolation("page_size", f"must not be negative (maximum {MAX_PAGE_SIZE})"))
    if entity_key and not entity_type:
        violations.append(FieldViolation("entity_key", "requires entity_type"))
    if violations:
        raise InvalidArgument(violations)
    try:
        records, token = await list_audit(
            conn,
            entity_type=entity_type or None,
            entity_key=entity_key or None,
            actor_id=actor_id or None,
            page_size=page_size,
            page_token=page_token,
        )
    except InvalidPageTokenError as exc:
        raise InvalidArgument.field("page_token", str(exc)) from None
    return [audit_record_proto(record) for record in records], token
