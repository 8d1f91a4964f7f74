"""Local infrastructure the worker can start by itself, for a laptop and the tests: `tansu` (an
embedded Kafka-compatible broker), `postgres` (an embedded PostgreSQL; `postgres_binaries`: its
binaries and the account that runs them), both child processes of `processes`; `extra`: whether
they are installed."""
