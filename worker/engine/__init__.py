"""The message engine: records, parsing, the batch pipeline (`pipeline`; what it needs of the
database, `database`; its dead-lettering, `dead_letters`; what it reports, `observer`) and its
failure classes, outage and retry, the outbox, topic admin, the Kafka runtime and start-up."""
