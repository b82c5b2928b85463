"""The summarization tools' error: one line for the user."""
from fairseq_poolingformer.inference.errors import InferenceError


class SummarizerError(InferenceError):
    """Input or files the summarizer cannot use; ``str(e)`` is one line for the user."""
