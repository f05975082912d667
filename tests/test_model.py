"""The GPT and its hook sites."""
import math

import pytest
import torch

from model import GPT, SITES, GPTConfig, site_name


def tiny_gpt(activation: str = 'gelu', n_layer: int = 2, vocab: int = 97) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=vocab, n_layer=n_layer, n_head=2, n_embd=16, activation=activation))


def batch(vocab: int = 97) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(vocab, (4, 16), generator=g)
    return x, torch.roll(x, -1, 1)


@pytest.mark.parametrize('activation', ['gelu', 'relu'])
def test_loss_at_init_is_ln_vocab(activation):
    model = tiny_gpt(activation, vocab=512)
    x, y = batch(512)
    _, loss = model(x, y)
    assert abs(loss.item() - math.log(512)) < 0.1


def test_forward_matches_nanogpt_contract():
    model = tiny_gpt()
    x, y = batch()
    logits, loss = model(x, y)
    assert logits.shape == (4, 16, 97) and loss.dim() == 0
    logits, loss = model(x)
    assert logits.shape == (4, 1, 97) and loss is None


def test_captured_sites_equal_forward_hooks():
    model = tiny_gpt()
    x, _ = batch()
    seen = {}
    blk = model.transformer.h[1]
    hs = [blk.mlp.act.register_forward_hook(lambda m, i, o: seen.__setitem__('mlp_hidden', o)),
          blk.attn.register_forward_hook(lambda m, i, o: seen.__setitem__('attn_out', o)),
          blk.mlp.dropout.register_forward_hook(lambda m, i, o: seen.__setitem__('mlp_out', o)),
          blk.ln_1.register_forward_hook(lambda m, i, o: seen.__setitem__('resid_pre', i[0]))]
    _, _, acts = model.run(x, capture=[site_name(1, s) for s in SITES])
    for h in hs:
        h.remove()
    for s in seen:
        torch.testing.assert_close(acts[site_name(1, s)], seen[s], rtol=0, atol=0)
    torch.testing.assert_close(acts['blocks.1.resid_mid'], acts['blocks.1.resid_pre'] + acts['blocks.1.attn_out'])
    torch.testing.assert_close(acts['blocks.1.resid_post'], acts['blocks.1.resid_mid'] + acts['blocks.1.mlp_out'])
    assert acts['blocks.1.mlp_hidden'].shape == (4, 16, 64)


def test_replace_identity_and_zero():
    model = tiny_gpt()
    x, y = batch()
    _, clean, _ = model.run(x, y)
    _, same, _ = model.run(x, y, replace={'blocks.0.mlp_hidden': lambda h: h})
    _, zero, _ = model.run(x, y, replace={'blocks.0.mlp_hidden': torch.zeros_like})
    assert same.item() == clean.item()
    assert abs(zero.item() - clean.item()) > 1e-4


def test_capture_sees_value_before_replacement_and_stops_early():
    model = tiny_gpt()
    x, _ = batch()
    logits, loss, acts = model.run(x, capture=['blocks.0.mlp_hidden'],
                                   replace={'blocks.0.mlp_hidden': torch.zeros_like}, need_logits=False)
    assert logits is None and loss is None and acts['blocks.0.mlp_hidden'].abs().sum() > 0
    calls = []
    h = model.transformer.h[1].register_forward_pre_hook(lambda m, i: calls.append(1))
    model.run(x, capture=['blocks.0.mlp_hidden'], need_logits=False)
    assert calls == []  # layer 1 never ran
    h.remove()


def test_bad_site_names():
    model = tiny_gpt()
    x, _ = batch()
    with pytest.raises(ValueError, match='blocks.<layer>'):
        model.run(x, capture=['blocks.0.mlp'])
    with pytest.raises(ValueError, match='2 layer'):
        model.run(x, capture=['blocks.5.mlp_hidden'])
