"""Every element of each SAE recipe, checked where training runs: `train_step_` (what train_sae.py calls every
step) against a reference step written here from the papers' formulas and the authors' code (openai/sparse_autoencoder
train.py; bartbussmann/matryoshka_sae sae.py and training.py for batchtopk and matryoshka_batchtopk; Gemma Scope for
jumprelu) with plain autograd and torch's Adam.

A broken element anywhere in the training path (the fused step, the sparse step, the autograd loss, the schedules,
clipping, the parallel-gradient removal, renormalisation and its place in the step, AuxK and its dead set, the
prefix losses, the straight-through estimators, the input normalisation) makes the two diverge.
"""
import copy
import math
from typing import NamedTuple

import pytest
import torch

from autoencoder import RECIPES, Recipe, SAEConfig, SparseAutoencoder, make_adam, train_step_

D, F, B = 12, 40, 32
TOPK_FAMILY = ('topk', 'batchtopk', 'matryoshka_batchtopk')


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations): x = relu(z)·2 + 0.3."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, D, generator=g)) * 2 + 0.3


# ----------------------------------------------------------------------------- the reference, from the papers

def ref_lr(step: int, r: Recipe) -> float:
    """lr: warm-up over the first warmup_steps steps (else the first warmup_frac of the run), then constant, then
    linear decay to 0 over the last decay_frac. Warm-up 'linear': lr·(step + 1)/W; 'cosine' (Gemma Scope): from
    warmup_start·lr to lr along half a cosine."""
    warm, decay_start = r.warmup_steps or r.warmup_frac * r.max_steps, (1 - r.decay_frac) * r.max_steps
    if step < warm:
        if r.warmup_shape == 'cosine':
            return r.lr * (r.warmup_start + (1 - r.warmup_start) * (1 - math.cos(math.pi * step / warm)) / 2)
        return r.lr * (step + 1) / warm
    if r.decay_frac > 0 and step >= decay_start:
        return r.lr * (r.max_steps - step) / (r.max_steps - decay_start)
    return r.lr


def ref_l1(step: int, r: Recipe) -> float:
    """λ: linear warm-up from 0 over the first l1_warmup_steps steps (Gemma Scope), else over the first
    l1_warmup_frac of the run (April 2024 update)."""
    warm = r.l1_warmup_steps or r.l1_warmup_frac * r.max_steps
    return r.l1_coeff * min(1.0, step / warm) if warm > 0 else r.l1_coeff


def ref_form(cfg: SAEConfig) -> str:
    """The loss of a TopK-family SAE: 'openai' (Gao et al., topk's default) or 'bussmann' (the BatchTopK and
    Matryoshka authors' code, their kinds' default)."""
    return cfg.topk_loss or ('openai' if cfg.kind == 'topk' else 'bussmann')


def ref_normalize(x: torch.Tensor, how: str):
    if how == 'layer_norm':  # openai/sparse_autoencoder model.py LN (= matryoshka_sae's input_unit_norm)
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        return (x - mu) / (std + 1e-5)
    return x


def straight_through(value: torch.Tensor, d_theta: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """value, with d_theta (B, F) as its derivative with respect to θ (F,) and no other gradient through it."""
    return value + d_theta.detach() * (theta - theta.detach())


def ref_encode(p: dict, x: torch.Tensor, cfg: SAEConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-activations, features) (B, F) of the training forward, x in the SAE's input space."""
    pre = (x if cfg.kind == 'april2024' else x - p['b_dec']) @ p['W_enc'].T + p['b_enc']  # april2024: no pre-bias
    if cfg.kind == 'topk':  # TopK, then ReLU
        vals, idx = pre.topk(cfg.k, dim=-1)
        return pre, torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    if cfg.kind in TOPK_FAMILY:  # BatchTopK in training: the k·B largest ReLU'd activations of the batch
        acts = torch.relu(pre).flatten()  # (pre with b_enc: the authors' code leaves it out, a quirk not copied)
        top = acts.topk(cfg.k * x.shape[0])
        return pre, torch.zeros_like(acts).scatter(-1, top.indices, top.values).view_as(pre)
    if cfg.kind == 'jumprelu':  # f = pre·H(pre - θ); ∂f/∂θ = -(θ/ε)·K((pre - θ)/ε), K(u) = 1{|u| < 1/2}
        theta, eps = p['log_threshold'].exp(), cfg.jumprelu_bandwidth
        kernel = (((pre - theta) / eps).abs() < 0.5).float()
        return pre, straight_through(pre * (pre > theta).float(), -(theta / eps) * kernel, theta)
    return pre, torch.relu(pre)


def ref_loss(p: dict, x: torch.Tensor, cfg: SAEConfig, l1: float, scale: float, mse_scale: float,
             dead: torch.Tensor) -> torch.Tensor:
    """The loss of each kind, as published."""
    x = ref_normalize(x, cfg.normalize) * scale
    pre, f = ref_encode(p, x, cfg)
    x_hat = f @ p['W_dec'].T + p['b_dec']
    if cfg.kind == 'anthropic2023':  # Towards Monosemanticity: MSE (mean over d) + λ Σ|f|
        return ((x_hat - x) ** 2).mean() + l1 * f.abs().sum(1).mean()
    if cfg.kind == 'april2024':  # April 2024: ‖x - x̂‖² summed over d + λ Σ f_i ‖W_dec,i‖
        return ((x_hat - x) ** 2).sum(1).mean() + l1 * (f * p['W_dec'].norm(dim=0)).sum(1).mean()
    if cfg.kind == 'jumprelu':  # ‖x - x̂‖² summed over d + λ Σ H(pre - θ); ∂H/∂θ = -(1/ε)·K, nothing to pre
        theta, eps = p['log_threshold'].exp(), cfg.jumprelu_bandwidth
        kernel = (((pre - theta) / eps).abs() < 0.5).float()
        l0 = straight_through((pre.detach() > theta).float(), -kernel / eps, theta)
        return ((x_hat - x) ** 2).sum(1).mean() + l1 * l0.sum(1).mean()
    if ref_form(cfg) == 'openai':
        return ref_loss_openai(p, x, pre, x_hat, cfg, mse_scale, dead)
    return ref_loss_bussmann(p, x, pre, f, x_hat, cfg, dead)


def ref_loss_openai(p: dict, x: torch.Tensor, pre: torch.Tensor, x_hat: torch.Tensor, cfg: SAEConfig,
                    mse_scale: float, dead: torch.Tensor) -> torch.Tensor:
    """openai train.py: mse_scale·mse(x̂, x) + 1/32·normalized_mse(decode_sparse(auxk), x - x̂.detach() + b_dec.detach())
    where decode_sparse adds the (not detached) pre-bias: the term is there, training b_dec, with no latent dead."""
    z = torch.zeros_like(pre)
    k_aux = min(cfg.k_aux or cfg.d_in // 2, int(dead.sum()))
    if k_aux > 0:  # the ReLU'd top-k_aux pre-activations of the dead latents
        vals, idx = torch.where(dead, pre, torch.tensor(-math.inf)).topk(k_aux, dim=-1)
        z = z.scatter(-1, idx, torch.relu(vals))
    aux_recon = z @ p['W_dec'].T + p['b_dec']
    target = x - x_hat.detach() + p['b_dec'].detach()
    normalized_mse = ((aux_recon - target) ** 2).mean() / ((target.mean(0).expand_as(target) - target) ** 2).mean()
    return mse_scale * ((x_hat - x) ** 2).mean() + (1 / 32) * normalized_mse.nan_to_num(0)


def ref_loss_bussmann(p: dict, x: torch.Tensor, pre: torch.Tensor, f: torch.Tensor, x_hat: torch.Tensor,
                      cfg: SAEConfig, dead: torch.Tensor) -> torch.Tensor:
    """matryoshka_sae sae.py: BatchTopKSAE.get_loss_dict (plain MSE) or GlobalBatchTopKMatryoshkaSAE's (the mean of
    the MSEs of x̂_0 = b_dec and of every prefix reconstruction), + aux_penalty·mean((ê - r)²) with r = x - x̂ (not
    detached) and ê the dead latents' top-k_aux ReLU'd activations decoded without b_dec. Matryoshka: explicit
    matryoshka_widths (the prefixes' ends, the last n_features)."""
    if cfg.kind == 'matryoshka_batchtopk':
        recon, l2, lo = p['b_dec'], ((p['b_dec'] - x) ** 2).mean(), 0
        for hi in cfg.matryoshka_widths:
            recon = f[:, lo:hi] @ p['W_dec'][:, lo:hi].T + recon
            l2, lo = l2 + ((recon - x) ** 2).mean(), hi
        l2 = l2 / (len(cfg.matryoshka_widths) + 1)
    else:
        l2 = ((x_hat - x) ** 2).mean()
    if not dead.any():
        return l2
    acts = torch.relu(pre)[:, dead]
    top = acts.topk(min(cfg.k_aux or 512, int(dead.sum())), dim=-1)  # top_k_aux 512
    e_hat = torch.zeros_like(acts).scatter(-1, top.indices, top.values) @ p['W_dec'][:, dead].T
    if cfg.kind == 'matryoshka_batchtopk' and not e_hat.abs().sum() > 0:  # its get_auxiliary_loss: 0 then
        return l2
    return l2 + (1 / 32) * ((e_hat - (x - x_hat)) ** 2).mean()


def ref_step(p: dict, opt: torch.optim.Adam, x: torch.Tensor, step: int, r: Recipe, cfg: SAEConfig,
             scale: float, mse_scale: float, dead: torch.Tensor) -> None:
    """One step: the schedules, backward, the unit-norm decoder's gradient projection and renormalisation, clipping,
    Adam. The TopK family renormalises the columns after backward and before opt.step, projecting the gradient on
    the renormalised columns (openai train.py; matryoshka_sae training.py make_decoder_weights_and_grad_unit_norm),
    so they are not unit after the step; anthropic2023 and jumprelu renormalise after the step."""
    for g in opt.param_groups:
        g['lr'] = ref_lr(step, r)
    opt.zero_grad()
    ref_loss(p, x, cfg, ref_l1(step, r), scale, mse_scale, dead).backward()
    W, G = p['W_dec'], p['W_dec'].grad
    clip_first = cfg.kind in TOPK_FAMILY and ref_form(cfg) == 'bussmann'  # the authors' training.py clips first
    if clip_first:
        clip_(p, r.grad_clip)
    if cfg.kind in TOPK_FAMILY:
        with torch.no_grad():
            W /= W.norm(dim=0, keepdim=True)
    if cfg.kind != 'april2024':  # remove the gradient parallel to each decoder column
        Wd = W.detach()
        G -= Wd * (Wd * G).sum(0, keepdim=True) / (Wd * Wd).sum(0, keepdim=True)
    if not clip_first:  # openai: after the projection
        clip_(p, r.grad_clip)
    opt.step()
    if cfg.kind in ('anthropic2023', 'jumprelu'):
        with torch.no_grad():
            W /= W.norm(dim=0, keepdim=True)


def clip_(p: dict, max_norm: float) -> None:
    """Scale every gradient so that their global norm is at most max_norm (0: off)."""
    norm = torch.sqrt(sum((q.grad ** 2).sum() for q in p.values()))
    if max_norm > 0 and norm > max_norm:
        for q in p.values():
            q.grad *= max_norm / norm


def ref_dead(cfg: SAEConfig, fired: torch.Tensor, tokens_silent: torch.Tensor,
             batches_silent: torch.Tensor) -> torch.Tensor:
    """AuxK's dead set, taken after the fire statistics counted this batch (as both references), from the counters
    updated with it: 'openai' not fired in the last auxk_dead_tokens tokens (Gao et al.: "not activated in 10 million
    tokens"; train.py's step counter, stats_last_nonzero > dead_toks // bs, can differ from it by one batch);
    'bussmann' (sae.py) num_batches_not_active >= n_batches_to_dead (5 in BatchTopK's code, 20 in matryoshka_sae's)."""
    if ref_form(cfg) == 'openai':
        return (tokens_silent >= cfg.auxk_dead_tokens) & ~fired
    return batches_silent >= (cfg.auxk_dead_batches or (20 if cfg.kind == 'matryoshka_batchtopk' else 5))


# ----------------------------------------------------------------------------- the comparison

class Case(NamedTuple):
    """One run of the comparison: a kind and what differs from its published recipe and its defaults."""

    kind: str
    recipe: dict = {}  # Recipe overrides (lr is 1e-2 in every case)
    cfg: dict = {}  # SAEConfig overrides
    silent: bool = True  # half the latents start silent for 0, 2, .., 38 batches (AuxK's dead set); False: none
    sparse: bool = False  # train_step_(sparse=True): sparse_topk_loss (train_sae.py's sparse_topk)


NO_DEAD = dict(auxk_dead_tokens=10 ** 9)
CASES = {
    'anthropic2023': Case('anthropic2023', dict(l1_coeff=0.05)),
    'anthropic2023-schedules-clip': Case('anthropic2023', dict(l1_coeff=0.05, warmup_frac=0.3, decay_frac=0.4,
                                                               l1_warmup_frac=0.5, grad_clip=0.05)),
    'april2024': Case('april2024', dict(l1_coeff=0.05)),
    'april2024-layer_norm': Case('april2024', dict(l1_coeff=0.05), dict(normalize='layer_norm')),
    'topk': Case('topk'),
    'topk-sparse': Case('topk', sparse=True),
    'topk-layer_norm': Case('topk', dict(grad_clip=0.05, warmup_frac=0.3, decay_frac=0.3),
                            dict(normalize='layer_norm')),
    'topk-no_dead': Case('topk', cfg=NO_DEAD, silent=False),  # AuxK still trains b_dec (ê = b_dec)
    'topk-no_dead-sparse': Case('topk', cfg=NO_DEAD, silent=False, sparse=True),
    'batchtopk': Case('batchtopk'),  # k_aux 512 (all the dead latents), dead after 5 silent batches
    'batchtopk-sparse': Case('batchtopk', sparse=True),
    'batchtopk-layer_norm': Case('batchtopk', cfg=dict(normalize='layer_norm', auxk_dead_batches=2)),  # 12-14 dead
    'batchtopk-openai': Case('batchtopk', cfg=dict(topk_loss='openai')),
    'matryoshka_batchtopk': Case('matryoshka_batchtopk', cfg=dict(matryoshka_widths=(10, 20, 40), k=2, k_aux=3)),
    'jumprelu': Case('jumprelu', dict(l1_coeff=0.01, warmup_steps=4, l1_warmup_steps=6)),  # cosine from 0.1·lr
}


def case_sae(case: Case, seed: int) -> SparseAutoencoder:
    """An SAE of a case in a non-trivial state: biases, a dataset scale (april2024, jumprelu), an MSE normaliser
    (mse_scale: the TopK family, used by the 'openai' loss only), jumprelu thresholds with pre-activations within
    the bandwidth (so that the straight-through gradients are not 0), in training mode."""
    torch.manual_seed(seed)
    given = dict(k=5, k_aux=6 if case.kind == 'topk' else 0, auxk_dead_tokens=2 * B, jumprelu_bandwidth=0.05,
                 jumprelu_init_threshold=0.05)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind=case.kind, **{**given, **case.cfg})).train()
    with torch.no_grad():
        if case.kind in ('april2024', 'jumprelu') and sae.cfg.normalize == 'none':
            sae.scale.fill_(1.7 if case.kind == 'april2024' else 0.25)
        sae.b_dec.copy_(data(1, 9)[0] * 0.5 * sae.scale)
        sae.b_enc.normal_(0, 0.1)
        sae.mse_scale.fill_(3.7 if case.kind in TOPK_FAMILY else 1.0)
        if case.silent:
            sae.tokens_since_fired[:F // 2] = torch.arange(F // 2) * 2 * B
    return sae


@pytest.mark.parametrize('name', list(CASES))
def test_train_step_follows_the_published_recipe(name):
    check_steps(name, CASES[name])


def check_steps(name: str, case: Case) -> None:
    """Ten steps of train_step_ equal ten reference steps: parameters, lr, λ and the fire counters at every step."""
    sae = case_sae(case, seed=0)
    cfg, steps = sae.cfg, 10
    recipe = Recipe(**{**RECIPES[case.kind], 'lr': 1e-2, **case.recipe}, max_steps=steps)
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    ref_opt = torch.optim.Adam(list(p.values()), lr=recipe.lr, betas=recipe.adam_betas, eps=recipe.adam_eps)
    opt = make_adam(sae, recipe.lr, recipe.adam_betas, recipe.adam_eps)
    tokens_silent = sae.tokens_since_fired.clone()  # the references' fire statistics: openai's in tokens,
    batches_silent = tokens_silent // B  # matryoshka_sae's num_batches_not_active
    auxk_seen = []
    for step in range(steps):
        x = data(B, step)
        with torch.no_grad():  # the reference's fire statistics take this batch first (both references do)
            f = ref_encode(p, ref_normalize(x, cfg.normalize) * sae.scale.item(), cfg)[1]
        fired = (f > (1e-3 if case.kind == 'topk' else 0.0)).any(0)  # openai: > 1e-3; the others: > 0
        tokens_silent = torch.where(fired, 0, tokens_silent + B)
        batches_silent = torch.where(fired, 0, batches_silent + 1)
        dead = ref_dead(cfg, fired, tokens_silent, batches_silent)
        ref_step(p, ref_opt, x, step, recipe, cfg, sae.scale.item(), sae.mse_scale.item(), dead)
        stats = train_step_(sae, opt, x, step, recipe, sparse=case.sparse)
        auxk_seen.append((bool(dead.any()), stats['aux'].item() > 0))
        assert stats['lr'] == pytest.approx(ref_lr(step, recipe)), name
        assert stats['l1_coeff'] == pytest.approx(ref_l1(step, recipe)), name
        for n, q in sae.named_parameters():
            torch.testing.assert_close(q.detach(), p[n].detach(), rtol=1e-4, atol=2e-6,
                                       msg=lambda m, n=n, step=step: f"{name}, {n} at step {step}: {m}")
        assert torch.equal(sae.tokens_since_fired, tokens_silent), f"{name} at step {step}"
    if case.kind in TOPK_FAMILY:  # AuxK had dead latents to work with (or, with none, openai's b_dec-only term)
        assert (True, True) in auxk_seen if case.silent else auxk_seen == [(False, True)] * steps, auxk_seen
    if case.kind == 'jumprelu':  # the thresholds learnt through the straight-through estimators
        assert not torch.equal(p['log_threshold'], torch.full_like(p['log_threshold'], math.log(0.05)))


def test_batchtopk_clips_before_the_decoder_renormalisation():
    check_steps('batchtopk-clip', Case('batchtopk', dict(grad_clip=0.05)))


def test_matryoshka_auxk_is_0_when_no_dead_latent_is_positive():
    """GlobalBatchTopKMatryoshkaSAE.get_auxiliary_loss: no AuxK (and no gradient from it) when no dead latent has a
    positive pre-activation in the batch (BatchTopKSAE's keeps aux_penalty·mean(r²) then, as autoencoder.py does)."""
    sae = case_sae(CASES['matryoshka_batchtopk'], seed=1)
    dead = torch.arange(F) % 3 == 0
    with torch.no_grad():
        sae.b_enc[dead] = -100.0  # every dead latent's pre-activation is negative: ê = 0
    x = data(B, 3)
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    ref = ref_loss(p, x, sae.cfg, 0.0, sae.scale.item(), sae.mse_scale.item(), dead)
    assert sae.loss(x, dead=dead)['loss'].item() == pytest.approx(ref.item(), rel=1e-5)


def test_cases_show_the_absolute_warmups():
    """The jumprelu case runs inside its warm-ups: lr cosine from 0.1·lr over 4 steps, λ linear from 0 over 6."""
    r = Recipe(**{**RECIPES['jumprelu'], 'lr': 1.0, **CASES['jumprelu'].recipe}, max_steps=10)
    assert [ref_lr(s, r) for s in (0, 2, 4, 9)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [ref_l1(s, r) / r.l1_coeff for s in (0, 3, 6, 9)] == pytest.approx([0.0, 0.5, 1.0, 1.0])


@pytest.mark.parametrize('name', list(CASES))
def test_autograd_loss_equals_the_reference(name):
    """SparseAutoencoder.loss (autograd, or the sparse path; fused=False for the L1 kinds) is each paper's loss."""
    case = CASES[name]
    sae = case_sae(case, seed=1)
    cfg = sae.cfg
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(F) + 0.5)  # non-unit columns: norms matter to april2024's L1
    x = data(B, 3)
    dead = torch.arange(F) % 3 == 0 if case.silent else torch.zeros(F, dtype=torch.bool)
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    ref = ref_loss(p, x, cfg, 0.05, sae.scale.item(), sae.mse_scale.item(), dead)
    ref.backward()
    out = sae.loss(x, l1_coeff=0.05, dead=dead, sparse=case.sparse)
    out['loss'].backward()
    assert out['loss'].item() == pytest.approx(ref.item(), rel=1e-5)
    for n, q in sae.named_parameters():
        torch.testing.assert_close(q.grad, p[n].grad, rtol=1e-4, atol=1e-6, msg=n)


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
    # no dead latent: ê = b_dec (0 here) on every row
    out0 = sae.loss(x, dead=torch.zeros(4, dtype=torch.bool))
    by_hand0 = (e ** 2).mean() / ((e - e.mean(0)) ** 2).mean()
    assert out0['aux'].item() == pytest.approx(by_hand0.item(), rel=1e-6)


def test_recipes_hold_the_published_values():
    """RECIPES states each paper's numbers (a typo here would silently change every run of that kind)."""
    a, b, t = RECIPES['anthropic2023'], RECIPES['april2024'], RECIPES['topk']
    assert (a['lr'], a['l1_coeff'], a['grad_clip'], a['decay_frac'], a['l1_warmup_frac']) == (3e-4, 1e-3, 0, 0, 0)
    assert (b['lr'], b['l1_coeff'], b['l1_warmup_frac'], b['decay_frac'], b['grad_clip']) == (5e-5, 5.0, .05, .2, 1.)
    assert b['adam_betas'] == (0.9, 0.999) and b['warmup_frac'] == 0
    assert (t['lr'], t['adam_eps'], t['grad_clip']) == (1e-4, 6.25e-10, 0)
    for kind in ('batchtopk', 'matryoshka_batchtopk'):  # matryoshka_sae config.py: no schedule, no clipping
        k = RECIPES[kind]
        assert (k['lr'], k['adam_betas'], k['adam_eps'], k['grad_clip'], k['l1_coeff']) == (3e-4, (.9, .99), 1e-8, 0, 0)
        assert k['warmup_frac'] == k['warmup_steps'] == k['decay_frac'] == k['l1_warmup_frac'] == 0
    j = RECIPES['jumprelu']  # Gemma Scope sec. 3.2: cosine lr warm-up from 0.1·lr over 1,000 steps, λ over 10,000
    assert (j['lr'], j['adam_betas'], j['adam_eps'], j['grad_clip'], j['decay_frac']) == (7e-5, (0, .999), 1e-8, 0, 0)
    assert (j['warmup_steps'], j['warmup_shape'], j['warmup_start']) == (1000, 'cosine', 0.1)
    assert j['l1_warmup_steps'] == 10_000 and j['warmup_frac'] == j['l1_warmup_frac'] == 0


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
