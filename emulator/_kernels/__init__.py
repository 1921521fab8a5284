"""Every Numba kernel of the emulator; the public API around them lives one level up, the plain twins in reference/."""
