"""The one exception type the CLI turns into a single line on stderr and exit code 2."""


class SimdqError(ValueError):
    """Bad user input: the message says what is wrong, where, and what is allowed."""
