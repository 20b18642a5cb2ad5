"""week1's framework-free spine: configs, data, catalogue, tolerances, reports, runs.

Nothing in this package imports jax or torch at module level.
"""
