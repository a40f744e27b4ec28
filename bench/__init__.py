"""Benchmarks: scripts that print numbers and never fail on them (see each file)."""
