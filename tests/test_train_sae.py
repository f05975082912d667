"""train_sae.py run as a user runs it: tiny transformer -> harvest -> SAE, resume, DDP, export, errors."""
import json
import os
import shutil
import sys

import pytest
import torch

from autoencoder import load_saelens
from conftest import TINY_MODEL, make_token_dataset, run_script

SAE_ARGS = ['--n_features=128', '--batch_size=256', '--resample_steps=(20, 40)', '--resample_rows=2000',
            '--geometric_median_rows=1000', '--eval_interval=30', '--eval_contexts=8', '--final_eval_contexts=32',
            '--log_interval=10', '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=1000', '--lr=1e-3']


@pytest.fixture(scope='module')
def harvested(tmp_path_factory) -> str:
    """A run folder with a tiny trained transformer (relu, so an identity SAE is exact) and its harvest."""
    root = tmp_path_factory.mktemp('sae_run')
    data = make_token_dataset(str(root / 'data'))
    out = str(root / 'run')
    run_script('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *TINY_MODEL, '--activation=relu',
               '--max_iters=60', '--eval_interval=60', '--eval_iters=2', '--learning_rate=1e-2')
    run_script('generate_activations.py', f'--out_dir={out}', '--n_contexts=400', '--tokens_per_context=16',
               '--rows_per_shard=2000', '--device=cpu')
    return out


def copy_run(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def test_end_to_end_metrics_and_export(harvested, tmp_path):
    out = copy_run(harvested, tmp_path / 'run')
    p = run_script('train_sae.py', f'--out_dir={out}', '--max_steps=60', *SAE_ARGS)
    assert 'resampled' in p.stdout and 'next: python build_interface.py' in p.stdout
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
    run_script('train_sae.py', f'--out_dir={out}', f'--kind={kind}', '--k=8', '--max_steps=20', '--grad_clip=1.0',
               *SAE_ARGS)
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['kind'] == kind and m['fvu'] < 1.0
    if kind == 'topk':
        assert m['l0'] <= 8
    sae = load_saelens(os.path.join(out, 'sae'))
    assert sae.cfg.kind == kind


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


def test_torchrun_two_ranks_stay_in_sync(harvested, tmp_path):
    torchrun = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')
    out = copy_run(harvested, tmp_path / 'run')
    p = run_script(torchrun, '--standalone', '--nproc_per_node=2', 'train_sae.py', f'--out_dir={out}',
                   '--max_steps=30', *SAE_ARGS)
    assert '2 rank(s)' in p.stdout and 'resampled' in p.stdout
    assert 'ranks in sync: max |parameter difference| vs rank 0 = 0' in p.stdout
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['tokens_seen'] == 30 * 256 * 2
