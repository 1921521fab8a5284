"""Running quantized models on the emulator, and parity with other implementations (parity/)."""
