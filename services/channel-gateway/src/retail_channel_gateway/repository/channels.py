"""Channels and assortments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from retail_channel_gateway.domain.policy import DeliverySettings, settings_from_json, settings_to_json
from retail_channel_gateway.domain.projection import ChannelScope
from retail_common.db import Connection

__all__ = ["ChannelRecord", "ChannelRepository"]

_BASE = """c.channel_id, c.display_name, c.kind, c.location_ids, c.delivery::text as delivery, c.mode,
c.signing_key_id, c.active, c.version, c.created_at, c.updated_at"""
_COLUMNS = (
    _BASE + ", (select count(*) from assortments a where a.channel_id = c.channel_id) as assortment_size"
)
# Hot paths (façade calls, delivery loop, projection registry): no count, which scans the assortment.
_LIGHT = _BASE + ", -1::bigint as assortment_size"


@dataclass(frozen=True)
class ChannelRecord:
    channel_id: str
    display_name: str
    kind: str
    location_ids: tuple[str, ...]
    settings: DeliverySettings
    signing_key_id: str | None
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    assortment_size: int

    @property
    def scope(self) -> ChannelScope:
        return ChannelScope(
            channel_id=self.channel_id,
            location_ids=frozenset(self.location_ids),
            change_kinds=self.settings.change_kinds,
            active=self.active,
        )


def _record(row: asyncpg.Record) -> ChannelRecord:
    return ChannelRecord(
        channel_id=row["channel_id"],
        display_name=row["display_name"],
        kind=row["kind"],
        location_ids=tuple(row["location_ids"]),
        settings=settings_from_json(json.loads(row["delivery"])),
        signing_key_id=row["signing_key_id"],
        active=row["active"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        assortment_size=int(row["assortment_size"]),
    )


class ChannelRepository:
    async def create(
        self,
        conn: Connection,
        *,
        channel_id: str,
        display_name: str,
        kind: str,
        location_ids: Sequence[str],
        settings: DeliverySettings,
        active: bool,
        webhook_secret: bytes | None,
        signing_key_id: str | None,
    ) -> ChannelRecord | None:
        """None if the id is taken."""
        inserted = await conn.fetchval(
            """
            insert into channels (channel_id, display_name, kind, location_ids, delivery, mode,
                                  webhook_secret, signing_key_id, active)
            values ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9)
            on conflict do nothing returning true
            """,
            channel_id,
            display_name,
            kind,
            sorted(set(location_ids)),
            json.dumps(settings_to_json(settings)),
            settings.mode,
            webhook_secret,
            signing_key_id,
            active,
        )
        if not inserted:
            return None
        await conn.execute("insert into channel_sequences (channel_id) values ($1)", channel_id)
        await conn.execute("insert into channel_health (channel_id) values ($1)", channel_id)
        return await self.get(conn, channel_id)

    async def update(
        self,
        conn: Connection,
        *,
        channel_id: str,
        expected_version: int,
        display_name: str,
        kind: str,
        location_ids: Sequence[str],
        settings: DeliverySettings,
        active: bool,
    ) -> ChannelRecord | None:
        """None on a version (etag) mismatch or an unknown channel."""
        updated = await conn.fetchval(
            """
            update channels set display_name = $3, kind = $4, location_ids = $5, delivery = $6::text::jsonb,
                   mode = $7, active = $8, version = version + 1, updated_at = now()
            where channel_id = $1 and version = $2 returning true
            """,
            channel_id,
            expected_version,
            display_name,
            kind,
            sorted(set(location_ids)),
            json.dumps(settings_to_json(settings)),
            settings.mode,
            active,
        )
        return await self.get(conn, channel_id) if updated else None

    async def get(
        self, conn: Connection, channel_id: str, *, for_update: bool = False, count_assortment: bool = True
    ) -> ChannelRecord | None:
        """`count_assortment=False` leaves assortment_size at -1 (hot paths do not need it)."""
        lock = " for update of c" if for_update else ""
        columns = _COLUMNS if count_assortment else _LIGHT
        row = await conn.fetchrow(
            f"select {columns} from channels c where c.channel_id = $1{lock}", channel_id
        )
        return None if row is None else _record(row)

    async def list_page(self, conn: Connection, *, after: str, limit: int) -> list[ChannelRecord]:
        rows = await conn.fetch(
            f"select {_COLUMNS} from channels c where c.channel_id > $1 order by c.channel_id limit $2",
            after,
            limit,
        )
        return [_record(row) for row in rows]

    async def all(self, conn: Connection) -> list[ChannelRecord]:
        """Every channel, without assortment sizes (-1)."""
        rows = await conn.fetch(f"select {_LIGHT} from channels c order by c.channel_id")
        return [_record(row) for row in rows]

    async def webhook_secret(self, conn: Connection, channel_id: str) -> bytes | None:
        value = await conn.fetchval("select webhook_secret from channels where channel_id = $1", channel_id)
        return None if value is None else bytes(value)

    async def stored_webhook_secrets(self, conn: Connection) -> list[tuple[str, bytes]]:
        rows = await conn.fetch(
            "select channel_id, webhook_secret from channels"
            " where webhook_secret is not null order by channel_id"
        )
        return [(row["channel_id"], bytes(row["webhook_secret"])) for row in rows]

    async def reseal_webhook_secret(self, conn: Connection, channel_id: str, old: bytes, new: bytes) -> bool:
        """Replace the stored form of the same secret, unless it changed meanwhile (a rotation wins)."""
        status = await conn.execute(
            "update channels set webhook_secret = $3 where channel_id = $1 and webhook_secret = $2",
            channel_id,
            old,
            new,
        )
        return status.endswith(" 1")

    async def set_webhook_secret(self, conn: Connection, channel_id: str, secret: bytes, key_id: str) -> bool:
        status = await conn.execute(
            "update channels set webhook_secret = $2, signing_key_id = $3, updated_at = now()"
            " where channel_id = $1",
            channel_id,
            secret,
            key_id,
        )
        return status.endswith(" 1")

    # ------------------------------------------------------------------------------------ assortment

    async def update_assortment(
        self, conn: Connection, channel_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> tuple[int, int]:
        added = await conn.fetchval(
            """
            with ins as (
                insert into assortments (channel_id, sku) select $1, unnest($2::text[])
                on conflict do nothing returning 1)
            select count(*) from ins
            """,
            channel_id,
            sorted(set(add)),
        )
        removed = await conn.fetchval(
            "with del as (delete from assortments where channel_id = $1 and sku = any($2::text[])"
            " returning 1) select count(*) from del",
            channel_id,
            sorted(set(remove)),
        )
        return int(added), int(removed)

    async def listing_channels(self, conn: Connection, skus: Sequence[str]) -> set[tuple[str, str]]:
        """(channel_id, sku) pairs of the given SKUs' assortments."""
        rows = await conn.fetch(
            "select channel_id, sku from assortments where sku = any($1::text[])", sorted(set(skus))
        )
        return {(row["channel_id"], row["sku"]) for row in rows}

    async def skus_outside_assortment(
        self, conn: Connection, channel_id: str, skus: Sequence[str]
    ) -> list[str]:
        rows = await conn.fetch(
            """
            select s.sku from unnest($2::text[]) as s(sku)
            where not exists (select 1 from assortments a where a.channel_id = $1 and a.sku = s.sku)
            """,
            channel_id,
            list(skus),
        )
        return [row["sku"] for row in rows]
