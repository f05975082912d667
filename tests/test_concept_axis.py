"""The concept axis (train_sae.py's final evaluation, monosemanticity/concept_axis.py): each SAE's best feature per
ground-truth concept and the site's best neuron against brute force, pareto.json's concept_f1 and pareto.png's third
panel; firing_counts (both of its ways) against brute force; without labels no axis (and the note); labels of other
tokens refused before training."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from autoencoder import load_saelens
from conftest import REPO, harvested_run, run_failing, run_script, write_concept_labels
from model import load_gpt
from monosemanticity.common import token_windows
from monosemanticity.concept_report import DENSE_FIRING_SHARE, THRESHOLD_FRACS, firing_counts
from monosemanticity.sweep import pareto_table

SWEEP = [dict(name='topk_64', kind='topk', n_features=64, k=4),
         dict(name='topk_128', kind='topk', n_features=128, k=4),
         dict(name='batchtopk_64', kind='batchtopk', n_features=64, k=4),
         dict(name='a23_64', kind='anthropic2023', n_features=64, l1_coeff=1e-3)]
ARGS = ['--batch_size=256', '--resample_steps=(10,)', '--resample_rows=2000', '--geometric_median_rows=1000',
        '--eval_interval=100', '--final_eval_contexts=8', '--concept_contexts=40', '--log_interval=10',
        '--device=cpu', '--shuffle_buffer=2048', '--ckpt_interval=100', '--max_steps=20', '--lr=1e-3']
T, N_CONTEXTS = 32, 40  # the tiny model's block_size; --concept_contexts
NAMES = ['even_token', 'small_token', 'after_eot', 'random', 'never']


def write_labels(data: str) -> np.ndarray:
    """concepts.json + concepts_val.bin for the tiny stream: (n_val, C) bools."""
    val = np.fromfile(os.path.join(data, 'val.bin'), dtype=np.uint16)
    y = np.zeros((len(val), len(NAMES)), dtype=bool)
    y[:, 0] = val % 2 == 0
    y[:, 1] = val < 12
    y[1:, 2] = val[:-1] == 63
    y[:, 3] = np.random.default_rng(0).random(len(val)) < 0.2
    write_concept_labels(data, NAMES, y)
    return y


@pytest.fixture(scope='module')
def run(tmp_path_factory) -> dict:
    """A tiny transformer and harvest, labels beside its dataset, and a sweep of four SAEs trained on it."""
    root = tmp_path_factory.mktemp('concept_axis')
    out = harvested_run(root, 40, 300)
    y = write_labels(str(root / 'data'))
    conf = root / 'sweep_conf.py'
    conf.write_text(f"sweep = {SWEEP!r}\n")
    p = run_script('train_sae.py', str(conf), f'--out_dir={out}', *ARGS)
    return {'root': root, 'out': out, 'y': y, 'stdout': p.stdout, 'data': str(root / 'data')}


def prf(fire: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp, n_fire, n_pos = float((fire & y).sum()), float(fire.sum()), float(y.sum())
    return (tp / n_fire if n_fire else np.nan, tp / n_pos if n_pos else np.nan,
            2 * tp / (n_fire + n_pos) if n_fire + n_pos else np.nan)


def unit_activations(run: dict) -> dict[str, np.ndarray]:
    """Per unit set ('neurons', each SAE) its (n, T, U) activations on the concept contexts, by hand: val contexts
    spread evenly over val.bin, SAEs in eval mode."""
    val = np.fromfile(os.path.join(run['data'], 'val.bin'), dtype=np.uint16)
    starts = np.arange(N_CONTEXTS) * ((len(val) - 1 - T) // (N_CONTEXTS - 1))
    gpt = load_gpt(torch.load(os.path.join(run['out'], 'transformer', 'ckpt.pt'), weights_only=True))
    with torch.no_grad():
        x = gpt.run(token_windows(val, starts, T), capture=['blocks.0.mlp_hidden'],
                    need_logits=False)[2]['blocks.0.mlp_hidden']
        acts = {'neurons': x}
        for e in SWEEP:
            sae = load_saelens(os.path.join(run['out'], 'sweep', e['name'])).eval()
            acts[e['name']] = sae.encode(x.reshape(-1, x.size(-1))).view(N_CONTEXTS, T, -1)
    return {k: v.float().numpy() for k, v in acts.items()} | {'starts': starts}


def check_unit(entry: list, acts: np.ndarray, y: np.ndarray) -> float:
    """entry [unit, threshold, P, R, F1]: the unit and threshold of highest EXPLAIN F1 (even contexts) over the
    grid, scored on the SCORE contexts (odd). Returns its SCORE F1."""
    explain, score = np.arange(0, N_CONTEXTS, 2), np.arange(1, N_CONTEXTS, 2)
    m = torch.from_numpy(acts[explain].reshape(-1, acts.shape[-1]).max(0))
    thr = np.where(m.numpy() > 0, (torch.tensor(THRESHOLD_FRACS)[:, None] * m).numpy(), np.inf)  # (G, U)
    f1e = np.nan_to_num([[prf(acts[explain, :, u] > thr[g, u], y[explain])[2] for u in range(acts.shape[-1])]
                         for g in range(len(THRESHOLD_FRACS))], nan=-1.0)
    u, threshold = entry[:2]
    g = int(np.argmin(np.abs(thr[:, u] - threshold)))
    assert thr[g, u] == pytest.approx(threshold, rel=1e-5)
    assert f1e[g, u] == pytest.approx(f1e.max(), abs=1e-12)  # the best (unit, threshold) on the EXPLAIN tokens
    want = prf(acts[score, :, u] > thr[g, u], y[score])
    for got, w in zip(entry[2:], want):
        assert (got is None) if np.isnan(w) else got == pytest.approx(w, abs=1e-4)
    return want[2]


def test_each_sae_best_feature_and_the_best_neuron_against_brute_force(run):
    acts = unit_activations(run)
    y = np.stack([run['y'][s:s + T] for s in acts['starts']])  # (n, T, C)
    for e in SWEEP:
        c_ = json.load(open(os.path.join(run['out'], 'sweep', e['name'], 'metrics.json')))['concepts']
        assert (c_['n_contexts'], c_['n_explain_tokens'], c_['n_score_tokens']) == (N_CONTEXTS, 20 * T, 20 * T)
        f1s, neuron_f1s = [], []
        for c, name in enumerate(NAMES):
            row = c_['concepts'][name]
            if not y[1::2, :, c].any():
                continue  # not scored (no positive SCORE token)
            f1s.append(check_unit(row['feature'], acts[e['name']], y[:, :, c]))
            neuron_f1s.append(check_unit(row['neuron'], acts['neurons'], y[:, :, c]))
            cand = row['candidates']
            assert cand[0][:2] == row['feature'][:2] and len({u for u, *_ in cand}) == len(cand) == 8
        assert c_['n_concepts_scored'] == len(f1s) == len(NAMES) - 1
        assert c_['median_best_f1'] == pytest.approx(np.median(f1s), abs=1e-4)
        assert c_['share_best_f1_at_least_0.5'] == pytest.approx(np.mean(np.array(f1s) >= 0.5), abs=1e-4)
        assert c_['neurons']['median_best_f1'] == pytest.approx(np.median(neuron_f1s), abs=1e-4)
        assert f"{e['name']}: concepts ({len(f1s)}, {20 * T:,} held-out tokens)" in run['stdout']


def png_width(path: str) -> int:
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n'
    return int.from_bytes(head[16:20], 'big')


def test_pareto_report_carries_the_concept_axis(run):
    sweep_dir = os.path.join(run['out'], 'sweep')
    records = json.load(open(os.path.join(sweep_dir, 'pareto.json')))
    assert sorted(r['name'] for r in records) == sorted(e['name'] for e in SWEEP)
    for r in records:
        m = json.load(open(os.path.join(sweep_dir, r['name'], 'metrics.json')))['concepts']
        assert (r['concept_f1'], r['concept_f1_neurons']) == (m['median_best_f1'], m['neurons']['median_best_f1'])
        assert f"| {r['concept_f1']:.3f} |" in pareto_table([r])
    assert png_width(os.path.join(sweep_dir, 'pareto.png')) > 1.4 * 11 * 120  # three panels, 5.5 in each, dpi 120


def test_without_labels_no_axis_and_the_note(run, tmp_path):
    data = os.path.join(run['data'])
    hidden = str(tmp_path / 'concepts.json')
    shutil.move(os.path.join(data, 'concepts.json'), hidden)
    try:
        out = str(tmp_path / 'single')
        p = run_script('train_sae.py', f"--activations_dir={run['out']}/activations",
                       f"--transformer_ckpt={run['out']}/transformer/ckpt.pt", f'--out_dir={out}', '--kind=topk',
                       '--k=4', '--n_features=64', *ARGS)
    finally:
        shutil.move(hidden, os.path.join(data, 'concepts.json'))
    assert 'concepts' not in json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert f"note: no concept labels in {data}" in p.stdout and f"label_concepts.py --data_dir={data}" in p.stdout


def test_labels_of_other_tokens_are_refused_before_training(run, tmp_path):
    path = os.path.join(run['data'], 'concepts.json')
    text = open(path).read()
    meta = json.loads(text)
    meta['splits']['val']['tokens'] += 1
    try:
        with open(path, 'w') as f:
            json.dump(meta, f)
        code, lines, _ = run_failing('train_sae.py', f"--activations_dir={run['out']}/activations",
                                     f"--transformer_ckpt={run['out']}/transformer/ckpt.pt",
                                     f"--out_dir={tmp_path / 'stale'}", *ARGS)
    finally:
        with open(path, 'w') as f:
            f.write(text)
    assert code == 2 and len(lines) == 1 and 'relabel with `python label_concepts.py' in lines[0]
    assert not os.path.exists(tmp_path / 'stale' / 'sae' / 'ckpt.pt')  # stopped before training


@pytest.mark.parametrize('shift, dense', [(-1.5, False), (0.5, True)])  # few units fire (sparse way), most (dense)
def test_firing_counts_against_brute_force(shift, dense):
    g = torch.Generator().manual_seed(0)
    a = torch.relu(torch.randn(300, 40, generator=g) + shift)
    a[:, 3] = 0  # a unit that never fires: threshold inf
    a[:, 5] = torch.tensor([0.0, 0.1, 0.2, 0.5, 1.0])[torch.randint(0, 5, (300,), generator=g)]  # ties: 0.5 x max = 0.5
    y = (torch.rand(300, 6, generator=g) < 0.3).float()
    m = a.max(0).values
    thr = torch.where(m > 0, torch.tensor(THRESHOLD_FRACS)[:, None] * m, torch.full((len(THRESHOLD_FRACS), 40),
                                                                                        torch.inf))
    assert (float((a > thr[0]).float().mean()) > DENSE_FIRING_SHARE) == dense
    counts = firing_counts(a, torch.cat([y, torch.ones(300, 1)], 1), thr)  # a column of ones: the firings
    tp, fires = counts[:, :, :-1], counts[:, :, -1]
    fire = a.numpy()[None] > thr.numpy()[:, None, :]  # (G, N, U)
    np.testing.assert_array_equal(tp.numpy(), np.einsum('gnu,nc->guc', fire, y.numpy()))
    np.testing.assert_array_equal(fires.numpy(), fire.sum(1))


def test_make_sweep_labels_the_concepts_before_training():
    """`make sweep` runs label_concepts.py (which skips up-to-date labels) before train_sae.py (make -n: the commands,
    none run), so the demo sweep's SAEs get the concept axis."""
    out = subprocess.run(['make', '-n', 'sweep', f'PYTHON={sys.executable}'], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.index('label_concepts.py --data_dir=data/pystdlib') < out.index('train_sae.py config/demo/sweep.py')


def test_a_sweep_done_before_the_labels_gets_its_axis_without_training(run, tmp_path):
    """--init_from=resume on a sweep whose SAEs are done, two of them without the concept axis (trained before the
    labels): the axis is added to their metrics.json from their exports, nothing else changes, pareto.json has it."""
    out = str(tmp_path / 'resumed')
    shutil.copytree(run['out'], out, symlinks=True)
    sweep_dir = os.path.join(out, 'sweep')
    before = {}
    for e in SWEEP:
        path = os.path.join(sweep_dir, e['name'], 'metrics.json')
        before[e['name']] = json.load(open(path))
        if e['name'] in ('topk_128', 'a23_64'):
            with open(path, 'w') as f:
                json.dump({k: v for k, v in before[e['name']].items() if k != 'concepts'}, f)
    os.remove(os.path.join(sweep_dir, 'topk_64', 'sae_weights.safetensors'))  # a scored SAE is not read again
    p = run_script('train_sae.py', str(run['root'] / 'sweep_conf.py'), f'--out_dir={out}', *ARGS,
                   '--init_from=resume')
    assert 'added its concept axis' in p.stdout and 'topk_128: added' in p.stdout and 'topk_64: added' not in p.stdout
    for e in SWEEP:
        after = json.load(open(os.path.join(sweep_dir, e['name'], 'metrics.json')))
        assert {k: v for k, v in after.items() if k != 'concepts'} == \
            {k: v for k, v in before[e['name']].items() if k != 'concepts'}
        assert after['concepts']['median_best_f1'] == pytest.approx(before[e['name']]['concepts']['median_best_f1'],
                                                                    abs=2e-3)
    records = {r['name']: r for r in json.load(open(os.path.join(sweep_dir, 'pareto.json')))}
    assert records['a23_64']['concept_f1'] == json.load(open(os.path.join(sweep_dir, 'a23_64', 'metrics.json')))[
        'concepts']['median_best_f1']
