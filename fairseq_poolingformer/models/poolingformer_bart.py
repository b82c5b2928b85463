"""Poolingformer-BART: Fairseq's BART with a Poolingformer encoder (the decoder is stock BART).

Registered model ``poolingformer_bart``; architectures:

- ``poolingformer_bart_large``: BART-large (12+12 layers, 1024 hidden), the paper's arXiv
  setting: two-level attention in "the 6th to 11th layers" of the encoder (``--pf-layers 5-10``,
  0-based; the 12th, last, layer stays level 1 only), w1 128, w2 512, kernel 5, stride 4,
  LDConv pooling, the first source token global, ``max_source_positions`` 16384.
- ``poolingformer_bart_base``: BART-base (6+6 layers, 768 hidden) with the same attention
  settings, two-level in the 3rd-5th of its 6 encoder layers (``--pf-layers 2-4``): the paper's
  6th-11th of 12 scaled to 6 layers, the last layer level 1 only as in BART-large.
- ``poolingformer_bart_tiny``: 2+2 layers, 64 hidden, small windows, for demos and tests.

Note: ``fairseq-train`` gives the task's ``--max-source-positions`` (default 1024) precedence
over the architecture default, so recipes always pass ``--max-source-positions`` explicitly.
"""

from __future__ import annotations

from fairseq.models import register_model, register_model_architecture
from fairseq.models.bart import BARTModel
from fairseq.models.bart.model import bart_base_architecture, bart_large_architecture
from fairseq.models.transformer import TransformerConfig

from fairseq_poolingformer.models.encoder import (
    PoolingformerConfig,
    PoolingformerTransformerEncoder,
    add_poolingformer_args,
    set_poolingformer_defaults,
)


@register_model("poolingformer_bart")
class PoolingformerBARTModel(BARTModel):
    """BART whose encoder self-attention is Poolingformer's; everything else is BART's."""

    @staticmethod
    def add_args(parser):
        BARTModel.add_args(parser)
        add_poolingformer_args(parser)

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens):
        cfg = TransformerConfig.from_namespace(args)
        return PoolingformerTransformerEncoder(
            cfg, PoolingformerConfig.from_args(args), src_dict, embed_tokens
        )

    @classmethod
    def from_pretrained(cls, checkpoint_dir, checkpoint_file=None, data_name_or_path=".",
                        **kwargs):
        """Load a checkpoint directory (``checkpoint_file`` in it, else the first checkpoint in
        ``inference.files``' order) or file as a summarizer; see ``fairseq_poolingformer.summarization``."""
        from fairseq_poolingformer.summarization import from_pretrained

        return from_pretrained(checkpoint_dir, checkpoint_file=checkpoint_file,
                               data_name_or_path=data_name_or_path, **kwargs)


@register_model_architecture("poolingformer_bart", "poolingformer_bart_large")
def poolingformer_bart_large_architecture(args):
    args.max_source_positions = getattr(args, "max_source_positions", 16384)
    set_poolingformer_defaults(args, pf_layers="5-10")  # the paper's "6th to 11th layers"
    bart_large_architecture(args)


@register_model_architecture("poolingformer_bart", "poolingformer_bart_base")
def poolingformer_bart_base_architecture(args):
    args.max_source_positions = getattr(args, "max_source_positions", 16384)
    set_poolingformer_defaults(args, pf_layers="2-4")  # 3rd-5th of 6: 6th-11th of 12, scaled
    bart_base_architecture(args)


@register_model_architecture("poolingformer_bart", "poolingformer_bart_tiny")
def poolingformer_bart_tiny_architecture(args):
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 128)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.max_source_positions = getattr(args, "max_source_positions", 4096)
    args.max_target_positions = getattr(args, "max_target_positions", 512)
    set_poolingformer_defaults(args, pf_w1=16, pf_w2=64, pf_layers="1")
    bart_large_architecture(args)
