"""The QA tools' error: one line for the user."""
from fairseq_poolingformer.inference.errors import InferenceError


class ReaderError(InferenceError):
    """Bad input or a checkpoint the reader cannot use; ``str(e)`` is one line for the user."""
