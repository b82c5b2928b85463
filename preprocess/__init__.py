"""Old command names, kept: ``python -m preprocess.X`` from the repository root runs
``fairseq_poolingformer.preprocess.X`` (the data conversion moved into the installed package so
that nothing here clashes with PyPI's unrelated ``preprocess``). Not installed; new scripts should
call ``python -m fairseq_poolingformer.preprocess.X``, which works from any directory.
"""
import fairseq_poolingformer.preprocess as _moved

__path__ = list(_moved.__path__)  # submodules are found (and run by -m) where they now live
