"""Benchmarks: each prints its measurement, a named baseline measured in the same run, and their ratio."""
