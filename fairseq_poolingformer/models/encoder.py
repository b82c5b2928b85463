"""A Fairseq Transformer encoder whose self-attention is Poolingformer's (shared by BART and RoBERTa).

``PoolingformerTransformerEncoder`` is a drop-in for Fairseq's ``TransformerEncoderBase``: layer
i is two-level (``PoolingformerSelfAttention``) if i is in ``--pf-layers``, else level 1 only
(``SlidingWindowSelfAttention``), and ``forward`` also takes ``global_mask``. The ``--pf-*``
flags that choose this (``add_poolingformer_args``), the paper's values for them
(``PAPER_DEFAULTS``, filled in by ``set_poolingformer_defaults``) and their validated form
(``PoolingformerConfig``) are defined here too. ``--attention-impl`` chooses how (not what) the
attention computes: ``auto`` (FlexAttention on CUDA, the eager kernels on the CPU), ``eager``,
``flex`` or ``compiled`` (docs/attention.md).

Parameter names are those of Fairseq's ``MultiheadAttention`` for level 1 (``q_proj``,
``k_proj``, ``v_proj``, ``out_proj``), so pretrained encoder weights load by name; level-2
weights (``q2_proj`` ... ``out2_proj``, ``k_pool_weight``, ``v_pool_weight``) are new (see
``fairseq_poolingformer.convert``).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from fairseq.distributed import fsdp_wrap
from fairseq.models.transformer import TransformerEncoderBase
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

from fairseq_poolingformer.models.lean import activation_linear, lean_dropout
from fairseq_poolingformer.modules import (
    POOLING_TYPES,
    ForwardCache,
    PoolingformerSelfAttention,
    SlidingWindowSelfAttention,
)
from fairseq_poolingformer.modules.checks import check_positive_int
from fairseq_poolingformer.modules.flex import IMPLS, check_impl

logger = logging.getLogger(__name__)

GLOBAL_CHOICES = ("first", "none")

# The paper's settings (Zhang et al. 2021, arXiv summarization with BART-large). Its layers are
# ordinals ("the 6th to 11th layers" of 12); --pf-layers is 0-based, hence 5-10.
PAPER_DEFAULTS: Dict[str, Any] = {
    "pf_w1": 128,
    "pf_w2": 512,
    "pf_kernel": 5,
    "pf_stride": 4,
    "pf_pooling": "ldconv",
    "pf_layers": "5-10",
    "pf_mix": False,
    "pf_share_weights": False,
    "pf_global": "first",
}


# ----------------------------------------------------------------------------- flags


def add_poolingformer_args(parser: argparse.ArgumentParser) -> None:
    """Register the ``--pf-*`` flags (no defaults: architecture functions fill them)."""
    group = parser.add_argument_group("Poolingformer attention")
    group.add_argument("--pf-w1", type=int, metavar="N",
                       help="level-1 one-side sliding window w1 (paper: 128)")
    group.add_argument("--pf-w2", type=int, metavar="N",
                       help="level-2 one-side pooling window w2, in tokens (paper: 512)")
    group.add_argument("--pf-kernel", type=int, metavar="N",
                       help="level-2 pooling kernel size (paper: 5)")
    group.add_argument("--pf-stride", type=int, metavar="N",
                       help="level-2 pooling stride (paper: 4)")
    group.add_argument("--pf-pooling", choices=POOLING_TYPES,
                       help="level-2 pooling of keys and values (paper: ldconv)")
    group.add_argument("--pf-layers", type=str, metavar="SPEC",
                       help="0-based encoder layers that are two-level, e.g. 5-10, 0,2,4-5, "
                            "all or none; the other layers use level 1 only. The paper counts "
                            "from 1: its '6th to 11th layers' (BART-large) are 5-10 here, "
                            "'15th to 20th' (RoBERTa/XLM-R large) 14-19, '6th-8th' (base) 5-7")
    group.add_argument("--pf-mix", action="store_true", default=None,
                       help="ablation: level 2 reads the layer input X instead of level-1 output Y")
    group.add_argument("--pf-share-weights", action="store_true", default=None,
                       help="ablation: level 2 reuses the level-1 q/k/v projections")
    group.add_argument("--pf-global", choices=GLOBAL_CHOICES,
                       help="global tokens when the caller passes no global_mask: "
                            "first = the first source token, none = no global token")
    group.add_argument("--attention-impl", choices=IMPLS,
                       help="how the attention runs (same results): auto (default) = FlexAttention "
                            "on CUDA, the eager kernels on the CPU; eager; flex; compiled = "
                            "torch.compile of each layer's attention (docs/GPU.md)")


def undo_bf16_forced_tpu(args: Any) -> None:
    """``--bf16`` without torch_xla: keep bf16, drop the ``tpu`` flag Fairseq forced on.

    Fairseq's option parsing turns ``--bf16`` into ``--tpu``, which then fails on GPU and CPU.
    Architecture functions run after that, on the same Namespace: when ``torch_xla`` is not
    installed (so no TPU run is possible) this switches ``tpu`` back off."""
    if getattr(args, "bf16", False) and getattr(args, "tpu", False):
        if importlib.util.find_spec("torch_xla") is None:
            args.tpu = False


def set_poolingformer_defaults(args: Any, **defaults: Any) -> None:
    """Fill missing ``pf_*`` attributes of ``args``: ``defaults`` first, then the paper's
    (``PAPER_DEFAULTS``: w1 128, w2 512, kernel 5, stride 4, ldconv, layers "5-10" = the paper's
    "6th to 11th", global "first").

    Also applies :func:`undo_bf16_forced_tpu` (architecture functions are the one place that
    runs after Fairseq's option parsing and before the config is built)."""
    undo_bf16_forced_tpu(args)
    for key, paper_value in PAPER_DEFAULTS.items():
        if getattr(args, key, None) is None:
            setattr(args, key, defaults.get(key, paper_value))
    unknown = set(defaults) - set(PAPER_DEFAULTS)
    if unknown:
        raise ValueError(f"set_poolingformer_defaults: unknown keys {sorted(unknown)}")


def parse_layer_spec(spec: str, num_layers: int) -> FrozenSet[int]:
    """Parse ``--pf-layers`` ("5-10", "0,3-4", "all", "none") into 0-based layer indices."""
    text = (spec or "").strip().lower()
    if text in ("", "none"):
        return frozenset()
    if text == "all":
        return frozenset(range(num_layers))
    layers = set()
    for part in text.split(","):
        part = part.strip()
        bounds = part.split("-")
        try:
            if len(bounds) == 1:
                lo = hi = int(bounds[0])
            elif len(bounds) == 2:
                lo, hi = int(bounds[0]), int(bounds[1])
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"--pf-layers: cannot parse {part!r} in {spec!r}; "
                "expected e.g. '5-10', '0,2,4-5', 'all' or 'none'"
            ) from None
        if lo > hi:
            raise ValueError(f"--pf-layers: range {part!r} in {spec!r} is empty (start > end)")
        if lo < 0 or hi >= num_layers:
            raise ValueError(
                f"--pf-layers {spec!r} selects layer {hi if hi >= num_layers else lo}, but the "
                f"encoder has {num_layers} layers (valid indices 0-{num_layers - 1})"
            )
        layers.update(range(lo, hi + 1))
    return frozenset(layers)


def _runs(layers: Iterable[int]) -> List[Tuple[int, int]]:
    """Sorted indices as inclusive runs: {0, 2, 3, 4} -> [(0, 0), (2, 4)]."""
    runs: List[Tuple[int, int]] = []
    for i in sorted(set(layers)):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe_layers(layers: Iterable[int], num_layers: int) -> str:
    """0-based layer indices in both numberings, for logs and ``convert`` output:
    {5..10} of 12 -> "5-10 (0-based; the paper's 6th-11th of 12)"; {} -> "none"."""
    runs = _runs(layers)
    if not runs:
        return "none"
    flag = ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    paper = ", ".join(_ordinal(a + 1) if a == b else f"{_ordinal(a + 1)}-{_ordinal(b + 1)}" for a, b in runs)
    return f"{flag} (0-based; the paper's {paper} of {num_layers})"


@dataclass
class PoolingformerConfig:
    """The paper's knobs, validated. ``layers`` is the unparsed ``--pf-layers`` spec."""

    w1: int = PAPER_DEFAULTS["pf_w1"]
    w2: int = PAPER_DEFAULTS["pf_w2"]
    kernel: int = PAPER_DEFAULTS["pf_kernel"]
    stride: int = PAPER_DEFAULTS["pf_stride"]
    pooling: str = PAPER_DEFAULTS["pf_pooling"]
    layers: str = PAPER_DEFAULTS["pf_layers"]
    mix: bool = False
    share_weights: bool = False
    global_tokens: str = PAPER_DEFAULTS["pf_global"]
    impl: str = "auto"

    def __post_init__(self) -> None:
        for flag, value in (("--pf-w1", self.w1), ("--pf-w2", self.w2),
                            ("--pf-kernel", self.kernel), ("--pf-stride", self.stride)):
            check_positive_int(flag, value)
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"--pf-pooling must be one of {POOLING_TYPES}, got {self.pooling!r}")
        if self.global_tokens not in GLOBAL_CHOICES:
            raise ValueError(f"--pf-global must be one of {GLOBAL_CHOICES}, got {self.global_tokens!r}")
        check_impl(self.impl, "--attention-impl")  # auto: FlexAttention on CUDA, eager on the CPU

    @classmethod
    def from_args(cls, args: Any) -> "PoolingformerConfig":
        """Read ``pf_*`` attributes (argparse Namespace, TransformerConfig or DictConfig)."""
        def get(key: str) -> Any:
            value = getattr(args, key, None)
            return PAPER_DEFAULTS[key] if value is None else value

        return cls(
            w1=get("pf_w1"), w2=get("pf_w2"), kernel=get("pf_kernel"), stride=get("pf_stride"),
            pooling=get("pf_pooling"), layers=str(get("pf_layers")), mix=bool(get("pf_mix")),
            share_weights=bool(get("pf_share_weights")), global_tokens=get("pf_global"),
            impl=getattr(args, "attention_impl", None) or "auto",  # checkpoints from before the flag: auto
        )

    def two_level_layers(self, num_layers: int) -> FrozenSet[int]:
        return parse_layer_spec(self.layers, num_layers)


def build_poolingformer_self_attention(
    embed_dim: int, num_heads: int, dropout: float, pf_cfg: PoolingformerConfig, two_level: bool
) -> nn.Module:
    """Two-level ``PoolingformerSelfAttention`` or level-1 ``SlidingWindowSelfAttention``."""
    global_first = pf_cfg.global_tokens == "first"
    if not two_level:
        return SlidingWindowSelfAttention(
            embed_dim, num_heads, pf_cfg.w1, dropout=dropout, global_first_token=global_first, impl=pf_cfg.impl
        )
    return PoolingformerSelfAttention(
        embed_dim, num_heads, pf_cfg.w1, pf_cfg.w2, pf_cfg.kernel, pf_cfg.stride,
        pooling=pf_cfg.pooling, mix=pf_cfg.mix, share_weights=pf_cfg.share_weights,
        dropout=dropout, global_first_token=global_first, impl=pf_cfg.impl,
    )


# ----------------------------------------------------------------------------- layer


class PoolingformerEncoderLayer(TransformerEncoderLayerBase):
    """Fairseq's encoder layer (post/pre-norm, FFN, dropouts) with Poolingformer self-attention."""

    def __init__(self, cfg, pf_cfg: PoolingformerConfig, layer_idx: int, return_fc: bool = False):
        # build_self_attention() runs inside the parent constructor and reads these two.
        self.pf_cfg = pf_cfg
        self.two_level = layer_idx in pf_cfg.two_level_layers(cfg.encoder.layers)
        super().__init__(cfg, return_fc=return_fc)
        self.layer_idx = layer_idx
        # What backward computes again. A checkpointed layer is computed again as a whole, so its
        # FFN keeps autograd's activations (see activation_linear); level 2 is then computed
        # again inside that layer's backward (see PoolingformerSelfAttention.recompute_level2).
        self.recompute_activation = not cfg.checkpoint_activations
        if self.two_level:
            self.self_attn.recompute_level2 = cfg.checkpoint_activations

    def build_self_attention(self, embed_dim: int, cfg) -> nn.Module:
        return build_poolingformer_self_attention(
            embed_dim, cfg.encoder.attention_heads, cfg.attention_dropout,
            self.pf_cfg, self.two_level,
        )

    def forward(
        self,
        x: Tensor,  # (T, B, C)
        encoder_padding_mask: Optional[Tensor],  # (B, T) bool, True = padding
        attn_mask: Optional[Tensor] = None,
        global_mask: Optional[Tensor] = None,  # (B, T) bool, True = global token
        cache: Optional[ForwardCache] = None,  # shared by the layers of one forward
    ):
        if attn_mask is not None:
            raise ValueError(
                "PoolingformerEncoderLayer: attn_mask must be None (windowed attention takes "
                f"no (T x T) mask), got a tensor of shape {tuple(attn_mask.shape)}"
            )
        residual = x
        if self.normalize_before:
            x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(
            x, key_padding_mask=encoder_padding_mask, need_weights=False, global_mask=global_mask,
            cache=cache,
        )
        x = self.residual_connection(lean_dropout(self.dropout_module, x), residual)
        if not self.normalize_before:
            x = self.self_attn_layer_norm(x)

        residual = x
        if self.normalize_before:
            x = self.final_layer_norm(x)
        # the FFN keeps fc1's output only: its activation is computed again in backward
        x = activation_linear(self.fc1(x), self.activation_fn, self.activation_dropout_module, self.fc2,
                              recompute=self.recompute_activation)
        fc_result = x
        x = self.residual_connection(lean_dropout(self.dropout_module, x), residual)
        if not self.normalize_before:
            x = self.final_layer_norm(x)
        if self.return_fc and not torch.jit.is_scripting():
            return x, fc_result
        return x

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str) -> None:
        """Stock layer-norm renames, plus old fused ``in_proj_weight`` split into q/k/v."""
        super().upgrade_state_dict_named(state_dict, name)
        prefix = f"{name}.self_attn."
        for kind in ("weight", "bias"):
            fused = state_dict.pop(f"{prefix}in_proj_{kind}", None)
            if fused is not None:
                q, k, v = fused.chunk(3, dim=0)
                for proj, value in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    state_dict[f"{prefix}{proj}.{kind}"] = value


# ----------------------------------------------------------------------------- encoder


class PoolingformerTransformerEncoder(TransformerEncoderBase):
    """``TransformerEncoderBase`` with Poolingformer layers and a ``global_mask`` input.

    ``forward`` takes the stock arguments plus ``global_mask: (B, T) bool`` (True = global
    token, e.g. the question tokens for QA); when it is None and ``--pf-global first``, the
    first real token of each source is global. Works with ``--checkpoint-activations`` and
    ``--encoder-layerdrop``; returns the stock dict."""

    def __init__(self, cfg, pf_cfg: PoolingformerConfig, dictionary, embed_tokens,
                 return_fc: bool = False):
        # Validate the layer spec before building anything, for a clear early error.
        pf_cfg.two_level_layers(cfg.encoder.layers)
        if pf_cfg.impl == "flex" and cfg.attention_dropout > 0:
            logger.warning("--attention-impl flex has no attention dropout: training with "
                           "--attention-dropout %s stops at its first step (use auto, which keeps the "
                           "eager kernels while attention dropout is on, or --attention-dropout 0); "
                           "evaluation and generation are unaffected", cfg.attention_dropout)
        self.pf_cfg = pf_cfg
        self._num_layers_built = 0  # build_encoder_layer() has no index argument
        super().__init__(cfg, dictionary, embed_tokens, return_fc=return_fc)

    def build_encoder_layer(self, cfg) -> nn.Module:
        layer = PoolingformerEncoderLayer(
            cfg, self.pf_cfg, self._num_layers_built, return_fc=self.return_fc
        )
        self._num_layers_built += 1
        checkpoint = cfg.checkpoint_activations
        if checkpoint:
            layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
        # as in Fairseq: a checkpointed layer is always wrapped by FSDP (when FSDP is on)
        min_params_to_wrap = cfg.min_params_to_wrap if not checkpoint else 0
        return fsdp_wrap(layer, min_num_params=min_params_to_wrap)

    def forward(
        self,
        src_tokens: Tensor,  # (B, T)
        src_lengths: Optional[Tensor] = None,
        return_all_hiddens: bool = False,
        token_embeddings: Optional[Tensor] = None,
        global_mask: Optional[Tensor] = None,  # (B, T) bool
    ) -> Dict[str, List[Tensor]]:
        if global_mask is not None and global_mask.shape != src_tokens.shape:
            raise ValueError(
                f"global_mask has shape {tuple(global_mask.shape)}, expected the shape of "
                f"src_tokens {tuple(src_tokens.shape)}"
            )
        padding_mask = src_tokens.eq(self.padding_idx)  # (B, T)
        has_pads = bool(padding_mask.any())

        x, encoder_embedding = self.forward_embedding(src_tokens, token_embeddings)  # (B, T, C)
        if has_pads:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x.transpose(0, 1)  # (T, B, C)

        encoder_states: List[Tensor] = [x] if return_all_hiddens else []
        fc_results: List[Optional[Tensor]] = []
        # every layer sees the same padding and globals: masks built once. Not with checkpointed
        # layers: there each layer's recompute keeps only its own masks, and only while its backward runs
        cache = None if self.cfg.checkpoint_activations else ForwardCache()
        for layer in self.layers:
            out = layer(
                x,
                encoder_padding_mask=padding_mask if has_pads else None,
                global_mask=global_mask,
                cache=cache,
            )
            x, fc_result = out if isinstance(out, tuple) else (out, None)
            if return_all_hiddens:
                encoder_states.append(x)
                fc_results.append(fc_result)

        if self.layer_norm is not None:
            x = self.layer_norm(x)

        src_lengths_out = src_tokens.ne(self.padding_idx).sum(dim=1, dtype=torch.int32)
        return {
            "encoder_out": [x],  # (T, B, C)
            # (B, T); none without padding (Fairseq's convention): the decoder's cross-attention
            # then skips masking H x T_tgt x T scores with an all-False mask (two copies per layer)
            "encoder_padding_mask": [padding_mask] if has_pads else [],
            "encoder_embedding": [encoder_embedding],  # (B, T, C)
            "encoder_states": encoder_states,  # List[(T, B, C)]
            "fc_results": fc_results,
            "src_tokens": [],
            "src_lengths": [src_lengths_out.reshape(-1, 1).contiguous()],  # (B, 1)
        }

    # Fairseq's name for the encoder's computation (the stock ``forward`` calls it): here it is
    # ``forward`` itself, global tokens included
    forward_scriptable = forward

    def two_level_layer_indices(self) -> List[int]:
        return sorted(self.pf_cfg.two_level_layers(len(self.layers)))

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str) -> None:
        """Stock upgrades, then: a Poolingformer checkpoint's two-level layers (those holding
        level-2 weights) must be this model's ``--pf-layers``. Checkpoints store the set they
        were built with, so this only fires when a flag overrides it; a plain BART/RoBERTa
        checkpoint (no level-2 weights anywhere) is what ``convert`` loads and always passes."""
        super().upgrade_state_dict_named(state_dict, name)
        prefix = f"{name}.layers." if name else "layers."
        marker = ".self_attn.out2_proj.weight"  # every two-level layer has it (any pooling/ablation)
        stored = {int(k[len(prefix):-len(marker)]) for k in state_dict
                  if k.startswith(prefix) and k.endswith(marker)}
        built = set(self.two_level_layer_indices())
        if stored and stored != built:
            n = len(self.layers)
            raise ValueError(
                f"this checkpoint is two-level in encoder layers {describe_layers(stored, n)}, but the "
                f"model was built with --pf-layers {describe_layers(built, n)}; drop the --pf-layers "
                f"override (the checkpoint's own setting is used) or pass --pf-layers "
                f"{describe_layers(stored, n).split()[0]}")
