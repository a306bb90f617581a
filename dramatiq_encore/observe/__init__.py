"""Observability: events the runtime emits, and what listens to them (metrics, tracing, logs)."""
