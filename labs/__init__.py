"""The lab specs, one module per catalogue entry (`week1 list`).

Each holds a lab's framework-free part: its Config, data preparation, metrics,
and the handout (the module docstring). The two implementations are
week1_jax/<id>.py and week1_torch/<id>.py; the proof that they agree is
parity_tests/test_<id>.py.
"""
