"""Run a ``long_qa`` checkpoint over every window of a split and write official-format predictions.

    python -m fairseq_poolingformer.qa.predict --checkpoint ckpt/checkpoint_best.pt \\
        --data-dir data-bin/nq --split valid --format nq --output preds.json

The command line of ``qa.scores`` (every window of the split through the model),
``qa.combine`` (the windows of each example combined at the document level) and
``qa.official`` (the official formats, and ``<output stem>.report.json`` beside them). Final
numbers come from the official scripts, not from the criterion's approximate window-level F1.

As ``pf-answer``: quiet (``--verbose``: Fairseq's log lines and the counts written), one
``predict_qa: error:`` line and exit status 1 for bad input, 130 on Ctrl-C
(``inference.console``); both files complete or absent, and none of the inputs (the examples,
the checkpoint and the files beside it, the data directory's dictionaries) ever written over.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Sequence

from fairseq_poolingformer.inference.checkpoint import INFERENCE_ATTENTION, load_for_inference
from fairseq_poolingformer.inference.device import place
from fairseq_poolingformer.inference.files import model_files
from fairseq_poolingformer.inference.options import add_device_options, positive_int, tool_main
from fairseq_poolingformer.inference.output import OutputError, check_output, is_stream
from fairseq_poolingformer.qa.errors import ReaderError
from fairseq_poolingformer.qa.official import iter_examples, report_path, write_predictions
from fairseq_poolingformer.qa.scores import predict_windows

logger = logging.getLogger("fairseq_poolingformer.qa.predict")


def load_model(checkpoint: str, data_dir: str, cpu: bool = False, fp16: bool = False):
    """(model, task, use_cuda) for a ``long_qa`` checkpoint and a binarized data directory."""
    models, _cfg, task = load_for_inference(checkpoint, {"data": data_dir, **INFERENCE_ATTENTION}, "long_qa")
    model, use_cuda = place(models[0], cpu, fp16)
    return model, task, use_cuda


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict_qa",
                                     description="Write NQ / TyDi QA predictions in the official formats.")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-dir", required=True,
                        help="directory written by fairseq_poolingformer/preprocess/qa_binarize.py")
    parser.add_argument("--split", default="valid",
                        help="split name given to qa_binarize (recipes: valid, or test for a blind test set)")
    parser.add_argument("--format", choices=("nq", "tydi"), required=True)
    parser.add_argument("--output", required=True, help="NQ: a .json file; TyDi: a .jsonl file (and the report "
                        "beside it, <stem>.report.json): both complete or absent, never one of the inputs")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="windows per batch")
    parser.add_argument("--max-tokens", type=positive_int, default=None)
    parser.add_argument("--max-answer-len", type=positive_int, default=30,
                        help="longest short answer, in subwords (the report counts predicted spans of this length)")
    add_device_options(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def predict(args: argparse.Namespace) -> int:
    """predict_qa's work, after parsing: raises the errors ``run`` reports in one line."""
    examples_path = os.path.join(args.data_dir, f"{args.split}.examples.jsonl")
    if not os.path.exists(examples_path):
        raise ReaderError(f"{examples_path} not found (run fairseq_poolingformer/preprocess/qa_binarize.py "
                          f"for split {args.split!r})")
    # before any work: nothing clobbered (the examples, the model's files, the data's dictionaries), a
    # writable directory
    inputs = [examples_path, *model_files(args.checkpoint, args.data_dir)]
    for path in (args.output, report_path(args.output)):
        check_output(path, inputs)
        if is_stream(path):
            raise OutputError(path, "a FIFO or device: the predictions and their report are written as files")
    first = next(iter_examples(examples_path), {})
    if first.get("dataset", args.format) != args.format:
        raise ReaderError(f"{examples_path} holds {first.get('dataset')!r} examples; use --format "
                          f"{first.get('dataset')}")
    model, task, use_cuda = load_model(args.checkpoint, args.data_dir, args.cpu, args.fp16)
    task.load_dataset(args.split)
    by_example = predict_windows(model, task, args.split, args.max_answer_len, args.batch_size,
                                 args.max_tokens, use_cuda)
    report = write_predictions(examples_path, by_example, args.format, args.output, args.max_answer_len)
    logger.info(f"wrote {report.summary()} to {args.output} (report: {report_path(args.output)})")
    return 0


# parse, then predict; exits with 0, 1 (one error line), 2 (usage) or 130 (Ctrl-C): inference.console
main = tool_main("predict_qa", parse_args, predict)

if __name__ == "__main__":
    main()
