"""The floating-point formats that the precision labs (mixed_precision, gpu_basics) tabulate,
each framework filling the columns from its own finfo."""

FORMATS = ("float32", "float16", "bfloat16")
FORMAT_COLUMNS = ["format", "bits", "max", "smallest normal", "machine eps"]
