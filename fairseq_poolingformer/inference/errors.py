"""The floor's errors: each is one line for the user (``str(e)``), never a traceback.

``qa.ReaderError`` and ``summarization.SummarizerError`` derive from :class:`InferenceError`,
so a command line catches one type for everything its tool refuses.
"""


class InferenceError(ValueError):
    """Input that a tool using a trained model cannot use; ``str(e)`` is one line."""


class CheckpointError(InferenceError):
    """A checkpoint that cannot serve: missing, unreadable, built for another task or dictionary,
    or without the files it needs beside it."""
