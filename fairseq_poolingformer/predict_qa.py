"""Kept for scripts written against the old name: ``python -m fairseq_poolingformer.qa.predict``."""
import sys

from fairseq_poolingformer.qa.predict import main

if __name__ == "__main__":
    sys.exit(main())
