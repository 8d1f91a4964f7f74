"""Use case: money back to the customer through the payment service (contract section 9), as a saga.

A `money-refund-requested` becomes an instruction to the payment service (`payment-refund-instructed`,
`money-refund-updated` instructed, and, taken from the balance, the credits debited at once), or an
`adjustment-rejected` with kind money_refund. The payment service's `payment-refund-settled` ends it
once: succeeded, or failed, which frees the payment's amount and gives the debited credits back. An
instruction left unanswered past MONEY_REFUND_TIMEOUT_HOURS is reported overdue once, and stays open.

One shape with worker/adjustments: `commands` (what it is given and answers), `service` (the request
batch, its applier and logging), `store` (all of its SQL), `plan` (rows and events from decisions,
pure) and `events`; the settlements' side is `settlement_service` and `settlement_plan`. The rules
are worker/domain/money_refunds.py and worker/domain/payment_settlements.py.
"""
