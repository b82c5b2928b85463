"""The attention modules drop into a stock Fairseq TransformerEncoder in place of MultiheadAttention."""

import copy

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models.transformer import TransformerConfig, TransformerEncoderBase
from torch import nn

from fairseq_poolingformer.modules import PoolingformerSelfAttention, SlidingWindowSelfAttention


def build_stock_encoder(dim=32, heads=4, layers=2):
    torch.manual_seed(0)
    vocab = Dictionary()
    for i in range(50):
        vocab.add_symbol(f"w{i}")
    cfg = TransformerConfig()
    cfg.encoder.embed_dim, cfg.encoder.ffn_embed_dim = dim, 2 * dim
    cfg.encoder.attention_heads, cfg.encoder.layers = heads, layers
    cfg.max_source_positions = 512
    cfg.dropout = 0.0
    embed = nn.Embedding(len(vocab), dim, vocab.pad())
    return TransformerEncoderBase(cfg, vocab, embed).eval(), vocab


def swap_attention(encoder, make, zero_level2=True):
    """Replace every layer's self_attn by make(layer_index), loading the stock weights into level 1
    (and, with zero_level2, starting level 2 as a no-op)."""
    for i, layer in enumerate(encoder.layers):
        new = make(i)
        missing, unexpected = new.load_state_dict(layer.self_attn.state_dict(), strict=False)
        assert not unexpected, unexpected
        assert all(name.startswith(("q2_", "k2_", "v2_", "out2_", "k_pool", "v_pool")) for name in missing), missing
        if zero_level2 and isinstance(new, PoolingformerSelfAttention):
            new.init_level2_from_level1()
        layer.self_attn = new
    return encoder


def tokens_with_left_padding(vocab, lengths, total):
    torch.manual_seed(1)
    rows = []
    for n in lengths:
        row = torch.full((total,), vocab.pad())
        row[total - n:] = torch.randint(vocab.nspecial, len(vocab), (n,))
        rows.append(row)
    tokens = torch.stack(rows)
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("kind", ["sliding", "two_level"])
def test_covering_windows_reproduce_stock_encoder(kind):
    """With w1 >= T and level 2 zero-initialised, the encoder output equals stock full attention."""
    stock, vocab = build_stock_encoder()
    tokens, lengths = tokens_with_left_padding(vocab, [60, 41, 7], 60)
    expected = stock(tokens, lengths)["encoder_out"][0]

    def make(i):
        if kind == "sliding" or i == 0:
            return SlidingWindowSelfAttention(32, 4, w1=64)
        return PoolingformerSelfAttention(32, 4, w1=64, w2=8, kernel=5, stride=4, pooling="ldconv")

    ours = swap_attention(copy.deepcopy(stock), make)
    got = ours(tokens, lengths)["encoder_out"][0]
    real = tokens.t().ne(vocab.pad())
    assert (got[real] - expected[real]).abs().max() < 1e-5


def test_small_windows_train_in_stock_encoder():
    stock, vocab = build_stock_encoder()
    encoder = swap_attention(
        stock.train(),
        lambda i: PoolingformerSelfAttention(32, 4, w1=4, w2=16, kernel=5, stride=4, pooling="mean",
                                             global_first_token=True),
        zero_level2=False,
    )
    tokens, lengths = tokens_with_left_padding(vocab, [90, 33], 90)
    out = encoder(tokens, lengths)["encoder_out"][0]  # (T, B, C)
    assert out.shape == (90, 2, 32) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    grads = [p.grad for p in encoder.layers[1].self_attn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.layers[1].self_attn.q2_proj.weight.grad.abs().sum() > 0
