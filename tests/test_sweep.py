"""A sweep (train_sae.py's `sweep` key): many SAEs on one stream, each as if trained alone; resume after kill -9;
the Pareto report; exports that load and match their metrics.json."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from autoencoder import RECIPES, load_saelens
from monosemanticity.common import UserError, token_windows
from conftest import REPO, harvested_run, run_script
from model import load_gpt
from monosemanticity.metrics import evaluate_sae
from monosemanticity.sweep import RUN_KEYS, pareto_table, plan_sweep, write_pareto

ARGS = ['--n_features=128', '--batch_size=256', '--resample_steps=(15, 30)', '--resample_rows=2000',
        '--geometric_median_rows=1000', '--eval_interval=20', '--eval_contexts=8', '--final_eval_contexts=32',
        '--log_interval=10', '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=20', '--max_steps=40']
# three kinds, two sizes, the run's recipe keys unset (each SAE takes its kind's) but one lr and one λ set
SWEEP = [dict(name='topk_k8', kind='topk', k=8, lr=1e-3),
         dict(name='a23_l1', kind='anthropic2023', l1_coeff=3e-3, lr=1e-3),
         dict(name='apr_64', kind='april2024', n_features=64)]
ALONE = {'topk_k8': ['--kind=topk', '--k=8', '--lr=1e-3'],
         'a23_l1': ['--kind=anthropic2023', '--l1_coeff=3e-3', '--lr=1e-3'],
         'apr_64': ['--kind=april2024', '--n_features=64']}
TIMING = ('train_seconds_this_run', 'tokens_per_s_this_run', 'config')


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> dict:
    """A tiny transformer, its harvest, and the sweep's config file."""
    root = tmp_path_factory.mktemp('sweep')
    out = harvested_run(root, 40, 300)
    conf = root / 'sweep_conf.py'
    conf.write_text(f"sweep = {SWEEP!r}\n")
    src = [f'--activations_dir={out}/activations', f'--transformer_ckpt={out}/transformer/ckpt.pt']
    return {'root': root, 'src': src, 'conf': str(conf), 'out': out}


def sweep_cmd(run: dict, out: str, *extra: str) -> list[str]:
    return ['train_sae.py', run['conf'], f'--out_dir={out}', *run['src'], *ARGS, *extra]


def load(path: str) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_sae(a: dict, b: dict) -> None:
    """Two checkpoints hold bitwise the same SAE, optimizer state and progress."""
    assert a['step'] == b['step'] and a['resampled'] == b['resampled']
    for k in b['sae']:
        torch.testing.assert_close(a['sae'][k], b['sae'][k], rtol=0, atol=0, msg=k)
    for i, s in b['optimizer']['state'].items():
        for k in s:
            torch.testing.assert_close(a['optimizer']['state'][i][k], s[k], rtol=0, atol=0)


def test_each_sae_of_a_sweep_equals_it_trained_alone(run):
    """Bitwise: every SAE sees the same batches and the same initial random state as alone, and its ops run on the
    same inputs with the same shapes and threads, so nothing may differ (timings and the config aside)."""
    out = str(run['root'] / 'sweep_run')
    p = run_script(*sweep_cmd(run, out))
    assert 'sweep of 3 SAEs' in p.stdout and 'a23_l1: resampling dead neurons at steps 15, 30' in p.stdout
    for name, flags in ALONE.items():
        alone = str(run['root'] / f'alone_{name}')
        run_script('train_sae.py', f'--out_dir={alone}', *run['src'], *ARGS, *flags)
        a, b = (os.path.join(d, 'ckpt.pt') for d in (os.path.join(out, 'sweep', name), os.path.join(alone, 'sae')))
        assert_same_sae(load(a), load(b))
        ma = json.load(open(os.path.join(out, 'sweep', name, 'metrics.json')))
        mb = json.load(open(os.path.join(alone, 'sae', 'metrics.json')))
        assert {k: v for k, v in ma.items() if k not in TIMING} == {k: v for k, v in mb.items() if k not in TIMING}
        assert ma['config']['name'] == name and sorted(os.listdir(os.path.join(out, 'sweep', name))) == \
            sorted(os.listdir(os.path.join(alone, 'sae')))


def test_pareto_report_and_exports(run):
    """pareto.json has one record per SAE and pareto.png is a PNG; a rewrite from the metrics.json files gives the same
    records; each export loads with load_saelens and an evaluation of it gives its metrics.json; a rerun skips what is
    done."""
    out = str(run['root'] / 'sweep_run')
    if not os.path.isdir(out):
        run_script(*sweep_cmd(run, out))
    sweep_dir = os.path.join(out, 'sweep')
    records = json.load(open(os.path.join(sweep_dir, 'pareto.json')))
    assert sorted(r['name'] for r in records) == sorted(ALONE)
    rec = {r['name']: r for r in records}
    assert rec['topk_k8']['k'] == 8 and rec['topk_k8']['l1_coeff'] is None and rec['apr_64']['n_features'] == 64
    assert rec['a23_l1']['l1_coeff'] == 3e-3 and rec['a23_l1']['sparsity'] == 'λ=0.003'
    assert all(r['tokens_seen'] == 40 * 256 for r in records)
    with open(os.path.join(sweep_dir, 'pareto.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert write_pareto(sweep_dir, RECIPES) == records and '| topk_k8 | topk |' in pareto_table(records)
    assert json.load(open(os.path.join(sweep_dir, 'pareto.json'))) == records
    gpt = load_gpt(load(os.path.join(run['out'], 'transformer', 'ckpt.pt')))
    val = np.fromfile(os.path.join(run['root'], 'data', 'val.bin'), dtype=np.uint16)
    starts = np.arange(32) * ((len(val) - 1 - 32) // 31)  # train_sae.py's evaluate: 32 contexts of 32 tokens
    idx = token_windows(val, starts, 33)
    for name in ALONE:
        d = os.path.join(sweep_dir, name)
        sae = load_saelens(d)
        m = json.load(open(os.path.join(d, 'metrics.json')))
        r = evaluate_sae(sae, gpt, m['site'], [(idx[i:i + 16, :-1], idx[i:i + 16, 1:]) for i in (0, 16)],
                         load(os.path.join(d, 'ckpt.pt'))['data_mean'])
        assert r['eval_tokens'] == m['eval_tokens'] and r['l0'] == pytest.approx(m['l0'], rel=1e-3)
        for k in ('fvu', 'loss_recovered', 'loss_recovered_mean_abl', 'ce_spliced', 'alive_frac'):
            assert r[k] == pytest.approx(m[k], rel=1e-3, abs=1e-5), (name, k)
    # a rerun of a finished sweep trains nothing and leaves the report as it is (make sweep then skips the site)
    mtime = os.stat(os.path.join(sweep_dir, 'pareto.json')).st_mtime_ns
    p = run_script(*sweep_cmd(run, out, '--init_from=resume'))
    assert 'done, skipped: topk_k8, a23_l1, apr_64' in p.stdout and 'pareto.json is unchanged' in p.stdout
    assert os.stat(os.path.join(sweep_dir, 'pareto.json')).st_mtime_ns == mtime
    assert json.load(open(os.path.join(sweep_dir, 'pareto.json'))) == records


def test_kill_9_then_resume_equals_uninterrupted(run):
    """kill -9 after some checkpoints, then --init_from=resume: every SAE ends bitwise where an uninterrupted sweep
    ends. One SAE's checkpoint is also deleted before the resume: it starts over while the others wait for the
    stream to reach their step (an SAE ahead of the others is the state a kill between two saves leaves)."""
    a, b = str(run['root'] / 'killed'), str(run['root'] / 'whole')
    extra = ['--max_steps=80', '--eval_contexts=32']
    proc = subprocess.Popen([sys.executable, *sweep_cmd(run, a, *extra)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1'})
    for line in proc.stdout:
        if line.startswith('step 40: topk_k8:'):  # its step-40 checkpoint is written (saved before evaluating)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpts = {n: load(os.path.join(a, 'sweep', n, 'ckpt.pt')) for n in ALONE}
    assert all(not c['complete'] and c['step'] in (20, 40) for c in ckpts.values())
    assert not any(os.path.exists(os.path.join(a, 'sweep', n, 'metrics.json')) for n in ALONE)
    os.remove(os.path.join(a, 'sweep', 'apr_64', 'ckpt.pt'))
    p = run_script(*sweep_cmd(run, a, *extra, '--init_from=resume'))
    assert 'resuming from' in p.stdout and 'at step 40' in p.stdout
    run_script(*sweep_cmd(run, b, *extra))
    for n in ALONE:
        ca, cb = (load(os.path.join(d, 'sweep', n, 'ckpt.pt')) for d in (a, b))
        assert ca['complete'] and ca['step'] == 80
        assert_same_sae(ca, cb)


def test_a_sweep_entry_is_checked():
    config = {'kind': 'topk', 'k': 32, 'n_features': 4096, 'lr': 1e-3, 'l1_coeff': 0.0, 'batch_size': 8,
              'adam_eps': 6.25e-10}
    plans = plan_sweep([dict(kind='april2024', n_features=512), dict(name='k8', k=8)], config, ['l1_coeff', 'adam_eps'],
                       RECIPES)
    assert plans[0]['name'] == 'april2024_n_features512' and plans[0]['l1_coeff'] == 5.0 and plans[0]['lr'] == 1e-3
    assert plans[0]['adam_eps'] == 1e-8 and plans[1]['adam_eps'] == 6.25e-10 and plans[1]['k'] == 8
    assert 'batch_size' in RUN_KEYS
    for entries, msg in (([dict(batch_size=4)], 'shared by every SAE'), ([dict(n_feature=8)], "did you mean"),
                         ([dict(k='8')], 'takes a int'), ([dict(k=8), dict(k=8)], 'taken'),
                         ([dict(kind='sparse')], 'not one of'), ([], 'empty'), ([3], 'not a dict')):
        with pytest.raises(UserError, match=msg):
            plan_sweep(entries, config, [], RECIPES)


def test_write_pareto_from_metrics_files(tmp_path):
    """The report is a function of the metrics.json files (what train_sae.py writes at a sweep's end)."""
    for name, kind, l0, k in (('a', 'topk', 8.0, 8), ('b', 'topk', 16.0, 16), ('c', 'april2024', 30.0, 32)):
        os.makedirs(tmp_path / name)
        m = dict(kind=kind, n_features=64, l0=l0, fvu=0.5, loss_recovered=0.9, loss_recovered_mean_abl=0.8,
                 kl_spliced=0.01, alive_frac=1.0, ultralow_frac_of_alive=0.0, tokens_seen=100,
                 train_seconds_this_run=1.0, config=dict(k=k, l1_coeff=5.0))
        (tmp_path / name / 'metrics.json').write_text(json.dumps(m))
    records = write_pareto(str(tmp_path), RECIPES)
    assert [r['name'] for r in records] == ['c', 'a', 'b'] and records[1]['sparsity'] == 'k=8'
    assert records[0]['sparsity'] == 'λ=5' and (tmp_path / 'pareto.png').stat().st_size > 1000
