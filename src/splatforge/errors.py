"""The one exception type users see for problems they can fix (bad paths, corrupt files, bad arguments)."""


class SplatforgeError(Exception):
    """A problem with the user's input: the message says what was wrong and what to do."""


class FormatError(SplatforgeError, ValueError):
    """A file that cannot be read as the format it claims to be (truncated, malformed, hostile)."""
