"""Operations: health and readiness, metrics and observability, logs."""
