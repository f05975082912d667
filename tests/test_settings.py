"""Each setting of the SAE run at a value where it shows: a test that only ever runs a knob at its default (or at 1,
or with b_dec 0, or at the training mode) cannot tell whether the code reads the knob at all. Here k_aux's default,
aux_coeff, topk_threshold_lr, jumprelu_bandwidth, dec_init_norm, Adam's betas and eps, the kinds' fire thresholds,
the training MSE in input units under layer_norm, fold_scale_ with a non-zero b_dec, and evaluate_sae's inference
mode are each set away from the value that hides them, and the result checked against the definition.
"""
import math

import pytest
import torch

from autoencoder import SAEConfig, SparseAutoencoder, fold_scale_, make_adam, sae_step_
from conftest import jumprelu_theta_grad, sae_with_biases, skewed_rows
from monosemanticity.metrics import evaluate_sae

D, F, B = 12, 40, 32


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations)."""
    return skewed_rows(n, D, seed)


def make(kind: str, seed: int = 0, **kw) -> SparseAutoencoder:
    """An SAE with non-trivial biases."""
    return sae_with_biases(kind, D, F, seed, **{'k': 5, **kw})


def auxk_by_hand(sae: SparseAutoencoder, x: torch.Tensor, dead: torch.Tensor, k_aux: int) -> float:
    """Gao et al.'s AuxK: normalized MSE of the residual e = x - x̂ by the ReLU'd top-k_aux dead pre-activations."""
    with torch.no_grad():
        pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
        vals, idx = pre.topk(sae.cfg.k, dim=-1)
        x_hat = torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ sae.W_dec.T + sae.b_dec
        e = x - x_hat
        vals, idx = torch.where(dead, pre, -math.inf).topk(k_aux, dim=-1)
        e_hat = torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ sae.W_dec.T
        return (((e_hat - e) ** 2).mean() / ((e - e.mean(0)) ** 2).mean()).item()


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_k_aux_default_is_half_the_input_width(sparse):
    """k_aux=0 means d_in // 2 dead latents per row in AuxK (Gao et al. B.1), with more dead latents than d_in so that
    any other count gives another term."""
    sae = make('topk')
    assert sae.cfg.k_aux == 0
    x = data(B, 1)
    dead = torch.arange(F) % 4 != 0  # 30 dead latents > d_in
    aux = sae.loss(x, dead=dead, sparse=sparse)['aux'].item()
    assert aux == pytest.approx(auxk_by_hand(sae, x, dead, D // 2), rel=1e-5)
    assert aux != pytest.approx(auxk_by_hand(sae, x, dead, D // 2 + 1), rel=1e-3)  # the count shows in the term


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_aux_coeff_weighs_the_auxk_term(sparse):
    """loss = recon + aux_coeff · AuxK for an aux_coeff other than the default 1/32."""
    sae = make('topk', aux_coeff=0.5)
    out = sae.loss(data(B, 2), dead=torch.arange(F) % 2 == 0, sparse=sparse)
    assert out['aux'] > 0
    assert out['loss'].item() == pytest.approx(out['recon'].item() + 0.5 * out['aux'].item(), rel=1e-6)


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_topk_threshold_lr_is_the_rate_of_the_running_mean(sparse):
    """batchtopk: θ ← (1 - r)·θ + r·min{f > 0} with r = topk_threshold_lr (here 0.25, from θ = 0.3)."""
    sae = make('batchtopk', topk_threshold_lr=0.25)
    with torch.no_grad():
        sae.threshold.fill_(0.3)
    x = data(B, 3)
    with torch.no_grad():
        f = sae.loss(x)['f']  # the step's features (the parameters before its update)
    smallest = f[f > 0].min().item()
    sae_step_(sae, make_adam(sae, 1e-3), x, sparse=sparse)
    assert sae.threshold.item() == pytest.approx(0.75 * 0.3 + 0.25 * smallest, rel=1e-6)


def test_jumprelu_bandwidth_sets_the_straight_through_window():
    """jumprelu_bandwidth ε = 0.05 (not the paper's 0.001): the rectangle window |pre - θ| < ε/2 and the 1/ε of both
    pseudo-derivatives of θ are ε's, in f's (reconstruction) and in the L0 term's (λ)."""
    eps, lam = 0.05, 0.3
    sae = make('jumprelu', jumprelu_bandwidth=eps)
    x = data(B, 5)
    with torch.no_grad():
        pre = sae.encode_pre(x)
        theta = pre[0].abs() + 1.0  # far from most pre-activations
        theta[::3] = pre[0, ::3] - 0.3 * eps  # row 0 just above θ, inside the window
        theta[1::3] = pre[1, 1::3] + 0.2 * eps  # row 1 just below θ, inside the window
        theta = theta.clamp_min(1e-3)
        sae.log_threshold.copy_(theta.log())
    out = sae.loss(x, l1_coeff=lam)
    out['loss'].backward()
    W_dec, b_dec = sae.W_dec.detach(), sae.b_dec.detach()
    H = (pre > theta).float()
    err = (pre * H) @ W_dec.T + b_dec - x
    grad, _, K = jumprelu_theta_grad(pre, theta, err, W_dec, lam, eps)
    u = (pre - theta) / eps
    assert (K * H).sum() >= 3 and (K * (1 - H)).sum() >= 3 and ((u.abs() > 0.5) & (u.abs() < 50)).any()
    torch.testing.assert_close(sae.log_threshold.grad, grad, rtol=1e-4, atol=1e-5)


def test_april2024_decoder_init_norm_is_the_configured_one():
    """april2024 starts its decoder columns at norm dec_init_norm (0.37 here, not the default 0.1), W_enc = W_decᵀ."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='april2024', dec_init_norm=0.37))
    torch.testing.assert_close(sae.W_dec.detach().norm(dim=0), torch.full((F,), 0.37))
    torch.testing.assert_close(sae.W_enc.detach(), sae.W_dec.detach().T)


def test_make_adam_steps_with_the_given_betas_and_eps():
    """make_adam's optimizer is torch's Adam with the given betas and eps (β1 = 0 as jumprelu's recipe, and an eps
    large enough to show): three steps on the same gradients give the same weights."""
    sae = make('anthropic2023')
    ref = {n: p.detach().clone().requires_grad_(True) for n, p in sae.named_parameters()}
    opt = make_adam(sae, 1e-2, betas=(0.0, 0.9), eps=1e-2)
    ref_opt = torch.optim.Adam(list(ref.values()), lr=1e-2, betas=(0.0, 0.9), eps=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for name, p in sae.named_parameters():
            p.grad = torch.randn(p.shape, generator=g) * 0.01
            ref[name].grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(p.detach(), ref[name].detach(), rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize('kind,fires', [('topk', False), ('batchtopk', True)])
@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_a_tiny_activation_fires_by_the_kinds_rule(kind, fires, sparse):
    """A kept activation of 5e-4: topk counts a latent as fired above 1e-3 (openai), batchtopk above 0 (Bussmann et
    al.); the fired mask and the fire counters follow the kind's rule."""
    sae = make(kind, k=2)
    with torch.no_grad():
        sae.W_enc.zero_()  # pre = b_enc on every row: latent 0 at 1.0, latent 1 at 5e-4, the rest negative
        sae.b_enc.fill_(-1.0)
        sae.b_enc[:2] = torch.tensor([1.0, 5e-4])
        sae.tokens_since_fired.fill_(7)
    x = data(4, 6)
    fired = sae.loss(x, sparse=sparse)['fired']
    assert fired[0] and bool(fired[1]) == fires and not fired[2:].any()
    sae_step_(sae, make_adam(sae, 0.0), x, sparse=sparse)
    assert sae.tokens_since_fired[0] == 0 and sae.tokens_since_fired[1] == (0 if fires else 7 + 4)


@pytest.mark.parametrize('kind,fused', [('topk', False), ('topk', True), ('anthropic2023', True)])
def test_training_mse_is_in_the_inputs_units_under_layer_norm(kind, fused):
    """normalize='layer_norm': the step's logged mse is the MSE of x̂ against x in the input's units (per-token std
    ~5 here, so a std instead of its square shows), for the autograd, sparse and fused paths."""
    sae = make(kind, normalize='layer_norm')
    x = data(B, 7) * 5 + 2
    with torch.no_grad():
        mse = sae.loss(x, fused=fused, sparse=fused)['mse'].item()
        x_hat, _ = sae(x)
    assert mse == pytest.approx((x_hat - x).pow(2).mean().item(), rel=1e-4)


def test_fold_scale_divides_b_dec_too():
    """fold_scale_ keeps the function of an SAE whose b_dec is not 0 (the decoder's bias lives in scaled units)."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='april2024'))
    with torch.no_grad():
        sae.scale.fill_(2.5)
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
    x = data(10, 8)
    x_hat, f = sae(x)
    fold_scale_(sae)
    assert sae.scale.item() == 1.0
    torch.testing.assert_close(sae(x)[0], x_hat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sae(x)[1], f, rtol=1e-5, atol=1e-5)


def test_evaluate_sae_measures_the_inference_features_and_restores_training():
    """evaluate_sae measures a batchtopk SAE as it is used (θ, not the batch top-k: L0 ≠ k) and leaves it in the
    mode it found it in (train_sae.py evaluates in the middle of training)."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=61, n_layer=1, n_head=2, n_embd=8, activation='relu')).eval()
    d = 32  # mlp_hidden width
    sae = SparseAutoencoder(SAEConfig(d_in=d, n_features=64, kind='batchtopk', k=4))
    x = torch.randint(61, (3, 17), generator=torch.Generator().manual_seed(1))
    h = gpt.run(x[:, :-1], capture=['blocks.0.mlp_hidden'], need_logits=False)[2]['blocks.0.mlp_hidden']
    h = h.reshape(-1, d)
    with torch.no_grad():
        pre = sae.encode_pre(h)
        sae.threshold.fill_(pre.relu().flatten().quantile(0.99).item())  # fewer than k per row pass θ
        l0 = (pre > sae.threshold.float()).sum(1).float().mean().item()
    assert sae.training and l0 < 4
    m = evaluate_sae(sae, gpt, 'blocks.0.mlp_hidden', [(x[:, :-1], x[:, 1:])], torch.zeros(d))
    assert m['l0'] == pytest.approx(l0, rel=1e-6)
    assert sae.training
