"""week1 in JAX/Flax (nnx), optax and orbax. Never imports torch."""
