"""``python -m fairseq_poolingformer.convert``."""

from fairseq_poolingformer.convert import main

if __name__ == "__main__":
    main()
