"""Operations: health and readiness (`health`, `liveness`), metrics (`metrics`; the gauges read at
each scrape, `scraped_gauges`, from `gauge_sources`; the pipeline's observer, `observability`), logs."""
