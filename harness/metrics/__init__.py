"""Metric sources: where counters come from (Envoy admin today, Prometheus next)."""
