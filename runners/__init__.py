"""Compute side of dimple-stats (torch): datasets, models, geometry, attacks, executors."""
