"""Append-only audit trail against a real database with the shipped audit migration."""

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TypeAlias

import asyncpg
import pytest

from retail_common.context import CallContext, Principal, PrincipalKind, set_call
from retail_common.db import (
    AUDIT_MIGRATIONS,
    MAX_PAGE_SIZE,
    InvalidPageTokenError,
    append_audit,
    create_pool,
    list_audit,
    migrate,
    transaction,
)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    await migrate(database_url, [AUDIT_MIGRATIONS])
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def test_audit_sql_ships_with_the_package() -> None:
    assert [f.path.name for f in AUDIT_MIGRATIONS.files()] == ["0001_audit_log.sql"]


async def test_append_then_list_newest_first_with_pagination(pool: Pool) -> None:
    operator = Principal("op-1", PrincipalKind.OPERATOR)
    async with transaction(pool) as conn:
        for n in range(5):
            await append_audit(
                conn,
                action="/retail.pricing.v1.PricingService/UpdatePriceList",
                entity_type="price_list",
                entity_key="PL-1",
                before={"price": Decimal("1.10") * n} if n else None,
                after={"price": Decimal("1.10") * (n + 1)},
                actor=operator,
                request_id=f"req-{n}",
            )
        await append_audit(
            conn,
            action="X",
            entity_type="price_list",
            entity_key="PL-2",
            before=None,
            after={},
            actor=operator,
        )

    async with pool.acquire() as conn:
        first, token = await list_audit(conn, entity_type="price_list", entity_key="PL-1", page_size=2)
        second, token2 = await list_audit(
            conn, entity_type="price_list", entity_key="PL-1", page_size=2, page_token=token
        )
        third, token3 = await list_audit(
            conn, entity_type="price_list", entity_key="PL-1", page_size=2, page_token=token2
        )
        everything, none_left = await list_audit(conn, actor_id="op-1", page_size=0)

    assert [r.request_id for r in first + second + third] == [f"req-{n}" for n in (4, 3, 2, 1, 0)]
    assert token
    assert token2
    assert token3 == ""
    assert len(everything) == 6
    assert none_left == ""
    newest = first[0]
    assert (newest.actor_id, newest.actor_kind, newest.action) == (
        "op-1",
        "operator",
        "/retail.pricing.v1.PricingService/UpdatePriceList",
    )
    assert newest.before == {"price": "4.40"}
    assert newest.after == {"price": "5.50"}
    assert third[-1].before is None


async def test_page_token_is_bound_to_its_filters_and_page_size_is_bounded(
    pool: Pool,
) -> None:
    async with pool.acquire() as conn:
        for n in range(3):
            await append_audit(conn, action="A", entity_type="t", entity_key=str(n), before=None, after=None)
        _, token = await list_audit(conn, entity_type="t", page_size=1)
        with pytest.raises(InvalidPageTokenError):
            await list_audit(conn, entity_type="other", page_size=1, page_token=token)
        with pytest.raises(InvalidPageTokenError):
            await list_audit(conn, page_token="not-a-token")
        with pytest.raises(ValueError, match="page_size"):
            await list_audit(conn, page_size=-1)
        records, _ = await list_audit(conn, page_size=MAX_PAGE_SIZE * 10)
        assert len(records) == 3


async def test_update_delete_and_truncate_are_rejected(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await append_audit(conn, action="A", entity_type="t", entity_key="k", before=None, after={"v": 1})
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("update audit_log set entity_key = 'x'")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("delete from audit_log")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
            await conn.execute("truncate audit_log")
        assert await conn.fetchval("select entity_key from audit_log") == "k"


async def test_actor_request_and_trace_default_from_the_call_context(
    pool: Pool,
) -> None:
    channel = Principal("web-shop", PrincipalKind.CHANNEL)
    set_call(CallContext(method="/m/Reserve", principal=channel, request_id="req-9", trace_id="ab" * 16))
    try:
        async with pool.acquire() as conn:
            await append_audit(
                conn, action="/m/Reserve", entity_type="r", entity_key="1", before=None, after={}
            )
            # Explicit arguments win over the context.
            await append_audit(
                conn,
                action="/m/Reserve",
                entity_type="r",
                entity_key="2",
                before=None,
                after={},
                actor=Principal("op", PrincipalKind.OPERATOR),
                request_id="explicit",
            )
            records, _ = await list_audit(conn, entity_type="r")
    finally:
        set_call(None)

    by_key = {r.entity_key: r for r in records}
    assert (by_key["1"].actor_id, by_key["1"].actor_kind, by_key["1"].request_id, by_key["1"].trace_id) == (
        "web-shop",
        "channel",
        "req-9",
        "ab" * 16,
    )
    assert (by_key["2"].actor_id, by_key["2"].request_id) == ("op", "explicit")


async def test_audit_page_speaks_the_common_contract_and_names_bad_fields(pool: Pool) -> None:
    from retail.common.v1 import principal_pb2
    from retail_common.errors import InvalidArgument
    from retail_common.grpcx import audit_page

    operator = Principal("op-1", PrincipalKind.OPERATOR, frozenset())
    async with transaction(pool) as conn:
        await append_audit(
            conn, action="/x.v1.S/Update", entity_type="sku", entity_key="A", before={"p": "1.00"},
            after={"p": "2.00"}, actor=operator, request_id="r-1",
        )  # fmt: skip
    async with pool.acquire() as conn:
        records, token = await audit_page(conn, entity_type="sku", entity_key="A")
        assert token == ""
        [record] = records
        assert (record.principal_id, record.principal_kind) == ("op-1", principal_pb2.PRINCIPAL_KIND_OPERATOR)
        assert (record.request_id, record.after["p"], record.before["p"]) == ("r-1", "2.00", "1.00")
        for kwargs, field in (
            ({"page_size": -1}, "page_size"),
            ({"entity_key": "A"}, "entity_key"),
            ({"page_token": "garbage"}, "page_token"),
        ):
            with pytest.raises(InvalidArgument) as caught:
                await audit_page(conn, **kwargs)  # type: ignore[arg-type]
            assert [v.field for v in caught.value.violations] == [field]
