"""Governed changes: create/update drafts, preview, submit (guardrails), approve/reject, revert."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

import uuid6

from retail.pricing.v1 import change_sets_pb2, events_pb2
from retail.pricing.v1 import pricing_service_pb2 as pb
from retail_common.db import Connection
from retail_pricing import events
from retail_pricing.convert import (
    STATES_IN,
    amounts_to_proto,
    change_set_to_proto,
    decimal_to_proto,
    entry_to_proto,
    finding_to_proto,
    item_from_proto,
    items_to_proto,
    timestamp_to_proto,
)
from retail_pricing.domain import change_sets as rules
from retail_pricing.domain.change_sets import AddEntry, EndEntry, Insert, Item, Operation, Shorten, Withdraw
from retail_pricing.domain.errors import ConflictError, NotFoundError, RuleError, Violation
from retail_pricing.domain.guardrails import Finding, ProductLimits, Severity, check
from retail_pricing.domain.model import AbsoluteWindow, PriceEntry
from retail_pricing.domain.preview import Diff, Probe, preview, probes_for
from retail_pricing.domain.pricer import Pricer, ProductInfo
from retail_pricing.domain.windows import earliest_possible_start
from retail_pricing.handlers.common import (
    Deps,
    actor_id,
    audit,
    decode_page_token,
    encode_page_token,
    page_size,
    raise_if,
    run_idempotent,
)
from retail_pricing.repository import activations
from retail_pricing.repository import change_sets as repo
from retail_pricing.repository import entries as entries_repo
from retail_pricing.repository import price_lists as lists_repo
from retail_pricing.repository import products as products_repo
from retail_pricing.repository.change_sets import StoredChangeSet
from retail_pricing.repository.tax_rates import load_tax_rates

__all__ = [
    "approve_change_set",
    "create_change_set",
    "get_change_set",
    "list_change_set_items",
    "list_change_sets",
    "preview_change_set",
    "reject_change_set",
    "revert_change_set",
    "submit_change_set",
    "update_change_set",
]

ENTITY = "retail.pricing.v1.ChangeSet"
_FAR_ID = 2**62  # ids for not-yet-created entries in previews
_INSERT_CHUNK = 5000
MAX_RETURNED = 1000  # items / created entries echoed in responses (ChangeSet.item_count has the total)


def _parse_items(raw: Sequence[change_sets_pb2.ChangeSetItem], path: str) -> tuple[list[Item], list[str]]:
    if len(raw) > rules.MAX_ITEMS:
        raise_if([Violation(path, f"at most {rules.MAX_ITEMS} items")])
    problems: list[Violation] = []
    items: list[Item] = []
    currencies: list[str] = []
    for i, proto in enumerate(raw):
        parsed = item_from_proto(proto, f"{path}[{i}]", problems)
        if parsed is not None:
            items.append(parsed[0])
            currencies.append(parsed[1])
    raise_if(problems)
    return items, currencies


async def check_references(
    conn: Connection, items: Sequence[Item], currencies: Sequence[str], path: str
) -> list[Violation]:
    """Lists exist with the amount's currency; SKUs exist and are active; ended entries exist."""
    adds = [(i, item) for i, item in enumerate(items) if isinstance(item, AddEntry)]
    lists = await lists_repo.load_price_lists(conn)
    products = await products_repo.get_products(conn, {item.sku for _, item in adds})
    problems: list[Violation] = []
    for i, item in adds:
        at = f"{path}[{i}].add_entry"
        price_list = lists.get(item.price_list_id)
        if price_list is None:
            problems.append(Violation(f"{at}.price_list_id", f"unknown price list {item.price_list_id!r}"))
        elif currencies and currencies[i] != price_list.currency:
            problems.append(
                Violation(f"{at}.amount.currency_code", f"must be the list's currency {price_list.currency}")
            )
        product = products.get(item.sku)
        if product is None:
            problems.append(Violation(f"{at}.sku", f"unknown SKU {item.sku!r}"))
        elif not product.active:
            problems.append(Violation(f"{at}.sku", f"SKU {item.sku!r} is inactive"))
    ends = [(i, item) for i, item in enumerate(items) if isinstance(item, EndEntry)]
    existing = await entries_repo.entries_by_ids(conn, [item.entry_id for _, item in ends])
    for i, end in ends:
        if end.entry_id not in existing:
            problems.append(Violation(f"{path}[{i}].end_entry.entry_id", f"unknown entry {end.entry_id}"))
    return problems


async def _currencies(conn: Connection) -> dict[str, str]:
    return {k: v.currency for k, v in (await lists_repo.load_price_lists(conn)).items()}


async def _to_proto(conn: Connection, cs: StoredChangeSet) -> change_sets_pb2.ChangeSet:
    items = await repo.load_items(conn, cs.change_set_id, limit=MAX_RETURNED)
    return change_set_to_proto(cs, items, await _currencies(conn))


def _parse_id(value: str, path: str = "change_set_id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise_if([Violation(path, "must be a change set id (UUID)")])
        raise AssertionError("unreachable") from None


async def _load(
    conn: Connection, change_set_id: uuid.UUID, *, lock: bool, etag: str | None = None
) -> StoredChangeSet:
    cs = await repo.get_change_set(conn, change_set_id, lock=lock)
    if cs is None:
        raise NotFoundError(ENTITY, str(change_set_id))
    if etag is not None and etag != str(cs.version):
        raise ConflictError(f"etag {etag!r} is stale; current is {cs.version}")
    return cs


# --- drafts -------------------------------------------------------------------------------------------


async def create_change_set(deps: Deps, request: pb.CreateChangeSetRequest) -> pb.CreateChangeSetResponse:
    items, currencies = _parse_items(request.change_set.items, "change_set.items")
    if len(request.change_set.description) > 1000:
        raise_if([Violation("change_set.description", "at most 1000 characters")])

    async def body(conn: Connection) -> pb.CreateChangeSetResponse:
        raise_if(await check_references(conn, items, currencies, "change_set.items"))
        cs = await repo.insert_change_set(
            conn, uuid6.uuid7(), request.change_set.description, actor_id(), deps.clock.now()
        )
        await repo.replace_items(conn, cs.change_set_id, items)
        stored = await _load(conn, cs.change_set_id, lock=False)
        out = await _to_proto(conn, stored)
        await audit(conn, "CreateChangeSet", ENTITY, str(cs.change_set_id), None, out)
        return pb.CreateChangeSetResponse(change_set=out)

    return await run_idempotent(
        deps, "CreateChangeSet", request.request_id, request, pb.CreateChangeSetResponse, body
    )


async def update_change_set(deps: Deps, request: pb.UpdateChangeSetRequest) -> pb.UpdateChangeSetResponse:
    change_set_id = _parse_id(request.change_set.change_set_id, "change_set.change_set_id")
    items, currencies = _parse_items(request.change_set.items, "change_set.items")

    async def body(conn: Connection) -> pb.UpdateChangeSetResponse:
        cs = await _load(conn, change_set_id, lock=True, etag=request.change_set.etag)
        rules.ensure_editable(cs.state, str(change_set_id))
        raise_if(await check_references(conn, items, currencies, "change_set.items"))
        before = await _to_proto(conn, cs)
        await repo.replace_items(conn, change_set_id, items)
        updated = await repo.update_change_set(
            conn, change_set_id, cs.version, description=request.change_set.description
        )
        assert updated is not None
        out = await _to_proto(conn, updated)
        await audit(conn, "UpdateChangeSet", ENTITY, str(change_set_id), before, out)
        return pb.UpdateChangeSetResponse(change_set=out)

    return await run_idempotent(
        deps, "UpdateChangeSet", request.request_id, request, pb.UpdateChangeSetResponse, body
    )


async def get_change_set(deps: Deps, request: pb.GetChangeSetRequest) -> pb.GetChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)
    async with deps.pool.acquire() as conn:
        return pb.GetChangeSetResponse(
            change_set=await _to_proto(conn, await _load(conn, change_set_id, lock=False))
        )


async def list_change_sets(deps: Deps, request: pb.ListChangeSetsRequest) -> pb.ListChangeSetsResponse:
    size = page_size(request.page_size)
    raw = decode_page_token(request.page_token)
    after = None
    if raw:
        try:
            at, _, key = raw.partition("|")
            after = (datetime.fromisoformat(at), uuid.UUID(key))
        except ValueError:
            raise_if([Violation("page_token", "malformed")])
    state = STATES_IN.get(request.state)
    async with deps.pool.acquire() as conn:
        rows = await repo.list_change_sets(conn, state, after, size + 1)
        out = [await _to_proto(conn, cs) for cs in rows[:size]]
    token = ""
    if len(rows) > size:
        last = rows[size - 1]
        token = encode_page_token(f"{last.created_at.isoformat()}|{last.change_set_id}")
    return pb.ListChangeSetsResponse(change_sets=out, next_page_token=token)


async def list_change_set_items(
    deps: Deps, request: pb.ListChangeSetItemsRequest
) -> pb.ListChangeSetItemsResponse:
    change_set_id = _parse_id(request.change_set_id)
    size = page_size(request.page_size)
    raw = decode_page_token(request.page_token)
    if raw and not raw.isdigit():
        raise_if([Violation("page_token", "malformed")])
    after = int(raw) if raw else -1
    async with deps.pool.acquire() as conn:
        await _load(conn, change_set_id, lock=False)
        items, last = await repo.load_item_page(conn, change_set_id, size, after_position=after)
        currencies = await _currencies(conn)
    token = encode_page_token(str(last)) if last is not None else ""
    return pb.ListChangeSetItemsResponse(items=items_to_proto(items, currencies), next_page_token=token)


# --- preview and guardrails ---------------------------------------------------------------------------


async def _preview(deps: Deps, conn: Connection, items: Sequence[Item]) -> tuple[list[Diff], list[Finding]]:
    now = deps.clock.now()
    ended = await entries_repo.entries_by_ids(conn, [i.entry_id for i in items if isinstance(i, EndEntry)])
    plan = rules.plan_approval(items, ended, now)
    skus = {i.sku for i in items if isinstance(i, AddEntry)} | {e.sku for e in ended.values()}
    before = await entries_repo.entries_for_skus(conn, skus)
    products = await products_repo.get_products(conn, skus)
    pricer = Pricer(
        await lists_repo.load_price_lists(conn),
        await lists_repo.load_locations(conn),
        await load_tax_rates(conn),
    )
    infos = {sku: ProductInfo(sku, p.active, p.tax_class) for sku, p in products.items()}
    diffs = preview(plan, before, pricer, infos, now, _FAR_ID)
    limits = {sku: ProductLimits(p.cost, p.minimum_advertised_price) for sku, p in products.items()}
    return diffs, check(diffs, limits, deps.policy)


def _finding_dict(f: Finding) -> dict[str, str]:
    return {
        "kind": f.kind.value,
        "severity": f.severity.value,
        "sku": f.diff.sku,
        "message": f.message,
        **asdict(f.diff.probe),
    }


def _diff_to_proto(d: Diff) -> change_sets_pb2.PriceDiff:
    percent = d.change_percent
    return change_sets_pb2.PriceDiff(
        sku=d.sku,
        scope=events.scope_to_proto(d.probe),
        effective_time=timestamp_to_proto(d.at),
        old_price=None if d.old is None else amounts_to_proto(d.old, d.currency),
        new_price=None if d.new is None else amounts_to_proto(d.new, d.currency),
        change_percent=None if percent is None else decimal_to_proto(percent),
    )


async def preview_change_set(deps: Deps, request: pb.PreviewChangeSetRequest) -> pb.PreviewChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)
    async with deps.pool.acquire() as conn:
        await _load(conn, change_set_id, lock=False)
        diffs, findings = await _preview(deps, conn, await repo.load_items(conn, change_set_id))
    return pb.PreviewChangeSetResponse(
        diffs=[_diff_to_proto(d) for d in diffs],
        findings=[finding_to_proto(_finding_dict(f)) for f in findings],
    )


async def submit_change_set(deps: Deps, request: pb.SubmitChangeSetRequest) -> pb.SubmitChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)

    async def body(conn: Connection) -> pb.SubmitChangeSetResponse:
        cs = await _load(conn, change_set_id, lock=True, etag=request.etag)
        items = await repo.load_items(conn, change_set_id)
        state = rules.submit(cs.state, len(items), str(change_set_id))
        raise_if(await check_references(conn, items, [], "items"))
        _, findings = await _preview(deps, conn, items)
        blocking = [f for f in findings if f.severity is Severity.BLOCKING]
        if blocking:
            raise RuleError(
                "GUARDRAIL",
                str(change_set_id),
                "; ".join(f"{f.diff.sku} {f.kind.value}: {f.message}" for f in blocking[:20]),
            )
        before = await _to_proto(conn, cs)
        updated = await repo.update_change_set(
            conn,
            change_set_id,
            cs.version,
            state=state.value,
            submitted_at=deps.clock.now(),
            findings=[_finding_dict(f) for f in findings],
        )
        assert updated is not None
        out = await _to_proto(conn, updated)
        await audit(conn, "SubmitChangeSet", ENTITY, str(change_set_id), before, out)
        return pb.SubmitChangeSetResponse(change_set=out)

    return await run_idempotent(
        deps, "SubmitChangeSet", request.request_id, request, pb.SubmitChangeSetResponse, body
    )


# --- review -------------------------------------------------------------------------------------------


def _op_instant(op: Operation, now: datetime) -> datetime:
    if isinstance(op, Insert):
        instant = earliest_possible_start(op.item.window)
    elif isinstance(op, Shorten):
        end = op.window.end
        instant = end if isinstance(op.window, AbsoluteWindow) and end is not None else now
    else:
        instant = earliest_possible_start(op.before.window)
    return max(instant, now)


async def apply_plan(
    deps: Deps, conn: Connection, change_set_id: uuid.UUID, plan: Sequence[Operation], now: datetime
) -> list[PriceEntry]:
    """Apply an approval plan: entries, effects (for revert), activations and PriceChanged per SKU."""
    lists = await lists_repo.load_price_lists(conn)
    zones = {loc.time_zone for loc in (await lists_repo.load_locations(conn)).values()}
    # Serialise approvals touching the same lists (row locks in a fixed order).
    list_ids = sorted({(op.item if isinstance(op, Insert) else op.before).price_list_id for op in plan})
    await conn.execute(
        "select 1 from price_lists where price_list_id = any($1::text[]) order by price_list_id for update",
        list_ids,
    )
    created: list[PriceEntry] = []
    per_sku: dict[str, tuple[set[Probe], datetime]] = {}
    inserts: list[AddEntry] = []
    for op in plan:
        subject = op.item if isinstance(op, Insert) else op.before
        if isinstance(op, Withdraw):
            await entries_repo.delete_entry(conn, op.before.entry_id)
            await activations.forget_entry(conn, op.before.entry_id)
            await repo.record_effect(conn, change_set_id, op)
        elif isinstance(op, Shorten):
            await entries_repo.shorten_entry(conn, op.before.entry_id, op.window)
            await repo.record_effect(conn, change_set_id, op)
            shortened = PriceEntry(
                op.before.entry_id,
                op.before.price_list_id,
                op.before.sku,
                op.before.amount,
                op.window,
                op.before.min_quantity,
            )
            await activations.schedule_entry(conn, shortened, zones, now)
        else:
            inserts.append(op.item)
        price_list = lists[subject.price_list_id]
        probes, first = per_sku.get(subject.sku, (set(), _op_instant(op, now)))
        probes.update(probes_for(price_list))
        per_sku[subject.sku] = (probes, min(first, _op_instant(op, now)))
    for start in range(0, len(inserts), _INSERT_CHUNK):
        chunk = await entries_repo.insert_entries(
            conn, inserts[start : start + _INSERT_CHUNK], change_set_id, now
        )
        await activations.schedule_new_entries(conn, chunk, zones, now)
        created.extend(chunk)
    await events.price_changed_many(
        deps.writer,
        conn,
        [
            events.PriceChange(
                sku,
                frozenset(per_sku[sku][0]),
                per_sku[sku][1],
                events_pb2.PRICE_CHANGE_CAUSE_APPROVAL,
                str(change_set_id),
            )
            for sku in sorted(per_sku)
        ],
    )
    return created


async def approve_change_set(deps: Deps, request: pb.ApproveChangeSetRequest) -> pb.ApproveChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)
    touched: set[str] = set()

    async def body(conn: Connection) -> pb.ApproveChangeSetResponse:
        cs = await _load(conn, change_set_id, lock=True, etag=request.etag)
        state = rules.review(cs.state, cs.author_id, actor_id(), approve=True, subject=str(change_set_id))
        items = await repo.load_items(conn, change_set_id)
        raise_if(await check_references(conn, items, [], "items"))
        now = deps.clock.now()
        ended = await entries_repo.entries_by_ids(
            conn, [i.entry_id for i in items if isinstance(i, EndEntry)], lock=True
        )
        plan = rules.plan_approval(items, ended, now)
        before = await _to_proto(conn, cs)
        created = await apply_plan(deps, conn, change_set_id, plan, now)
        touched.update((op.item if isinstance(op, Insert) else op.before).sku for op in plan)
        updated = await repo.update_change_set(
            conn, change_set_id, cs.version, state=state.value, reviewer_id=actor_id(), reviewed_at=now
        )
        assert updated is not None
        out = await _to_proto(conn, updated)
        await audit(conn, "ApproveChangeSet", ENTITY, str(change_set_id), before, out)
        currencies = await _currencies(conn)
        return pb.ApproveChangeSetResponse(
            change_set=out,
            created_entries=[
                entry_to_proto(e, currencies[e.price_list_id], change_set_id, now)
                for e in created[:MAX_RETURNED]
            ],
        )

    response = await run_idempotent(
        deps, "ApproveChangeSet", request.request_id, request, pb.ApproveChangeSetResponse, body
    )
    deps.catalog.invalidate_skus(touched)
    deps.on_scheduled()
    return response


async def reject_change_set(deps: Deps, request: pb.RejectChangeSetRequest) -> pb.RejectChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)
    if not request.reason or len(request.reason) > 1000:
        raise_if([Violation("reason", "required, at most 1000 characters")])

    async def body(conn: Connection) -> pb.RejectChangeSetResponse:
        cs = await _load(conn, change_set_id, lock=True, etag=request.etag)
        state = rules.review(cs.state, cs.author_id, actor_id(), approve=False, subject=str(change_set_id))
        before = await _to_proto(conn, cs)
        updated = await repo.update_change_set(
            conn,
            change_set_id,
            cs.version,
            state=state.value,
            reviewer_id=actor_id(),
            reviewed_at=deps.clock.now(),
            rejection_reason=request.reason,
        )
        assert updated is not None
        out = await _to_proto(conn, updated)
        await audit(conn, "RejectChangeSet", ENTITY, str(change_set_id), before, out)
        return pb.RejectChangeSetResponse(change_set=out)

    return await run_idempotent(
        deps, "RejectChangeSet", request.request_id, request, pb.RejectChangeSetResponse, body
    )


async def revert_change_set(deps: Deps, request: pb.RevertChangeSetRequest) -> pb.RevertChangeSetResponse:
    change_set_id = _parse_id(request.change_set_id)

    async def body(conn: Connection) -> pb.RevertChangeSetResponse:
        cs = await _load(conn, change_set_id, lock=True)
        if cs.state is not rules.State.APPROVED:
            raise RuleError(
                "CHANGE_SET_STATE", str(change_set_id), "only an approved change set can be reverted"
            )
        if cs.reverted_by_id is not None:
            raise RuleError(
                "ALREADY_REVERTED", str(change_set_id), f"already reverted by {cs.reverted_by_id}"
            )
        items = rules.revert_items(
            await entries_repo.entries_of_change_set(conn, change_set_id),
            await repo.load_effects(conn, change_set_id),
        )
        revert = await repo.insert_change_set(
            conn,
            uuid6.uuid7(),
            f"Revert of {change_set_id}",
            actor_id(),
            deps.clock.now(),
            reverts_id=change_set_id,
        )
        await repo.replace_items(conn, revert.change_set_id, items)
        await repo.update_change_set(conn, change_set_id, cs.version, reverted_by_id=revert.change_set_id)
        out = await _to_proto(conn, await _load(conn, revert.change_set_id, lock=False))
        await audit(conn, "RevertChangeSet", ENTITY, str(revert.change_set_id), None, out)
        return pb.RevertChangeSetResponse(change_set=out)

    return await run_idempotent(
        deps, "RevertChangeSet", request.request_id, request, pb.RevertChangeSetResponse, body
    )
