"""Use case: expiry timers, set by subscription-expired, cancelled by renewals and requests, fired on
what has been read. One shape with worker/terminations: `commands`, `service` (the batch functions,
their appliers and logging), `store` (all of the SQL), `plan` (rows and events from the rules'
verdicts, pure); then `firing` (one round of due timers), `timers` (the background task) and
`read_progress` (how far the consumer group has read).

The expiry lifecycle (contract section 3): expiries become durable timers, due timers terminate.

- `service.apply_expiry_batch`: each `subscription-expired` arms, re-arms or ignores the subscription's
  timer (worker.domain.timer_verdicts decides), in the caller's transaction.
- `service.apply_renewal_batch`: each `subscription-renewed` is kept, and cancels a pending timer whose
  grace period it falls in.
- `firing.fire_due_timers`: one transaction terminates the subscriptions whose timers are due, with a
  `subscription-terminated` event in the outbox. Due means: the deadline is at or before the low
  watermark of subscription-renewed (worker.domain.watermark.low_watermark over the read_progress
  rows, `read_progress`), so a renewal still unread in a backlog is never overtaken.
  Only one worker fires at a time (an advisory lock), and the timer rows are claimed FOR UPDATE
  SKIP LOCKED, so a timer fires once however many workers run; a termination request that got
  there first wins (ON CONFLICT DO NOTHING). A timer that cannot fire is parked
  (expiry_timer_failures) and reported once; the others fire.
- `timers.ExpiryTimers`: the background task that asks the broker how far the group has read, then
  calls it, every EXPIRY_CHECK_SECONDS, sooner when the next timer is due sooner or an input
  batch has just committed.

Expiry and renewal batches lock their subscriptions (transaction-scoped advisory locks, in key
order) before reading, so an expiry and a renewal of the same subscription handled at the same
moment by two consumers see each other, whichever commits first; they read the timers FOR
UPDATE, so a timer being fired is seen fired, never cancelled while it fires. A renewal batch
records the event time it read in the same transaction.

"""
