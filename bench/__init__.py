"""Benchmarks of the blue-green switch, rollback and deploy, on a real reference stack."""
