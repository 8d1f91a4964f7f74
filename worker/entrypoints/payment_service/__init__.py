"""A simulated payment service (contract section 9) to try the worker's money refunds against: it
answers each `payment-refund-instructed` with a `payment-refund-settled`, or never, by a rule on
the amount (`answers`), over Kafka (`service`); `refund-worker payment-simulator` runs it (`command`)."""
