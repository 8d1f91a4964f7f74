"""Properties of money refunds over any interleaving of one account's requests and settlements
(contract section 9).

Every story mixes requests for two small payments (some from the balance, some restated with another
amount, some by an actor without the permission) with settlements of the instructions made so far,
succeeded or failed, repeated, contradicting or for unknown instructions. A settlement that can never
apply raises its named error and changes nothing; the story goes on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.adjustment_requests import Actor
from worker.domain.errors import ConflictingSettlement, UnknownInstruction
from worker.domain.money import Currency, Money
from worker.domain.money_refund_facts import (
    AccountType,
    InstructionState,
    MoneyRefundFacts,
    MoneyRefundMethod,
)
from worker.domain.money_refunds import (
    Instructed,
    MoneyRefundRequest,
    Payment,
    decide_money_refund,
    record_money_refund,
)
from worker.domain.payment_settlements import AlreadySettled, Settled, Settlement, SettlementStatus, settle

SGD = Currency.of("SGD")
PAYMENTS = {"pay-1": 50, "pay-2": 120}
FINANCE = Actor("finance", "res-1", frozenset({"*"}))
CLERK = Actor("clerk", "res-1", frozenset())
AT = datetime(2021, 5, 6, tzinfo=UTC)


@dataclass(frozen=True)
class Ask:
    payment_id: str
    amount: int
    from_balance: bool
    restated: bool
    actor: Actor


@dataclass(frozen=True)
class Answer:
    pick: int
    """Which instruction so far (modulo their number); -1: an unknown one."""
    status: SettlementStatus


steps = st.lists(
    st.one_of(
        st.builds(
            Ask,
            st.sampled_from(sorted(PAYMENTS)),
            st.integers(min_value=-5, max_value=130),
            st.booleans(),
            st.sampled_from([False, False, False, True]),
            st.sampled_from([FINANCE, FINANCE, FINANCE, CLERK]),
        ),
        st.builds(Answer, st.integers(min_value=-1, max_value=20), st.sampled_from(SettlementStatus)),
    ),
    max_size=40,
)


@dataclass
class Run:
    facts: MoneyRefundFacts
    instructed: dict[str, Instructed]
    settled: list[Settled]
    start: int


def play(story: list[Ask | Answer], start: int) -> Run:
    run = Run(MoneyRefundFacts("res-1", "acc-1", balances={SGD: start}), {}, [], start)
    for number, step in enumerate(story):
        if isinstance(step, Ask):
            amount = PAYMENTS[step.payment_id] + (1 if step.restated else 0)
            request = MoneyRefundRequest(
                *(f"req-{number}", f"ins-{number}", "res-1", "acc-1", AccountType.RETAIL),
                method=MoneyRefundMethod.CHARGE_BACK,
                payment=Payment(step.payment_id, Money(amount, SGD)),
                amount=step.amount,
                from_balance=step.from_balance,
                actor=step.actor,
                reason="why",
                requested_at=AT,
            )
            decision = decide_money_refund(request, run.facts)
            run.facts = record_money_refund(run.facts, request, decision)
            if isinstance(decision, Instructed):
                run.instructed[decision.instruction_id] = decision
            continue
        ids = sorted(run.instructed)
        instruction_id = ids[step.pick % len(ids)] if ids and step.pick >= 0 else "ins-unknown"
        answer = Settlement(instruction_id, "res-1", "acc-1", step.status, None, AT)
        before = run.facts
        try:
            outcome, run.facts = settle(answer, run.facts)
        except (UnknownInstruction, ConflictingSettlement):
            assert run.facts == before
            continue
        if isinstance(outcome, Settled):
            run.settled.append(outcome)
        else:
            assert isinstance(outcome, AlreadySettled)
            assert run.facts == before
        check_payments(run)
    return run


def check_payments(run: Run) -> None:
    """At every step: what the instructions that did not fail take of a payment is at most its amount
    (as first stated)."""
    taken: Counter[str] = Counter()
    for instruction in run.facts.instructions.values():
        if instruction.state is not InstructionState.FAILED:
            taken[instruction.payment_id] += instruction.amount.minor
    for payment_id, amount in taken.items():
        assert amount <= run.facts.payments[payment_id].amount.minor
        assert run.facts.payments[payment_id].taken == amount


@settings(max_examples=400, deadline=None)
@given(story=steps, start=st.integers(min_value=0, max_value=200))
def test_a_payment_is_never_returned_beyond_its_amount_whatever_the_order(
    story: list[Ask | Answer], start: int
) -> None:
    run = play(story, start)
    check_payments(run)
    succeeded: Counter[str] = Counter()
    for instruction in run.facts.instructions.values():
        if instruction.state is InstructionState.SUCCEEDED:
            succeeded[instruction.payment_id] += instruction.amount.minor
    assert all(succeeded[p] <= payment.amount.minor for p, payment in run.facts.payments.items())


@settings(max_examples=400, deadline=None)
@given(story=steps, start=st.integers(min_value=0, max_value=200))
def test_credits_debited_for_a_failed_refund_come_back_exactly_once(
    story: list[Ask | Answer], start: int
) -> None:
    run = play(story, start)
    backs = Counter(outcome.instruction_id for outcome in run.settled if outcome.credited_back)
    assert all(count == 1 for count in backs.values())
    failed = {
        instruction_id
        for instruction_id, instruction in run.facts.instructions.items()
        if instruction.state is InstructionState.FAILED
    }
    assert set(backs) == {i for i in failed if run.instructed[i].debited}
    for outcome in run.settled:
        assert outcome.credited_back == (
            run.instructed[outcome.instruction_id].debited if outcome.status is SettlementStatus.FAILED else 0
        )
    kept = sum(d.debited for i, d in run.instructed.items() if i not in failed)
    assert run.facts.balance(SGD) == start - kept >= 0


@settings(max_examples=200, deadline=None)
@given(story=steps, start=st.integers(min_value=0, max_value=200))
def test_an_instruction_is_settled_once_and_only_an_actor_with_the_permission_instructs(
    story: list[Ask | Answer], start: int
) -> None:
    run = play(story, start)
    assert all(count == 1 for count in Counter(o.instruction_id for o in run.settled).values())
    assert all(decision.amount > 0 for decision in run.instructed.values())
    asks = [step for step in story if isinstance(step, Ask)]
    assert len(run.instructed) <= sum(1 for step in asks if step.actor is FINANCE)
