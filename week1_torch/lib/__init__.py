"""The torch labs' shared library: models, optimizer, schedules, losses, precision,
checkpoints, parallelism, device. Labs import from here; nothing here imports a lab."""
