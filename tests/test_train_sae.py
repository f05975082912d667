"""train_sae.py run as a user runs it: tiny transformer -> harvest -> SAE, resume, DDP, export, errors."""
import json
import math
import os
import re
import shutil
import sys

import numpy as np
import pytest
import torch

from monosemanticity.store import ActivationStore
from autoencoder import load_saelens
from conftest import harvested_run, run_failing, run_script

SAE_ARGS = ['--n_features=128', '--batch_size=256', '--resample_steps=(20, 40)', '--resample_rows=2000',
            '--geometric_median_rows=1000', '--eval_interval=30', '--eval_contexts=8', '--final_eval_contexts=32',
            '--log_interval=10', '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=1000', '--lr=1e-3']


@pytest.fixture(scope='module')
def harvested(tmp_path_factory) -> str:
    """A run folder with a tiny trained transformer (relu, so an identity SAE is exact) and its harvest."""
    return harvested_run(tmp_path_factory.mktemp('sae_run'), 60, 400, '--activation=relu')


def copy_run(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def test_end_to_end_metrics_and_export(harvested, tmp_path):
    out = copy_run(harvested, tmp_path / 'run')
    p = run_script('train_sae.py', f'--out_dir={out}', '--max_steps=60', *SAE_ARGS)
    assert 'resampling dead neurons at steps 20, 40' in p.stdout and 'next: python build_interface.py' in p.stdout
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    for key in ('mse', 'fvu', 'l0', 'l1', 'dead_frac', 'ultralow_frac', 'density_hist', 'ce_clean', 'ce_spliced',
                'ce_zero_ablation', 'ce_mean_ablation', 'loss_recovered', 'loss_recovered_mean_abl', 'kl_spliced',
                'tokens_seen', 'density_window_tokens', 'config'):
        assert key in m, key
    assert m['tokens_seen'] == 60 * 256 and len(m['density']) == 128
    assert m['loss_recovered'] == pytest.approx((m['ce_zero_ablation'] - m['ce_spliced'])
                                                / (m['ce_zero_ablation'] - m['ce_clean']))
    assert 0 <= m['fvu'] < 1 and m['kl_spliced'] >= 0
    ck = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    assert ck['step'] == 60 and ck['complete']
    cfg = json.load(open(os.path.join(out, 'sae', 'cfg.json')))
    assert cfg['hook_name'] == 'blocks.0.mlp_hidden' and cfg['d_in'] == 64 and cfg['d_sae'] == 128
    sae = load_saelens(os.path.join(out, 'sae'))
    x = torch.rand(5, 64)
    W_enc, b_enc, b_dec = ck['sae']['W_enc'], ck['sae']['b_enc'], ck['sae']['b_dec']
    torch.testing.assert_close(sae.encode(x), torch.relu((x - b_dec) @ W_enc.T + b_enc))


def test_resume_equals_uninterrupted(harvested, tmp_path):
    a = copy_run(harvested, tmp_path / 'a')
    b = copy_run(harvested, tmp_path / 'b')
    run_script('train_sae.py', f'--out_dir={a}', '--max_steps=30', *SAE_ARGS)  # stops (crashes) at step 30
    p = run_script('train_sae.py', f'--out_dir={a}', '--max_steps=60', '--init_from=resume', *SAE_ARGS)
    assert 'resuming from' in p.stdout and 'at step 30' in p.stdout
    run_script('train_sae.py', f'--out_dir={b}', '--max_steps=60', *SAE_ARGS)
    ca = torch.load(os.path.join(a, 'sae', 'ckpt.pt'), weights_only=True)
    cb = torch.load(os.path.join(b, 'sae', 'ckpt.pt'), weights_only=True)
    assert ca['step'] == cb['step'] == 60
    for k in cb['sae']:
        torch.testing.assert_close(ca['sae'][k], cb['sae'][k], rtol=0, atol=0, msg=k)


def test_onthefly_source_trains(harvested, tmp_path):
    out = copy_run(harvested, tmp_path / 'run')
    shutil.rmtree(os.path.join(out, 'activations'))
    p = run_script('train_sae.py', f'--out_dir={out}', '--source=onthefly', '--max_steps=20', *SAE_ARGS)
    assert 'on the fly' in p.stdout
    assert json.load(open(os.path.join(out, 'sae', 'metrics.json')))['tokens_seen'] == 20 * 256


@pytest.mark.parametrize('kind', ['april2024', 'topk'])
def test_other_kinds_train_and_export(harvested, tmp_path, kind):
    out = copy_run(harvested, tmp_path / 'run')
    run_script('train_sae.py', f'--out_dir={out}', f'--kind={kind}', '--k=8', '--max_steps=20', '--l1_coeff=0.1',
               *SAE_ARGS)
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['kind'] == kind and m['fvu'] < 1.0
    if kind == 'topk':
        assert m['l0'] <= 8
    sae = load_saelens(os.path.join(out, 'sae'))
    assert sae.cfg.kind == kind


@pytest.mark.parametrize('kind', ['topk', 'batchtopk', 'matryoshka_batchtopk'])
def test_sparse_topk_is_the_default_step(harvested, tmp_path, kind):
    """train_sae.py trains the TopK family through sparse_topk_loss by default where it is the faster (sparse_topk
    'auto', here F 1024 >= 32·k): its weights are bitwise those of --sparse_topk=True, and equal the dense step's
    (--sparse_topk=False) to float rounding without being bitwise the same (they would be if the flag never reached
    the step)."""
    weights = {}
    for sparse in (None, False, True):
        out = copy_run(harvested, tmp_path / f'run_{sparse}')
        flag = [] if sparse is None else [f'--sparse_topk={sparse}']
        p = run_script('train_sae.py', f'--out_dir={out}', f'--kind={kind}', '--k=8', '--max_steps=20', *flag,
                       *SAE_ARGS, '--n_features=1024')
        how = f"{'dense' if sparse is False else 'sparse'} step (sparse_topk {'auto' if sparse is None else sparse})"
        assert how.lower() in p.stdout
        weights[sparse] = load_saelens(os.path.join(out, 'sae')).state_dict()
    assert all(torch.equal(v, weights[True][k]) for k, v in weights[None].items())
    differ = [k for k, v in weights[False].items() if not torch.equal(v, weights[True][k])]
    assert 'W_dec' in differ and 'W_enc' in differ
    for k, v in weights[False].items():
        torch.testing.assert_close(weights[True][k], v, rtol=1e-3, atol=1e-5, msg=k)


def test_sparse_topk_auto_keeps_the_dense_step_where_it_is_faster(harvested, tmp_path):
    """At F 128 (< 1024) sparse_topk='auto' trains by the dense step: weights bitwise those of --sparse_topk=False."""
    weights = {}
    for flag in ([], ['--sparse_topk=False']):
        out = copy_run(harvested, tmp_path / f'run_{len(flag)}')
        p = run_script('train_sae.py', f'--out_dir={out}', '--kind=topk', '--k=8', '--max_steps=20', *flag, *SAE_ARGS)
        assert 'dense step (sparse_topk' in p.stdout
        weights[len(flag)] = load_saelens(os.path.join(out, 'sae')).state_dict()
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())


def test_bad_inputs_are_one_line(harvested, tmp_path):
    p = run_script('train_sae.py', f'--out_dir={tmp_path}/nothing', *SAE_ARGS, check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and 'train_transformer.py' in p.stderr
    out = copy_run(harvested, tmp_path / 'run')
    shard = sorted(f for f in os.listdir(os.path.join(out, 'activations')) if f.endswith('.bin'))[0]
    with open(os.path.join(out, 'activations', shard), 'r+b') as f:
        f.truncate(100)
    p = run_script('train_sae.py', f'--out_dir={out}', *SAE_ARGS, check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and shard in p.stderr
    p = run_script('train_sae.py', f'--out_dir={harvested}', '--kind=sparse', *SAE_ARGS, check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and 'anthropic2023' in p.stderr
    p = run_script('train_sae.py', f'--out_dir={harvested}', '--sparse_topk=yes', *SAE_ARGS, check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and 'auto, True or False' in p.stderr


def test_torchrun_two_ranks_stay_in_sync(harvested, tmp_path):
    torchrun = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')
    out = copy_run(harvested, tmp_path / 'run')
    p = run_script(torchrun, '--standalone', '--nproc_per_node=2', 'train_sae.py', f'--out_dir={out}',
                   '--max_steps=30', *SAE_ARGS)
    assert '2 rank(s)' in p.stdout and 'resampled' in p.stdout
    assert 'ranks in sync: max |parameter difference| vs rank 0 = 0' in p.stdout
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['tokens_seen'] == 30 * 256 * 2
    assert m['resampled'][0]['window_tokens'] == 20 // 2 * 256 * 2  # half the interval, in both ranks' tokens


# ----------------------------------------------------------------------------- recipe elements in the real run

def brute_geometric_median(x: torch.Tensor, iters: int = 3000) -> torch.Tensor:
    """Weiszfeld's iteration in float64, run far past convergence."""
    x = x.double()
    m = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - m).norm(dim=1).clamp_min(1e-12)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m


@pytest.mark.parametrize('kind,normalize,init', [('anthropic2023', 'none', 'paper'), ('topk', 'none', 'paper'),
                                                 ('april2024', 'none', 'paper'), ('topk', 'layer_norm', 'paper'),
                                                 ('batchtopk', 'none', 'paper'), ('jumprelu', 'none', 'paper'),
                                                 ('anthropic2023', 'none', 'tied')])
def test_initialisation_of_a_run(harvested, tmp_path, kind, normalize, init):
    """What train_sae.py initialises (max_steps=0 saves the initial SAE), each kind as its paper / reference code:
    anthropic2023 the seed's nn.Linear default, untied (W_enc, b_enc ~ U(±1/√d)); topk openai's (W_enc nn.Linear,
    W_dec its transpose with unit columns, W_enc scaled so random unit inputs reconstruct with norm 1); batchtopk the
    authors' (kaiming_uniform_ W_enc, bound √(6/F), W_dec its transpose with unit columns, b_dec 0); jumprelu Gemma
    Scope's (W_enc = W_decᵀ, unit columns, b_dec 0); april2024 (W_enc = W_decᵀ, norm 0.1, the input scale); the
    weight_init='tied' option: W_enc = W_decᵀ for any kind. b_dec at the geometric median (anthropic2023, topk), topk's
    MSE normaliser."""
    out = copy_run(harvested, tmp_path / 'run')
    run_script('train_sae.py', f'--out_dir={out}', f'--kind={kind}', f'--normalize={normalize}', '--k=8',
               f'--weight_init={init}', '--max_steps=0', '--aux_coeff=0.25', '--k_aux=3', *SAE_ARGS)
    ckpt = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    assert (ckpt['sae_config']['aux_coeff'], ckpt['sae_config']['k_aux']) == (0.25, 3)  # train_sae.py's AuxK keys
    sd = ckpt['sae']
    rows = ActivationStore(os.path.join(out, 'activations')).sample(1000, seed=0).double()  # seed·7919 + 0
    if normalize == 'layer_norm':
        rows = (rows - rows.mean(1, keepdim=True)) / ((rows - rows.mean(1, keepdim=True)).std(1, keepdim=True) + 1e-5)
    W_enc, W_dec = sd['W_enc'], sd['W_dec']  # (F, d), (d, F)
    F_, d = W_enc.shape
    norms = W_dec.norm(dim=0)
    enc_dirs = W_enc / W_enc.norm(dim=1, keepdim=True)
    u = (W_dec / norms).flatten().double()  # the decoder's entries: uniform (kurtosis 1.8) from a kaiming / He-uniform
    kurtosis = ((u - u.mean()) ** 4).mean() / u.var() ** 2  # init, Gaussian (3) from the tied start's directions
    assert (kurtosis < 2.2) if init == 'paper' and kind != 'april2024' else (kurtosis > 2.7), kurtosis
    if kind in ('april2024', 'jumprelu') or init == 'tied':
        torch.testing.assert_close(W_enc, W_dec.T)  # tied at init
    elif kind == 'anthropic2023':  # untied uniforms
        assert (enc_dirs * (W_dec / norms).T).sum(1).abs().max() < 0.9
        assert W_enc.abs().max() <= 1 / math.sqrt(d) and W_enc.std() == pytest.approx(1 / math.sqrt(3 * d), rel=0.05)
        assert sd['b_enc'].abs().max() <= 1 / math.sqrt(d) and sd['b_enc'].std() > 0.5 / math.sqrt(3 * d)
    else:  # the encoder rows along the decoder columns, at their own scale
        torch.testing.assert_close(enc_dirs, (W_dec / norms).T)
        assert sd['b_enc'].abs().max() == 0
        if kind == 'batchtopk':
            assert W_enc.abs().max() <= math.sqrt(6 / F_) and W_enc.abs().max() > 0.9 * math.sqrt(6 / F_)
        else:  # topk: random unit inputs reconstruct with mean norm 1 (openai's init_from_data_)
            x = torch.randn(4096, d, generator=torch.Generator().manual_seed(3))
            x /= x.norm(dim=1, keepdim=True)
            pre = x @ W_enc.T
            f = torch.zeros_like(pre).scatter(-1, pre.topk(8, dim=-1).indices, pre.topk(8, dim=-1).values.relu())
            assert (f @ W_dec.T).norm(dim=1).mean().item() == pytest.approx(1.0, rel=0.03)
    if kind == 'april2024':
        assert sd['scale'].item() == pytest.approx(math.sqrt(64) / rows.norm(dim=1).mean().item(), rel=1e-5)
        assert sd['b_dec'].abs().max() == 0 and torch.allclose(norms, torch.full_like(norms, 0.1))
        return
    assert torch.allclose(norms, torch.ones_like(norms))
    if kind in ('batchtopk', 'jumprelu'):  # the authors' code, Gemma Scope: b_dec starts at 0
        assert sd['b_dec'].abs().max() == 0
        return
    assert sd['scale'].item() == 1.0
    median = brute_geometric_median(rows)
    assert not torch.allclose(rows.mean(0), median, atol=2e-5, rtol=1e-5)  # the mean would not pass below
    torch.testing.assert_close(sd['b_dec'].double(), median, atol=2e-5, rtol=1e-5)
    if kind == 'topk':
        assert sd['mse_scale'].item() == pytest.approx(1 / (rows - rows.mean(0)).pow(2).mean().item(), rel=1e-5)


def test_resampling_in_the_run(harvested, tmp_path):
    """At a resample step train_sae.py resamples exactly the features dead over the window (half the interval),
    each to a loss-weighted data row (unit norm) with encoder norm 0.2 x the mean alive one, b_enc 0 and fresh
    Adam state; nothing else changes. The resumed run has lr 0, so the checkpoint after it shows the resampling."""
    out = copy_run(harvested, tmp_path / 'run')
    args = [a for a in SAE_ARGS if not a.startswith('--lr')] + ['--l1_coeff=3e-3', '--lr=1e-2']
    run_script('train_sae.py', f'--out_dir={out}', '--max_steps=20', *args)
    before = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    p = run_script('train_sae.py', f'--out_dir={out}', '--max_steps=21', '--init_from=resume', *args[:-1], '--lr=0')
    after = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    a, b = before['sae'], after['sae']
    dead = a['tokens_since_fired'] >= 10 * 256  # window of the step-20 resampling: (20 - 0) // 2 steps
    n_dead = int(dead.sum())
    assert 0 < n_dead < 128 and f"step 20: resampled {n_dead} dead neurons" in p.stdout
    assert json.load(open(os.path.join(out, 'sae', 'metrics.json')))['resampled'] == [
        {'step': 20, 'n_dead': n_dead, 'window_tokens': 2560}]
    for key in ('W_enc', 'b_enc'):  # lr 0: the alive features are untouched
        assert torch.equal(a[key][~dead], b[key][~dead]), key
    torch.testing.assert_close(a['W_dec'][:, ~dead], b['W_dec'][:, ~dead])
    assert torch.all(b['b_enc'][dead] == 0)
    rows = ActivationStore(os.path.join(out, 'activations')).sample(2000, seed=20)  # resample_rows, seed·7919 + 20
    rows = rows / rows.norm(dim=1, keepdim=True)
    cos = (b['W_dec'][:, dead].T @ rows.T).max(1).values  # each new direction is one of the sampled rows
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)
    alive_norm = a['W_enc'][~dead].norm(dim=1).mean()
    torch.testing.assert_close(b['W_enc'][dead], b['W_dec'][:, dead].T * 0.2 * alive_norm, atol=1e-6, rtol=1e-5)
    # Adam: the resampled rows restarted from zero state, so after one step m² = (1-β1)²/(1-β2) · v exactly
    state = after['optimizer']['state'][0]  # W_enc
    m, v = state['exp_avg'][dead], state['exp_avg_sq'][dead]
    nz = v > 1e-30
    assert nz.any() and torch.allclose(m[nz] ** 2, 10 * v[nz], rtol=1e-3, atol=0)
    m_alive, v_alive = state['exp_avg'][~dead], state['exp_avg_sq'][~dead]
    nz = v_alive > 1e-30
    assert not torch.allclose(m_alive[nz] ** 2, 10 * v_alive[nz], rtol=1e-3, atol=0)


def test_no_resampling_is_announced(harvested, tmp_path):
    out = copy_run(harvested, tmp_path / 'run')
    p = run_script('train_sae.py', f'--out_dir={out}', '--max_steps=10', *SAE_ARGS)
    assert 'note: no resampling will happen' in p.stdout
    assert json.load(open(os.path.join(out, 'sae', 'metrics.json')))['resampled'] == []


def test_each_kind_brings_its_published_recipe(harvested, tmp_path):
    """--kind=april2024 runs the April 2024 recipe unless a key is given; the values in effect are shown by --help,
    the start-up line and metrics.json, and the run used them (the final lr is the decayed one)."""
    out = copy_run(harvested, tmp_path / 'run')
    args = [a for a in SAE_ARGS if not a.startswith('--lr')]
    p = run_script('train_sae.py', f'--out_dir={out}', '--kind=april2024', '--max_steps=40', *args)
    cfg = json.load(open(os.path.join(out, 'sae', 'metrics.json')))['config']
    assert (cfg['l1_warmup_frac'], cfg['decay_frac'], cfg['grad_clip'], cfg['lr'], cfg['l1_coeff']) == \
        (0.05, 0.2, 1.0, 5e-5, 5.0)
    assert tuple(cfg['adam_betas']) == (0.9, 0.999)
    assert ('lr 5e-05 (linear warm-up over 0 of the run, decay over 0.2 of the run), l1_coeff 5 (warm-up over 0.05 '
            'of the run), grad_clip 1') in p.stdout
    opt = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)['optimizer']
    assert opt['param_groups'][0]['lr'] == pytest.approx(5e-5 * 1 / 8)  # step 39 of 40: decay over the last 8
    assert opt['param_groups'][0]['betas'] == (0.9, 0.999)
    # a config file and the command line still win, and are type-checked against the kind's default
    conf = tmp_path / 'mine.py'
    conf.write_text("grad_clip = 0.5\nkind = 'april2024'\n")
    p = run_script('train_sae.py', str(conf), '--decay_frac=0', '--help')
    assert re.search(r"--grad_clip += 0.5\n", p.stdout) and re.search(r"--decay_frac += 0.0\n", p.stdout)
    assert re.search(r"--l1_warmup_frac += 0.05  \(kind='april2024' default\)", p.stdout)
    p = run_script('train_sae.py', '--kind=topk', '--help')
    assert re.search(r"--adam_eps += 6.25e-10  \(kind='topk' default\)", p.stdout)
    p = run_script('train_sae.py', '--grad_clip=big', check=False)
    assert p.returncode == 2 and 'grad_clip' in p.stderr and len(p.stderr.strip().splitlines()) == 1
    # jumprelu: Gemma Scope's warm-ups in steps, the lr's along a cosine from 0.1·lr; a fraction given as well is
    # one line saying to give one of the two
    p = run_script('train_sae.py', '--kind=jumprelu', '--help')
    for key, value in (('warmup_steps', '1000'), ('warmup_shape', "'cosine'"), ('warmup_start', '0.1'),
                       ('l1_warmup_steps', '10000'), ('warmup_frac', '0.0')):
        assert re.search(rf"--{key} += {value}  \(kind='jumprelu' default\)", p.stdout), key
    p = run_script('train_sae.py', f'--out_dir={out}', '--kind=jumprelu', '--warmup_frac=0.1', '--max_steps=2', *args,
                   check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert 'warmup_steps=1000 and warmup_frac=0.1: give one' in p.stderr


def test_non_finite_rows_stop_the_run(harvested, tmp_path):
    """A store with NaN rows: train_sae.py exits non-zero with one line and writes no metrics.json or export."""
    for where, n_bad in (('init', 400), ('step', 1)):
        out = copy_run(harvested, tmp_path / where)
        store = ActivationStore(os.path.join(out, 'activations'))
        shard = store.memmap(0)
        rows = np.memmap(shard.filename, dtype=shard.dtype, mode='r+', shape=shard.shape)
        rows[:n_bad] = np.nan
        rows.flush()
        code, lines, err = run_failing('train_sae.py', f'--out_dir={out}', '--max_steps=40', *SAE_ARGS)
        assert code == 2 and len(lines) == 1 and 'non-finite' in lines[0], err
        if where == 'step':
            assert lines[0].startswith('error: step ') and 'batch holds non-finite activations' in lines[0]
        else:  # found before training starts, in the rows sampled for the initialisation
            assert 'the activation rows hold non-finite values' in lines[0] and 'sampled rows' in lines[0]
        for name in ('metrics.json', 'sae_weights.safetensors', 'cfg.json'):
            assert not os.path.exists(os.path.join(out, 'sae', name)), name


def test_the_recipes_adam_reaches_the_optimizer(harvested, tmp_path):
    """The optimizer of the run has the recipe's Adam betas and eps (here the command line's betas and topk's eps
    6.25e-10), not Adam's defaults (0.9, 0.999) and 1e-8, which every other run of these tests uses."""
    out = copy_run(harvested, tmp_path / 'run')
    run_script('train_sae.py', f'--out_dir={out}', '--kind=topk', '--k=8', '--adam_betas=(0.5, 0.99)', '--max_steps=0',
               *SAE_ARGS)
    group = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)['optimizer']['param_groups'][0]
    assert tuple(group['betas']) == (0.5, 0.99) and group['eps'] == 6.25e-10
