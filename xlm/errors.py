"""The one exception type users see: a clear, one-line message naming the file, line or key."""


class XLMError(Exception):
    """A user-facing error. Command-line entry points print ``str(err)`` on one line and exit 1."""
