"""Every element of each SAE recipe, checked where training runs: `train_step_` (what train_sae.py calls every
step) against a reference step written here from the papers' formulas with plain autograd and torch's Adam.

A broken element anywhere in the training path (the fused step, the autograd loss, the schedules, clipping,
the parallel-gradient removal, renormalisation, AuxK, the input normalisation) makes the two diverge.
"""
import copy
import math

import pytest
import torch

from autoencoder import RECIPES, Recipe, SAEConfig, SparseAutoencoder, make_adam, train_step_

D, F, B = 12, 40, 32


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations): x = relu(z)·2 + 0.3."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, D, generator=g)) * 2 + 0.3


# ----------------------------------------------------------------------------- the reference, from the papers

def ref_lr(step: int, r: Recipe) -> float:
    """lr: linear warm-up over the first warmup_frac, then constant, then linear decay to 0 over the last decay_frac."""
    warm, decay_start = r.warmup_frac * r.max_steps, (1 - r.decay_frac) * r.max_steps
    if step < warm:
        return r.lr * (step + 1) / warm
    if r.decay_frac > 0 and step >= decay_start:
        return r.lr * (r.max_steps - step) / (r.max_steps - decay_start)
    return r.lr


def ref_l1(step: int, r: Recipe) -> float:
    """λ: linear warm-up from 0 over the first l1_warmup_frac of the run (April 2024 update)."""
    warm = r.l1_warmup_frac * r.max_steps
    return r.l1_coeff * min(1.0, step / warm) if warm > 0 else r.l1_coeff


def ref_normalize(x: torch.Tensor, how: str):
    if how == 'layer_norm':  # openai/sparse_autoencoder model.py LN
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        return (x - mu) / (std + 1e-5)
    return x


def ref_loss(p: dict, x: torch.Tensor, cfg: SAEConfig, l1: float, scale: float, mse_scale: float,
             dead: torch.Tensor) -> torch.Tensor:
    """The loss of each kind, as published."""
    x = ref_normalize(x, cfg.normalize) * scale
    if cfg.kind == 'anthropic2023':  # Towards Monosemanticity: pre-bias, ReLU, MSE (mean over d) + λ Σ|f|
        f = torch.relu((x - p['b_dec']) @ p['W_enc'].T + p['b_enc'])
        x_hat = f @ p['W_dec'].T + p['b_dec']
        return ((x_hat - x) ** 2).mean() + l1 * f.abs().sum(1).mean()
    if cfg.kind == 'april2024':  # April 2024: no pre-bias, ‖x - x̂‖² summed over d + λ Σ f_i ‖W_dec,i‖
        f = torch.relu(x @ p['W_enc'].T + p['b_enc'])
        x_hat = f @ p['W_dec'].T + p['b_dec']
        return ((x_hat - x) ** 2).sum(1).mean() + l1 * (f * p['W_dec'].norm(dim=0)).sum(1).mean()
    # topk (Gao et al. 2024; openai train.py): pre-bias, TopK then ReLU, mse·mse_scale + 1/32 normalized_mse
    pre = (x - p['b_dec']) @ p['W_enc'].T + p['b_enc']
    vals, idx = pre.topk(cfg.k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    x_hat = f @ p['W_dec'].T + p['b_dec']
    loss = mse_scale * ((x_hat - x) ** 2).mean()
    if dead.any():
        e = (x - x_hat).detach()
        k_aux = min(cfg.k_aux or cfg.d_in // 2, int(dead.sum()))
        aux_vals, aux_idx = torch.where(dead, pre, torch.tensor(-math.inf)).topk(k_aux, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, aux_idx, torch.relu(aux_vals))
        e_hat = z @ p['W_dec'].T
        loss = loss + (1 / 32) * ((e_hat - e) ** 2).mean() / ((e - e.mean(0)) ** 2).mean()
    return loss


def ref_step(p: dict, opt: torch.optim.Adam, x: torch.Tensor, step: int, r: Recipe, cfg: SAEConfig,
             scale: float, mse_scale: float, dead: torch.Tensor) -> None:
    for g in opt.param_groups:
        g['lr'] = ref_lr(step, r)
    opt.zero_grad()
    ref_loss(p, x, cfg, ref_l1(step, r), scale, mse_scale, dead).backward()
    W, G = p['W_dec'].detach(), p['W_dec'].grad
    if cfg.kind != 'april2024':  # remove the gradient parallel to each (unit) decoder column
        G -= W * (W * G).sum(0, keepdim=True) / (W * W).sum(0, keepdim=True)
    if r.grad_clip > 0:
        norm = torch.sqrt(sum((q.grad ** 2).sum() for q in p.values()))
        if norm > r.grad_clip:
            for q in p.values():
                q.grad *= r.grad_clip / norm
    opt.step()
    if cfg.kind != 'april2024':  # renormalise the decoder columns
        with torch.no_grad():
            p['W_dec'] /= p['W_dec'].norm(dim=0, keepdim=True)


# ----------------------------------------------------------------------------- the comparison

CASES = {  # name: (kind, normalize, recipe overrides)
    'anthropic2023': ('anthropic2023', 'none', dict(l1_coeff=0.05)),
    'anthropic2023-schedules-clip': ('anthropic2023', 'none', dict(l1_coeff=0.05, warmup_frac=0.3, decay_frac=0.4,
                                                                   l1_warmup_frac=0.5, grad_clip=0.05)),
    'april2024': ('april2024', 'none', dict(l1_coeff=0.05)),
    'april2024-layer_norm': ('april2024', 'layer_norm', dict(l1_coeff=0.05)),
    'topk': ('topk', 'none', {}),
    'topk-layer_norm': ('topk', 'layer_norm', dict(grad_clip=0.05, warmup_frac=0.3, decay_frac=0.3)),
}


def case_sae(kind: str, normalize: str, seed: int) -> SparseAutoencoder:
    """An SAE of a case in a non-trivial state: biases, a dataset scale (april2024), an MSE normaliser (topk)."""
    torch.manual_seed(seed)
    cfg = SAEConfig(d_in=D, n_features=F, kind=kind, k=5, k_aux=6, auxk_dead_tokens=2 * B, normalize=normalize)
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        sae.b_dec.copy_(data(1, 9)[0] * 0.5)
        sae.b_enc.normal_(0, 0.1)
        if kind == 'april2024' and normalize == 'none':
            sae.scale.fill_(1.7)
        sae.mse_scale.fill_(3.7 if kind == 'topk' else 1.0)
    return sae


@pytest.mark.parametrize('case', list(CASES))
def test_train_step_follows_the_published_recipe(case):
    kind, normalize, over = CASES[case]
    sae = case_sae(kind, normalize, seed=0)
    cfg = sae.cfg
    steps = 10
    recipe = Recipe(**{**RECIPES[kind], 'lr': 1e-2, **over}, max_steps=steps)
    with torch.no_grad():
        sae.tokens_since_fired[:F // 2] = 10 * B  # half the latents start dead (topk's AuxK set)
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    ref_opt = torch.optim.Adam(list(p.values()), lr=recipe.lr, betas=recipe.adam_betas, eps=recipe.adam_eps)
    opt = make_adam(sae, recipe.lr, recipe.adam_betas, recipe.adam_eps)
    since = sae.tokens_since_fired.clone()
    aux_seen = False
    for step in range(steps):
        x = data(B, step)
        with torch.no_grad():  # the reference's dead set: silent for auxk_dead_tokens counting this batch
            f = sae.encode(x)
        fired = (f > (1e-3 if kind == 'topk' else 0.0)).any(0)
        dead = (since + B >= cfg.auxk_dead_tokens) & ~fired
        ref_step(p, ref_opt, x, step, recipe, cfg, sae.scale.item(), sae.mse_scale.item(), dead)
        stats = train_step_(sae, opt, x, step, recipe)
        since = torch.where(fired, 0, since + B)
        aux_seen |= kind == 'topk' and bool(dead.any()) and stats['aux'] > 0
        assert stats['lr'] == pytest.approx(ref_lr(step, recipe)) and stats['l1_coeff'] == ref_l1(step, recipe)
        for name, q in sae.named_parameters():
            torch.testing.assert_close(q.detach(), p[name].detach(), rtol=1e-4, atol=2e-6,
                                       msg=lambda m, name=name, step=step: f"{case}, {name} at step {step}: {m}")
        assert torch.equal(sae.tokens_since_fired, since)
    assert aux_seen or kind != 'topk'


@pytest.mark.parametrize('case', list(CASES))
def test_autograd_loss_equals_the_reference(case):
    """SparseAutoencoder.loss (the autograd path: topk's step, fused=False for the others) is each paper's loss."""
    kind, normalize, _ = CASES[case]
    sae = case_sae(kind, normalize, seed=1)
    cfg = sae.cfg
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(F) + 0.5)  # non-unit columns: norms matter to april2024's L1
    x = data(B, 3)
    dead = torch.arange(F) % 3 == 0
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    ref = ref_loss(p, x, cfg, 0.05, sae.scale.item(), sae.mse_scale.item(), dead)
    ref.backward()
    out = sae.loss(x, l1_coeff=0.05, dead=dead)
    out['loss'].backward()
    assert out['loss'].item() == pytest.approx(ref.item(), rel=1e-5)
    for name, q in sae.named_parameters():
        torch.testing.assert_close(q.grad, p[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_topk_is_relu_of_the_k_largest():
    """TopK keeps the k largest pre-activations of each row and ReLUs them (a negative one among them gives 0)."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='topk', k=5))
    with torch.no_grad():
        sae.b_enc.fill_(-1.0)  # many of the top-k pre-activations are negative
    x = data(B, 0)
    pre = sae.encode_pre(x)
    vals, idx = pre.topk(5, dim=-1)
    assert (vals < 0).any() and (vals > 0).any()
    f = sae.loss(x)['f']  # the training path's features
    torch.testing.assert_close(f, torch.zeros_like(pre).scatter(-1, idx, vals.relu()), rtol=0, atol=0)
    torch.testing.assert_close(sae.encode(x), f, rtol=0, atol=0)


def test_auxk_term_by_hand():
    """The AuxK term on a tiny batch, computed by hand from its definition (Gao et al. 2024, openai train.py)."""
    sae = SparseAutoencoder(SAEConfig(d_in=2, n_features=4, kind='topk', k=1, k_aux=2, auxk_dead_tokens=1))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.], [-1., 1.]]))
        sae.W_dec.copy_(torch.tensor([[1., 0., 0.6, -0.6], [0., 1., 0.8, 0.8]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.tokens_since_fired.fill_(5)
    x = torch.tensor([[2., 1.], [1., 3.]])
    dead = torch.tensor([False, True, True, True])
    out = sae.loss(x, dead=dead)
    # pre = [[2, 1, 3, -1], [1, 3, 4, 2]]; top-1: latent 2 (3 and 4): x̂ = [[1.8, 2.4], [2.4, 3.2]]
    e = torch.tensor([[0.2, -1.4], [-1.4, -0.2]])  # x - x̂
    # dead latents 1, 2, 3: top-2 of their pre-activations, ReLU'd: row 0 -> {2: 3, 1: 1}, row 1 -> {2: 4, 1: 3}
    e_hat = torch.tensor([[3 * 0.6 + 0, 3 * 0.8 + 1], [4 * 0.6 + 0, 4 * 0.8 + 3]])
    by_hand = ((e_hat - e) ** 2).mean() / ((e - e.mean(0)) ** 2).mean()
    assert out['aux'].item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert out['recon'].item() == pytest.approx((e ** 2).mean().item(), rel=1e-6)  # mse_scale 1 here
    assert out['loss'].item() == pytest.approx((e ** 2).mean().item() + by_hand.item() / 32, rel=1e-6)
    # ReLU on the dead latents' values: row 0's pre-activation of latent 3 is -1 and reconstructs nothing
    out3 = sae.loss(x, dead=torch.tensor([False, False, False, True]))
    e_hat3 = torch.tensor([[0., 0.], [2 * -0.6, 2 * 0.8]])
    by_hand3 = ((e_hat3 - e) ** 2).mean() / ((e - e.mean(0)) ** 2).mean()
    assert out3['aux'].item() == pytest.approx(by_hand3.item(), rel=1e-6)


def test_recipes_hold_the_published_values():
    """RECIPES states each paper's numbers (a typo here would silently change every run of that kind)."""
    a, b, t = RECIPES['anthropic2023'], RECIPES['april2024'], RECIPES['topk']
    assert (a['lr'], a['l1_coeff'], a['grad_clip'], a['decay_frac'], a['l1_warmup_frac']) == (3e-4, 1e-3, 0, 0, 0)
    assert (b['lr'], b['l1_coeff'], b['l1_warmup_frac'], b['decay_frac'], b['grad_clip']) == (5e-5, 5.0, .05, .2, 1.)
    assert b['adam_betas'] == (0.9, 0.999) and b['warmup_frac'] == 0
    assert (t['lr'], t['adam_eps'], t['grad_clip']) == (1e-4, 6.25e-10, 0)


def test_layer_norm_round_trip_and_scale_free():
    """normalize='layer_norm': the SAE sees per-token normalised rows and returns x̂ in the input's units."""
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='topk', k=F, normalize='layer_norm'))
    x = data(8, 0)
    xs, stats = sae.preprocess(x)
    torch.testing.assert_close(xs, ref_normalize(x, 'layer_norm'))
    torch.testing.assert_close(sae.postprocess(xs, stats), x, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae.encode(x * 7.0 + 2.0), sae.encode(x), rtol=1e-3, atol=1e-4)  # per-token invariance
    x_hat, _ = sae(x)
    ref = copy.deepcopy(sae)
    with torch.no_grad():
        f = ref.activate(ref.encode_pre_scaled(xs))
        torch.testing.assert_close(x_hat, (f @ ref.W_dec.T + ref.b_dec) * stats[1] + stats[0])
