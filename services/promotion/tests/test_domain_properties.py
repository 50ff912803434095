"""Property tests of EvaluateCart: input-order determinism, no negative line, consistency of the
adjustments, and equality with a brute-force unit-by-unit reference on small random carts."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_FLOOR, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from retail_promotion.domain.evaluate import Evaluation, Outcome
from retail_promotion.domain.model import (
    AmountOff,
    BuyXGetY,
    Cart,
    FixedPrice,
    Level,
    Mode,
    PercentOff,
    Promotion,
    Reward,
    SpendTier,
    TieredSpend,
)
from retail_promotion.domain.money import round_down, round_money
from retail_promotion.testing import cart, promo, run

SKUS = ["A", "B", "C"]
cents = st.integers(min_value=1, max_value=5000).map(lambda c: Decimal(c) / 100)
percents = st.sampled_from([Decimal(p) for p in ("5", "10", "12.5", "25", "33", "50", "100")])
line_rewards: st.SearchStrategy[Reward] = st.one_of(
    percents.map(PercentOff),
    cents.map(AmountOff),
    cents.map(FixedPrice),
    st.builds(BuyXGetY, st.integers(1, 3), st.integers(1, 2), st.sampled_from([Decimal(50), Decimal(100)])),
)
cart_rewards: st.SearchStrategy[Reward] = st.one_of(
    percents.map(PercentOff),
    cents.map(AmountOff),
    st.builds(
        lambda a, b, x, y: TieredSpend((SpendTier(a, amount=x), SpendTier(a + b, percent=y))),
        cents,
        cents,
        cents,
        percents,
    ),
)


@st.composite
def promotions(draw: st.DrawFn) -> list[Promotion]:
    out = []
    for n in range(draw(st.integers(0, 5))):
        level = draw(st.sampled_from([Level.LINE, Level.CART]))
        out.append(
            promo(
                f"P{n}",
                draw(line_rewards if level is Level.LINE else cart_rewards),
                skus=draw(st.sets(st.sampled_from(SKUS), min_size=1)),
                level=level,
                exclusive=draw(st.booleans()),
                priority=draw(st.integers(0, 3)),
                group=draw(st.sampled_from(["", "g1", "g2"])),
            )
        )
    return out


carts = st.lists(
    st.tuples(st.sampled_from(SKUS), st.integers(1, 4), cents.map(str)), min_size=1, max_size=4
).map(lambda lines: cart(*lines))


def _signature(ev: Evaluation) -> tuple[object, ...]:
    lines = Counter((ln.sku, ln.quantity, ln.unit_price, ln.final, ln.discount) for ln in ev.lines)
    cands = [(c.promotion_id, c.outcome, c.discount) for c in ev.candidates]
    return (sorted(lines.items()), cands, ev.subtotal, ev.discount, ev.total)


@settings(max_examples=300, deadline=None)
@given(carts, promotions(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(c: Cart, promos: list[Promotion], rnd: object) -> None:
    import random

    assert isinstance(rnd, random.Random)
    lines = list(c.lines)
    rnd.shuffle(lines)
    shuffled_promos = list(promos)
    rnd.shuffle(shuffled_promos)
    shuffled = Cart(currency=c.currency, channel=c.channel, at=c.at, lines=tuple(lines))
    assert _signature(run(c, *promos)) == _signature(run(shuffled, *shuffled_promos))


@settings(max_examples=300, deadline=None)
@given(carts, promotions())
def test_no_negative_line_and_consistent_totals(c: Cart, promos: list[Promotion]) -> None:
    ev = run(c, *promos)
    for ln in ev.lines:
        assert Decimal(0) <= ln.final <= ln.original
        assert ln.final == round_money(ln.final, "EUR")
        assert sum((a.amount for a in ln.adjustments), Decimal(0)) == ln.discount
    assert ev.total == ev.subtotal - ev.discount == sum(ln.final for ln in ev.lines)
    applied = sum((cd.discount for cd in ev.candidates if cd.outcome is Outcome.APPLIED), Decimal(0))
    assert applied == ev.discount


# ---- brute-force reference: one entry per unit, literal reading of the documented algorithm ----


def _unit_reward(reward: Reward, price: Decimal) -> Decimal:
    if isinstance(reward, PercentOff):
        return price - price * reward.percent / 100
    if isinstance(reward, AmountOff):
        return max(Decimal(0), price - reward.amount)
    if isinstance(reward, FixedPrice):
        return min(price, reward.price)
    return price


def _apply_units(reward: Reward, units: list[list[object]], keys: list[tuple[str, int, Decimal]]) -> None:
    """units: [line, price] entries, changed in place."""
    if isinstance(reward, BuyXGetY):
        free = len(units) // (reward.buy + reward.get) * reward.get
        ranked = sorted(units, key=lambda u: (u[1], keys[u[0]]))  # type: ignore[index]
        for u in ranked[:free]:
            u[1] = u[1] * (100 - reward.percent) / 100  # type: ignore[operator]
    else:
        for u in units:
            u[1] = _unit_reward(reward, u[1])  # type: ignore[arg-type]


def _cart_value(reward: Reward, subtotal: Decimal) -> Decimal:
    if isinstance(reward, PercentOff):
        v = subtotal * reward.percent / 100
    elif isinstance(reward, AmountOff):
        v = reward.amount
    elif isinstance(reward, TieredSpend):
        tiers = [t for t in reward.tiers if t.min_spend <= subtotal]
        if not tiers:
            return Decimal(0)
        t = tiers[-1]
        v = subtotal * t.percent / 100 if t.percent is not None else t.amount  # type: ignore[assignment]
    else:
        v = Decimal(0)
    return min(v, subtotal) if subtotal > 0 else Decimal(0)


def reference(c: Cart, promos: list[Promotion]) -> list[Decimal]:
    n = len(c.lines)
    keys = [(ln.sku, ln.quantity, ln.unit_price) for ln in c.lines]
    units: list[list[list[object]]] = [
        [[i, ln.unit_price] for _ in range(ln.quantity)] for i, ln in enumerate(c.lines)
    ]
    elig = {p.promotion_id: [i for i in range(n) if c.lines[i].sku in p.eligibility.skus] for p in promos}
    line_p = [p for p in promos if p.level is Level.LINE]
    closed: set[int] = set()
    touched: set[int] = set()
    groups: list[set[str]] = [set() for _ in range(n)]

    def line_sum(i: int) -> Decimal:
        return sum((u[1] for u in units[i]), Decimal(0))  # type: ignore[misc]

    # exclusive line promotions: stand-alone on original prices
    alone = {}
    for p in (p for p in line_p if p.mode is Mode.EXCLUSIVE):
        copy = {i: [[i, u[1]] for u in units[i]] for i in elig[p.promotion_id]}
        _apply_units(p.reward, [u for i in sorted(copy) for u in copy[i]], keys)
        alone[p.promotion_id] = (p, copy)
    for i in range(n):
        best = None
        for pid, (p, copy) in alone.items():
            if i in copy:
                value = line_sum(i) - sum((u[1] for u in copy[i]), Decimal(0))  # type: ignore[misc]
                if value > 0:
                    k = (-value, -p.priority, pid)
                    if best is None or k < best[0]:
                        best = (k, copy[i])
        if best is not None:
            units[i] = best[1]
            closed.add(i)
            touched.add(i)
    for p in sorted(
        (p for p in line_p if p.mode is Mode.STACKABLE), key=lambda p: (-p.priority, p.promotion_id)
    ):
        free = [i for i in elig[p.promotion_id] if i not in closed and not (p.group and p.group in groups[i])]
        before = {i: line_sum(i) for i in free}
        _apply_units(p.reward, [u for i in free for u in units[i]], keys)
        for i in free:
            if line_sum(i) < before[i]:
                touched.add(i)
                if p.group:
                    groups[i].add(p.group)
    cent = Decimal("0.01")
    shares = [0] * n

    def current(i: int) -> Decimal:
        return line_sum(i) - shares[i] * cent

    def give(p: Promotion, ls: list[int]) -> bool:
        sub = sum((current(i) for i in ls), Decimal(0))
        d = min(round_money(_cart_value(p.reward, sub), "EUR"), round_down(sub, "EUR"))
        total_cents = int(d / cent)
        if total_cents == 0:
            return False
        got = {}
        for i in ls:
            w = current(i) / cent
            got[i] = min(
                int((total_cents * w / (sub / cent)).to_integral_value(ROUND_FLOOR)),
                int(w.to_integral_value(ROUND_FLOOR)),
            )
        rest = total_cents - sum(got.values())
        for i in sorted(ls, key=lambda i: (-current(i), keys[i], i)):
            room = int((current(i) / cent - got[i]).to_integral_value(ROUND_FLOOR))
            take = min(rest, room)
            got[i] += take
            rest -= take
        for i, s in got.items():
            if s > 0:
                shares[i] += s
                touched.add(i)
                if p.group:
                    groups[i].add(p.group)
        return True

    cart_p = [p for p in promos if p.level is Level.CART]
    excl = []
    for p in cart_p:
        if p.mode is Mode.EXCLUSIVE:
            ls = [i for i in elig[p.promotion_id] if i not in touched]
            value = round_money(_cart_value(p.reward, sum((current(i) for i in ls), Decimal(0))), "EUR")
            excl.append(((-value, -p.priority, p.promotion_id), p))
    for _, p in sorted(excl, key=lambda x: x[0]):
        ls = [i for i in elig[p.promotion_id] if i not in touched]
        if ls and give(p, ls):
            closed.update(ls)
    for p in sorted(
        (p for p in cart_p if p.mode is Mode.STACKABLE), key=lambda p: (-p.priority, p.promotion_id)
    ):
        ls = [i for i in elig[p.promotion_id] if i not in closed and not (p.group and p.group in groups[i])]
        if ls:
            give(p, ls)
    return [round_money(line_sum(i), "EUR") - shares[i] * cent for i in range(n)]


@settings(max_examples=400, deadline=None)
@given(carts, promotions())
def test_equals_brute_force_reference(c: Cart, promos: list[Promotion]) -> None:
    ev = run(c, *promos)
    assert [ln.final for ln in ev.lines] == reference(c, promos)
