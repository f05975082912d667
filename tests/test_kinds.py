"""The kinds after the first three, each against its paper's definition: BatchTopK (Bussmann et al. 2024),
Matryoshka BatchTopK (Bussmann et al. 2025), JumpReLU (Rajamanoharan et al. 2024). Per kind: the activation in
training and at inference, the loss terms and the straight-through gradients computed by hand, the estimated
threshold, the SAELens export (read by SAELens' own formulas and loaded back), a short training run on synthetic
data, and a train_sae.py run."""
import copy
import json
import math
import os
import sys

import pytest
import torch

from autoencoder import (KINDS, RECIPES, ConfigError, Recipe, SAEConfig, SparseAutoencoder, config_dict,
                         init_from_data_, kind_params, load_saelens, make_adam, matryoshka_widths, save_saelens,
                         saelens_cfg, state_for_export, train_step_)
from conftest import harvested_run, jumprelu_theta_grad, planted, run_script, sae_with_biases, skewed_rows
from monosemanticity.metrics import MetricsAccumulator

D, F, B = 12, 48, 32


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations)."""
    return skewed_rows(n, D, seed)


def make(kind: str, seed: int = 0, **kw) -> SparseAutoencoder:
    """An SAE with non-trivial biases."""
    return sae_with_biases(kind, D, F, seed, **{'k': 4, **kw})


# ----------------------------------------------------------------------------- BatchTopK

def test_batchtopk_keeps_the_k_times_B_largest_over_the_batch():
    """Training: the k·B largest ReLU'd pre-activations of the whole batch, so rows differ in their counts."""
    sae = make('batchtopk')
    with torch.no_grad():
        sae.b_enc.fill_(-0.3)  # some rows have few positive pre-activations
    x = data(B, 0)
    pre = sae.encode_pre(x)
    f = sae.loss(x)['f']
    assert int((f != 0).sum()) == 4 * B
    per_row = (f != 0).sum(1)
    assert (per_row != 4).any()
    flat = pre.relu().flatten()
    keep = flat.topk(4 * B).indices
    torch.testing.assert_close(f.flatten(), torch.zeros_like(flat).index_copy(0, keep, flat[keep]), rtol=0, atol=0)
    with torch.no_grad():
        sae.b_enc.fill_(-3.0)  # fewer than k·B positive pre-activations: ReLU comes first, no negative is kept
    pre = sae.encode_pre(x)
    assert 0 < int((pre > 0).sum()) < 4 * B
    f = sae.loss(x)['f']
    torch.testing.assert_close(f, pre.relu(), rtol=0, atol=0)


def test_batchtopk_threshold_is_the_running_mean_of_the_smallest_kept_activation():
    """θ ← 0.99·θ + 0.01·min{f > 0} after every training step, from 0 (the authors' update_threshold, SAELens)."""
    sae = make('batchtopk')
    init_from_data_(sae, data(256, 1))
    opt = make_adam(sae, 1e-2, RECIPES['batchtopk']['adam_betas'])
    recipe = Recipe(**{**RECIPES['batchtopk'], 'lr': 1e-2}, max_steps=8)
    theta = 0.0
    assert sae.threshold.item() == 0.0 and sae.threshold.dtype == torch.float64
    for step in range(8):
        x = data(B, 10 + step)
        with torch.no_grad():
            f = sae.loss(x)['f']  # the step's own features (the parameters before its update)
        theta = 0.99 * theta + 0.01 * f[f > 0].min().item()
        train_step_(sae, opt, x, step, recipe)
        assert sae.threshold.item() == pytest.approx(theta, rel=1e-6)


def test_batchtopk_inference_uses_the_threshold():
    """eval(): f = ReLU(pre)·H(pre - θ), per row, independent of the batch; train(): the batch top-k."""
    sae = make('batchtopk')
    with torch.no_grad():
        sae.threshold.fill_(0.4)
    x = data(B, 2)
    pre = sae.encode_pre(x)
    sae.eval()
    f = sae.encode(x)
    torch.testing.assert_close(f, torch.where(pre > 0.4, pre, torch.zeros_like(pre)), rtol=0, atol=0)
    torch.testing.assert_close(sae.encode(x[:3]), f[:3], rtol=1e-5, atol=1e-6)  # no batch coupling
    assert int((f != 0).sum()) != 4 * B
    sae.train()
    assert int((sae.encode(x) != 0).sum()) == 4 * B


def test_batchtopk_recipe_and_auxk():
    """The authors' Adam settings; AuxK trains the dead latents (dead after auxk_dead_batches silent batches)."""
    r = RECIPES['batchtopk']
    assert (r['lr'], r['adam_betas'], r['adam_eps'], r['grad_clip'], r['l1_coeff']) == (3e-4, (0.9, 0.99), 1e-8, 0, 0)
    assert RECIPES['matryoshka_batchtopk'] == r
    sae = make('batchtopk', auxk_dead_batches=1)
    sae.tokens_since_fired.fill_(5)
    out = sae.loss(data(B, 3))
    assert out['aux'] > 0
    out['loss'].backward()
    assert sae.W_enc.grad.abs().sum(1).gt(0).sum() > (out['f'] != 0).any(0).sum()


@pytest.mark.parametrize('kind,batches', [('batchtopk', 5), ('matryoshka_batchtopk', 20)])
def test_bussmann_auxk_dead_after_the_authors_batches_with_k_aux_512(kind, batches):
    """topk_loss 'bussmann' (the default of both): a latent silent for n_batches_to_dead batches (5 in
    bartbussmann/BatchTopK's config.py, 20 in matryoshka_sae's) counting this one is dead; AuxK = mean((ê - e)²) with
    ê the decoder applied to the top 512 (top_k_aux) ReLU'd dead pre-activations, e = x - x̂ not detached."""
    n = 1024  # > 512 dead latents, so top_k_aux = 512 binds (d/2 = 6 would too)
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=n, kind=kind, k=4,
                                      matryoshka_widths=(64, 256, n) if kind == 'matryoshka_batchtopk' else ()))
    with torch.no_grad():
        sae.b_dec.copy_(data(1, 9)[0] * 0.5)
    x = data(B, 3)
    with torch.no_grad():
        sae.tokens_since_fired.fill_((batches - 1) * B)  # silent batches - 1 batches before this one
        sae.tokens_since_fired[:2] = (batches - 2) * B  # not yet dead after this batch
        fired = sae.loss(x)['fired']
    out = sae.loss(x)
    dead = ~fired
    dead[:2] = False
    assert dead.sum() > 512
    pre = sae.encode_pre(x)
    vals, idx = pre.masked_fill(~dead, -math.inf).topk(512, dim=-1)
    e_hat = torch.zeros_like(pre).scatter(-1, idx, vals.relu()) @ sae.W_dec.T
    x_hat = sae(x)[0]
    sae.train()
    torch.testing.assert_close(out['aux'], (e_hat - (x - x_hat)).pow(2).mean(), rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        sae.tokens_since_fired.fill_((batches - 2) * B)  # one batch short of dead: no AuxK
    assert sae.loss(x)['aux'].item() == 0


# ----------------------------------------------------------------------------- Matryoshka BatchTopK

@pytest.mark.parametrize('form', ['bussmann', 'openai'])
def test_matryoshka_loss_over_the_nested_prefixes(form):
    """x̂_m = f[:, :m] W_dec[:, :m]ᵀ + b_dec; 'bussmann' (the authors' code, the default): the mean of mse(x̂_m, x)
    over m = 0 (x̂_0 = b_dec) and every prefix; 'openai' (SAELens): Σ_m mse(x̂_m, x)·mse_scale; by hand, autograd."""
    widths = (6, 12, 30, F)
    sae = make('matryoshka_batchtopk', matryoshka_widths=widths, topk_loss='' if form == 'bussmann' else form)
    with torch.no_grad():
        sae.mse_scale.fill_(2.5)
    x = data(B, 4)
    out = sae.loss(x)  # no latent dead: the 'bussmann' AuxK is 0, openai's a constant (ê = b_dec, see test_recipes)
    out['recon'].backward()
    p = {n: q.detach().clone().requires_grad_(True) for n, q in sae.named_parameters()}
    pre = (x - p['b_dec']) @ p['W_enc'].T + p['b_enc']
    flat = pre.relu().flatten()
    keep = flat.topk(4 * B).indices
    f = torch.zeros_like(flat).index_copy(0, keep, flat[keep]).view_as(pre)
    prefix = [((f[:, :m] @ p['W_dec'][:, :m].T + p['b_dec'] - x) ** 2).mean() for m in (0, *widths)]
    ref = sum(prefix) / len(prefix) if form == 'bussmann' else sum(prefix[1:]) * 2.5
    ref.backward()
    assert out['recon'].item() == pytest.approx(ref.item(), rel=1e-5)
    assert (out['aux'].item() == 0) == (form == 'bussmann')
    assert out['loss'].item() == pytest.approx(ref.item() + sae.cfg.aux_coeff * out['aux'].item(), rel=1e-5)
    for name, q in sae.named_parameters():
        torch.testing.assert_close(q.grad, p[name].grad, rtol=1e-4, atol=1e-6, msg=name)


def test_matryoshka_prefixes_are_nested():
    cfg = SAEConfig(d_in=D, n_features=64, kind='matryoshka_batchtopk')
    assert matryoshka_widths(cfg) == (4, 8, 16, 32, 64)  # the authors' groups F/16, F/16, F/8, F/4, F/2
    for bad in ((8, 8, 64), (8, 16, 32), (0, 64), (32, 16, 64)):
        with pytest.raises(ConfigError, match='matryoshka_widths'):
            SAEConfig(d_in=D, n_features=64, kind='matryoshka_batchtopk', matryoshka_widths=bad)


# ----------------------------------------------------------------------------- JumpReLU

EPS = 0.001  # the paper's bandwidth


def jumprelu_case() -> tuple[SparseAutoencoder, torch.Tensor, torch.Tensor]:
    """A JumpReLU SAE whose thresholds sit next to some pre-activations: inside the kernel's window (|u| < 1/2),
    just outside it (1/2 < |u| < 1) and far away, so the pseudo-derivatives are non-zero and the window matters."""
    sae = make('jumprelu')
    x = data(B, 5)
    with torch.no_grad():
        pre = sae.encode_pre(x)
        theta = pre[0].abs() + 0.05  # (F,) far from most
        theta[::4] = pre[0, ::4] - 0.3 * EPS  # row 0 just above θ, inside the window
        theta[1::4] = pre[1, 1::4] + 0.2 * EPS  # row 1 just below θ, inside the window
        theta[2::4] = pre[2, 2::4] - 0.7 * EPS  # row 2 above θ, outside the window
        theta = theta.clamp_min(1e-4)
        sae.log_threshold.copy_(theta.log())
    return sae, x, theta


def test_jumprelu_is_pre_above_theta_and_zero_below():
    """pre = W_enc (x - b_dec) + b_enc (Gemma Scope's pre-encoder bias), f = pre·H(pre - θ)."""
    sae, x, theta = jumprelu_case()
    pre = (x - sae.b_dec.detach()) @ sae.W_enc.detach().T + sae.b_enc.detach()
    torch.testing.assert_close(sae.encode_pre(x), pre)
    f = sae.encode(x)
    torch.testing.assert_close(f, torch.where(pre > theta, pre, torch.zeros_like(pre)), rtol=0, atol=0)
    assert ((pre > 0) & (pre <= theta)).any()  # positive yet below θ: zero (not a ReLU)


def test_jumprelu_straight_through_gradients_by_hand():
    """loss = ‖x̂ - x‖² (sum over d, mean over batch) + λ·mean_b Σ_i H(pre - θ); the gradient of log θ is θ·(Σ_b
    dL/df·(-θ/ε)·K + λ/B·Σ_b (-1/ε)·K) with K the rectangle 1{|u| < 1/2}, u = (pre - θ)/ε; pre gets H(pre - θ)·dL/df
    and nothing from the L0 term."""
    sae, x, theta = jumprelu_case()
    lam = 0.3
    out = sae.loss(x, l1_coeff=lam)
    out['loss'].backward()
    W_enc, b_enc, W_dec, b_dec = (t.detach() for t in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    pre = (x - b_dec) @ W_enc.T + b_enc
    H = (pre > theta).float()
    f = pre * H
    err = f @ W_dec.T + b_dec - x
    assert out['recon'].item() == pytest.approx(err.pow(2).sum(1).mean().item(), rel=1e-5)
    assert out['l1'].item() == pytest.approx(H.sum(1).mean().item(), rel=1e-6)  # L0
    assert out['loss'].item() == pytest.approx(out['recon'].item() + lam * out['l1'].item(), rel=1e-6)
    grad, dL_df, K = jumprelu_theta_grad(pre, theta, err, W_dec, lam, EPS)
    u = (pre - theta) / EPS
    assert (K * H).sum() >= 3 and (K * (1 - H)).sum() >= 3 and ((u.abs() > 0.5) & (u.abs() < 1)).any()
    torch.testing.assert_close(sae.log_threshold.grad, grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sae.b_enc.grad, (H * dL_df).sum(0), rtol=1e-4, atol=1e-6)


def test_jumprelu_init_and_recipe():
    """θ = 0.001 at init, inputs scaled to E‖x‖² = 1, b_dec 0 (Gemma Scope: zero biases, though a pre-encoder bias
    trains), unit decoder columns, W_enc = W_decᵀ; the paper's Adam (β1 = 0); Gemma Scope's warm-ups in steps."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind='jumprelu'))
    assert sae.cfg.jumprelu_bandwidth == EPS
    torch.testing.assert_close(sae.log_threshold.detach().exp(), torch.full((F,), 0.001))
    rows = data(512, 6) * 5
    init_from_data_(sae, rows)
    assert (sae.scale * rows).pow(2).sum(1).mean().item() == pytest.approx(1.0, rel=1e-5)
    assert (sae.b_dec == 0).all() and (sae.b_enc == 0).all() and sae.kind.pre_bias
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(F))
    torch.testing.assert_close(sae.W_enc.detach(), sae.W_dec.detach().T)
    r = RECIPES['jumprelu']
    assert (r['lr'], r['adam_betas'], r['adam_eps']) == (7e-5, (0.0, 0.999), 1e-8)
    assert (r['warmup_steps'], r['warmup_shape'], r['warmup_start'], r['l1_warmup_steps']) == (1000, 'cosine', 0.1,
                                                                                             10_000)
    assert r['warmup_frac'] == r['l1_warmup_frac'] == 0 and r['l1_coeff'] > 0


# ----------------------------------------------------------------------------- SAELens export, training

KINDS3 = ['batchtopk', 'matryoshka_batchtopk', 'jumprelu']


def trained_like(kind: str) -> SparseAutoencoder:
    """An SAE of the kind in a non-trivial state: thresholds set, a dataset scale (jumprelu)."""
    sae = make(kind, matryoshka_widths=(6, 24, F) if kind == 'matryoshka_batchtopk' else ())
    with torch.no_grad():
        if kind == 'jumprelu':
            sae.log_threshold.copy_(torch.rand(F) * 0.5 + 0.05).log_()
            sae.scale.fill_(0.6)
        else:
            sae.threshold.fill_(0.37)
    return sae.eval()


@pytest.mark.parametrize('kind', KINDS3)
def test_saelens_export_is_jumprelu_and_loads_back(kind, tmp_path):
    """SAELens 6.x loads all three as its jumprelu SAE (BatchTopK and Matryoshka are saved so by SAELens too, with
    every threshold θ); its formula on the exported tensors gives our features; load_saelens gives them back."""
    sae = trained_like(kind)
    x = data(B, 7)
    save_saelens(sae, str(tmp_path / 'sae'), saelens_cfg(sae, 'blocks.0.mlp_hidden'))
    cfg = json.loads((tmp_path / 'sae' / 'cfg.json').read_text())
    assert cfg['architecture'] == 'jumprelu' and cfg['sae_kind'] == kind
    assert cfg['apply_b_dec_to_input'] == (kind != 'jumprelu')
    sd = state_for_export(sae)
    assert sorted(sd) == ['W_dec', 'W_enc', 'b_dec', 'b_enc', 'threshold'] and sd['threshold'].shape == (F,)
    pre = (x - sd['b_dec'] * cfg['apply_b_dec_to_input']) @ sd['W_enc'] + sd['b_enc']  # SAELens JumpReLUSAE
    f_saelens = torch.relu(pre) * (pre > sd['threshold'])
    f = sae.encode(x)
    torch.testing.assert_close(f_saelens, f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(f_saelens @ sd['W_dec'] + sd['b_dec'], sae(x)[0], rtol=1e-5, atol=1e-5)
    back = load_saelens(str(tmp_path / 'sae')).eval()
    assert back.cfg.kind == kind and back.cfg.matryoshka_widths == sae.cfg.matryoshka_widths
    torch.testing.assert_close(back.encode(x), f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back(x)[0], sae(x)[0], rtol=1e-5, atol=1e-5)
    if kind == 'jumprelu':  # as SAELens writes one (no sae_kind, b_dec applied): b_dec folded into b_enc
        from safetensors.torch import save_file
        saelens = {k: v for k, v in cfg.items() if k != 'sae_kind'}
        (tmp_path / 'sl').mkdir()
        (tmp_path / 'sl' / 'cfg.json').write_text(json.dumps({**saelens, 'apply_b_dec_to_input': True}))
        save_file(sd, str(tmp_path / 'sl' / 'sae_weights.safetensors'))
        pre = (x - sd['b_dec']) @ sd['W_enc'] + sd['b_enc']
        other = load_saelens(str(tmp_path / 'sl'))
        assert other.cfg.kind == 'jumprelu'
        torch.testing.assert_close(other.encode(x), torch.relu(pre) * (pre > sd['threshold']), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind', KINDS3)
def test_short_training_reaches_a_low_fvu(kind):
    """Its own recipe (a larger lr for a short run) on planted sparse data: FVU at inference well below 1."""
    torch.manual_seed(0)
    _, batch = planted()
    sae = SparseAutoencoder(SAEConfig(d_in=32, n_features=128, kind=kind, k=4, auxk_dead_tokens=256 * 50))
    init_from_data_(sae, batch(2048))
    steps = 600
    # θ moves ~lr per step; jumprelu's warm-ups scaled to the short run (1% and 5% of it)
    over = ({'lr': 1e-2, 'l1_coeff': 1e-2, 'warmup_steps': 6, 'l1_warmup_steps': 30} if kind == 'jumprelu'
            else {'lr': 1e-3})
    recipe = Recipe(**{**RECIPES[kind], **over}, max_steps=steps)
    opt = make_adam(sae, recipe.lr, recipe.adam_betas, recipe.adam_eps)
    for step in range(steps):
        train_step_(sae, opt, batch(256), step, recipe)
    sae.eval()
    x = batch(2048)
    acc = MetricsAccumulator(sae.cfg.n_features)
    with torch.no_grad():
        acc.update(x, *sae(x))
    m = acc.compute()
    assert m['fvu'] < (0.3 if kind == 'matryoshka_batchtopk' else 0.25), m['fvu']  # measured: 0.18, 0.24, 0.07
    assert 1 <= m['l0'] < 40, m['l0']
    if kind != 'jumprelu':  # the learned threshold gives about k per row at inference
        assert 3 <= m['l0'] <= 5, m['l0']


@pytest.fixture(scope='module')
def harvested(tmp_path_factory) -> str:
    """A run folder with a tiny trained transformer and its harvest (as tests/test_train_sae.py)."""
    return harvested_run(tmp_path_factory.mktemp('kinds_run'), 30, 200, '--activation=relu')


KIND_KEYS = {'batchtopk': [], 'matryoshka_batchtopk': ['--matryoshka_widths=(16, 64)'],
             'jumprelu': ['--jumprelu_bandwidth=0.002']}  # the kinds' own train_sae.py keys reach SAEConfig


@pytest.mark.parametrize('kind', KINDS3)
def test_train_sae_runs_each_kind(kind, harvested, tmp_path):
    """train_sae.py --kind=...: trains, evaluates with evaluate_sae, exports what load_saelens reads back."""
    import shutil
    out = str(tmp_path / 'run')
    shutil.copytree(harvested, out)
    run_script('train_sae.py', f'--out_dir={out}', f'--kind={kind}', '--k=4', '--n_features=64', '--batch_size=128',
               '--max_steps=30', '--lr=1e-3', '--geometric_median_rows=500', '--eval_interval=1000',
               '--eval_contexts=4', '--final_eval_contexts=8', '--log_interval=10', '--device=cpu',
               '--shuffle_buffer=1024', '--ckpt_interval=1000', *KIND_KEYS[kind])
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['kind'] == kind and 0 <= m['fvu'] < 1.5 and math.isfinite(m['loss_recovered']) and m['l0'] > 0
    cfg = json.load(open(os.path.join(out, 'sae', 'cfg.json')))
    assert cfg['architecture'] == 'jumprelu' and cfg['sae_kind'] == kind
    ck = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    sae = SparseAutoencoder(SAEConfig(**ck['sae_config']))
    sae.load_state_dict(ck['sae'])
    back = load_saelens(os.path.join(out, 'sae'))
    x = torch.rand(16, 64)
    torch.testing.assert_close(back.eval()(x)[0], copy.deepcopy(sae).eval()(x)[0], rtol=1e-4, atol=1e-5)
    if kind != 'jumprelu':
        assert sae.threshold.item() > 0  # estimated during the run
    assert ck['sae_config'].get('matryoshka_widths', ()) == ((16, 64) if kind == 'matryoshka_batchtopk' else ())
    assert ck['sae_config'].get('jumprelu_bandwidth', 0.001) == (0.002 if kind == 'jumprelu' else 0.001)


# ----------------------------------------------------------------------------- a new kind with a key of its own

NEW_KIND = '''
from dataclasses import dataclass

import autoencoder as ae


@ae.register
class ScaledTopK(ae.TopK):
    """TopK whose kept activations are multiplied by a hyperparameter of its own."""

    name = 'scaled_topk'

    @dataclass
    class Params(ae.TopK.Params):
        scaled_topk_factor: float = 1.0  # the kept activations times this

    def activate(self, sae, pre):
        return super().activate(sae, pre) * sae.cfg.scaled_topk_factor
'''


def test_a_new_kind_with_its_own_key_is_one_class(harvested, tmp_path):
    """A kind with a hyperparameter of its own, one class and nothing else (as tests/test_autoencoder.py's
    test_a_new_kind_is_one_class, which trains, exports and loads one back): SAEConfig takes the key, config_dict
    round-trips it; train_sae.py (the class registered first, as autoencoder.py's kinds are) lists it in --help, takes
    it on the command line and in sweep entries, builds each SAE with it and resumes from its checkpoints."""
    exec(NEW_KIND, {})
    try:
        assert kind_params()['scaled_topk_factor'] == 1.0 and RECIPES['scaled_topk'] == RECIPES['topk']
        cfg = SAEConfig(d_in=D, n_features=F, kind='scaled_topk', k=4, scaled_topk_factor=2.5)
        assert SAEConfig(**config_dict(SparseAutoencoder(cfg))) == cfg and cfg.scaled_topk_factor == 2.5
        assert 'scaled_topk_factor' not in config_dict(make('topk'))  # another kind's key, at its default
        x = data(B, 0)
        torch.testing.assert_close(make('scaled_topk', scaled_topk_factor=2.5).encode(x), 2.5 * make('topk').encode(x),
                                   rtol=0, atol=0)
    finally:
        del KINDS['scaled_topk'], RECIPES['scaled_topk']
    import shutil
    out = str(tmp_path / 'run')
    shutil.copytree(harvested, out)
    (tmp_path / 'sweep.py').write_text("sweep = [dict(name='x2', kind='scaled_topk', scaled_topk_factor=2),\n"
                                       "         dict(name='x_half', kind='scaled_topk')]\n")

    def train_sae(*args: str, check: bool = True):
        """train_sae.py in a process where the new kind was registered first."""
        runner = NEW_KIND + "import runpy, sys\nsys.argv[0] = 'train_sae.py'\nrunpy.run_path('train_sae.py')\n"
        return run_script(sys.executable, '-c', runner, *args, check=check)

    assert '--scaled_topk_factor' in train_sae('--help').stdout
    args = [str(tmp_path / 'sweep.py'), f'--out_dir={out}', '--scaled_topk_factor=0.5', '--k=4', '--n_features=64',
            '--batch_size=128', '--max_steps=20', '--lr=1e-3', '--geometric_median_rows=500', '--eval_interval=1000',
            '--eval_contexts=4', '--final_eval_contexts=8', '--log_interval=10', '--device=cpu',
            '--shuffle_buffer=1024', '--ckpt_interval=1000']
    train_sae(*args)
    for name, factor in (('x2', 2.0), ('x_half', 0.5)):
        ck = torch.load(os.path.join(out, 'sweep', name, 'ckpt.pt'), weights_only=True)
        assert ck['sae_config']['scaled_topk_factor'] == factor and ck['config']['scaled_topk_factor'] == factor
        m = json.load(open(os.path.join(out, 'sweep', name, 'metrics.json')))
        assert m['kind'] == 'scaled_topk' and m['config']['scaled_topk_factor'] == factor
    os.remove(os.path.join(out, 'sweep', 'x2', 'metrics.json'))  # x2 resumes from its complete checkpoint
    assert 'resuming from' in train_sae(*args, '--init_from=resume').stdout
    os.remove(os.path.join(out, 'sweep', 'x_half', 'metrics.json'))
    p = train_sae(*args, '--init_from=resume', '--scaled_topk_factor=0.25', check=False)  # x_half's key changed
    assert p.returncode == 2 and 'not the configured one' in p.stderr



def test_an_old_checkpoints_dead_tokens_is_read_as_auxk_dead_tokens():
    """Checkpoints written before the rename hold sae_config['dead_tokens']: they still load (and resume)."""
    cfg = SAEConfig(d_in=8, n_features=16, kind='topk', k=2, dead_tokens=5)
    assert cfg.auxk_dead_tokens == 5 and cfg == SAEConfig(d_in=8, n_features=16, kind='topk', k=2, auxk_dead_tokens=5)
