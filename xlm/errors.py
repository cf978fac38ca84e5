"""The one exception type users see: a clear, one-line message naming the file, line or key."""


class XLMError(Exception):
    """A user-facing error. Command-line entry points print ``str(err)`` on one line and exit 1.

    Messages are kept to one line even when they quote text from elsewhere (a YAML parser's
    multi-line explanation, a file's content).
    """

    def __init__(self, message: object = ""):
        text = str(message)
        if "\n" in text or "\r" in text:
            text = " ".join(text.split())
        super().__init__(text)


class XLMWarning(UserWarning):
    """Something done the best way possible but not exactly as asked: counts in the message say how much.

    Command-line entry points print it as one ``warning: ...`` line on stderr.
    """


def warn(message: str, stacklevel: int = 1) -> None:
    """Issue a one-line :class:`XLMWarning`; ``stacklevel`` counts from the function calling ``warn``."""
    import warnings

    warnings.warn(XLMWarning(" ".join(str(message).split())), stacklevel=stacklevel + 2)
