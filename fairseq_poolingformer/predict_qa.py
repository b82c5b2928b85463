"""Kept for scripts written against the old name: ``python -m fairseq_poolingformer.qa.predict``."""
from fairseq_poolingformer.qa.predict import main

if __name__ == "__main__":
    main()  # exits with the tool's status
