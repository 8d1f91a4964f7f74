"""Use case: a subscription termination becomes a refund, a credit note and balance changes, or a
rejection."""
