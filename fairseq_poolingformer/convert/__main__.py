"""``python -m fairseq_poolingformer.convert``: see :mod:`fairseq_poolingformer.convert.cli`."""

from fairseq_poolingformer.convert.cli import main

if __name__ == "__main__":
    main()
