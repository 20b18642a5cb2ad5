"""week1 in PyTorch. Never imports jax or flax."""
