"""alerts: findings become alerts with a lifecycle, delivered through an outbox that never drops one."""
