"""Tiny random Hugging Face models and tokenizers saved with ``save_pretrained``: what the
converter's tests (test_convert_hf.py) read, built from configs (no download).

``transformers`` is pinned in requirements-dev.txt and imported directly: a missing install
fails the tests that need it instead of skipping them. The GPT-2 vocabulary is the real one
(tests/data/gpt2_bpe), put in HF RoBERTa/BART order (the order of Fairseq's dict.txt, specials
first), as Hugging Face's own BART/RoBERTa files are."""

import json
import os
import shutil
from pathlib import Path
from typing import Tuple

import torch
import transformers

DATA = os.path.join(os.path.dirname(__file__), "data")
GPT2 = os.path.join(DATA, "gpt2_bpe")
SPM = os.path.join(DATA, "sentencepiece", "test_model.model")


def gpt2_tokenizer_files(root: Path) -> Tuple[Path, int]:
    """vocab.json (HF RoBERTa/BART order: <s> <pad> </s> <unk>, Fairseq's dict.txt order, <mask>)
    and merges.txt in ``root``, from the real GPT-2 files. Returns root and the vocabulary size."""
    with open(os.path.join(GPT2, "encoder.json"), encoding="utf-8") as f:
        token_of = {i: t for t, i in json.load(f).items()}
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    with open(os.path.join(GPT2, "dict.txt"), encoding="utf-8") as f:
        for line in f:
            symbol = line.split()[0]
            vocab[token_of[int(symbol)] if symbol.isdigit() else symbol] = len(vocab)
    vocab["<mask>"] = len(vocab)
    with open(root / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    shutil.copy(os.path.join(GPT2, "vocab.bpe"), root / "merges.txt")
    return root, len(vocab)


def _perturb(model: torch.nn.Module, seed: int, std: float = 0.3) -> torch.nn.Module:
    """Larger random weights than HF's init (0.02), so outputs and beam choices are far from ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed_tokens" in name or "shared" in name
                                                             or "word_embeddings" in name else std))
            elif "norm" in name.lower() or p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            if "shared" in name or "word_embeddings" in name:  # equal norms: no token wins everywhere
                p.copy_(torch.nn.functional.normalize(p, dim=1) * 4.0)
    return model.eval()


def _random_model(model_class: type, config: transformers.PretrainedConfig, seed: int) -> torch.nn.Module:
    """model_class(config) with HF's init drawn after seed 0, then perturbed with ``seed``."""
    torch.manual_seed(0)
    return _perturb(model_class(config), seed)


def _likelier_eos(final_norm: torch.nn.LayerNorm, embeddings: torch.Tensor) -> None:
    """A random decoder rarely ends before the maximum length: halve its last LayerNorm's scale,
    lengthen the </s> embedding and shift the LayerNorm bias towards it (values found by trying),
    so that some hypotheses end early and others at the maximum length."""
    with torch.no_grad():
        final_norm.weight.mul_(0.5)
        embeddings[2] *= 1.9
        final_norm.bias.add_(1.5 * embeddings[2] / embeddings[2].norm())


def save_bart(out: Path, gpt2_files: Path, vocab_size: int) -> torch.nn.Module:
    """A tiny HF BART + its tokenizer in ``out`` (safetensors, tokenizer.json). Returns the model."""
    cfg = transformers.BartConfig(vocab_size=vocab_size, d_model=16, encoder_layers=2, decoder_layers=2,
                                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                  decoder_ffn_dim=32, max_position_embeddings=128, dropout=0.0)
    model = _random_model(transformers.BartForConditionalGeneration, cfg, 1)
    _likelier_eos(model.model.decoder.layers[-1].final_layer_norm, model.model.shared.weight)
    model.save_pretrained(out)
    transformers.BartTokenizer.from_pretrained(str(gpt2_files)).save_pretrained(out)
    return model


def save_roberta(out: Path, gpt2_files: Path, vocab_size: int) -> torch.nn.Module:
    """A tiny HF RobertaForMaskedLM in ``out``, saved the pre-safetensors way: pytorch_model.bin
    holding every state-dict entry (incl. the tied lm_head.decoder copies), vocab.json +
    merges.txt. Returns the model."""
    cfg = transformers.RobertaConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=3,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=66,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, type_vocab_size=1,
                                     layer_norm_eps=1e-5)
    model = _random_model(transformers.RobertaForMaskedLM, cfg, 2)
    model.save_pretrained(out)
    os.remove(out / "model.safetensors")
    torch.save(model.state_dict(), out / "pytorch_model.bin")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(gpt2_files / name, out / name)
    return model


def save_xlmr(out: Path, spm_dir: Path) -> Tuple[torch.nn.Module, transformers.PreTrainedTokenizer]:
    """A tiny HF XLMRobertaModel (no LM head, with a pooler) + XLMRobertaTokenizer from the test
    sentencepiece model (copied into the empty ``spm_dir``) in ``out``; save_pretrained writes
    tokenizer.json, the sentencepiece model is copied beside it (as in the hub's xlm-roberta
    directories). Returns the model and the tokenizer."""
    shutil.copy(SPM, spm_dir / "sentencepiece.bpe.model")
    tokenizer = transformers.XLMRobertaTokenizer.from_pretrained(str(spm_dir))
    tokenizer.save_pretrained(out)
    shutil.copy(SPM, out / "sentencepiece.bpe.model")
    cfg = transformers.XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=66,
                                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, type_vocab_size=1,
                                        layer_norm_eps=1e-5)
    model = _random_model(transformers.XLMRobertaModel, cfg, 3)
    model.save_pretrained(out)
    return model, tokenizer


def save_led(out: Path, gpt2_files: Path, vocab_size: int) -> torch.nn.Module:
    """A tiny HF LED + its tokenizer in ``out``. Returns the model."""
    cfg = transformers.LEDConfig(vocab_size=vocab_size, d_model=16, encoder_layers=2, decoder_layers=2,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                 decoder_ffn_dim=32, max_encoder_position_embeddings=256,
                                 max_decoder_position_embeddings=64, attention_window=[256, 256], dropout=0.0)
    model = _random_model(transformers.LEDForConditionalGeneration, cfg, 4)
    model.save_pretrained(out)
    transformers.LEDTokenizer.from_pretrained(str(gpt2_files)).save_pretrained(out)
    return model
