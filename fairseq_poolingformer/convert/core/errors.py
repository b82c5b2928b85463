"""The one error every layer of the converter raises for bad input."""


class ConversionError(ValueError):
    """A checkpoint or dictionary that cannot be converted (the message says which and why)."""
