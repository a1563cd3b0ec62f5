"""Benchmarks of the course: each cost measured against a floor in the same run (`make bench`)."""
