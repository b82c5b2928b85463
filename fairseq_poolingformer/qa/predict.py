"""Run a ``long_qa`` checkpoint over every window of a split and write official-format predictions.

    python -m fairseq_poolingformer.qa.predict --checkpoint ckpt/checkpoint_best.pt \\
        --data-dir data-bin/nq --split valid --format nq --output preds.json

The command line of ``qa.scores`` (every window of the split through the model),
``qa.combine`` (the windows of each example combined at the document level) and
``qa.official`` (the official formats, and ``<output stem>.report.json`` beside them). Final
numbers come from the official scripts, not from the criterion's approximate window-level F1.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from fairseq_poolingformer.inference.checkpoint import load_for_inference
from fairseq_poolingformer.inference.device import place
from fairseq_poolingformer.inference.errors import CheckpointError
from fairseq_poolingformer.inference.options import positive_int
from fairseq_poolingformer.inference.output import OutputError, check_output, is_stream
from fairseq_poolingformer.qa.official import iter_examples, report_path, write_predictions
from fairseq_poolingformer.qa.scores import predict_windows

logger = logging.getLogger("fairseq_poolingformer.qa.predict")


def load_model(checkpoint: str, data_dir: str, cpu: bool = False, fp16: bool = False):
    """(model, task, use_cuda) for a ``long_qa`` checkpoint and a binarized data directory."""
    models, _cfg, task = load_for_inference(checkpoint, {"data": data_dir}, "long_qa")
    model, use_cuda = place(models[0], cpu, fp16)
    return model, task, use_cuda


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="predict_qa",
                                     description="Write NQ / TyDi QA predictions in the official formats.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True,
                        help="directory written by fairseq_poolingformer/preprocess/qa_binarize.py")
    parser.add_argument("--split", default="valid",
                        help="split name given to qa_binarize (recipes: valid, or test for a blind test set)")
    parser.add_argument("--format", choices=("nq", "tydi"), required=True)
    parser.add_argument("--output", required=True, help="NQ: a .json file; TyDi: a .jsonl file")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch")
    parser.add_argument("--max-tokens", type=positive_int, default=None)
    parser.add_argument("--max-answer-len", type=positive_int, default=30,
                        help="longest short answer, in subwords (the report counts predicted spans of this length)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when CUDA is available")
    parser.add_argument("--fp16", action="store_true", help="half precision (CUDA only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")

    examples_path = os.path.join(args.data_dir, f"{args.split}.examples.jsonl")
    if not os.path.exists(examples_path):
        parser.error(f"{examples_path} not found (run fairseq_poolingformer/preprocess/qa_binarize.py "
                     f"for split {args.split!r})")
    try:  # before any work: nothing clobbered, no input overwritten, a writable directory
        for path in (args.output, report_path(args.output)):
            check_output(path, [examples_path, args.checkpoint])
            if is_stream(path):
                raise OutputError(path, "a FIFO or device: the predictions and their report are written as files")
    except OutputError as e:
        parser.exit(1, f"predict_qa: {e}\n")
    first = next(iter_examples(examples_path), {})
    if first.get("dataset", args.format) != args.format:
        parser.error(f"{examples_path} holds {first.get('dataset')!r} examples; use --format {first.get('dataset')}")
    try:
        model, task, use_cuda = load_model(args.checkpoint, args.data_dir, args.cpu, args.fp16)
    except CheckpointError as e:
        parser.exit(1, f"predict_qa: {e}\n")
    task.load_dataset(args.split)
    by_example = predict_windows(model, task, args.split, args.max_answer_len, args.batch_size,
                                 args.max_tokens, use_cuda)
    try:
        report = write_predictions(examples_path, by_example, args.format, args.output, args.max_answer_len)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    logger.info(f"wrote {report.summary()} to {args.output} (report: {report_path(args.output)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
