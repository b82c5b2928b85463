"""ROUGE-1/2/L/Lsum of summaries against references, with Google's ``rouge-score``.

Usage::

    python recipes/arxiv/score.py --hypotheses OUT/test.hypotheses --references DATA/text/test.target \\
        [--json OUT/rouge.json] [--no-stemmer]

Both files hold one document per line, in the same order (``generate.sh`` writes the
hypotheses in the order of the split; ``binarize.sh`` writes ``text/S.target`` in that order).
Prints a markdown table (F1 x 100, with precision and recall, averaged over documents) and the
same numbers as one JSON object on the last line (also written to ``--json``). Blank hypotheses
score 0: some blank is a warning on stderr with their count and line numbers (``blank_hypotheses``
in the JSON); all blank is an error (exit 1), as nothing was generated.

ROUGE-Lsum is computed over sentences: the lines are split after ``.``, ``!`` or ``?``
followed by whitespace (arXiv abstracts in Cohan et al.'s release are tokenized, sentences
end in `` .``), and the sentences are joined by newlines as ``rouge-score`` expects.
Tokenization is ``rouge-score``'s default (lower-cased, non-alphanumerics removed), with the
Porter stemmer as in the paper's and BART's evaluation (``--no-stemmer`` to turn it off).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Dict, List, Sequence

from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, for ROUGE-Lsum."""
    return "\n".join(s for s in SENTENCE_END.split(text.strip()) if s)


def read_lines(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f]
    except UnicodeDecodeError as err:
        raise SystemExit(f"score.py: {path}: not UTF-8 ({err})") from None
    except FileNotFoundError:
        raise SystemExit(f"score.py: file not found: {path}") from None
    except OSError as err:  # a directory, no permission, ...
        raise SystemExit(f"score.py: cannot read {path}: {err.strerror or err}") from None


def score(hypotheses: Sequence[str], references: Sequence[str], stemmer: bool = True) -> Dict[str, Dict[str, float]]:
    """Mean precision / recall / F1 (x 100) per ROUGE type over the document pairs."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise ValueError("nothing to score: no documents")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stemmer)
    aggregate = {t: [] for t in ROUGE_TYPES}
    for hyp, ref in zip(hypotheses, references):
        result = scorer.score(split_sentences(ref), split_sentences(hyp))  # (target, prediction)
        for t in ROUGE_TYPES:
            aggregate[t].append(result[t])
    out = {}
    for t in ROUGE_TYPES:
        n = len(aggregate[t])
        out[t] = {
            "precision": 100 * sum(s.precision for s in aggregate[t]) / n,
            "recall": 100 * sum(s.recall for s in aggregate[t]) / n,
            "f1": 100 * sum(s.fmeasure for s in aggregate[t]) / n,
        }
    return out


def markdown_table(scores: Dict[str, Dict[str, float]], n: int) -> str:
    rows = ["| metric | F1 | precision | recall |", "|---|---|---|---|"]
    names = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "rougeLsum": "ROUGE-Lsum"}
    for t in ROUGE_TYPES:
        s = scores[t]
        rows.append(f"| {names[t]} | {s['f1']:.2f} | {s['precision']:.2f} | {s['recall']:.2f} |")
    rows.append(f"\n{n} documents")
    return "\n".join(rows)


def check_blank(hypotheses: Sequence[str], path: str) -> List[int]:
    """1-based numbers of the blank hypotheses; all blank is an error, some a warning on stderr."""
    blank = [i + 1 for i, h in enumerate(hypotheses) if not h.strip()]
    n = len(hypotheses)
    if n and len(blank) == n:
        raise SystemExit(f"score.py: every hypothesis in {path} is blank ({n} of {n} lines): nothing was "
                         "generated to score (see generate.sh's generate-S.log)")
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        print(f"score.py: warning: {len(blank)} of {n} hypotheses in {path} are blank (lines {shown}): "
              "they score 0", file=sys.stderr)
    return blank


def main(argv: Sequence[str] | None = None) -> Dict[str, Dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hypotheses", required=True, help="one summary per line")
    parser.add_argument("--references", required=True, help="one reference summary per line, same order")
    parser.add_argument("--json", help="also write the scores here")
    parser.add_argument("--no-stemmer", action="store_true", help="no Porter stemming")
    args = parser.parse_args(argv)
    hyps, refs = read_lines(args.hypotheses), read_lines(args.references)
    if len(hyps) != len(refs):
        raise SystemExit(f"score.py: {args.hypotheses} has {len(hyps)} lines but "
                         f"{args.references} has {len(refs)}: not the same documents")
    if not refs:
        raise SystemExit(f"score.py: {args.hypotheses} and {args.references} are empty: no documents to score")
    blank = check_blank(hyps, args.hypotheses)
    scores = score(hyps, refs, stemmer=not args.no_stemmer)
    print(markdown_table(scores, len(refs)))
    payload = {"n_documents": len(refs), "blank_hypotheses": len(blank), "stemmer": not args.no_stemmer,
               **{t: {k: round(v, 4) for k, v in s.items()} for t, s in scores.items()}}
    print(json.dumps(payload))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
    return scores


if __name__ == "__main__":
    main(sys.argv[1:])
