"""Use case: an operator's adjustment of an account's credits (contract section 8) becomes a balance
change and `balance-adjusted`, or `adjustment-rejected`. `commands` (the validated request as the
rules see it); the rules are worker.domain.adjustments. Its service, store and plan, one shape with
worker/terminations, come with the consumer: until then `refund-worker adjust --dry-run` decides
requests without touching anything.
"""
