"""EvaluateCart (DESIGN §6; the algorithm is documented on retail.promotion.v1.PromotionService).

Pure: the caller supplies the cart (with prices from pricing), the candidate promotions (from the
index), the product replica, suspensions and the exhausted budgets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from retail_promotion.domain.allocation import allocate
from retail_promotion.domain.model import Cart, Level, Mode, Product, Promotion, Suspensions
from retail_promotion.domain.money import ZERO, from_minor, minor_unit, round_down, round_money, to_minor
from retail_promotion.domain.rewards import Buckets, LineKey, apply_line_reward, cart_discount, total

__all__ = ["Adjustment", "CandidateResult", "Evaluation", "LineResult", "Outcome", "evaluate"]


class Outcome(Enum):
    APPLIED = "APPLIED"
    SUSPENDED = "SUSPENDED"
    WINDOW = "WINDOW"
    SCOPE = "SCOPE"
    BUDGET = "BUDGET"
    ELIGIBILITY = "ELIGIBILITY"
    STACKING = "STACKING"


@dataclass(frozen=True, slots=True)
class Adjustment:
    promotion_id: str
    campaign_id: str
    amount: Decimal
    units: int


@dataclass(frozen=True, slots=True)
class LineResult:
    index: int
    sku: str
    quantity: int
    unit_price: Decimal
    original: Decimal
    discount: Decimal
    final: Decimal
    adjustments: tuple[Adjustment, ...]


@dataclass(frozen=True, slots=True)
class CandidateResult:
    promotion_id: str
    campaign_id: str
    outcome: Outcome
    detail: str
    discount: Decimal = ZERO
    lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Evaluation:
    currency: str
    lines: tuple[LineResult, ...]
    subtotal: Decimal
    discount: Decimal
    total: Decimal
    candidates: tuple[CandidateResult, ...]

    def candidate(self, promotion_id: str) -> CandidateResult:
        return next(c for c in self.candidates if c.promotion_id == promotion_id)

    def applied(self) -> dict[str, Decimal]:
        """Discount per applied promotion."""
        return {c.promotion_id: c.discount for c in self.candidates if c.outcome is Outcome.APPLIED}


def _precheck(
    p: Promotion,
    cart: Cart,
    products: Mapping[str, Product],
    suspensions: Suspensions,
    exhausted: frozenset[str],
    by_sku: Mapping[str, list[int]],
) -> tuple[Outcome, str] | list[int]:
    """The first failing check (outcome, detail), or the eligible line indexes."""
    c = p.campaign
    if suspensions.campaign_suspended(c.campaign_id, cart.channel, cart.location_id):
        return Outcome.SUSPENDED, f"campaign {c.campaign_id} suspended here"
    if not c.active:
        return Outcome.WINDOW, "campaign not active"
    if c.window.local and cart.time_zone is None:
        return Outcome.WINDOW, "local window needs a location"
    if not c.window.contains(cart.at, cart.time_zone):
        return Outcome.WINDOW, "outside the campaign window"
    if c.currency and c.currency != cart.currency:
        return Outcome.SCOPE, f"campaign currency {c.currency}"
    if cart.channel not in c.channels:
        return Outcome.SCOPE, f"channel {cart.channel} not targeted"
    if cart.location_id is not None and cart.location_id in c.excluded_locations:
        return Outcome.SCOPE, f"location {cart.location_id} excluded"
    if cart.region_id is not None and cart.region_id in c.excluded_regions:
        return Outcome.SCOPE, f"region {cart.region_id} excluded"
    if (c.locations or c.regions) and not (
        (cart.location_id is not None and cart.location_id in c.locations)
        or (cart.region_id is not None and cart.region_id in c.regions)
    ):
        return Outcome.SCOPE, "location/region not targeted"
    if p.promotion_id in exhausted or c.campaign_id in exhausted:
        return Outcome.BUDGET, "budget or usage limit exhausted"
    e = p.eligibility
    if e.segments and cart.segment not in e.segments:
        return Outcome.ELIGIBILITY, "customer segment not eligible"
    if e.needs_code and not (
        e.codes & cart.codes or any(batch in e.code_batches for batch in cart.batch_codes.values())
    ):
        return Outcome.ELIGIBILITY, "code required"
    if e.skus and not (e.categories or e.attributes):  # the common case: straight from the SKU set
        eligible = sorted(i for sku in e.skus - e.excluded_skus for i in by_sku.get(sku, ()))
    else:
        eligible = [i for i, line in enumerate(cart.lines) if e.matches(line.sku, products.get(line.sku))]
    if not eligible:
        return Outcome.ELIGIBILITY, "no eligible line"
    lines = [
        i
        for i in eligible
        if not suspensions.sku_suspended(c.campaign_id, cart.channel, cart.location_id, cart.lines[i].sku)
    ]
    if not lines:
        return Outcome.SUSPENDED, "suspended for every eligible SKU here"
    if sum(cart.lines[i].quantity for i in lines) < e.min_quantity:
        return Outcome.ELIGIBILITY, f"minimum quantity {e.min_quantity} not reached"
    amount = sum((cart.lines[i].unit_price * cart.lines[i].quantity for i in lines), ZERO)
    if e.min_amount is not None and amount < e.min_amount:
        return Outcome.ELIGIBILITY, f"minimum amount {e.min_amount} not reached"
    return lines


class _State:
    """Mutable working state of one evaluation."""

    def __init__(self, cart: Cart) -> None:
        self.cart = cart
        self.keys: list[LineKey] = [(ln.sku, ln.quantity, ln.unit_price) for ln in cart.lines]
        self.buckets: list[Buckets] = [[(ln.unit_price, ln.quantity)] for ln in cart.lines]
        self.closed: dict[int, str] = {}  # line -> exclusive promotion that closed it
        self.groups: list[dict[str, str]] = [{} for _ in cart.lines]  # line -> group -> promotion
        self.touched: set[int] = set()
        self.line_adj: list[list[tuple[Promotion, Decimal, int]]] = [[] for _ in cart.lines]
        self.cart_share: list[int] = [0] * len(cart.lines)
        self.cart_adj: list[list[tuple[Promotion, int, int]]] = [[] for _ in cart.lines]
        self.results: dict[str, CandidateResult] = {}

    def current(self, i: int) -> Decimal:
        return total(self.buckets[i]) - from_minor(self.cart_share[i], self.cart.currency)

    def result(self, p: Promotion, outcome: Outcome, detail: str, lines: Iterable[int] = ()) -> None:
        self.results[p.promotion_id] = CandidateResult(
            p.promotion_id, p.campaign.campaign_id, outcome, detail, lines=tuple(sorted(lines))
        )

    def apply_line(
        self, p: Promotion, lines: Sequence[int], new: Sequence[Buckets], units: Sequence[int]
    ) -> list[int]:
        applied = []
        for i, buckets, n in zip(lines, new, units, strict=True):
            saved = total(self.buckets[i]) - total(buckets)
            if saved <= 0:
                continue
            self.buckets[i] = buckets
            self.line_adj[i].append((p, saved, n if n else self.cart.lines[i].quantity))
            if p.group:
                self.groups[i][p.group] = p.promotion_id
            self.touched.add(i)
            applied.append(i)
        return applied

    def apply_cart(self, p: Promotion, lines: Sequence[int]) -> list[int]:
        currency = self.cart.currency
        amounts = [self.current(i) for i in lines]
        subtotal = sum(amounts, ZERO)
        discount = min(
            round_money(cart_discount(p.reward, subtotal), currency), round_down(subtotal, currency)
        )
        unit = minor_unit(currency)
        shares = allocate(
            to_minor(discount, currency), [a / unit for a in amounts], [self.keys[i] for i in lines]
        )
        applied = []
        for i, share in zip(lines, shares, strict=True):
            if share <= 0:
                continue
            self.cart_share[i] += share
            self.cart_adj[i].append((p, share, self.cart.lines[i].quantity))
            if p.group:
                self.groups[i][p.group] = p.promotion_id
            self.touched.add(i)
            applied.append(i)
        return applied


def _line_phase(st: _State, candidates: Sequence[tuple[Promotion, list[int]]]) -> None:
    exclusive = [(p, ls) for p, ls in candidates if p.mode is Mode.EXCLUSIVE]
    stackable = sorted(
        ((p, ls) for p, ls in candidates if p.mode is Mode.STACKABLE), key=lambda x: x[0].order_key
    )
    # Stand-alone effect of each exclusive candidate on the original prices.
    alone: dict[str, dict[int, tuple[Decimal, Buckets, int]]] = {}
    for p, ls in exclusive:
        new, units = apply_line_reward(p.reward, [(st.keys[i], st.buckets[i]) for i in ls])
        alone[p.promotion_id] = {
            i: (total(st.buckets[i]) - total(b), b, n) for i, b, n in zip(ls, new, units, strict=True)
        }
    won: dict[str, list[int]] = {p.promotion_id: [] for p, _ in exclusive}
    beaten: dict[str, set[str]] = {p.promotion_id: set() for p, _ in exclusive}
    for i in range(len(st.cart.lines)):
        options = [(p, alone[p.promotion_id][i][0]) for p, _ in exclusive if i in alone[p.promotion_id]]
        options = [(p, v) for p, v in options if v > 0]
        if not options:
            continue
        best, _ = min(options, key=lambda o: (-o[1], -o[0].priority, o[0].promotion_id))
        won[best.promotion_id].append(i)
        for p, _ in options:
            if p is not best:
                beaten[p.promotion_id].add(best.promotion_id)
        _, buckets, n_units = alone[best.promotion_id][i]
        st.apply_line(best, [i], [buckets], [n_units])
        st.closed[i] = best.promotion_id
    for p, _ in exclusive:
        if won[p.promotion_id]:
            st.result(p, Outcome.APPLIED, "exclusive", won[p.promotion_id])
        elif beaten[p.promotion_id]:
            st.result(
                p,
                Outcome.STACKING,
                "a better exclusive promotion won: " + ", ".join(sorted(beaten[p.promotion_id])),
            )
        else:
            st.result(p, Outcome.STACKING, "gives no discount")
    for p, ls in stackable:
        _stack(st, p, ls, line_level=True)


def _stack(st: _State, p: Promotion, ls: list[int], *, line_level: bool) -> None:
    open_lines = [i for i in ls if i not in st.closed]
    if not open_lines:
        blockers = sorted({st.closed[i] for i in ls})
        st.result(p, Outcome.STACKING, "blocked by exclusive " + ", ".join(blockers), ls)
        return
    free = [i for i in open_lines if not (p.group and p.group in st.groups[i])]
    if not free:
        taken = sorted({st.groups[i][p.group] for i in open_lines})
        st.result(p, Outcome.STACKING, f"group {p.group!r} taken by " + ", ".join(taken), open_lines)
        return
    if line_level:
        new, units = apply_line_reward(p.reward, [(st.keys[i], st.buckets[i]) for i in free])
        applied = st.apply_line(p, free, new, units)
    else:
        applied = st.apply_cart(p, free)
    if applied:
        st.result(p, Outcome.APPLIED, "stackable", applied)
    else:
        st.result(p, Outcome.STACKING, "gives no discount", free)


def _cart_phase(st: _State, candidates: Sequence[tuple[Promotion, list[int]]]) -> None:
    currency = st.cart.currency
    exclusive = []
    for p, ls in candidates:
        if p.mode is not Mode.EXCLUSIVE:
            continue
        untouched = [i for i in ls if i not in st.touched]
        value = cart_discount(p.reward, sum((st.current(i) for i in untouched), ZERO))
        exclusive.append((round_money(value, currency), p, ls))
    for _, p, ls in sorted(exclusive, key=lambda x: (-x[0], -x[1].priority, x[1].promotion_id)):
        untouched = [i for i in ls if i not in st.touched]
        if not untouched:
            st.result(p, Outcome.STACKING, "every eligible line already discounted", ls)
            continue
        applied = st.apply_cart(p, untouched)
        if applied:
            for i in untouched:
                st.closed[i] = p.promotion_id
            st.result(p, Outcome.APPLIED, "exclusive", applied)
        else:
            st.result(p, Outcome.STACKING, "gives no discount", untouched)
    stackable = sorted(
        ((p, ls) for p, ls in candidates if p.mode is Mode.STACKABLE), key=lambda x: x[0].order_key
    )
    for p, ls in stackable:
        _stack(st, p, ls, line_level=False)


def _finish(st: _State) -> tuple[list[LineResult], dict[str, Decimal]]:
    currency = st.cart.currency
    lines: list[LineResult] = []
    per_promotion: dict[str, Decimal] = {}
    for i, line in enumerate(st.cart.lines):
        original = round_money(line.unit_price * line.quantity, currency)
        cart_part = from_minor(st.cart_share[i], currency)
        after_lines = round_money(total(st.buckets[i]), currency)
        final = round_money(max(ZERO, after_lines - cart_part), currency)
        line_part = original - after_lines
        rounded = [round_money(amount, currency) for _, amount, _ in st.line_adj[i]]
        if rounded:
            diff = line_part - sum(rounded, ZERO)
            largest = max(range(len(rounded)), key=lambda k: (st.line_adj[i][k][1], -k))
            rounded[largest] += diff
        adjustments = [
            Adjustment(p.promotion_id, p.campaign.campaign_id, amount, units)
            for (p, _, units), amount in zip(st.line_adj[i], rounded, strict=True)
        ] + [
            Adjustment(p.promotion_id, p.campaign.campaign_id, from_minor(share, currency), units)
            for p, share, units in st.cart_adj[i]
        ]
        for adj in adjustments:
            per_promotion[adj.promotion_id] = per_promotion.get(adj.promotion_id, ZERO) + adj.amount
        lines.append(
            LineResult(
                i,
                line.sku,
                line.quantity,
                line.unit_price,
                original,
                original - final,
                final,
                tuple(adjustments),
            )
        )
    return lines, per_promotion


def evaluate(
    cart: Cart,
    promotions: Iterable[Promotion],
    *,
    products: Mapping[str, Product],
    suspensions: Suspensions | None = None,
    exhausted: frozenset[str] = frozenset(),
) -> Evaluation:
    suspensions = suspensions or Suspensions()
    unique = sorted({p.promotion_id: p for p in promotions}.values(), key=lambda p: p.promotion_id)
    st = _State(cart)
    line_level: list[tuple[Promotion, list[int]]] = []
    cart_level: list[tuple[Promotion, list[int]]] = []
    by_sku: dict[str, list[int]] = {}
    for i, line in enumerate(cart.lines):
        by_sku.setdefault(line.sku, []).append(i)
    for p in unique:
        checked = _precheck(p, cart, products, suspensions, exhausted, by_sku)
        if isinstance(checked, tuple):
            st.result(p, checked[0], checked[1])
        elif p.level is Level.LINE:
            line_level.append((p, checked))
        else:
            cart_level.append((p, checked))
    _line_phase(st, line_level)
    _cart_phase(st, cart_level)
    lines, per_promotion = _finish(st)
    candidates = []
    for p in unique:
        r = st.results[p.promotion_id]
        if r.outcome is Outcome.APPLIED:
            r = CandidateResult(
                r.promotion_id,
                r.campaign_id,
                r.outcome,
                r.detail,
                per_promotion.get(p.promotion_id, ZERO),
                r.lines,
            )
        candidates.append(r)
    subtotal = sum((ln.original for ln in lines), ZERO)
    final = sum((ln.final for ln in lines), ZERO)
    return Evaluation(cart.currency, tuple(lines), subtotal, subtotal - final, final, tuple(candidates))
