"""Peak memory of the QA reader on one long document: windows are streamed through the model,
so memory grows with the document's subwords (kept for the answer's offsets), not its windows.

    python benchmarks/reader_memory.py --chars 1000000 10000000

Each size runs in its own process: a tiny random ``poolingformer_roberta_tiny`` ``long_qa`` model
(the reader's code path does not depend on the weights) with the bundled GPT-2 BPE, the
default windows (4096 / 1568), a synthetic English document of N characters in paragraphs.
Prints, per size: windows run, peak RSS of the process, and its RSS before the document was
read (model, tokenizer and interpreter), in MiB.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE = os.path.join(REPO, "tests", "data", "gpt2_bpe")
QUESTION = "which city is the capital?"


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _document(n_chars: int, seed: int = 0) -> str:
    with open(os.path.join(REPO, "tests", "data", "nq", "dev_sample.jsonl"), encoding="utf-8") as f:
        words = [w for w in json.loads(f.readline())["document_text"].split(" ") if w.isalpha()]
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        paragraph = " ".join(rng.choice(words) for _ in range(rng.randint(40, 200))) + ".\n\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts)[:n_chars]


def measure(n_chars: int) -> dict:
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    import fairseq_poolingformer  # noqa: F401
    from fairseq_poolingformer.preprocess.qa_tokenize import TokenizerSpec, tokenize_text
    from fairseq_poolingformer.preprocess.qa_windows import window_spans
    from fairseq_poolingformer.qa.reader import QAReader, window_config

    torch.manual_seed(0)
    torch.set_num_threads(1)
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [BPE, "--task", "long_qa", "--criterion", "long_qa", "--arch",
                                                "poolingformer_roberta_tiny", "--max-positions", "4096", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    spec = TokenizerSpec("gpt2", os.path.join(BPE, "dict.txt"), os.path.join(BPE, "encoder.json"),
                         os.path.join(BPE, "vocab.bpe"))
    reader = QAReader(model, task, spec, window_config(task.max_positions()), batch_size=4)
    before = _rss_mib()
    document = _document(n_chars)
    start = time.time()
    answer = reader.answer(QUESTION, document)
    seconds = time.time() - start
    assert answer["kind"] != "span" or document[answer["start"]:answer["end"]] == answer["answer"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # counted after the peak was read: the windows the reader ran, from the document's subwords
    subwords = len(tokenize_text(document, reader.tokenizer).ids)
    budget = reader.windows.max_length - (len(reader.tokenizer.encode(QUESTION)) + 2) - 1
    return {"chars": n_chars, "subwords": subwords, "windows": len(window_spans(subwords, budget, reader.windows.doc_stride)),
            "seconds": round(seconds, 1), "rss_before_mib": round(before, 1), "peak_rss_mib": round(peak, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chars", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    print(f"{'chars':>12} {'subwords':>10} {'windows':>8} {'seconds':>8} {'RSS before':>11} {'peak RSS':>9}")
    for n in args.chars:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO))
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['chars']:>12} {r['subwords']:>10} {r['windows']:>8} {r['seconds']:>8} "
              f"{r['rss_before_mib']:>9} M {r['peak_rss_mib']:>7} M")


if __name__ == "__main__":
    main()
