"""User-facing errors.

Anything a user can cause (bad input file, bad config, missing weights, unreachable server) raises
:class:`VidpredError` with a one-line message naming the file/setting and the problem. The CLI prints
``error: <message>`` on stderr and exits with code 2; no traceback.
"""


class VidpredError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # force a single line
