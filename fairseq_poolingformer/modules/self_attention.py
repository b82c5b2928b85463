"""Drop-in replacements for Fairseq's ``MultiheadAttention`` in an encoder layer.

``SlidingWindowSelfAttention``: level 1 only (the layers that are not two-level).
``PoolingformerSelfAttention``: level 1, then level 2 on its output Y; returns Y + Z.

Both take (T, B, C) like Fairseq and return ``(out, None)``. Parameter names follow Fairseq
(``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``) so pretrained self-attention weights load
unchanged into level 1; level 2 adds ``q2_proj``, ``k2_proj``, ``v2_proj``, ``out2_proj`` and, for
LDConv pooling, ``k_pool_weight`` / ``v_pool_weight`` (W_p, shape (kernel, C)).

Specification: ``reference.ref_self_attention``, which both modules must equal. They run the
same code as the functions ``sliding_window_attention`` and ``pooling_attention``
(``sliding_window_parts``, ``pooling_aligned``) with the projections around it.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .checks import LDCONV_POOLINGS, check_mask, check_pooling, check_positive_int
from .flex import check_impl, compiled_attend, level1_flex, segment_attention_flex, use_flex
from .forward_cache import ForwardCache
from .layout import Layout, from_aligned_zeroed, make_layout, to_aligned
from .pooling_attention import pooling_aligned
from .sliding_window import GlobalRows, default_block, sliding_window_parts


class SlidingWindowSelfAttention(nn.Module):
    """Level-1 self-attention: window w1 plus global tokens."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        w1: int,
        dropout: float = 0.0,
        bias: bool = True,
        global_first_token: bool = False,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        check_positive_int("embed_dim", embed_dim)
        check_positive_int("num_heads", num_heads)
        check_positive_int("w1", w1)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim must be divisible by num_heads, got embed_dim={embed_dim}, num_heads={num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.w1 = w1
        self.dropout = dropout
        self.global_first_token = global_first_token
        self.impl = check_impl(impl)  # auto | eager | flex | compiled (modules/flex.py)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as Fairseq's MultiheadAttention (q/k/v: xavier with gain 1/sqrt(2); out: xavier, bias 0)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight, gain=2**-0.5)
        nn.init.xavier_uniform_(self.out_proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, w1={self.w1}"

    # ------------------------------------------------------------------ helpers
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, H, D)."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim)

    def _project_qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, T, C) -> q, k, v: (B, T, H, D), each from its own projection (backward then
        keeps x once and no fused copy of the weights)."""
        return self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))

    def _level1(
        self, x: torch.Tensor, layout: Layout, global_mask: Optional[torch.Tensor], cache: Optional[ForwardCache]
    ) -> Tuple[torch.Tensor, Optional[GlobalRows]]:
        """x: (B, T, C) aligned -> level 1's attention output (B, T, H, D) and the global rows'
        outputs (None without global tokens), both before out_proj."""
        q, k, v = self._project_qkv(x)
        dropout_p = self.dropout if self.training else 0.0
        if self._flex(x):
            return level1_flex(q, k, v, self.w1, layout, global_mask, dropout_p, cache), None
        return sliding_window_parts(q, k, v, self.w1, layout, global_mask, dropout_p, default_block(self.w1), cache)

    def _flex(self, x: torch.Tensor) -> bool:
        return use_flex(self.impl, x, self.training, self.dropout)

    def _project_out(self, out: torch.Tensor, global_rows: Optional[GlobalRows]) -> torch.Tensor:
        """out: (B, T, H, D) from ``_level1`` -> Y: (B, T, C)."""
        y = self.out_proj(out.flatten(2))  # a view of the attention output: no copy kept
        if global_rows is None:
            return y
        # y is out_proj's fresh output (its backward does not read it): write the rows in place
        return global_rows.map(lambda rows: self.out_proj(rows.flatten(1))).put_into_(y)

    def _prepare(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor],
        value: Optional[torch.Tensor],
        key_padding_mask: Optional[torch.Tensor],
        attn_mask: Optional[torch.Tensor],
        global_mask: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, Layout, Optional[torch.Tensor]]:
        """Checks the Fairseq-style call; returns x: (B, T, C) aligned, its layout and aligned global mask."""
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must have shape (T, B, C={self.embed_dim}), got {tuple(query.shape)}")
        for name, other in (("key", key), ("value", value)):
            if other is not None and other is not query and not torch.equal(other, query):
                raise ValueError(f"{type(self).__name__} is self-attention only: {name} must be None or the query")
        if attn_mask is not None:
            raise ValueError(f"{type(self).__name__} does not take attn_mask (its windows define the pattern)")
        length, batch, _ = query.shape
        check_mask("key_padding_mask", key_padding_mask, batch, length)
        check_mask("global_mask", global_mask, batch, length)
        layout = make_layout(key_padding_mask, batch, length, query.device)
        x = to_aligned(query.transpose(0, 1), layout)  # (B, T, C), real tokens first
        if global_mask is not None:
            global_mask = to_aligned(global_mask, layout)
        elif self.global_first_token:
            global_mask = torch.zeros(batch, length, dtype=torch.bool, device=query.device)
            global_mask[:, 0] = layout.lengths > 0
        return x, layout, global_mask

    @staticmethod
    def _finish(out: torch.Tensor, layout: Layout) -> torch.Tensor:
        """out: (B, T, C) aligned -> (T, B, C) in the caller's layout, padded rows zero."""
        return from_aligned_zeroed(out, layout).transpose(0, 1)

    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        key_padding_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
        attn_mask: Optional[torch.Tensor] = None,
        global_mask: Optional[torch.Tensor] = None,
        cache: Optional[ForwardCache] = None,
        **unused,
    ) -> Tuple[torch.Tensor, None]:
        """query: (T, B, C); key_padding_mask, global_mask: (B, T) bool. Returns ((T, B, C), None).

        cache: one per encoder forward, shared by its layers (their masks are the same)."""
        x, layout, global_mask = self._prepare(query, key, value, key_padding_mask, attn_mask, global_mask)
        attend = compiled_attend(type(self)) if self.impl == "compiled" else type(self)._attend
        return self._finish(attend(self, x, layout, global_mask, cache), layout), None

    def _attend(
        self, x: torch.Tensor, layout: Layout, global_mask: Optional[torch.Tensor], cache: Optional[ForwardCache]
    ) -> torch.Tensor:
        """x: (B, T, C) aligned -> (B, T, C)."""
        return self._project_out(*self._level1(x, layout, global_mask, cache))


class PoolingformerSelfAttention(SlidingWindowSelfAttention):
    """Two-level self-attention: Y = level 1 (window w1 + globals); Z = pooling attention over
    segments of the level-2 keys/values within w2; returns Y + Z.

    mix: level 2 projects from the layer input X instead of Y (the paper's "Mix" ablation).
    share_weights: level 2 reuses level 1's q/k/v projections (the "weight sharing" ablation).
    recompute_level2 (attribute, default False): in training, backward keeps only what level 1
    keeps anyway and computes Y and level 2 again (same ops, same dropout draws). Level 2's
    saved activations (Y, Q2, the pooled keys/values, Z: about 5 x T x C) then live only while
    this layer's backward runs, for about a quarter more of the layer's forward work. The
    encoder turns it on under --checkpoint-activations, where the user trades time for memory:
    the layer's own recompute would otherwise keep level 2's activations through the layer's
    whole backward (docs/benchmark.md has the measured memory).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        w1: int,
        w2: int,
        kernel: int,
        stride: int,
        pooling: str = "mean",
        mix: bool = False,
        share_weights: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        global_first_token: bool = False,
        impl: str = "auto",
    ) -> None:
        check_positive_int("w2", w2)
        check_pooling(pooling, kernel, stride)
        super().__init__(embed_dim, num_heads, w1, dropout, bias, global_first_token, impl)
        self.w2, self.kernel, self.stride, self.pooling = w2, kernel, stride, pooling
        self.mix, self.share_weights = mix, share_weights
        self.recompute_level2 = False
        if not share_weights:
            self.q2_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k2_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.v2_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out2_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        if pooling in LDCONV_POOLINGS:
            self.k_pool_weight = nn.Parameter(torch.empty(kernel, embed_dim))
            self.v_pool_weight = nn.Parameter(torch.empty(kernel, embed_dim))
        else:
            self.k_pool_weight = self.v_pool_weight = None
        self.reset_level2_parameters()

    def reset_level2_parameters(self) -> None:
        for proj in self._level2_qkv():
            if proj is not self.q_proj and proj is not self.k_proj and proj is not self.v_proj:
                nn.init.xavier_uniform_(proj.weight, gain=2**-0.5)
                if proj.bias is not None:
                    nn.init.zeros_(proj.bias)
        nn.init.xavier_uniform_(self.out2_proj.weight)
        if self.out2_proj.bias is not None:
            nn.init.zeros_(self.out2_proj.bias)
        if self.k_pool_weight is not None:
            nn.init.normal_(self.k_pool_weight, std=self.embed_dim**-0.5)
            nn.init.normal_(self.v_pool_weight, std=self.embed_dim**-0.5)

    @torch.no_grad()
    def init_level2_from_level1(self) -> None:
        """For converted checkpoints: q2/k2/v2 copy q/k/v, out2_proj and W_p are zero, so the layer
        starts as the pretrained sliding-window layer (Z = 0) with uniform LDConv weights."""
        if not self.share_weights:
            for src, dst in zip((self.q_proj, self.k_proj, self.v_proj), self._level2_qkv()):
                dst.weight.copy_(src.weight)
                if dst.bias is not None:
                    dst.bias.copy_(src.bias)
        self.out2_proj.weight.zero_()
        if self.out2_proj.bias is not None:
            self.out2_proj.bias.zero_()
        if self.k_pool_weight is not None:
            self.k_pool_weight.zero_()
            self.v_pool_weight.zero_()

    def _level2_qkv(self) -> Tuple[nn.Linear, nn.Linear, nn.Linear]:
        if self.share_weights:
            return self.q_proj, self.k_proj, self.v_proj
        return self.q2_proj, self.k2_proj, self.v2_proj

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, w2={self.w2}, kernel={self.kernel}, stride={self.stride}, "
            f"pooling={self.pooling}, mix={self.mix}, share_weights={self.share_weights}"
        )

    def _attend(
        self, x: torch.Tensor, layout: Layout, global_mask: Optional[torch.Tensor], cache: Optional[ForwardCache]
    ) -> torch.Tensor:
        """x: (B, T, C) aligned -> Y + Z: (B, T, C)."""
        out, global_rows = self._level1(x, layout, global_mask, cache)
        if self.recompute_level2 and torch.is_grad_enabled():
            # backward keeps only what level 1 keeps anyway (x, the attention output) and computes
            # Y and level 2 again from them: exact (same ops, same dropout draws)
            return checkpoint(self._two_level, x, out, global_rows, layout, cache, use_reentrant=False)
        return self._two_level(x, out, global_rows, layout, cache)

    def _two_level(
        self, x: torch.Tensor, out: torch.Tensor, global_rows: Optional[GlobalRows], layout: Layout,
        cache: Optional[ForwardCache],
    ) -> torch.Tensor:
        """x: (B, T, C) aligned; out, global_rows: from ``_level1`` -> Y + Z: (B, T, C)."""
        y = self._project_out(out, global_rows)
        return y + self._level2(x if self.mix else y, layout, cache)

    def _level2(self, source: torch.Tensor, layout: Layout, cache: Optional[ForwardCache]) -> torch.Tensor:
        """source: (B, T, C) aligned (Y, or X for Mix) -> the level-2 output projected, (B, T, C)."""
        q_proj, k_proj, v_proj = self._level2_qkv()
        dropout_p = self.dropout if self.training else 0.0
        # the keys/values are pooled from the source, then projected where the pooling allows it
        z = pooling_aligned(
            source, source, source, self.w2, self.kernel, self.stride, self.pooling, layout,
            self.k_pool_weight, self.v_pool_weight, dropout_p, q_proj=lambda x: self._heads(q_proj(x)),
            k_proj=k_proj, v_proj=v_proj, cache=cache,
            attention=segment_attention_flex if self._flex(source) else None,
        )
        return self.out2_proj(z.reshape(source.shape))
