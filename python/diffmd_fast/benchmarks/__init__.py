"""Benchmarks shipped with the package so that `diffmd bench` runs them from any install; the
scripts in benches/ are thin entry points to these modules."""
