"""The one exception type for a user's mistake: the CLI prints its message on one line."""


class AlitError(ValueError):
    """Bad input, a wrong or unsafe checkpoint, a missing file: what is wrong and what to do."""
