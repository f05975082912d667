"""Every number in train_sae.py's metrics.json, recomputed by brute force from what the run exported.

train_sae.py trains a tiny SAE (tiny transformer + harvest, as tests/test_train_sae.py), then is resumed for its
final evaluation only (anthropic2023: over > 10⁶ val tokens; topk: 131_072), after the biases of a few features
(topk: and the scale of their encoder rows) were set in ckpt.pt so that they fire on exactly 0, 1, a few, tens
and hundreds of those tokens: densities on each side of the 1e-6 / 1e-5 / 1e-4 boundaries, so that the dead and
ultralow definitions are pinned by the data and not only by the code. val.bin drifts half-way, so that the
eval batches differ in mean.

The brute force reads sae_weights.safetensors + cfg.json (the export), data_mean from ckpt.pt and the transformer
checkpoint, runs the model over the same contexts as train_sae.py's evaluate() (n spread evenly over val.bin) and
computes each metric from its definition in float64 (per-token tensors, summed over batches of contexts), with
none of autoencoder.py's or monosemanticity/metrics.py's code:
    l0  = mean over tokens of #{i: f_i ≠ 0}         mse = Σ‖x - x̂‖² / (n·d)     fvu = Σ‖x - x̂‖² / Σ‖x - x̄‖²
    l1  = mean over tokens of Σ_i |f_i|             density_i = #{tokens: f_i ≠ 0} / n
    dead = density 0, ultralow = alive with density < 1e-5, alive_frac = 1 - dead_frac
    ce_* = mean next-token CE with the site clean / replaced by x̂ / by 0 / by ckpt.pt's data_mean
    loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean) (and with ce_mean for the mean-ablation one)
    kl_spliced = mean over tokens of KL(clean ‖ spliced) of the next-token distributions.
Whether f_i ≠ 0 on a token is decided in float64 here and in float32 by the script: a pre-activation (or a top-k
boundary) within a float32 rounding bound of the decision is counted as "either", and the counts compared as
ranges; every crafted feature is far from its boundary, so its count is compared exactly.
"""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_MODEL, make_token_dataset, run_script
from model import load_gpt

N_CTX = 31_600  # contexts of the big final evaluation: 31_600 × 32 = 1_011_200 tokens > 10⁶
T = 32  # TINY_MODEL's block_size (the store's context length)
MODEL = [a for a in TINY_MODEL if not a.startswith('--n_embd')] + ['--n_embd=8']  # the site is 32 wide
EVAL_BATCH = 1024  # contexts per forward, in the script and here
SAE_ARGS = ['--n_features=32', '--k=8', '--batch_size=256', '--max_steps=40', '--resample_steps=(20,)',
            '--resample_rows=2000', '--geometric_median_rows=1000', '--eval_interval=1000', '--log_interval=10',
            '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=1000', '--lr=1e-3',
            f'--eval_batch_size={EVAL_BATCH}']
# crafted features: range id -> allowed range of fire counts over the n eval tokens (empty ranges are skipped)
CRAFT = {0: lambda n: (0, 0),  # dead
         1: lambda n: (1, math.ceil(n * 1e-6) - 1),  # density < 1e-6: alive, ultralow
         2: lambda n: (math.ceil(n * 1e-6), math.ceil(n * 1e-5) - 1),  # [1e-6, 1e-5): ultralow
         3: lambda n: (math.ceil(n * 1e-5), math.ceil(n * 1e-4) - 1),  # [1e-5, 1e-4): alive, not ultralow
         4: lambda n: (math.ceil(n * 1e-4), math.ceil(n * 1e-3) - 1)}  # [1e-4, 1e-3)
ROUND = 1e-5  # relative bound on float32 rounding of a pre-activation (|W||x| + |b| scale): generous


@pytest.fixture(scope='module')
def harvested(tmp_path_factory) -> str:
    """A tiny trained transformer (relu, 8 wide: a 32-wide site) and its harvest; val.bin holds N_CTX contexts."""
    root = tmp_path_factory.mktemp('metrics_run')
    data = make_token_dataset(str(root / 'data'), n_val=N_CTX * T + 64)
    # val.bin drifts: its second half counts in steps of 5, not 3 (other activations, another mean), so that the
    # eval batches differ in mean and fvu's x̄ has to be the mean over all of them
    val = np.fromfile(os.path.join(data, 'val.bin'), dtype=np.uint16)
    half = len(val) // 2
    val[half:] = (np.arange(len(val) - half) * 5 + np.random.default_rng(1).integers(0, 2, len(val) - half)) % 63
    val.tofile(os.path.join(data, 'val.bin'))
    out = str(root / 'run')
    run_script('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *MODEL, '--activation=relu',
               '--max_iters=60', '--eval_interval=60', '--eval_iters=2', '--learning_rate=1e-2', '--warmup_iters=5',
               '--lr_decay_iters=60', '--min_lr=1e-3')  # CE ~2.1 (not ~ln 64): the site matters for the CE metrics
    run_script('generate_activations.py', f'--out_dir={out}', '--n_contexts=400', '--tokens_per_context=16',
               '--rows_per_shard=2000', '--device=cpu')
    return out


def eval_batches(out: str, n_ctx: int):
    """(x, y) batches of the contexts train_sae.py's evaluate(n_ctx) uses: n spread evenly over val.bin."""
    data_dir = torch.load(os.path.join(out, 'transformer', 'ckpt.pt'), weights_only=False)['data']['dataset']
    meta = json.load(open(os.path.join(data_dir, 'meta.json')))
    val = np.fromfile(os.path.join(data_dir, 'val.bin'), dtype=meta['dtype'])
    n = min(n_ctx, (len(val) - 1) // T)
    starts = np.arange(n) * ((len(val) - 1 - T) // (n - 1))
    for i in range(0, n, EVAL_BATCH):
        idx = torch.from_numpy(np.stack([val[s:s + T + 1].astype(np.int64) for s in starts[i:i + EVAL_BATCH]]))
        yield idx[:, :-1], idx[:, 1:]


def preprocess(x: torch.Tensor, normalize: str, scale: float = 1.0):
    """The SAE's input space and the function back to input units (cfg normalize_activations)."""
    if normalize == 'layer_norm':
        mu = x.mean(-1, keepdim=True)
        sd = (x - mu).std(-1, keepdim=True)
        return (x - mu) / (sd + 1e-5), lambda y: y * sd + mu
    assert normalize == 'none', normalize
    return x * scale, lambda y: y / scale


def craft(out: str, kind: str, n_ctx: int) -> dict:
    """Give a few features of ckpt.pt a new b_enc (topk: and a scaled encoder row) so that each fires on a count
    in one CRAFT range over the eval tokens, with a wide margin on both sides of its threshold; for each range,
    the feature whose pre-activations have the widest gap there. Returns {range: (feature, count)}."""
    path = os.path.join(out, 'sae', 'ckpt.pt')
    ck = torch.load(path, weights_only=False)
    sd, cfg, site = ck['sae'], ck['sae_config'], ck['site']
    gpt = load_gpt(torch.load(os.path.join(out, 'transformer', 'ckpt.pt'), weights_only=False))
    W_enc, b_enc, b_dec = sd['W_enc'].double(), sd['b_enc'].double(), sd['b_dec'].double()  # (F, d), (F,), (d,)
    n = n_ctx * T
    ranges = {r: CRAFT[r](n) for r in CRAFT if CRAFT[r](n)[0] <= CRAFT[r](n)[1]}
    K = max(hi for lo, hi in ranges.values()) + 1
    tops, top, xn = [], 0.0, 0.0
    with torch.no_grad():
        for x, _ in eval_batches(out, n_ctx):
            h = gpt.run(x, capture=[site], need_logits=False)[2][site].reshape(-1, W_enc.shape[1]).double()
            xc = preprocess(h, cfg.get('normalize', 'none'), float(sd.get('scale', 1.0)))[0] - b_dec
            u = xc @ W_enc.T  # (B, F) without the bias
            tops.append(u.topk(K, dim=0).values)
            top = max(top, (u + b_enc).max().item())  # the largest pre-activation of any feature
            xn = max(xn, xc.norm(dim=1).max().item())
    u_top = torch.cat(tops).topk(K, dim=0).values  # (K, F): the K largest of each feature, descending
    scale = xn * W_enc.norm(dim=1)  # (F,) bound on |u|
    chosen = {}
    for r in sorted(ranges, key=lambda r: -ranges[r][1]):  # the dead one last: any feature will do
        lo, hi = ranges[r]
        free = [j for j in range(len(b_enc)) if j not in [c[0] for c in chosen.values()]]
        if hi == 0:
            j, m = free[0], 0
            t, gap = scale[j].item() * 2 + 1.0, scale[j].item()
        else:
            gaps = (u_top[lo - 1:hi] - u_top[lo:hi + 1]) / scale  # (hi - lo + 1, F): relative gap below the m-th
            g, i = gaps[:, free].max(0)
            j = free[int(g.argmax())]
            m = lo + int(i[free.index(j)])
            t, gap = ((u_top[m - 1, j] + u_top[m, j]) / 2).item(), (u_top[m - 1, j] - u_top[m, j]).item()
        # far from float32 rounding: the margin gap/2 is > 5 x brute_force's bound (≤ 2·ROUND·scale) on it
        assert gap > 20 * ROUND * scale[j].item(), (r, j, gap / scale[j].item())
        # topk: scale the row so that where it fires it beats every other feature (decoder scaled back)
        s = max(1.0, 4 * max(top, 1.0) / gap) if kind == 'topk' and m else 1.0
        sd['W_enc'][j] *= s
        sd['b_enc'][j] = -s * t
        sd['W_dec'][:, j] /= s
        chosen[r] = (j, m)
    torch.save(ck, path)
    return chosen


def brute_force(out: str, n_ctx: int) -> dict:
    """Every metric from the export, the transformer and ckpt.pt's data_mean (float64, from the definitions)."""
    sae_dir = os.path.join(out, 'sae')
    cfg = json.load(open(os.path.join(sae_dir, 'cfg.json')))
    w = {k: v.double() for k, v in load_file(os.path.join(sae_dir, 'sae_weights.safetensors')).items()}
    W_enc, W_dec, b_enc, b_dec = w['W_enc'], w['W_dec'], w['b_enc'], w['b_dec']  # (d, F), (F, d), (F,), (d,)
    d, F = W_enc.shape
    k = cfg.get('k') if cfg['architecture'] == 'topk' else None
    data_mean = torch.load(os.path.join(sae_dir, 'ckpt.pt'), weights_only=False)['data_mean'].float()
    gpt = load_gpt(torch.load(os.path.join(out, 'transformer', 'ckpt.pt'), weights_only=False))
    site = cfg['hook_name']
    col = W_enc.norm(dim=0)  # (F,)
    n, sse, l1, sum_x, sum_xx = 0, 0.0, 0.0, torch.zeros(d, dtype=torch.float64), 0.0
    fire = torch.zeros(F, dtype=torch.long)
    fire_lo, fire_hi = torch.zeros(F, dtype=torch.long), torch.zeros(F, dtype=torch.long)
    ce = {'clean': 0.0, 'spliced': 0.0, 'zero': 0.0, 'mean': 0.0}
    kl = 0.0
    shift = data_mean.double()  # Σ‖x - x̄‖² = Σ‖x - c‖² - n‖x̄ - c‖² for any c: c near x̄ keeps it exact in float64
    with torch.no_grad():
        for x, y in eval_batches(out, n_ctx):
            logits, _, acts = gpt.run(x, capture=[site])
            h = acts[site].reshape(-1, d).double()
            xs, back = preprocess(h, cfg.get('normalize_activations') or 'none')
            xc = xs - b_dec if cfg['apply_b_dec_to_input'] else xs
            pre = xc @ W_enc + b_enc  # (N, F)
            bound = ROUND * (xc.norm(dim=1, keepdim=True) * col + b_enc.abs())  # float32 rounding, per entry
            if k:
                vals, idx = pre.topk(k + 1, dim=1)
                f = torch.zeros_like(pre).scatter_(1, idx[:, :k], vals[:, :k]).relu()
                # certainly kept: above the (k+1)-th by more than both roundings; maybe kept: not below the k-th
                kth, kth1 = vals[:, k - 1:k], vals[:, k:k + 1]
                b_kth, b_kth1 = bound.gather(1, idx[:, k - 1:k]), bound.gather(1, idx[:, k:k + 1])
                sure = (pre > bound) & (pre - kth1 > bound + b_kth1)
                maybe = (pre > -bound) & (pre >= kth - bound - b_kth)
            else:
                f = pre.relu()
                sure, maybe = pre > bound, pre > -bound
            x_hat = back(f @ W_dec + b_dec)
            n += len(h)
            sse += (h - x_hat).pow(2).sum().item()
            sum_x += (h - shift).sum(0)
            sum_xx += (h - shift).pow(2).sum().item()
            l1 += f.abs().sum().item()
            fire += (f != 0).sum(0)
            fire_lo += sure.sum(0)
            fire_hi += maybe.sum(0)

            def ce_of(lg):
                return -torch.log_softmax(lg.double(), -1).gather(-1, y[..., None]).squeeze(-1)
            logits_s = gpt.run(x, replace={site: lambda a: x_hat.to(a.dtype).view_as(a)})[0]
            logp, logp_s = torch.log_softmax(logits.double(), -1), torch.log_softmax(logits_s.double(), -1)
            kl += (logp.exp() * (logp - logp_s)).sum().item()
            ce['clean'] += ce_of(logits).sum().item()
            ce['spliced'] += ce_of(logits_s).sum().item()
            ce['zero'] += ce_of(gpt.run(x, replace={site: lambda a: torch.zeros_like(a)})[0]).sum().item()
            ce['mean'] += ce_of(gpt.run(x, replace={site: lambda a: data_mean.expand_as(a)})[0]).sum().item()
    mean_c = sum_x / n
    m2 = sum_xx - n * mean_c.pow(2).sum().item()
    ce = {key: v / n for key, v in ce.items()}
    return {'n': n, 'F': F, 'mse': sse / (n * d), 'fvu': sse / m2, 'l1': l1 / n, 'fire': fire, 'fire_lo': fire_lo,
            'fire_hi': fire_hi, 'kl_spliced': kl / n, 'ce_clean': ce['clean'], 'ce_spliced': ce['spliced'],
            'ce_zero_ablation': ce['zero'], 'ce_mean_ablation': ce['mean'],
            'loss_recovered': (ce['zero'] - ce['spliced']) / (ce['zero'] - ce['clean']),
            'loss_recovered_mean_abl': (ce['mean'] - ce['spliced']) / (ce['mean'] - ce['clean'])}


@pytest.fixture(scope='module', params=[('anthropic2023', N_CTX), ('topk', 4096)], ids=['anthropic2023', 'topk'])
def run(request, harvested, tmp_path_factory):
    """train_sae.py trained, features crafted in ckpt.pt, then resumed for the final evaluation alone (over
    > 10⁶ tokens for anthropic2023; over 131_072 for topk, where no count gives a density in (0, 1e-6))."""
    kind, n_ctx = request.param
    out = str(tmp_path_factory.mktemp(f'metrics_{kind}') / 'run')
    shutil.copytree(harvested, out)
    args = [f'--out_dir={out}', f'--kind={kind}', *SAE_ARGS]
    run_script('train_sae.py', *args, '--final_eval_contexts=4')
    counts = craft(out, kind, n_ctx)
    p = run_script('train_sae.py', *args, '--init_from=resume', f'--final_eval_contexts={n_ctx}')
    assert 'resuming from' in p.stdout
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    return {'kind': kind, 'n_ctx': n_ctx, 'm': m, 'b': brute_force(out, n_ctx), 'counts': counts}


def test_eval_window(run):
    m, b = run['m'], run['b']
    assert b['n'] == run['n_ctx'] * T and (b['n'] > 10 ** 6 or run['kind'] != 'anthropic2023')
    assert m['eval_tokens'] == m['n_tokens'] == m['density_window_tokens'] == b['n']
    assert m['eval_contexts'] == run['n_ctx']


def test_density_l0_and_the_crafted_counts(run):
    m, b = run['m'], run['b']
    n, F = b['n'], b['F']
    density = torch.tensor(m['density'], dtype=torch.float64)
    assert len(density) == F
    count = (density * n).round().long()
    assert (density - count / n).abs().max() < 1e-8  # density is count / n (rounded to 8 decimals)
    assert ((b['fire_lo'] <= count) & (count <= b['fire_hi'])).all(), \
        [(j, int(count[j]), int(b['fire_lo'][j]), int(b['fire_hi'][j])) for j in range(F)]
    for r, (j, c) in run['counts'].items():  # the crafted features are unambiguous: exact
        assert b['fire_lo'][j] == b['fire_hi'][j] == b['fire'][j] == count[j] == c, (r, j)
        lo, hi = CRAFT[r](n)
        assert lo <= c <= hi
    assert b['fire_lo'].sum() / n - 1e-12 <= m['l0'] <= b['fire_hi'].sum() / n + 1e-12
    assert m['l0'] == pytest.approx(b['fire'].sum().item() / n, rel=1e-5)
    if run['kind'] == 'topk':
        assert m['l0'] <= 8


def test_dead_and_ultralow(run):
    m, b = run['m'], run['b']
    n, F, lo, hi = b['n'], b['F'], b['fire_lo'], b['fire_hi']
    # whatever float32 rounding decides for the ambiguous tokens, the fractions lie between these
    assert (hi == 0).sum() / F <= m['dead_frac'] <= (lo == 0).sum() / F
    ultra_sure = ((lo > 0) & (hi < 1e-5 * n)).sum() / F
    ultra_maybe = ((hi > 0) & (lo < 1e-5 * n)).sum() / F
    assert ultra_sure <= m['ultralow_frac'] <= ultra_maybe
    # and exactly as the exported density list classifies the features
    density = torch.tensor(m['density'], dtype=torch.float64)
    assert m['dead_frac'] == (density == 0).sum().item() / F
    assert m['ultralow_frac'] == ((density > 0) & (density < 1e-5)).sum().item() / F
    assert m['alive_frac'] == 1 - m['dead_frac']
    assert m['ultralow_frac_of_alive'] == pytest.approx(m['ultralow_frac'] / m['alive_frac'], rel=1e-12)
    # crafted features on each side of every boundary: dead | (0, 1e-6) | [1e-6, 1e-5) | [1e-5, 1e-4) | [1e-4, 1e-3)
    crafted = run['counts']
    assert set(crafted) == ({0, 1, 2, 3, 4} if n > 10 ** 6 else {0, 2, 3, 4})
    for r, (j, c) in crafted.items():
        assert (density[j] == 0) == (r == 0) and (0 < density[j] < 1e-5) == (r in (1, 2)), (r, j, c)


def test_density_histogram(run):
    m, b = run['m'], run['b']
    fire = b['fire']
    logd = (fire[fire > 0].double() / b['n']).log10().clamp(-8.0, 0.0)
    bins = ((logd + 8.0) / 8.0 * 40).floor().long().clamp(max=39)
    assert m['density_hist']['counts'] == torch.bincount(bins, minlength=40).tolist()
    assert m['density_hist']['edges'] == pytest.approx(np.linspace(-8, 0, 41).tolist())


@pytest.mark.parametrize('key, rel', [('mse', 1e-6), ('fvu', 1e-6), ('l1', 1e-5), ('ce_clean', 1e-6),
                                      ('ce_spliced', 1e-6), ('ce_zero_ablation', 1e-6), ('ce_mean_ablation', 1e-6),
                                      ('loss_recovered', 1e-4), ('loss_recovered_mean_abl', 1e-4),
                                      ('kl_spliced', 1e-4)])
def test_reconstruction_and_splice_metrics(run, key, rel):
    assert run['m'][key] == pytest.approx(run['b'][key], rel=rel), key



def test_ablation_ces_computed_once_per_cache(harvested):
    """evaluate_sae with a cache: a second SAE on the same batches gets the same zero/mean-ablation CEs as without
    the cache, with two transformer forwards per batch instead of four."""
    from autoencoder import SAEConfig, SparseAutoencoder
    from monosemanticity.metrics import evaluate_sae
    gpt = load_gpt(torch.load(os.path.join(harvested, 'transformer', 'ckpt.pt'), weights_only=True), 'cpu')
    calls, run = [], gpt.run
    gpt.run = lambda *a, **k: calls.append(1) or run(*a, **k)
    torch.manual_seed(0)
    saes = [SparseAutoencoder(SAEConfig(d_in=32, n_features=64, kind=kind, k=4)) for kind in ('topk', 'anthropic2023')]
    mean, cache = torch.zeros(32), {}
    first = evaluate_sae(saes[0], gpt, 'blocks.0.mlp_hidden', eval_batches(harvested, 16), mean, cache)
    n_first, calls[:] = len(calls), []
    cached = evaluate_sae(saes[1], gpt, 'blocks.0.mlp_hidden', eval_batches(harvested, 16), mean, cache)
    fresh = evaluate_sae(saes[1], gpt, 'blocks.0.mlp_hidden', eval_batches(harvested, 16), mean)
    assert len(calls) == n_first // 2 + n_first  # the cached call: clean + spliced only; the fresh one: all four
    for key in ('ce_zero_ablation', 'ce_mean_ablation', 'loss_recovered', 'loss_recovered_mean_abl', 'ce_spliced'):
        assert cached[key] == fresh[key], key
    assert first['ce_zero_ablation'] == cached['ce_zero_ablation']


def test_saes_evaluated_together_get_their_lone_metrics_bitwise(harvested):
    """evaluate_saes of several SAEs (three kinds, batchtopk in its inference mode) gives each exactly evaluate_sae's
    metrics of it alone, with one clean forward per batch for all of them (and the two ablations), one spliced
    forward per SAE; each SAE's training mode is restored."""
    from autoencoder import SAEConfig, SparseAutoencoder
    from monosemanticity.metrics import evaluate_sae, evaluate_saes
    gpt = load_gpt(torch.load(os.path.join(harvested, 'transformer', 'ckpt.pt'), weights_only=True), 'cpu')
    torch.manual_seed(0)
    saes = [SparseAutoencoder(SAEConfig(d_in=32, n_features=64, kind=kind, k=4))
            for kind in ('topk', 'anthropic2023', 'batchtopk')]
    saes[2].threshold.fill_(0.05)
    saes[1].eval()
    site, mean, n_ctx = 'blocks.0.mlp_hidden', torch.full((32,), 0.1), 3000  # 3 batches of EVAL_BATCH contexts
    alone = [evaluate_sae(sae, gpt, site, eval_batches(harvested, n_ctx), mean) for sae in saes]
    calls, run = [], gpt.run
    gpt.run = lambda *a, **k: calls.append('replaced' if k.get('replace') else 'clean') or run(*a, **k)
    together = evaluate_saes(saes, gpt, site, eval_batches(harvested, n_ctx), mean)
    assert calls.count('clean') == 3 and calls.count('replaced') == 3 * (len(saes) + 2)
    assert [sae.training for sae in saes] == [True, False, True]
    for a, b in zip(alone, together):
        assert torch.equal(a.pop('density'), b.pop('density')) and a == b
    assert len({r['ce_spliced'] for r in together}) == 3 and alone[0]['eval_tokens'] == n_ctx * T
    assert evaluate_saes([], gpt, site, eval_batches(harvested, n_ctx), mean) == []
