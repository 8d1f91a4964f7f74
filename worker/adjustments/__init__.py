"""Use case: an operator's adjustment of an account's credits (contract section 8) becomes a balance
change with `balance-adjusted` and `credits-updated`, or `adjustment-rejected`. One shape with
worker/terminations: `commands` (the validated request as the rules see it), `service` (the batch
function, its applier and logging), `store` (all of its SQL), `plan` (rows from decisions, pure) and
`events`; the rules are worker.domain.adjustments.
"""
