"""Parity with other implementations: which named emulator convention an installed reference
implements (`simdq parity refs`), detected bit for bit, and the table of what each version is expected
to implement. References change behaviour between releases; this makes the change a named fact.
"""
