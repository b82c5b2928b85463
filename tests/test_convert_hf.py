"""convert bart|roberta|led --hf: Hugging Face save_pretrained directories -> Poolingformer.

Tiny random HF models (BART, RoBERTa, XLM-R, LED) are built from configs with ``transformers``
(a test-only dependency), saved with ``save_pretrained`` (and once as ``pytorch_model.bin``),
converted, and checked against HF itself: with w1 covering the input (level 1 = full attention)
and level 2 contributing nothing at conversion, the converted encoder's outputs equal HF's
(max abs difference < 1e-4), BART's and LED's beam search through Fairseq's SequenceGenerator
gives HF ``generate``'s tokens, and text -> ids through the converted directory (its BPE files
and dict.txt, as the hub and the recipes use them) equals the HF tokenizer's ids on real text:
the bundled arXiv papers (GPT-2 BPE) and Korean / Thai / Arabic TyDi documents (sentencepiece).

The HF models and tokenizers are built in tests/hf_models.py.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
import transformers  # pinned in requirements-dev.txt: missing, the suite fails instead of skipping

import fairseq_poolingformer  # noqa: F401
from fairseq import checkpoint_utils
from fairseq.data import Dictionary, encoders
from fairseq.sequence_generator import SequenceGenerator

from fairseq_poolingformer.convert import cli
from fairseq_poolingformer.convert.readers.hf.directory import read_hf_directory
from fairseq_poolingformer.convert.readers.hf.vocab import read_hf_vocabulary, write_tokenizer_files
import hf_models
from hf_models import DATA, SPM
PF = ["--pf-w2", "32", "--pf-kernel", "3", "--pf-stride", "2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gpt2_tokenizer_files(tmp_path_factory):
    return hf_models.gpt2_tokenizer_files(tmp_path_factory.mktemp("gpt2_hf"))


@pytest.fixture(scope="module")
def bart_hf(gpt2_tokenizer_files, tmp_path_factory):
    """A tiny HF BART + its tokenizer, save_pretrained (safetensors, tokenizer.json)."""
    out = tmp_path_factory.mktemp("bart_hf")
    return out, hf_models.save_bart(out, *gpt2_tokenizer_files)


@pytest.fixture(scope="module")
def bart_converted(bart_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("bart_pf") / "pf"
    path = cli.main(["bart", "--hf", str(bart_hf[0]), "--output-dir", str(out), "--arch",
                     "poolingformer_bart_base", "--max-source-positions", "300", "--pf-layers", "0-1",
                     "--pf-w1", "128"] + PF)
    return path


def _load(path):
    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return model.eval(), task


def _random_batch(lengths, vocab_size, seed, left_pad):
    """(B, T) ids with <s> ... </s>, padded with 1 (left or right); and the (B, T) attention mask."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.ones(len(lengths), T, dtype=torch.long)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        row = torch.randint(4, vocab_size - 1, (n,), generator=g)
        row[0], row[-1] = 0, 2
        span = slice(T - n, T) if left_pad else slice(0, n)
        ids[b, span], mask[b, span] = row, 1
    return ids, mask


def _left_to_right(ids, mask):
    """Left-padded (Fairseq source) -> right-padded (HF) rows, same tokens."""
    out_ids, out_mask = torch.ones_like(ids), torch.zeros_like(mask)
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        out_ids[b, :n], out_mask[b, :n] = ids[b, -n:], 1
    return out_ids, out_mask


def _encoder_diff(hf_encoder, fs_encoder, ids, mask, **hf_kwargs):
    """Max |HF - Fairseq| over the real tokens of a left-padded batch, and HF's mean |output|."""
    hf_ids, hf_mask = _left_to_right(ids, mask)
    with torch.no_grad():
        ref = hf_encoder(input_ids=hf_ids, attention_mask=hf_mask, **hf_kwargs).last_hidden_state  # (B, T, C)
        got = fs_encoder(ids, mask.sum(1))["encoder_out"][0].transpose(0, 1)  # (B, T, C)
    diffs = [(got[b, -int(mask[b].sum()):] - ref[b, :int(mask[b].sum())]).abs().max() for b in range(ids.shape[0])]
    return max(d.item() for d in diffs), ref[hf_mask.bool()].abs().mean().item()


class FairseqForcedEos(transformers.LogitsProcessor):
    """Fairseq's rule at the maximum length: only </s> is allowed, with its own log-probability.
    (HF's ``forced_eos_token_id`` gives the forced </s> log-probability 0 instead, which ranks
    hypotheses that reach the maximum length differently.)"""

    def __init__(self, max_length: int, eos: int = 2):
        self.max_length, self.eos = max_length, eos

    def __call__(self, input_ids, scores):  # scores: (B * beam, V) log-probabilities
        if input_ids.shape[-1] == self.max_length - 1:
            eos = scores[:, self.eos].clone()
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.eos] = eos
        return scores


def _beams(fs_model, task, hf_model, ids, mask, beam, max_len):
    """Fairseq SequenceGenerator vs HF generate, settings aligned: beam size, length penalty 1
    (both divide by the generated length incl. </s>), stop when `beam` hypotheses have ended (HF
    early_stopping=True), </s> forced at the last step as Fairseq does it (FairseqForcedEos), <pad>
    never generated (Fairseq: suppress_tokens), min length 1 (HF counts the start token: 2),
    start token </s>, no forced <s>, no n-gram blocking."""
    gen = SequenceGenerator([fs_model], task.target_dictionary, beam_size=beam, len_penalty=1.0,
                            max_len_a=0, max_len_b=max_len, min_len=1)
    with torch.no_grad():
        fs = gen.generate([fs_model], {"net_input": {"src_tokens": ids, "src_lengths": mask.sum(1)}})
        hf_ids, hf_mask = _left_to_right(ids, mask)
        hf = hf_model.generate(input_ids=hf_ids, attention_mask=hf_mask, num_beams=beam, num_return_sequences=1,
                               max_length=max_len + 2, min_length=2, length_penalty=1.0, early_stopping=True,
                               no_repeat_ngram_size=0, forced_bos_token_id=None, forced_eos_token_id=None,
                               logits_processor=transformers.LogitsProcessorList([FairseqForcedEos(max_len + 2)]),
                               decoder_start_token_id=2, suppress_tokens=[1], do_sample=False,
                               repetition_penalty=1.0, encoder_no_repeat_ngram_size=0)
    fs_tokens = [h[0]["tokens"].tolist() for h in fs]
    hf_tokens = [[t for t in row.tolist()[1:] if t != 1] for row in hf]  # drop the start </s> and padding
    return fs_tokens, hf_tokens


# ----------------------------------------------------------------------------- BART


def test_bart_output_files_and_tensor_report(bart_converted):
    out = os.path.dirname(bart_converted)
    assert sorted(os.listdir(out)) == ["dict.source.txt", "dict.target.txt", "dict.txt", "encoder.json",
                                       "hf_conversion.txt", "model.pt", "vocab.bpe"]
    report = open(os.path.join(out, "hf_conversion.txt")).read()
    assert "0 folded" in report
    assert "dropped  final_logits_bias : all zeros" in report
    assert "mapped   model.encoder.layers.{i}.self_attn.q_proj.weight (x2) -> encoder.layers.{i}.self_attn.q_proj.weight" \
        in report


def test_bart_encoder_equals_hf(bart_hf, bart_converted):
    model, _ = _load(bart_converted)
    ids, mask = _random_batch([128, 77, 9], 50265, seed=0, left_pad=True)
    diff, scale = _encoder_diff(bart_hf[1].get_encoder(), model.encoder, ids, mask)
    print(f"BART encoder max abs diff {diff:.2e} (mean |output| {scale:.2f})")
    assert scale > 0.1 and diff < 1e-4


def test_bart_beam_search_equals_hf_generate(bart_hf, bart_converted):
    model, task = _load(bart_converted)
    ids, mask = _random_batch([100, 40, 12], 50265, seed=1, left_pad=True)
    fs, hf = _beams(model, task, bart_hf[1], ids, mask, beam=4, max_len=30)
    assert len({tuple(t) for t in fs}) == 3  # not a degenerate model
    assert min(len(t) for t in fs) < 31 and max(len(t) for t in fs) == 31  # ended early / at the maximum
    assert fs == hf


def test_bart_text_to_ids_equals_hf_tokenizer(bart_hf, bart_converted):
    """The hub (encoder.json + vocab.bpe found in the converted directory) on the bundled papers."""
    from fairseq_poolingformer.models.poolingformer_bart import PoolingformerBARTModel

    hub = PoolingformerBARTModel.from_pretrained(os.path.dirname(bart_converted))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bart_hf[0]))
    with open(os.path.join(DATA, "arxiv", "train.txt"), encoding="utf-8") as f:
        papers = [" ".join(json.loads(line)["article_text"]) for line in f]
    text = papers[0][:30000] + "\n\nÀ bientôt: naïve café, 10 µm, “quotes” — ok?!  Two  spaces."
    expected = tokenizer(text, add_special_tokens=False)["input_ids"]
    got = hub.binarize(hub.apply_bpe(hub.tokenize(text))).tolist()
    assert len(expected) > 5000
    assert got == expected + [2]
    assert hub.decode(torch.tensor(got)) == text  # and back


# ----------------------------------------------------------------------------- RoBERTa (.bin, vocab.json)


@pytest.fixture(scope="module")
def roberta_hf(gpt2_tokenizer_files, tmp_path_factory):
    """A tiny HF RobertaForMaskedLM saved the pre-safetensors way (pytorch_model.bin, vocab.json)."""
    out = tmp_path_factory.mktemp("roberta_hf")
    return out, hf_models.save_roberta(out, *gpt2_tokenizer_files)


@pytest.fixture(scope="module")
def roberta_converted(roberta_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("roberta_pf") / "pf"
    return cli.main(["roberta", "--hf", str(roberta_hf[0]), "--output-dir", str(out), "--arch",
                     "poolingformer_roberta_tiny", "--max-positions", "150", "--pf-layers", "0,2",
                     "--pf-w1", "64"] + PF)


def _roberta_diff(hf_model, fs_model, lengths, vocab_size, seed):
    ids, mask = _random_batch(lengths, vocab_size, seed, left_pad=False)  # RoBERTa pads on the right
    global_mask = torch.zeros_like(ids, dtype=torch.bool)
    global_mask[:, :3] = True  # question tokens: global, which changes nothing when w1 covers T
    with torch.no_grad():
        ref = hf_model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
        got, _ = fs_model(ids, features_only=True, global_mask=global_mask)
    real = mask.bool()
    return (got - ref)[real].abs().max().item(), ref[real].abs().mean().item()


def test_roberta_encoder_equals_hf(roberta_hf, roberta_converted):
    model, _ = _load(roberta_converted)
    hf = roberta_hf[1]
    diff, scale = _roberta_diff(hf.roberta, model, [64, 30, 7], 50265, seed=3)
    print(f"RoBERTa encoder max abs diff {diff:.2e} (mean |output| {scale:.2f})")
    assert scale > 0.1 and diff < 1e-4
    # the LM head came along (its decoder weight is the tied embedding)
    ids, mask = _random_batch([20], 50265, seed=4, left_pad=False)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        got, _ = model(ids)
    assert (got - ref).abs().max().item() < 1e-3


def test_roberta_tensor_report(roberta_converted):
    out = os.path.dirname(roberta_converted)
    assert sorted(os.listdir(out)) == ["dict.txt", "encoder.json", "hf_conversion.txt", "model.pt", "vocab.bpe"]
    report = open(os.path.join(out, "hf_conversion.txt")).read()
    assert "folded   roberta.embeddings.token_type_embeddings.weight : row 0 added" in report
    assert "dropped  lm_head.decoder.weight : a tied copy" in report
    assert "pytorch_model.bin" in report.splitlines()[0]


def test_roberta_text_to_ids_equals_hf_tokenizer(roberta_hf, roberta_converted):
    """What the QA recipes run (Fairseq's gpt2 BPE with the converted encoder.json/vocab.bpe, the
    converted dict.txt + <mask>, as long_qa loads it) equals the HF tokenizer on a paper."""
    out = os.path.dirname(roberta_converted)
    bpe = encoders.build_bpe(Namespace(bpe="gpt2", gpt2_encoder_json=os.path.join(out, "encoder.json"),
                                       gpt2_vocab_bpe=os.path.join(out, "vocab.bpe")))
    dictionary = Dictionary.load(os.path.join(out, "dict.txt"))
    dictionary.add_symbol("<mask>")
    assert len(dictionary) == 50265
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(roberta_hf[0]))
    with open(os.path.join(DATA, "arxiv", "val.txt"), encoding="utf-8") as f:
        text = " ".join(json.loads(f.readline())["article_text"])[:20000]
    got = dictionary.encode_line(bpe.encode(text), add_if_not_exist=False, append_eos=False).tolist()
    assert got == tokenizer(text, add_special_tokens=False)["input_ids"]


# ----------------------------------------------------------------------------- XLM-R (sentencepiece)


@pytest.fixture(scope="module")
def xlmr_hf(tmp_path_factory):
    """A tiny HF XLMRobertaModel + XLMRobertaTokenizer (sentencepiece.bpe.model beside tokenizer.json)."""
    out = tmp_path_factory.mktemp("xlmr_hf")
    return (out, *hf_models.save_xlmr(out, tmp_path_factory.mktemp("xlmr_spm")))


@pytest.fixture(scope="module")
def xlmr_converted(xlmr_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("xlmr_pf") / "pf"
    return cli.main(["roberta", "--hf", str(xlmr_hf[0]), "--output-dir", str(out), "--arch",
                     "poolingformer_roberta_tiny", "--max-positions", "100", "--pf-layers", "all",
                     "--pf-w1", "64"] + PF)


def test_xlmr_encoder_equals_hf(xlmr_hf, xlmr_converted):
    model, _ = _load(xlmr_converted)
    diff, scale = _roberta_diff(xlmr_hf[1], model, [64, 50, 3], len(xlmr_hf[2]), seed=5)
    print(f"XLM-R encoder max abs diff {diff:.2e} (mean |output| {scale:.2f})")
    assert scale > 0.1 and diff < 1e-4
    report = open(os.path.join(os.path.dirname(xlmr_converted), "hf_conversion.txt")).read()
    assert "dropped  pooler.dense.weight : HF's pooler" in report


def _tydi_texts():
    with gzip.open(os.path.join(DATA, "tydiqa", "small_gold_annotation.jsonl.gz"), "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    assert {d["language"] for d in docs} >= {"korean", "thai", "arabic"}
    with open(os.path.join(DATA, "arxiv", "val.txt"), encoding="utf-8") as f:
        english = " ".join(json.loads(f.readline())["article_text"])[:5000]
    return [d["document_plaintext"] for d in docs] + [english]


def _sentencepiece_ids(directory, texts):
    """Text -> ids as the TyDi recipe does it: Fairseq's sentencepiece BPE with the converted
    directory's model, then its dict.txt + <mask> (as long_qa loads it)."""
    bpe = encoders.build_bpe(Namespace(bpe="sentencepiece",
                                       sentencepiece_model=os.path.join(directory, "sentencepiece.bpe.model")))
    dictionary = Dictionary.load(os.path.join(directory, "dict.txt"))
    dictionary.add_symbol("<mask>")
    return dictionary, [dictionary.encode_line(bpe.encode(t), add_if_not_exist=False, append_eos=False).tolist()
                        for t in texts]


def test_xlmr_text_to_ids_equals_hf_tokenizer(xlmr_hf, xlmr_converted):
    """The bundled test model (a 1,000-piece unigram model, NFKC normalisation) on Korean, Thai,
    Arabic and English text. That model keeps "\n" as a piece (XLM-R's nmt_nfkc maps it to a
    space), which Fairseq's whitespace split then drops while HF splits words at it: so texts
    are compared with whitespace runs as single spaces, as the QA preprocessing feeds them
    (raw text with newlines: the next test, with an nmt_nfkc model)."""
    out = os.path.dirname(xlmr_converted)
    assert sorted(os.listdir(out)) == ["dict.txt", "hf_conversion.txt", "model.pt", "sentencepiece.bpe.model"]
    texts = [" ".join(t.split()) for t in _tydi_texts()]
    dictionary, got = _sentencepiece_ids(out, texts)
    assert len(dictionary) == len(xlmr_hf[2])
    for text, ids in zip(texts, got):
        assert ids == xlmr_hf[2](text, add_special_tokens=False)["input_ids"]
        assert len(set(ids)) > 10


def test_xlmr_style_sentencepiece_raw_text(tmp_path):
    """An XLM-R-like unigram model (nmt_nfkc, as XLM-R's) trained here on the TyDi and arXiv
    samples: text -> ids through the converted vocabulary files equals HF's on the raw texts,
    newlines included, with far fewer <unk> than the 1,000-piece model."""
    import sentencepiece

    texts = _tydi_texts()
    (tmp_path / "corpus.txt").write_text("\n".join(texts), encoding="utf-8")
    src = tmp_path / "src"
    src.mkdir()
    sentencepiece.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"), model_prefix=str(src / "sentencepiece.bpe"), vocab_size=1500,
        model_type="unigram", normalization_rule_name="nmt_nfkc", hard_vocab_limit=False,
        character_coverage=1.0, num_threads=1, minloglevel=2, max_sentence_length=1 << 16)
    hf_dir = tmp_path / "hf"
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(str(src))
    tokenizer.save_pretrained(hf_dir)
    shutil.copy(src / "sentencepiece.bpe.model", hf_dir / "sentencepiece.bpe.model")
    vocab = read_hf_vocabulary(str(hf_dir))
    out = tmp_path / "out"
    out.mkdir()
    write_tokenizer_files(vocab, len(tokenizer), False, str(out))
    _, got = _sentencepiece_ids(str(out), texts)
    for text, ids in zip(texts, got):
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == expected
        assert ids.count(3) < 0.01 * len(ids)  # few <unk>: real pieces are compared


def test_sharded_weights_are_joined(xlmr_hf, tmp_path):
    """A save_pretrained directory split into shards (model.safetensors.index.json) reads as one."""
    xlmr_hf[1].save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("*.safetensors"))) >= 2
    sharded = read_hf_directory(str(tmp_path)).tensors
    whole = read_hf_directory(str(xlmr_hf[0])).tensors
    assert sorted(sharded) == sorted(whole) and all(torch.equal(sharded[k], whole[k]) for k in whole)


# ----------------------------------------------------------------------------- LED


@pytest.fixture(scope="module")
def led_hf(gpt2_tokenizer_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("led_hf")
    return out, hf_models.save_led(out, *gpt2_tokenizer_files)


@pytest.fixture(scope="module")
def led_converted(led_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("led_pf") / "pf"
    return cli.main(["led", "--hf", str(led_hf[0]), "--output-dir", str(out), "--arch", "poolingformer_bart_base",
                     "--pf-layers", "1", "--pf-w1", "128"] + PF)


def test_led_encoder_and_beam_search_equal_hf(led_hf, led_converted):
    """LED's window (128 each side) and w1 (128) cover the input; no global token in LED, the
    first token global in Poolingformer (the same function when w1 covers the input)."""
    model, task = _load(led_converted)
    assert model.encoder.max_positions() == 256  # LED's own length by default
    ids, mask = _random_batch([120, 61, 5], 50265, seed=6, left_pad=True)
    diff, scale = _encoder_diff(led_hf[1].get_encoder(), model.encoder, ids, mask)
    print(f"LED encoder max abs diff {diff:.2e} (mean |output| {scale:.2f})")
    assert scale > 0.1 and diff < 1e-4
    fs, hf = _beams(model, task, led_hf[1], ids, mask, beam=3, max_len=16)
    assert len({tuple(t) for t in fs}) == 3
    assert fs == hf


def test_led_report_names_dropped_global_projections(led_converted):
    report = open(os.path.join(os.path.dirname(led_converted), "hf_conversion.txt")).read()
    assert "dropped  led.encoder.layers.{i}.self_attn.longformer_self_attn.query_global.weight (x2) : " \
           "LED's projection for global tokens" in report
    assert "mapped   led.encoder.embed_positions.weight -> encoder.embed_positions.weight (2 zero rows" in report
    assert "mapped   led.encoder.layers.{i}.self_attn.output.weight (x2) -> encoder.layers.{i}.self_attn.out_proj.weight" \
        in report


# ----------------------------------------------------------------------------- errors


def _copy_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_unknown_missing_and_nonzero_bias_tensors_are_errors(bart_hf, tmp_path):
    from safetensors.torch import load_file, save_file

    def variant(name, edit):
        d = _copy_dir(bart_hf[0], tmp_path / name)
        tensors = load_file(str(d / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(d / "model.safetensors"))
        return d

    def run(d):
        return cli.main(["bart", "--hf", str(d), "--output-dir", str(tmp_path / "out"), "--pf-layers", "1"])

    extra = variant("extra", lambda t: t.__setitem__("model.encoder.adapter.weight", torch.zeros(2)))
    with pytest.raises(SystemExit, match=r"extra/model.safetensors: unknown tensors \(not converted\): "
                                         r"\['model.encoder.adapter.weight'\]"):
        run(extra)
    missing = variant("missing", lambda t: t.pop("model.encoder.layers.1.fc2.bias"))
    with pytest.raises(SystemExit, match=r"missing/model.safetensors: tensor model.encoder.layers.1.fc2.bias is missing"):
        run(missing)
    bias = variant("bias", lambda t: t["final_logits_bias"].add_(0.5))
    with pytest.raises(SystemExit, match=r"final_logits_bias is not zero \(max \|b\| = 0.5\)"):
        run(bias)
    untied = variant("untied", lambda t: t.__setitem__("lm_head.weight", t["model.shared.weight"] * 2))
    with pytest.raises(SystemExit, match=r"lm_head.weight differs from model.shared.weight"):
        run(untied)
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_tokenizer_errors(xlmr_hf, bart_hf, tmp_path):
    no_spm = _copy_dir(xlmr_hf[0], tmp_path / "no_spm")
    os.remove(no_spm / "sentencepiece.bpe.model")
    with pytest.raises(SystemExit, match=r"no_spm: a sentencepiece \(Unigram\) tokenizer but no sentencepiece.bpe.model"):
        cli.main(["roberta", "--hf", str(no_spm), "--output-dir", str(tmp_path / "o")])
    no_tok = _copy_dir(bart_hf[0], tmp_path / "no_tok")
    os.remove(no_tok / "tokenizer.json")
    with pytest.raises(SystemExit, match=r"no_tok: no tokenizer \(looked for tokenizer.json, vocab.json \+ merges.txt"):
        cli.main(["bart", "--hf", str(no_tok), "--output-dir", str(tmp_path / "o")])
    prefix = _copy_dir(bart_hf[0], tmp_path / "prefix")
    tok = json.loads((prefix / "tokenizer.json").read_text(encoding="utf-8"))
    tok["pre_tokenizer"]["add_prefix_space"] = True
    (prefix / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"prefix/tokenizer.json: the byte-level pre-tokenizer adds a prefix space"):
        cli.main(["bart", "--hf", str(prefix), "--output-dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"model_type 'bart' cannot be converted by 'convert roberta --hf'"):
        cli.main(["roberta", "--hf", str(bart_hf[0]), "--output-dir", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_cli_prints_the_tensor_summary_without_importing_transformers(bart_hf, tmp_path):
    argv = ["convert", "bart", "--hf", str(bart_hf[0]), "--output-dir", str(tmp_path / "pf"), "--pf-layers", "1",
            "--max-source-positions", "256"]
    code = (f"import runpy, sys; sys.argv = {argv!r}\n"
            "try:\n    runpy.run_module('fairseq_poolingformer.convert', run_name='__main__')\n"
            "finally:\n    assert 'transformers' not in sys.modules, 'the converter imported transformers'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(tmp_path / "pf" / "model.pt")
    assert "tensors: " in proc.stderr and " mapped, 0 folded, 1 dropped" in proc.stderr
    assert "dropped  final_logits_bias : all zeros" in proc.stderr


# ----------------------------------------------------------------------------- the QA reader

MULTILINGUAL = ("서울은 대한민국의 수도이다.\n\nกรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย\n\n"
                "القاهرة هي عاصمة مصر.\n\nМосква — столица России, крупнейший город страны.\n")


@pytest.mark.parametrize("converted", ["roberta_converted", "xlmr_converted"])
def test_reader_runs_a_converted_checkpoint_with_its_random_qa_head(converted, request):
    """Straight from convert (no QA fine-tuning: random head, meaningless answers): the reader finds
    model.pt, dict.txt and the BPE files beside it (GPT-2 / sentencepiece), cuts windows within
    the converted positions and returns spans whose offsets select them in the document as given."""
    from fairseq_poolingformer.qa import load_reader

    directory = os.path.dirname(request.getfixturevalue(converted))
    reader = load_reader(directory, cpu=True, max_length=64, doc_stride=16, max_question_len=24)
    assert reader.spec.kind == ("gpt2" if converted == "roberta_converted" else "sentencepiece")
    answers = reader.answer("Какая столица?", MULTILINGUAL, top_k=8, max_answer_len=5)
    spans = [a for a in answers if a["kind"] == "span"]
    assert len(spans) >= 7
    for a in spans:
        assert MULTILINGUAL[a["start"]:a["end"]] == a["answer"] != ""
        assert a["paragraph"] is None or MULTILINGUAL[a["paragraph"][0]:a["paragraph"][1]].strip("\n") == \
            MULTILINGUAL[a["paragraph"][0]:a["paragraph"][1]]
