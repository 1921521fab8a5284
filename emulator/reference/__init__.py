"""Plain, obviously correct Python twins of the kernels in emulator/_kernels/ (same file names), for tests."""
