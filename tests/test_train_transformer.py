"""train_transformer.py run as a user runs it, on a tiny synthetic token stream."""
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import TINY_MODEL, make_token_dataset, run_failing, run_script


def train(data: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return run_script('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *TINY_MODEL,
                      '--eval_iters=4', '--warmup_iters=2', *extra)


def test_loss_falls_in_30_iters(tiny_data, tmp_path):
    p = train(tiny_data, str(tmp_path / 'out'), '--max_iters=30', '--eval_interval=30', '--learning_rate=1e-2',
              '--lr_decay_iters=30')
    ck = torch.load(tmp_path / 'out' / 'transformer' / 'ckpt.pt', weights_only=True)
    last = torch.load(tmp_path / 'out' / 'transformer' / 'last.pt', weights_only=True)
    assert ck['iter_num'] == 30 and last['complete'] and set(ck) >= {'model', 'model_args', 'optimizer',
                                                                     'iter_num', 'best_val_loss', 'config'}
    assert ck['best_val_loss'] < 0.6 * math.log(64)  # the loss at init is ln(vocab)
    assert not any(k.startswith('_orig_mod.') or k.startswith('module.') for k in ck['model'])
    assert 'tokens/s' in p.stdout and 'next: python generate_activations.py' in p.stdout


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    common = ('--eval_interval=10', '--decay_lr=False', '--learning_rate=3e-3')
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    train(tiny_data, a, '--max_iters=10', *common)  # "crashes" after 10 iterations
    first = torch.load(os.path.join(a, 'transformer', 'last.pt'), weights_only=True)
    p = train(tiny_data, a, '--max_iters=20', '--init_from=resume', *common)
    assert 'resuming from' in p.stdout and 'at iter 10' in p.stdout
    train(tiny_data, b, '--max_iters=20', *common)
    ra = torch.load(os.path.join(a, 'transformer', 'last.pt'), weights_only=True)
    rb = torch.load(os.path.join(b, 'transformer', 'last.pt'), weights_only=True)
    assert ra['iter_num'] == rb['iter_num'] == 20
    assert first['optimizer']['state'][0]['step'].item() == 10  # the optimizer state was saved and continued
    assert ra['optimizer']['state'][0]['step'].item() == 20
    for k in rb['model']:
        torch.testing.assert_close(ra['model'][k], rb['model'][k], rtol=0, atol=0, msg=k)
    for i, s in rb['optimizer']['state'].items():
        torch.testing.assert_close(ra['optimizer']['state'][i]['exp_avg'], s['exp_avg'], rtol=0, atol=0)


def test_missing_data_dir_is_one_line(tmp_path):
    p = run_script('train_transformer.py', '--dataset=pystdlib_missing', f'--out_dir={tmp_path}', check=False)
    assert p.returncode != 0 and 'Traceback' not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and 'meta.json not found' in lines[0] and 'prepare' in lines[0]
    p = run_script('train_transformer.py', '--init_from=resume', f'--out_dir={tmp_path}/none', check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(shutil.which('torchrun') is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), 'torchrun')), reason='torchrun not installed')
def test_torchrun_two_ranks_identical_params(tiny_data, tmp_path):
    torchrun = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')
    out = str(tmp_path / 'ddp')
    args = [torchrun, '--standalone', '--nproc_per_node=2', 'train_transformer.py', f'--dataset={tiny_data}',
            f'--out_dir={out}', *TINY_MODEL, '--gradient_accumulation_steps=2', '--max_iters=4',
            '--eval_interval=4', '--eval_iters=2']
    p = run_script(*args, env={'OMP_NUM_THREADS': '1'})
    assert '2 rank(s)' in p.stdout
    assert 'ranks in sync: max |parameter difference| vs rank 0 = 0' in p.stdout
    ck = torch.load(os.path.join(out, 'transformer', 'last.pt'), weights_only=True)
    assert ck['iter_num'] == 4 and len(ck['batch_rng']) == 2
    assert not torch.equal(ck['batch_rng'][0], ck['batch_rng'][1])  # each rank draws its own batches


def test_torchrun_with_fewer_micro_steps_than_ranks(tiny_data, tmp_path):
    """The demo config (gradient_accumulation_steps=1) runs under 2 ranks: one micro-step per rank, with a note."""
    torchrun = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')
    p = run_script(torchrun, '--standalone', '--nproc_per_node=2', 'train_transformer.py', f'--dataset={tiny_data}',
                   f'--out_dir={tmp_path}', *TINY_MODEL, '--max_iters=2', '--eval_interval=2', '--eval_iters=1')
    assert 'each rank does 1 micro-step' in p.stdout and '2 rank(s)' in p.stdout
    assert 'max |parameter difference| vs rank 0 = 0' in p.stdout


@pytest.fixture(scope='module')
def good_run(tmp_path_factory) -> tuple[str, str]:
    """(dataset, out_dir) of 5 good iterations with 2 micro-steps each, saved at iteration 5."""
    tmp = tmp_path_factory.mktemp('good')
    data = make_token_dataset(str(tmp / 'data'))
    train(data, str(tmp / 'out'), '--max_iters=5', '--eval_interval=5', '--gradient_accumulation_steps=2')
    return data, str(tmp / 'out')


@pytest.mark.parametrize('eval_interval, caught_by', [
    (100, 'the training loss is nan at iteration 6 (micro-step 1 of 2)'),  # the check after the micro-steps
    (1, 'the train loss is nan at the evaluation of iteration 6'),  # the check before a save
], ids=['step', 'eval'])
def test_nan_loss_stops_without_saving(good_run, tmp_path, eval_interval, caught_by):
    """lr=1e30 makes the weights non-finite at the first update: one line, exit 2, the saved checkpoints intact."""
    data, out = good_run[0], str(tmp_path / 'out')
    shutil.copytree(good_run[1], out)
    ckpt_dir = os.path.join(out, 'transformer')
    before = {f: open(os.path.join(ckpt_dir, f), 'rb').read() for f in sorted(os.listdir(ckpt_dir))}
    assert sorted(before) == ['ckpt.pt', 'last.pt']
    code, lines, err = run_failing('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *TINY_MODEL,
                                   '--eval_iters=4', '--warmup_iters=2', '--gradient_accumulation_steps=2',
                                   '--init_from=resume', '--learning_rate=1e30', '--max_iters=30',
                                   f'--eval_interval={eval_interval}')
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert lines[0].startswith(f'error: {caught_by}: stopped before saving;')
    assert f"{os.path.join(ckpt_dir, 'last.pt')} (iteration 5) is untouched" in lines[0]
    assert 'lower --learning_rate (now 1e+30)' in lines[0]
    after = {f: open(os.path.join(ckpt_dir, f), 'rb').read() for f in sorted(os.listdir(ckpt_dir))}
    assert after == before  # byte for byte, and no temp file left behind
    p = train(data, out, '--gradient_accumulation_steps=2', '--init_from=resume', '--max_iters=7',
              '--eval_interval=7')  # the good checkpoint still resumes
    assert 'at iter 5' in p.stdout
