import os

from week1.machine import compilation_cache_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.update(compilation_cache_env() | os.environ)  # as the week1 command sets it
