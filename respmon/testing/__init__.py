"""Helpers for the tests and benchmarks only (private Kafka/PostgreSQL stacks); no service imports them."""
