"""Device descriptions and the models that turn a workload into latency and energy (numpy/pyyaml only)."""
