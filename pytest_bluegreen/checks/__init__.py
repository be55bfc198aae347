"""What the gates measure: HTTP probes, side-by-side latency, the migration rehearsal."""
