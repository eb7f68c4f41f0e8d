"""Scoring trajectories: ``metrics`` (ARMSE, bonds and stability, distance distributions, RMSF,
mobility) on plain arrays, and ``plots`` of them (matplotlib, imported on use)."""
