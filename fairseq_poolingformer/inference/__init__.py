"""The shared floor of the tools that use a trained model (the QA reader, the summarizer).

Opening a checkpoint and finding the files beside it, choosing the device and dtype, reading
text, writing output safely and quietly. ``qa`` and ``summarization`` both build on this
package; it imports neither of them.
"""
