"""The sparse TopK / BatchTopK step (sparse_topk_loss: decoding and gradients from the k kept codes per row, the
encoder GEMM its only dense product) gives the dense path's loss and gradients, and train_step_ (what train_sae.py
calls every step, which takes the sparse path) trains the same weights as the dense step."""
import copy

import pytest
import torch

from autoencoder import RECIPES, Recipe, SAEConfig, SparseAutoencoder, make_adam, sae_step_, train_step_

D, F, B, K = 12, 40, 32, 5


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations)."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, D, generator=g)) * 2 + 0.3


def make(kind: str, normalize: str = 'none', b_enc_shift: float = 0.0, seed: int = 0) -> SparseAutoencoder:
    """An SAE in a non-trivial state: biases (b_enc_shift < 0: many kept pre-activations negative), an MSE
    normaliser, half the latents dead (AuxK on)."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind=kind, k=K, k_aux=6, auxk_dead_tokens=2 * B,
                                      auxk_dead_batches=2,
                                      normalize=normalize))
    with torch.no_grad():
        sae.b_dec.copy_(data(1, 9)[0] * 0.5)
        sae.b_enc.normal_(0, 0.1).add_(b_enc_shift)
        sae.mse_scale.fill_(3.7)
        sae.tokens_since_fired[:F // 2] = 10 * B
    return sae


def grads(sae: SparseAutoencoder, x: torch.Tensor, sparse: bool, bf16: bool) -> tuple[dict, dict]:
    """(loss outputs, {parameter name: gradient}) of one loss().backward() on x."""
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        out = sae.loss(x, fused=sparse, sparse=sparse)
    out['loss'].backward()
    return out, {name: q.grad for name, q in sae.named_parameters()}


CASES = [('topk', 'none', 0.0), ('batchtopk', 'none', 0.0), ('topk', 'layer_norm', 0.0),
         ('batchtopk', 'layer_norm', 0.0), ('topk', 'none', -3.0), ('batchtopk', 'none', -3.0),
         ('matryoshka_batchtopk', 'none', 0.0), ('matryoshka_batchtopk', 'none', -3.0)]


@pytest.mark.parametrize('bf16', [False, True], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('kind,normalize,b_enc_shift', CASES)
def test_sparse_loss_and_gradients_equal_the_dense_path(kind, normalize, b_enc_shift, bf16):
    sae = make(kind, normalize, b_enc_shift)
    dense, exact = copy.deepcopy(sae), copy.deepcopy(sae)
    x = data(B, 1)
    out, g = grads(sae, x, sparse=True, bf16=bf16)
    want, g_want = grads(dense, x, sparse=False, bf16=bf16)
    _, g_exact = grads(exact, x, sparse=False, bf16=False)  # the fp32 dense gradients
    assert out['f'].shape == (K * B,) and want['f'].shape == (B, F)  # the sparse path ran (and the dense one)
    # AuxK active: some latents are dead (matryoshka's is 0 when every dead pre-activation is negative, as its code)
    assert want['aux'] > 0 or (kind == 'matryoshka_batchtopk' and b_enc_shift < 0)
    assert torch.equal(out['fired'], want['fired'])
    nonzero = out['f'][out['f'] != 0].sort().values  # (≤ N,) the kept activations, as the dense code's non-zeros
    assert torch.equal(nonzero, want['f'][want['f'] != 0].float().sort().values)
    rtol, atol = (2e-2, 1e-2) if bf16 else (1e-5, 1e-6)  # bf16: the dense path rounds x̂ and its GEMMs to bf16
    for key in ('loss', 'recon', 'aux', 'mse'):
        torch.testing.assert_close(out[key], want[key], rtol=rtol, atol=atol, msg=key)
    for name, q in g.items():
        if bf16:  # bf16 rounding of the dense path's own (B, F) gradients: compare relative to the whole gradient;
            # more than 1% from the dense bf16 gradient only where closer to the fp32 one than the dense bf16 is
            err = (q - g_want[name]).norm() / g_want[name].norm()
            to_exact, dense_to_exact = ((v - g_exact[name]).norm() for v in (q, g_want[name]))
            assert err < 1e-2 or to_exact <= dense_to_exact, f"{name}: relative error {err:.2e}"
        else:
            torch.testing.assert_close(q, g_want[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize('bf16', [False, True], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('auxk', [False, True], ids=['no_dead', 'auxk'])
def test_gradients_accumulate_over_two_backwards(auxk, bf16):
    """dW_dec (and under bf16 dW_enc) is written into kept scratch buffers that W_dec.grad (W_enc.grad) then
    aliases: a second loss().backward() without zero_grad must add to the first gradient, not overwrite it (the
    dense path's sums of two backwards)."""
    sae = make('topk')
    if not auxk:  # no dead latent: the main decode alone gives dW_dec, which W_dec.grad then aliases
        sae.tokens_since_fired.zero_()
    dense = copy.deepcopy(sae)
    for seed in (1, 2):
        x = data(B, seed)
        grads(sae, x, sparse=True, bf16=bf16)
        _, g_want = grads(dense, x, sparse=False, bf16=bf16)
    for name, q in sae.named_parameters():
        if bf16:  # as in test_sparse_loss_and_gradients_equal_the_dense_path
            err = (q.grad - g_want[name]).norm() / g_want[name].norm()
            assert err < 1e-2, f"{name}: relative error {err:.2e}"
        else:
            torch.testing.assert_close(q.grad, g_want[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize('kind', ['topk', 'batchtopk', 'matryoshka_batchtopk'])
def test_train_steps_take_the_sparse_path_and_equal_the_dense_steps(kind, monkeypatch):
    """train_step_ (train_sae.py's step) with its recipe against sae_step_(fused=False): same weights, fire
    counters and batchtopk threshold after a few steps with AuxK active and the decoder kept unit norm."""
    import autoencoder
    calls = []
    sparse_loss = autoencoder.sparse_topk_loss
    monkeypatch.setattr(autoencoder, 'sparse_topk_loss', lambda *a, **kw: calls.append(1) or sparse_loss(*a, **kw))
    sae = make(kind)
    dense = copy.deepcopy(sae)
    recipe = Recipe(**{**RECIPES[kind], 'lr': 1e-2}, max_steps=6)
    opt, opt_dense = (make_adam(m, recipe.lr, recipe.adam_betas, recipe.adam_eps) for m in (sae, dense))
    aux_seen = False
    for step in range(recipe.max_steps):
        x = data(B, 10 + step)
        stats = train_step_(sae, opt, x, step, recipe, want_l0=True, sparse=True)
        want = sae_step_(dense, opt_dense, x, recipe.l1_coeff, None, recipe.grad_clip, fused=False, want_l0=True)
        aux_seen |= bool(want['aux'] > 0)
        torch.testing.assert_close(stats['loss'], want['loss'], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats['l0'], want['l0'], rtol=0, atol=0)
        for (name, q), q_dense in zip(sae.named_parameters(), dense.parameters()):
            torch.testing.assert_close(q, q_dense, rtol=1e-4, atol=2e-6, msg=f"{name} at step {step}")
        assert torch.equal(sae.tokens_since_fired, dense.tokens_since_fired)
        if kind != 'topk':
            assert sae.threshold.item() == pytest.approx(dense.threshold.item(), rel=1e-6) and sae.threshold > 0
    assert aux_seen and len(calls) == recipe.max_steps


@pytest.mark.parametrize('loss_form', ['bussmann', 'openai'])
def test_matryoshka_prefix_losses_from_the_kept_codes(loss_form):
    """matryoshka_batchtopk's sparse step decodes each group of latents from its own kept entries: every prefix's
    term (and the b_dec-only one, 'bussmann') as the dense path's, whose groups each change the loss."""
    for widths in ((8, F), (2, 5, 10, 20, F)):
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='matryoshka_batchtopk', k=K,
                                          matryoshka_widths=widths, topk_loss=loss_form))
        dense = copy.deepcopy(sae)
        x = data(B, 3)
        out, g = grads(sae, x, sparse=True, bf16=False)
        want, g_want = grads(dense, x, sparse=False, bf16=False)
        assert out['f'].shape == (K * B,)
        plain = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='batchtopk', k=K, topk_loss=loss_form))
        plain.load_state_dict(sae.state_dict(), strict=False)
        assert not torch.allclose(plain.loss(x)['recon'], want['recon'])  # the prefixes count
        torch.testing.assert_close(out['recon'], want['recon'], rtol=1e-5, atol=1e-6)
        for name, q in g.items():
            torch.testing.assert_close(q, g_want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_sparse_step_pays_where_bench_sparse_step_measured_it():
    """sparse_topk='auto' (train_sae.py) takes the sparse step for the TopK family from F 1024 and F >= 32·k only
    (bench/sparse_step.py: the dense step is the faster below), never for another kind."""
    from autoencoder import sparse_step_pays
    for kind in ('topk', 'batchtopk', 'matryoshka_batchtopk'):
        assert sparse_step_pays(SAEConfig(d_in=8, n_features=1024, kind=kind, k=32))
        assert sparse_step_pays(SAEConfig(d_in=8, n_features=16384, kind=kind, k=32))
        assert not sparse_step_pays(SAEConfig(d_in=8, n_features=1024, kind=kind, k=33))
        assert not sparse_step_pays(SAEConfig(d_in=8, n_features=512, kind=kind, k=4))
    assert not sparse_step_pays(SAEConfig(d_in=8, n_features=16384, kind='jumprelu'))
