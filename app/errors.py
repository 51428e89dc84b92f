"""Errors the CLI turns into one-line messages (besides ValueError for bad input)."""


class NoDisplayError(RuntimeError):
    """No window can be opened; the message tells the user to pass --headless."""
