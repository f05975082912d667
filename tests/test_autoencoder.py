"""The sparse autoencoder: constraints, resampling, geometric median, dictionary recovery, metrics, export."""
import copy
import json
import math

import pytest
import torch

from autoencoder import (KINDS, RECIPES, SAEConfig, SparseAutoencoder, col_norms, estimate_scale, fold_scale_,
                         geometric_median, init_b_dec_, l1_coeff_at, load_saelens, lr_at, make_adam,
                         remove_parallel_grad_, resample_dead_, sae_step_, save_saelens, saelens_cfg, silent_latents,
                         state_for_export)
from conftest import planted
from monosemanticity.metrics import MetricsAccumulator, batch_stats, evaluate_sae


def trained_state(sae: SparseAutoencoder, steps: int = 3, l1: float = 1e-2) -> torch.optim.Adam:
    """A few steps so Adam has state to inspect."""
    opt = make_adam(sae, 1e-3)
    for _ in range(steps):
        sae_step_(sae, opt, torch.randn(64, sae.cfg.d_in), l1)
    return opt


def fvu(sae: SparseAutoencoder, x: torch.Tensor) -> float:
    acc = MetricsAccumulator(sae.cfg.n_features)
    with torch.no_grad():
        acc.update(x, *sae(x))
    return acc.compute()['fvu']


# ----------------------------------------------------------------------------- step and constraints

def fused_case(kind: str, n: int, normalize: str = 'none') -> tuple[SparseAutoencoder, torch.Tensor]:
    """An SAE with non-trivial biases (and scale) and a batch that fires some of its features."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=12, n_features=n, kind=kind, normalize=normalize))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
        sae.W_dec.mul_(torch.rand(n) + 0.5)  # non-unit columns: april2024's L1 weights differ
        sae.scale.fill_(1.7 if kind == 'april2024' and normalize == 'none' else 1.0)
    return sae, torch.randn(24, 12) * 2 + 0.3


# fp32: (n_features, rel. tolerance of losses and gradients); bf16 matmuls: the same within bf16 rounding
FUSED_CASES = [(kind, n, normalize, dtype) for kind in ('anthropic2023', 'april2024') for n in (48, 40)
               for normalize in ('none', 'layer_norm') for dtype in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize('kind,n,normalize,dtype', FUSED_CASES,
                         ids=[f'{k}-F{n}-{nm}-{str(dt)[6:]}' for k, n, nm, dt in FUSED_CASES])
def test_fused_loss_equals_autograd(kind, n, normalize, dtype):
    """FusedL1Loss (loss(fused=True)) against the plain autograd loss: values and gradients, for any weights of
    recon and l1 in the loss being differentiated (F a multiple of 16 or not: padded scratch rows)."""
    sae, x = fused_case(kind, n, normalize)
    ref = copy.deepcopy(sae)
    with torch.autocast('cpu', dtype=dtype, enabled=dtype != torch.float32):
        out = sae.loss(x, l1_coeff=0.3, fused=True)
        want = ref.loss(x, l1_coeff=0.3)
    (out['recon'] * 1.5 + 0.3 * out['l1']).backward()
    (want['recon'] * 1.5 + 0.3 * want['l1']).backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-3)
    for key in ('loss', 'recon', 'l1', 'mse'):
        torch.testing.assert_close(out[key], want[key].detach(), **tol, msg=key)
    assert torch.equal(out['fired'], want['fired']) or dtype != torch.float32
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        g_tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else \
            dict(rtol=5e-2, atol=5e-3 * q.grad.abs().max())
        torch.testing.assert_close(p.grad, q.grad, **g_tol, msg=name)
        assert p.grad.is_contiguous() and p.grad.dtype == p.dtype, name


def test_fused_gradients_accumulate():
    """Two backward passes without zero_grad add up, though the gradients live in the Function's scratch buffers."""
    sae, x = fused_case('anthropic2023', 48)
    ref = copy.deepcopy(sae)
    for xb in (x, x.flip(0) * 0.5):
        sae.loss(xb, l1_coeff=0.3, fused=True)['loss'].backward()
        ref.loss(xb, l1_coeff=0.3)['loss'].backward()
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    first, _ = sae.loss(x, fused=True), sae.loss(x, fused=True)  # the second forward reuses the scratch buffers
    with pytest.raises(RuntimeError, match='scratch buffers were reused'):
        first['loss'].backward()


def test_fused_step_is_the_autograd_step():
    """sae_step_ runs one path (loss, backward, clip, Adam) whichever way the loss is computed: FusedL1Loss is an
    autograd.Function, so its gradients reach .grad like autograd's (and would reach a DDP wrapper's hooks)."""
    assert [k for k in KINDS if KINDS[k].fused] == ['anthropic2023', 'april2024']
    sae, x = fused_case('april2024', 40)
    ref = copy.deepcopy(sae)
    opt, ref_opt = make_adam(sae, 1e-2), make_adam(ref, 1e-2)
    for _ in range(3):
        a = sae_step_(sae, opt, x, 0.3, grad_clip=0.5)
        b = sae_step_(ref, ref_opt, x, 0.3, grad_clip=0.5, fused=False)
        torch.testing.assert_close(a['loss'], b['loss'], rtol=1e-5, atol=0)
    assert type(sae.loss(x, fused=True)['recon'].grad_fn).__name__ == 'FusedL1LossBackward'
    for (name, p), q in zip(sae.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=name)


def test_parallel_grad_removed():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=16, n_features=48))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(48) + 0.5)  # not unit norm: the projection must not assume it
    g = torch.randn(16, 48)
    sae.W_dec.grad = g.clone()
    remove_parallel_grad_(sae)
    W, G = sae.W_dec.detach(), sae.W_dec.grad
    assert torch.linalg.vecdot(G, W, dim=0).abs().max() < 1e-5
    perp = g - W * (torch.linalg.vecdot(g, W, dim=0) / torch.linalg.vecdot(W, W, dim=0))
    assert torch.allclose(G, perp, atol=1e-5)


@pytest.mark.parametrize('kind', ['anthropic2023', 'topk', 'batchtopk', 'jumprelu'])
def test_decoder_renormalised_where_its_reference_does(kind):
    """anthropic2023 and jumprelu renormalise the decoder columns after the step (unit norm between steps); topk
    (openai train.py) and batchtopk (the authors' code) after backward, before the step: unit norm when the step
    is taken, one Adam step off it after. Either way the parallel gradient is removed from unit columns."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=16, n_features=48, kind=kind, k=4))
    opt = make_adam(sae, 1e-2)
    at_step = []
    step = opt.step
    opt.step = lambda *a, **k: (at_step.append(col_norms(sae.W_dec.detach()).clone()), step(*a, **k))[1]
    before = kind in ('topk', 'batchtopk')
    for _ in range(3):
        sae_step_(sae, opt, torch.randn(32, 16) * 3, 1e-2)
        assert torch.allclose(at_step[-1], torch.ones(48), atol=1e-5)
        after = col_norms(sae.W_dec.detach())
        assert torch.allclose(after, torch.ones(48), atol=1e-5) != before, after


def test_step_bf16_close_to_fp32_and_counts_fired():
    torch.manual_seed(0)
    a = SparseAutoencoder(SAEConfig(d_in=16, n_features=48, weight_init='tied'))
    b = copy.deepcopy(a)
    x = torch.randn(64, 16)
    oa, ob = make_adam(a, 1e-3), make_adam(b, 1e-3)
    with torch.no_grad():
        fired = (a.encode(x) > 0).any(0)
    sa = sae_step_(a, oa, x, 1e-2, want_l0=True)
    c = copy.deepcopy(b)
    oc = make_adam(c, 1e-3)
    sb = sae_step_(b, ob, x, 1e-2, autocast_dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # the same, chosen by the caller's autocast context
        sc = sae_step_(c, oc, x, 1e-2)
    assert torch.equal(sb['loss'], sc['loss']) and torch.equal(b.W_enc, c.W_enc)
    assert abs(sa['loss'] - sb['loss']) < 2e-2 * sa['loss']
    assert torch.allclose(a.W_enc, b.W_enc, atol=2e-4)  # one Adam step of lr 1e-3: directions agree
    assert torch.equal(sa['fired'], fired)
    assert torch.equal(a.tokens_since_fired, torch.where(fired, 0, 64))
    assert 0 < sa['l0'] <= 48


# ----------------------------------------------------------------------------- resampling

def test_resampling_touches_exactly_the_dead():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, n_features=32))
    opt = trained_state(sae)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[[1, 5, 6, 20, 31]] = True
    idx = dead.nonzero().squeeze(1)
    alive_enc_norm = sae.W_enc.detach()[~dead].norm(dim=1).mean()
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    state = {n: {k: v.clone() for k, v in opt.state[p].items()} for n, p in sae.named_parameters()}
    counters = sae.tokens_since_fired.clone()
    rows = torch.randn(500, 8)
    out = resample_dead_(sae, opt, dead, rows, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, idx)
    P = dict(sae.named_parameters())
    # everything else bit-identical
    assert torch.equal(P['W_enc'][~dead], before['W_enc'][~dead])
    assert torch.equal(P['b_enc'][~dead], before['b_enc'][~dead])
    assert torch.equal(P['W_dec'][:, ~dead], before['W_dec'][:, ~dead])
    assert torch.equal(P['b_dec'], before['b_dec'])
    assert torch.equal(sae.tokens_since_fired[~dead], counters[~dead])
    assert (sae.tokens_since_fired[dead] == 0).all()
    sel = {'W_enc': (~dead,), 'b_enc': (~dead,), 'W_dec': (slice(None), ~dead), 'b_dec': (slice(None),)}
    dsel = {'W_enc': (dead,), 'b_enc': (dead,), 'W_dec': (slice(None), dead)}
    for n, p in P.items():
        for k in ('exp_avg', 'exp_avg_sq'):
            assert torch.equal(opt.state[p][k][sel[n]], state[n][k][sel[n]]), (n, k)
            if n in dsel:
                assert (opt.state[p][k][dsel[n]] == 0).all(), (n, k)
                assert (state[n][k][dsel[n]] != 0).any(), (n, k)  # they were not zero before
        assert torch.equal(opt.state[p]['step'], state[n]['step'])
    # the new values
    W_dec, W_enc = P['W_dec'].detach(), P['W_enc'].detach()
    assert torch.allclose(W_dec[:, idx].norm(dim=0), torch.ones(len(idx)), atol=1e-6)
    assert torch.allclose(W_enc[idx].norm(dim=1), 0.2 * alive_enc_norm.expand(len(idx)), rtol=1e-5)
    assert (P['b_enc'][idx] == 0).all()
    unit_rows = rows / rows.norm(dim=1, keepdim=True)
    assert ((unit_rows @ W_dec[:, idx]).max(0).values > 1 - 1e-6).all()  # each is a sampled row's direction
    assert torch.allclose(W_enc[idx] / W_enc[idx].norm(dim=1, keepdim=True), W_dec[:, idx].T, atol=1e-6)


def test_resampling_samples_proportional_to_loss_squared():
    # W_enc = b_enc = b_dec = 0 -> f = 0, x̂ = 0, loss(x) = ‖x‖²: rows √1·e0, √2·e1, √3·e2 have losses 1, 2, 3
    sae = SparseAutoencoder(SAEConfig(d_in=4, n_features=300))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.zero_()
    opt = make_adam(sae, 1e-3)
    n_per = 10000
    rows = torch.cat([math.sqrt(g + 1) * torch.eye(4)[g].expand(n_per, 4) for g in range(3)])
    dead = torch.zeros(300, dtype=torch.bool)
    dead[:280] = True
    idx = resample_dead_(sae, opt, dead, rows, generator=torch.Generator().manual_seed(0))
    group = sae.W_dec.detach()[:, idx].argmax(0)  # which group each new decoder column came from
    counts = torch.bincount(group, minlength=3).double()
    p = torch.tensor([1.0, 4.0, 9.0]) / 14
    expected = p * len(idx)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 13.8, (counts, expected)  # 2 dof, p = 0.001


# ----------------------------------------------------------------------------- geometric median

def test_geometric_median_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(7, 2, generator=g) * torch.tensor([1.0, 2.0])
    m = geometric_median(pts, iters=500)
    grid = torch.stack(torch.meshgrid(torch.linspace(-3, 3, 601), torch.linspace(-3, 3, 601), indexing='ij'), -1)
    cost = torch.cdist(grid.reshape(-1, 2).double(), pts.double()).sum(1)  # Σ‖x - m‖ on a 0.01 grid
    best = grid.reshape(-1, 2)[cost.argmin()]
    total = (pts - m).norm(dim=1).sum()
    assert total <= cost.min() + 1e-6
    assert (m - best).norm() < 0.02


def test_geometric_median_is_robust_to_outliers():
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.randn(99, 3, generator=g) * 0.1 + 1.0, torch.full((1, 3), 1000.0)])
    m = geometric_median(pts)
    assert (m - 1.0).norm() < 0.1
    assert (pts.mean(0) - 1.0).norm() > 10


# ----------------------------------------------------------------------------- training on a planted dictionary

def test_anthropic2023_recovers_planted_dictionary():
    torch.manual_seed(0)
    D, batch = planted()
    sae = SparseAutoencoder(SAEConfig(d_in=32, n_features=128))
    init_b_dec_(sae, batch(1024))
    opt = make_adam(sae, 1e-3)
    for step in range(2000):
        sae_step_(sae, opt, batch(256), 1e-2)
        if step == 1000:
            resample_dead_(sae, opt, silent_latents(sae, 256 * 250), batch(4096), torch.Generator().manual_seed(0))
    W = sae.W_dec.detach()
    max_cos = (D @ (W / W.norm(dim=0))).max(1).values  # (64,) best match of each true feature
    assert max_cos.mean() > 0.9, max_cos
    assert fvu(sae, batch(2048)) < 0.3


def test_topk_and_april2024_reach_low_fvu():
    torch.manual_seed(0)
    _, batch = planted()
    sae = SparseAutoencoder(SAEConfig(d_in=32, n_features=128, kind='topk', k=4, auxk_dead_tokens=256 * 50))
    init_b_dec_(sae, batch(1024))
    opt = make_adam(sae, 1e-3)
    for _ in range(1500):
        sae_step_(sae, opt, batch(256))
    assert fvu(sae, batch(2048)) < 0.15

    steps, lr = 1500, 1e-3
    sae = SparseAutoencoder(SAEConfig(d_in=32, n_features=128, kind='april2024'))
    sae.scale.fill_(estimate_scale(batch(4096)))
    opt = make_adam(sae, lr)
    for step in range(steps):
        for group in opt.param_groups:
            group['lr'] = lr_at(step, steps, lr)
        sae_step_(sae, opt, batch(256), l1_coeff_at(step, steps, 1.0), grad_clip=1.0)
    assert fvu(sae, batch(2048)) < 0.15


def test_auxk_revives_dead_latents():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, n_features=32, kind='topk', k=2, auxk_dead_tokens=1))
    sae.tokens_since_fired.fill_(5)  # all dead for AuxK
    out = sae.loss(torch.randn(16, 8))
    assert out['aux'] > 0
    out['loss'].backward()
    assert sae.W_enc.grad.abs().sum(1).gt(0).sum() > 2  # more than the k firing latents get gradient


# ----------------------------------------------------------------------------- schedules, scale

def test_schedules_and_scale():
    assert l1_coeff_at(0, 1000, 5.0) == 0 and l1_coeff_at(25, 1000, 5.0) == 2.5 and l1_coeff_at(60, 1000, 5.0) == 5
    assert lr_at(0, 1000, 1.0) == 0.1 and lr_at(500, 1000, 1.0) == 1.0
    assert lr_at(900, 1000, 1.0) == pytest.approx(0.5) and lr_at(1000, 1000, 1.0) == 0
    x = torch.randn(1000, 16) * 7 + 3
    s = estimate_scale(x)
    assert (s * x).norm(dim=1).mean() == pytest.approx(4.0, rel=1e-5)


# ----------------------------------------------------------------------------- metrics

def test_metrics_accumulator_by_hand():
    x1 = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    x2 = torch.tensor([[2.0, 4.0]])
    xh1 = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    xh2 = torch.tensor([[2.0, 2.0]])
    f1 = torch.tensor([[0.0, 1.0, 0.0], [2.0, -1.0, 0.0]])
    f2 = torch.tensor([[0.0, 3.0, 0.0]])
    acc = MetricsAccumulator(3)
    acc.update(x1, xh1, f1)
    acc.update(x2, xh2, f2)
    m = acc.compute()
    # errors: rows [0,-1], [1,0], [0,2] -> Σ = 1 + 1 + 4 = 6; mean x = (2, 2); Σ‖x - mean‖² = 5 + 1 + 4 = 10
    assert m['mse'] == pytest.approx(6 / 6) and m['fvu'] == pytest.approx(6 / 10)
    assert m['l0'] == pytest.approx(4 / 3) and m['l1'] == pytest.approx(7 / 3)
    assert m['n_tokens'] == 3 and m['dead_frac'] == pytest.approx(1 / 3) and m['ultralow_frac'] == 0
    assert torch.allclose(m['density'], torch.tensor([1 / 3, 1.0, 0.0]))
    assert sum(m['density_hist']['counts']) == 2 and len(m['density_hist']['edges']) == 41
    # ultralow: alive with density < 1e-5 (needs a long window: add sums directly)
    acc = MetricsAccumulator(3)
    s = batch_stats(x1, xh1, f1)
    s.update(n=torch.tensor(10 ** 6), fire=torch.tensor([0, 5, 500]))
    acc.add(s)
    m = acc.compute()
    assert m['dead_frac'] == pytest.approx(1 / 3) and m['ultralow_frac'] == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- export

@pytest.mark.parametrize('kind', ['anthropic2023', 'april2024', 'topk'])
def test_saelens_export_round_trip(kind, tmp_path):
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, n_features=24, kind=kind, k=3))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.1)
        if kind == 'april2024':
            sae.scale.fill_(0.37)
    x = torch.randn(10, 8) * 3
    cfg = saelens_cfg(sae, 'blocks.0.mlp_hidden', model_name='tiny', hook_layer=0, context_size=64)
    save_saelens(sae, str(tmp_path / 'sae'), cfg)
    written = json.loads((tmp_path / 'sae' / 'cfg.json').read_text())
    assert written['architecture'] == ('topk' if kind == 'topk' else 'standard')
    assert written['apply_b_dec_to_input'] == (kind != 'april2024') and written['d_sae'] == 24
    assert written['hook_name'] == 'blocks.0.mlp_hidden' and written['normalize_activations'] == 'none'
    if kind == 'topk':
        assert written['k'] == 3
    back = load_saelens(str(tmp_path / 'sae'))
    assert torch.allclose(back.encode(x), sae.encode(x), atol=1e-5)
    assert torch.allclose(back(x)[0], sae(x)[0], atol=1e-5)
    # SAELens' own formula on the exported tensors gives the same features
    sd = state_for_export(sae)
    assert sd['W_enc'].shape == (8, 24) and sd['W_dec'].shape == (24, 8)
    pre = (x - sd['b_dec'] * written['apply_b_dec_to_input']) @ sd['W_enc'] + sd['b_enc']
    assert torch.allclose(sae.activate(pre), sae.encode(x), atol=1e-5)
    assert torch.allclose(sae.activate(pre) @ sd['W_dec'] + sd['b_dec'], sae(x)[0], atol=1e-5)


def test_fold_scale_keeps_the_function():
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=8, n_features=24, kind='april2024'))
    sae.scale.fill_(2.5)
    x = torch.randn(10, 8)
    x_hat, f = sae(x)
    fold_scale_(sae)
    assert sae.scale.item() == 1.0
    assert torch.allclose(sae(x)[0], x_hat, atol=1e-5) and torch.allclose(sae(x)[1], f, atol=1e-5)


def test_evaluate_sae_identity_and_zero_reconstruction():
    """loss_recovered is 1 for an SAE that reconstructs exactly and 0 for one that outputs zeros."""
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(block_size=16, vocab_size=61, n_layer=1, n_head=2, n_embd=8, activation='relu')).eval()
    d = 32  # mlp_hidden width; relu makes it non-negative, so ReLU(I x) = x exactly
    sae = SparseAutoencoder(SAEConfig(d_in=d, n_features=d))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(d))
        sae.W_dec.copy_(torch.eye(d))
        sae.b_enc.zero_()
    x = torch.randint(61, (3, 16), generator=torch.Generator().manual_seed(1))
    batches = [(x[:, :-1], x[:, 1:])]
    mean = torch.rand(d)
    m = evaluate_sae(sae, gpt, 'blocks.0.mlp_hidden', batches, mean)
    assert m['loss_recovered'] == pytest.approx(1.0, abs=1e-5)
    assert m['ce_spliced'] == pytest.approx(m['ce_clean'], abs=1e-5) and m['kl_spliced'] == pytest.approx(0, abs=1e-6)
    assert m['fvu'] == pytest.approx(0, abs=1e-10) and m['eval_tokens'] == 45
    assert m['ce_zero_ablation'] != pytest.approx(m['ce_clean'], abs=1e-4)
    with torch.no_grad():
        sae.W_dec.zero_()
    m = evaluate_sae(sae, gpt, 'blocks.0.mlp_hidden', batches, mean)
    assert m['loss_recovered'] == pytest.approx(0.0, abs=1e-5)
    assert m['ce_spliced'] == pytest.approx(m['ce_zero_ablation'], abs=1e-5)


def test_a_new_kind_is_one_class(tmp_path):
    """A kind defined in one place (here: a BatchTopK-like class in this test) trains through the real step, is
    dead-counted, exported and loaded back, with nothing else changed (autoencoder.py's kinds block)."""
    import autoencoder as ae

    @ae.register
    class BatchTopKToy(ae.TopK):
        name = 'batchtopk_toy'  # keep the k·B largest activations over the whole batch (Bussmann et al. 2024)

        def activate(self, sae, pre):
            flat = pre.relu().flatten()
            keep = flat.topk(sae.cfg.k * pre.shape[0], sorted=False).indices
            return torch.zeros_like(flat).scatter_(0, keep, flat[keep]).view_as(pre)

    try:
        torch.manual_seed(0)
        sae = SparseAutoencoder(SAEConfig(d_in=8, n_features=32, kind='batchtopk_toy', k=2))
        rows = torch.randn(256, 8)
        ae.init_from_data_(sae, rows)
        opt = make_adam(sae, 1e-3)
        recipe = ae.Recipe(**BatchTopKToy.recipe, max_steps=5)
        for step in range(5):
            stats = ae.train_step_(sae, opt, rows[step * 32:(step + 1) * 32], step, recipe, want_l0=True)
        assert stats['l0'] == 2.0 and torch.isfinite(stats['loss'])  # k per row on average over the batch ...
        per_row = (sae.encode(rows) > 0).sum(1)
        assert per_row.sum() == 2 * len(rows) and (per_row != 2).any()  # ... not k in every row: the kind's own
        save_saelens(sae, str(tmp_path / 'sae'), saelens_cfg(sae, 'blocks.0.mlp_hidden'))
        back = load_saelens(str(tmp_path / 'sae'))
        assert back.cfg.kind == 'batchtopk_toy' and torch.equal(back.encode(rows), sae.encode(rows))
    finally:
        del KINDS['batchtopk_toy'], RECIPES['batchtopk_toy']


def test_bf16_step_never_reads_garbage_from_its_scratch_buffers(monkeypatch):
    """The fused step's scratch buffers are padded; bf16 GEMMs read a strided operand's padding. Fresh memory that
    happens to hold NaN bit patterns (here: every torch.empty) must not reach the loss or the weights."""
    real_empty = torch.empty
    monkeypatch.setattr(torch, 'empty', lambda *a, **kw: real_empty(*a, **kw).fill_(float('nan'))
                        if (kw.get('dtype') or torch.get_default_dtype()).is_floating_point else real_empty(*a, **kw))
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=16, n_features=48))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape) * 0.1)
    opt = make_adam(sae, 1e-3)
    for _ in range(3):
        stats = sae_step_(sae, opt, torch.randn(64, 16), 1e-2, autocast_dtype=torch.bfloat16)
        assert torch.isfinite(stats['loss'])
    assert all(torch.isfinite(p).all() for p in sae.parameters())
