"""Errors the CLI turns into one-line messages (besides ValueError for bad input)."""


class NoDisplayError(RuntimeError):
    """No window can be opened; the message tells the user to pass --headless."""


DATA_EXTRA = 'pip install -e ".[data]"'


def require_vizdoom(what: str) -> None:
    """A one-line ValueError when the `data` extra (vizdoom) is missing, before any world is built."""
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{what} needs ViZDoom, which is not installed; install the data extra: {DATA_EXTRA}"
        ) from None
