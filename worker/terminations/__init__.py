"""Use case: a subscription termination request becomes a refund, a credit note and balance changes,
or a rejection. `commands` (what it is given and answers), `service` (the batch function, its
applier and logging), `store` (all of its SQL), `plan` and `events` (rows and events from the
decisions, pure).

Applying a batch of termination requests in one database transaction.

Everything a request causes, its inbox row, the termination, the refund and credit note, the
balance change and the events to publish, is written in the caller's transaction, so it all
commits or none of it does. The batch costs a fixed number of statements whatever its size:
three look-ups, two counter upserts, one update cancelling expiry timers and one COPY per
table.

Concurrency is optimistic: the look-ups take no locks; a concurrent writer that got there first
(another worker after a rebalance, the expiry timer) makes an insert violate a unique key, the
transaction rolls back, and the caller retries the batch, which then sees what was committed.

"""
