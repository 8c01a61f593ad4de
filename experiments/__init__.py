"""Reproductions of the papers' experiments and the benchmarks (see `python -m experiments --help`)."""
