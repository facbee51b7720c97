"""ingest: the HTTP service devices upload to. Authenticates, archives raw, parses, publishes to Kafka."""
