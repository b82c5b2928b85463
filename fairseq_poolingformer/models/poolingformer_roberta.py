"""Poolingformer RoBERTa / XLM-R encoder for long-document QA (model ``poolingformer_roberta``).

Stock Fairseq RoBERTa with one change: every encoder layer's self-attention is Poolingformer's
(``--pf-layers`` two-level, the others sliding-window only), and a ``global_mask`` (B, T)
travels from ``forward`` to every layer's self-attention (for QA: the question tokens,
built by the ``long_qa`` task). Without a global mask, ``<s>`` is the global token.

QA heads (``LongQAHead``) are registered by the task like RoBERTa's classification heads
(``model.register_qa_head("long_qa")``) and run inside ``forward(..., qa_head=name)``, so
distributed training sees them as part of the model's forward.

Archs (the paper counts layers from 1, ``--pf-layers`` from 0):
``poolingformer_roberta_base`` (12 layers; two-level in "the 6th-8th layers" of the paper's
ablations, ``--pf-layers 5-7``), ``poolingformer_roberta_large`` and ``poolingformer_xlmr_large``
(24 layers; "from the 15th to the 20th layer", ``--pf-layers 14-19``), all with w1 128, w2 512,
kernel 5, stride 4, LDConv, 4096 positions; ``poolingformer_roberta_tiny`` for tests.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn as nn
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig
from fairseq.models.roberta.model import RobertaEncoder, RobertaModel
from fairseq.models.roberta.model import base_architecture as roberta_base_architecture
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from fairseq.utils import safe_getattr, safe_hasattr

from fairseq_poolingformer.models.encoder import (
    PoolingformerConfig,
    PoolingformerTransformerEncoder,
    add_poolingformer_args,
    set_poolingformer_defaults,
)

logger = logging.getLogger(__name__)

NUM_ANSWER_TYPES = 5  # null, short, long-only, yes, no
NEG = -1e9            # logit of impossible choices (padding positions, padded candidates)


# ---------------------------------------------------------------------------
# QA head

def mean_spans(features: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Mean of features over inclusive spans, via prefix sums (no (K x T) matrix).

    features: (B, T, C); spans: (B, K, 2) long, 0 <= start <= end < T. Returns (B, K, C) float32.
    """
    B, T, C = features.shape
    prefix = torch.zeros(B, T + 1, C, dtype=torch.float32, device=features.device)
    prefix[:, 1:] = features.float().cumsum(dim=1)                      # prefix[t] = sum of x[:t]
    start, end = spans[..., 0], spans[..., 1] + 1                       # (B, K)
    gather = lambda idx: prefix.gather(1, idx.unsqueeze(-1).expand(-1, -1, C))  # noqa: E731
    length = (end - start).clamp(min=1).unsqueeze(-1).float()           # (B, K, 1)
    return (gather(end) - gather(start)) / length


class LongQAHead(nn.Module):
    """Span, long-answer (candidate) and answer-type logits from encoder token features.

    - start/end: a linear map of each token;
    - long: candidates are the mean of their tokens' features; logit = linear map of that
      mean; column 0 is "no candidate", scored from the <s> feature;
    - answer type (null, short, long-only, yes, no): from the document representation, the
      mean of the window's candidate representations (the <s> feature when it has none).
    """

    def __init__(self, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.span_proj = nn.Linear(embed_dim, 2)
        self.candidate_proj = nn.Linear(embed_dim, 1)
        self.no_candidate_proj = nn.Linear(embed_dim, 1)
        self.type_proj = nn.Linear(embed_dim, NUM_ANSWER_TYPES)

    def forward(self, features: torch.Tensor, padding_mask: torch.Tensor,
                candidate_spans: Optional[torch.Tensor] = None,
                candidate_mask: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """features: (B, T, C); padding_mask: (B, T) bool (True = pad); candidate_spans: (B, K, 2);
        candidate_mask: (B, K) bool (True = real). Returns float32 logits: start, end (B, T),
        long (B, K + 1), answer_type (B, 5)."""
        B, T, C = features.shape
        if candidate_spans is None:
            candidate_spans = features.new_zeros(B, 0, 2, dtype=torch.long)
            candidate_mask = torch.zeros(B, 0, dtype=torch.bool, device=features.device)
        x = self.dropout(features)
        span = self.span_proj(x).float()                                  # (B, T, 2)
        start = span[..., 0].masked_fill(padding_mask, NEG)
        end = span[..., 1].masked_fill(padding_mask, NEG)

        cls = x[:, 0]                                                     # (B, C) <s>
        cands = mean_spans(x, candidate_spans).to(x.dtype)                # (B, K, C)
        cand_logits = self.candidate_proj(cands).squeeze(-1).float()      # (B, K)
        cand_logits = cand_logits.masked_fill(~candidate_mask, NEG)
        long = torch.cat([self.no_candidate_proj(cls).float(), cand_logits], dim=1)  # (B, K + 1)

        m = candidate_mask.unsqueeze(-1).to(cands.dtype)                  # (B, K, 1)
        count = m.sum(dim=1)                                              # (B, 1)
        doc = (cands * m).sum(dim=1) / count.clamp(min=1)                 # (B, C)
        doc = torch.where(count > 0, doc, cls)
        answer_type = self.type_proj(doc).float()                         # (B, 5)
        return {"start": start, "end": end, "long": long, "answer_type": answer_type}


# ---------------------------------------------------------------------------
# encoder and model

class PoolingformerRobertaEncoder(RobertaEncoder):
    """RoBERTa encoder whose transformer is Poolingformer's and whose forward takes global_mask."""

    def build_encoder(self, args, dictionary, embed_tokens):
        encoder = PoolingformerTransformerEncoder(
            TransformerConfig.from_namespace(args), PoolingformerConfig.from_args(args), dictionary, embed_tokens)
        encoder.apply(init_bert_params)
        return encoder

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, masked_tokens=None,
                global_mask=None, **unused):
        x, extra = self.extract_features(src_tokens, return_all_hiddens=return_all_hiddens,
                                         global_mask=global_mask)
        if not features_only:
            x = self.output_layer(x, masked_tokens=masked_tokens)
        return x, extra

    def extract_features(self, src_tokens, return_all_hiddens=False, global_mask=None, **kwargs):
        encoder_out = self.sentence_encoder(
            src_tokens, return_all_hiddens=return_all_hiddens,
            token_embeddings=kwargs.get("token_embeddings", None), global_mask=global_mask)
        features = encoder_out["encoder_out"][0].transpose(0, 1)          # (T, B, C) -> (B, T, C)
        inner_states = encoder_out["encoder_states"] if return_all_hiddens else None
        return features, {"inner_states": inner_states}


@register_model("poolingformer_roberta")
class PoolingformerRobertaModel(RobertaModel):
    def __init__(self, args, encoder):
        super().__init__(args, encoder)
        self.qa_heads = nn.ModuleDict()

    @staticmethod
    def add_args(parser):
        RobertaModel.add_args(parser)
        add_poolingformer_args(parser)

    @classmethod
    def build_model(cls, args, task):
        poolingformer_roberta_base(args)  # fills every default not set by the arch / flags
        if not safe_hasattr(args, "max_positions") or args.max_positions is None:
            args.max_positions = task.max_positions()
        encoder = PoolingformerRobertaEncoder(args, task.source_dictionary)
        return cls(args, encoder)

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False,
                classification_head_name=None, global_mask=None, qa_head=None,
                candidate_spans=None, candidate_mask=None, **kwargs):
        """src_tokens: (B, T); global_mask: (B, T) bool, True = global token.
        With ``qa_head``: returns (dict of QA logits, extra); see ``LongQAHead``."""
        if classification_head_name is not None or qa_head is not None:
            features_only = True
        x, extra = self.encoder(src_tokens, features_only, return_all_hiddens,
                                global_mask=global_mask, **kwargs)
        if classification_head_name is not None:
            x = self.classification_heads[classification_head_name](x)
        if qa_head is not None:
            x = self.qa_heads[qa_head](x, src_tokens.eq(self.encoder.dictionary.pad()),
                                       candidate_spans, candidate_mask)
        return x, extra

    def register_qa_head(self, name: str) -> None:
        """Add (or keep) the QA head ``name``; weights come from a checkpoint when it has them."""
        if name not in self.qa_heads:
            self.qa_heads[name] = LongQAHead(self.args.encoder_embed_dim, self.args.pooler_dropout)

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        prefix = name + "." if name != "" else ""
        # a checkpoint's QA heads are (re)registered; heads missing from it keep their init
        for k in list(state_dict.keys()):
            if k.startswith(prefix + "qa_heads."):
                self.register_qa_head(k[len(prefix + "qa_heads."):].split(".")[0])
        for k, v in self.qa_heads.state_dict().items():
            if prefix + "qa_heads." + k not in state_dict:
                logger.info(f"initialising {prefix}qa_heads.{k} (not in the checkpoint)")
                state_dict[prefix + "qa_heads." + k] = v


# ---------------------------------------------------------------------------
# architectures

@register_model_architecture("poolingformer_roberta", "poolingformer_roberta_base")
def poolingformer_roberta_base(args):
    args.max_positions = safe_getattr(args, "max_positions", 4096)
    set_poolingformer_defaults(args, pf_layers="5-7")  # the paper's "6th-8th layers" (Tables 5-7)
    roberta_base_architecture(args)


@register_model_architecture("poolingformer_roberta", "poolingformer_roberta_large")
def poolingformer_roberta_large(args):
    args.encoder_layers = safe_getattr(args, "encoder_layers", 24)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 1024)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 4096)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 16)
    set_poolingformer_defaults(args, pf_layers="14-19")  # "from the 15th to the 20th layer"
    poolingformer_roberta_base(args)


@register_model_architecture("poolingformer_roberta", "poolingformer_xlmr_large")
def poolingformer_xlmr_large(args):
    # XLM-R large has RoBERTa-large's shape (its vocabulary comes from the dictionary)
    poolingformer_roberta_large(args)


@register_model_architecture("poolingformer_roberta", "poolingformer_roberta_tiny")
def poolingformer_roberta_tiny(args):
    args.encoder_layers = safe_getattr(args, "encoder_layers", 2)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", 32)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", 64)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", 2)
    set_poolingformer_defaults(args, pf_layers="1", pf_w1=8, pf_w2=32, pf_kernel=3, pf_stride=2)
    args.max_positions = safe_getattr(args, "max_positions", 512)
    poolingformer_roberta_base(args)
