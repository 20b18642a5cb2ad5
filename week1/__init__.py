"""week1's framework-free core and its command line.

configs, the lab catalogue, run folders, offline data, tokenizers, weight maps,
tolerance tiers, timing and reports. Nothing here imports jax or torch at module
level; the commands that drive both frameworks (`week1/commands/`) import them
lazily, at call time.
"""
