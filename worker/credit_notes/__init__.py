"""Use case: a credit note from the invoice app (`credit-note-issued`, contract section 10) is
recorded, and reported as `refund-conflict-detected` when its subscription was already refunded as
account credit. `commands` (what it is given and answers), `service` (the batch function, its
applier and logging), `store` (its SQL), `plan` (rows and events from the outcomes, pure). The rules
are worker/domain/credit_note_guard.py; the termination batch links the unused notes
(worker/terminations/), and both take the subscription lock of worker/db/invoice_notes.py.

A batch costs a fixed number of statements whatever its size: the lock, four look-ups (inbox, notes
by id, the subscriptions' terminations, the notes already backing a refund) and one COPY per table.
"""
