"""The message engine: records, parsing, the batch pipeline and its failure classes, the outbox,
topic admin, the Kafka runtime and start-up."""
