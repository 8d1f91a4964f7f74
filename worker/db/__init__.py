"""PostgreSQL: the schema, its migrations and the unit of work. Exactly-once lives here."""
