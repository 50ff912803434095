"""Campaign entities per store for POS store groups.

A store group is many POS systems, each applying (or failing to apply) a campaign on its own: one store
offline must show as that store, not as the whole group. So a campaign change becomes one ledger entity
per served store the campaign targets (`campaign/<id>/<location>`, same version): ordering, coalescing,
retries, dead letters and acknowledgements then hold per store, and the deployment ledger sees each one.
Deliveries of such entities are per store too (a webhook request or NATS subject per store), and their
DeliveryStateChanged events list the stores of one batch with the same outcome (one event, not one per
store).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from retail.channel.v1 import changes_pb2
from retail_channel_gateway.domain.changes import ChangeKind, DomainChange, LocationTargeting, entity_key

__all__ = [
    "STORE_GROUP",
    "by_store",
    "for_store",
    "key_suffix",
    "per_store",
    "store_of",
    "store_of_key",
    "targeted_stores",
    "tracks_per_store",
]

STORE_GROUP = "POS_STORE_GROUP"


def tracks_per_store(channel_kind: str, change: DomainChange) -> bool:
    """Campaign changes of store-group channels are tracked per store."""
    return channel_kind == STORE_GROUP and change.kind is ChangeKind.CAMPAIGN


def targeted_stores(
    targeting: LocationTargeting | None, served: Collection[str], regions: Mapping[str, str]
) -> list[str]:
    """Served locations the campaign targets, sorted: named (or in a named region, or every one when it
    names none) and neither excluded nor in an excluded region. A location whose region is unknown is
    matched by its id only."""
    if targeting is None:
        return sorted(set(served))
    out = []
    for location in sorted(set(served)):
        region = regions.get(location, "")
        if location in targeting.excluded_location_ids or (
            region and region in targeting.excluded_region_ids
        ):
            continue
        if (
            targeting.everywhere
            or location in targeting.location_ids
            or (region and region in targeting.region_ids)
        ):
            out.append(location)
    return out


def per_store(change: DomainChange, stores: Collection[str]) -> list[DomainChange]:
    """The campaign change as one change per store (sorted), each naming its store."""
    body = change.body
    if not isinstance(body, changes_pb2.CampaignUpdate):
        return [change]
    return [
        replace(
            change,
            entity_key=entity_key(ChangeKind.CAMPAIGN, body.campaign_id, store),
            location_id=store,
            body=changes_pb2.CampaignUpdate(
                campaign_id=body.campaign_id, state=body.state, location_id=store
            ),
        )
        for store in sorted(set(stores))
    ]


def store_of(change: changes_pb2.ChannelChange) -> tuple[str, str] | None:
    """(entity key without the store, store) of a per-store entity; None for any other change."""
    if change.WhichOneof("body") == "campaign" and change.campaign.location_id:
        return entity_key(ChangeKind.CAMPAIGN, change.campaign.campaign_id), change.campaign.location_id
    return None


def store_of_key(key: str) -> tuple[str, str] | None:
    """(entity key without the store, store) of a per-store entity key (`campaign/<id>/<location>`,
    parts escaped by entity_key); None for any other key."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != ChangeKind.CAMPAIGN.value.lower():
        return None
    return f"{parts[0]}/{parts[1]}", parts[2].replace("%2F", "/").replace("%25", "%")


def by_store(items: list[tuple[str, str, int]]) -> list[tuple[str, str, int, list[str]]]:
    """(entity key, kind, version) items as events: (entity key, kind, version, stores), the per-store
    entities of one (entity, version) together listing their stores, every other entity on its own
    (no stores); order of first appearance."""
    out: dict[tuple[str, str, int], list[str]] = {}
    for key, kind, version in items:
        found = store_of_key(key)
        if found is None:
            out[(key, kind, version)] = []
        else:
            out.setdefault((found[0], kind, version), []).append(found[1])
    return [(key, kind, version, sorted(stores)) for (key, kind, version), stores in out.items()]


def key_suffix(store: str) -> str:
    """The last part of a store's per-store entity keys (escaped as entity_key escapes it)."""
    return entity_key(ChangeKind.CAMPAIGN, "", store).rsplit("/", 1)[1]


def for_store(change: changes_pb2.ChannelChange, store: str) -> bool:
    """Whether a store reading for itself gets the change: group-wide changes and its own copies
    (empty store: every change)."""
    found = store_of(change)
    return not store or found is None or found[1] == store
