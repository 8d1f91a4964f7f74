"""The schema, as SQLAlchemy Core tables, one module per use case; Alembic migrations in
worker/db/migrations create it. Every table of a reseller's data is keyed by `reseller_id` first
(contract section 7): identifiers are unique within their reseller only."""
