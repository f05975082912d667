"""analyze.py's ground-truth concept report on the tiny runs of test_analyze.py: without labels no section (and the
line saying how to make them); with planted labels every best feature / neuron, threshold and score against brute
force, planted units found with F1 1, thresholds chosen on the EXPLAIN tokens and scored on the SCORE tokens."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, run_failing, run_script, write_concept_labels
from monosemanticity.concept_report import THRESHOLD_FRACS, UNIT_SETS, greedy_spread, plot_concepts
from test_analyze import ARGS, N_A, N_B, T, train_run
from test_analyze import brute, runs  # noqa: F401  (the two tiny runs and their activations, as fixtures)

PLANT_NEURON, PLANT_FEATURE, PLANT_FRAC = 3, 7, 0.3


def explain_max(acts: np.ndarray, explain: list[int]) -> torch.Tensor:
    """(u,) float32 each unit's max over the EXPLAIN contexts' tokens."""
    return torch.from_numpy(acts[explain].reshape(-1, acts.shape[-1]).max(0).astype(np.float32))


def grid_thresholds(acts: np.ndarray, explain: list[int]) -> np.ndarray:
    """(G, u) the script's threshold grid (float32 products), inf where a unit's EXPLAIN max is <= 0."""
    m = explain_max(acts, explain)
    thr = torch.tensor(THRESHOLD_FRACS, dtype=torch.float32)[:, None] * m
    return np.where(m.numpy() > 0, thr.double().numpy(), np.inf)


@pytest.fixture(scope='module')
def labelled(runs, brute):  # noqa: F811
    """Labels written next to the tiny dataset: planted (a neuron's and a feature's firing above PLANT_FRAC x its
    EXPLAIN max), even tokens, random bits, never; then analyze.py again. Returns the labels and the new report."""
    rep = runs['report']
    starts, explain = rep['tokens']['context_starts'], rep['tokens']['explain']
    val = np.fromfile(os.path.join(runs['data'], 'val.bin'), dtype=np.uint16)
    names = ['planted_neuron', 'planted_feature', 'even_token', 'random', 'never']
    y = np.zeros((len(val), len(names)), dtype=bool)
    for col, (name, u) in enumerate((('neurons', PLANT_NEURON), ('features', PLANT_FEATURE))):
        thr = float(torch.tensor(PLANT_FRAC, dtype=torch.float32) * explain_max(brute[name], explain)[u])
        for c, s in enumerate(starts):
            y[s:s + T, col] = brute[name][c, :, u] > thr
    y[:, 2] = val % 2 == 0
    y[:, 3] = np.random.default_rng(0).random(len(val)) < 0.2
    write_concept_labels(runs['data'], names, y)
    p = run_script('analyze.py', f"--out_dir={runs['a']}", f"--run_b={runs['b']}", *ARGS)
    report = json.load(open(os.path.join(runs['a'], 'analysis', 'report.json')))
    return {'y': y, 'names': names, 'report': report, 'stdout': p.stdout}


def f1_of(fire: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, F1), nan where undefined."""
    tp, n_fire, n_pos = float((fire & y).sum()), float(fire.sum()), float(y.sum())
    return (tp / n_fire if n_fire else np.nan, tp / n_pos if n_pos else np.nan,
            2 * tp / (n_fire + n_pos) if n_fire + n_pos else np.nan)


def test_without_labels_no_section_and_the_line_says_how(runs):  # noqa: F811
    assert 'concepts' not in runs['report']
    assert "no concept labels" in runs['stdout'] and f"label_concepts.py --data_dir={runs['data']}" in runs['stdout']
    assert not os.path.exists(os.path.join(runs['a'], 'analysis', 'concepts.png'))


@pytest.mark.parametrize('name', UNIT_SETS)
def test_best_unit_and_scores_against_brute_force(runs, brute, labelled, name):  # noqa: F811
    rep = labelled['report']
    starts, explain, score = (rep['tokens'][k] for k in ('context_starts', 'explain', 'score'))
    assert not set(explain) & set(score)
    sec = rep['concepts']
    assert (sec['n_explain_tokens'], sec['n_score_tokens']) == (len(explain) * T, len(score) * T)
    acts = brute[name]  # (n, T, u)
    y = np.stack([labelled['y'][s:s + T] for s in starts])  # (n, T, C)
    thr = grid_thresholds(acts, explain)  # (G, u)
    for c, row in enumerate(sec['concepts']):
        assert row['name'] == labelled['names'][c]
        ye, ys = y[explain, :, c], y[score, :, c]
        assert row['n_positive_score'] == int(ys.sum())
        f1e = np.array([[f1_of(acts[explain, :, u] > thr[g, u], ye)[2] for u in range(acts.shape[-1])]
                        for g in range(len(THRESHOLD_FRACS))])  # (G, u) on the EXPLAIN tokens
        f1e = np.nan_to_num(f1e, nan=-1.0)
        best = row[name]
        u, g = best['id'], THRESHOLD_FRACS.index(best['threshold_frac'])
        assert f1e[g, u] == pytest.approx(f1e.max(), abs=1e-12)  # the best (unit, threshold) on EXPLAIN tokens
        assert best['f1_explain'] == pytest.approx(max(f1e.max(), 0), abs=1e-4)
        p, r, f1 = f1_of(acts[score, :, u] > thr[g, u], ys)  # scored on the SCORE tokens
        for key, want in (('precision', p), ('recall', r), ('f1', f1)):
            assert (best[key] is None) if np.isnan(want) else best[key] == pytest.approx(want, abs=1e-4)
    assert sec['summary'][name]['n_concepts_scored'] == sum(r['n_positive_score'] > 0 for r in sec['concepts'])


def test_planted_units_are_found_with_f1_one(labelled):
    rows = {r['name']: r for r in labelled['report']['concepts']['concepts']}
    for concept, name, unit in (('planted_neuron', 'neurons', PLANT_NEURON),
                                ('planted_feature', 'features', PLANT_FEATURE)):
        best = rows[concept][name]
        assert (best['id'], best['threshold_frac'], best['f1']) == (unit, PLANT_FRAC, 1.0)
        assert best['precision'] == best['recall'] == 1.0
    assert rows['never']['n_positive_score'] == 0 and rows['never']['features']['recall'] is None  # not scored
    assert rows['random']['features']['f1'] < 0.5  # random bits: no unit detects them


def test_threshold_chosen_on_explain_differs_from_the_score_optimum(runs, brute, labelled):  # noqa: F811
    """The test has teeth: for some concept the threshold best on the SCORE tokens is not the one chosen, so a
    choice made on the SCORE tokens would change the report."""
    rep = labelled['report']
    starts, score = rep['tokens']['context_starts'], rep['tokens']['score']
    y = np.stack([labelled['y'][s:s + T] for s in starts])
    differs = 0
    for name in UNIT_SETS:
        thr = grid_thresholds(brute[name], rep['tokens']['explain'])
        for c, row in enumerate(rep['concepts']['concepts']):
            u = row[name]['id']
            f1s = np.nan_to_num([f1_of(brute[name][score, :, u] > thr[g, u], y[score, :, c])[2]
                                 for g in range(len(THRESHOLD_FRACS))], nan=-1)
            differs += f1s.max() > (row[name]['f1'] or 0) + 1e-9
    assert differs >= 1


def test_plot_and_summary_line(runs, labelled):  # noqa: F811
    d = os.path.join(runs['a'], 'analysis')
    assert open(os.path.join(d, 'concepts.png'), 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    s = labelled['report']['concepts']['summary']
    f1s = [r['features']['f1'] for r in labelled['report']['concepts']['concepts'] if r['n_positive_score']]
    assert s['features']['median_best_f1'] == pytest.approx(float(np.median(f1s)), abs=1e-4)
    assert s['features']['share_best_f1_at_least_0.5'] == pytest.approx(np.mean(np.array(f1s) >= 0.5), abs=1e-4)
    assert 'concepts (4 scored)' in labelled['stdout']


def analyze_with_edited_labels(runs: dict, edit) -> tuple[int, list[str]]:  # noqa: F811
    """analyze.py on the tiny runs with concepts.json's val entry changed by edit(entry) (restored after)."""
    path = os.path.join(runs['data'], 'concepts.json')
    text = open(path).read()
    meta = json.loads(text)
    edit(meta['splits']['val'])
    try:
        with open(path, 'w') as f:
            json.dump(meta, f)
        code, lines, _ = run_failing('analyze.py', f"--out_dir={runs['a']}", f"--run_b={runs['b']}", *ARGS)
    finally:
        with open(path, 'w') as f:
            f.write(text)
    return code, lines


def test_labels_of_other_tokens_are_one_line_exit_2(runs, labelled):  # noqa: F811
    code, lines = analyze_with_edited_labels(runs, lambda e: e.update(tokens=e['tokens'] + 1))
    assert code == 2 and len(lines) == 1 and 'label_concepts.py' in lines[0], lines


# ----------------------------------------------------------------------------- spread: features needed for F1 0.9

def test_greedy_spread_finds_a_concept_split_over_three_features():
    rng = np.random.default_rng(0)
    part = rng.integers(0, 6, size=(2, 3000))  # per token 0, 1, 2: in the concept's part 0, 1, 2; else not in it
    fire = [np.stack([p == 0, p == 1, p == 2, rng.random(3000) < 0.3], axis=1) for p in part]  # (N, 4)
    y = [p < 3 for p in part]
    y[1][:100] = ~y[1][:100]  # the SCORE tokens differ: their F1 is below 1
    g = greedy_spread(fire[0], y[0], fire[1], y[1])
    assert sorted(g['chosen']) == [0, 1, 2] and g['f1_explain'][-1] == 1.0
    assert g['f1_explain'] == sorted(g['f1_explain']) and len(set(g['f1_explain'])) == 3
    assert g['f1'] == pytest.approx(f1_of(fire[1][:, :3].any(1), y[1])[2])
    assert greedy_spread(fire[0][:, 3:], y[0], fire[1][:, 3:], y[1])['chosen'] == [0]  # noise: one, no raise after


def test_spread_on_the_tiny_run_against_brute_force(runs, brute, labelled):  # noqa: F811
    rep = labelled['report']
    starts, explain, score = (rep['tokens'][k] for k in ('context_starts', 'explain', 'score'))
    acts = brute['features']
    thr = grid_thresholds(acts, explain)  # (G, u)
    y = np.stack([labelled['y'][s:s + T] for s in starts])  # (n, T, C)
    rows = {r['name']: r for r in rep['concepts']['concepts']}
    assert rows['planted_feature']['features_spread'] == {'n_features': 1, 'features': [PLANT_FEATURE],
                                                          'f1_explain': [1.0], 'f1': 1.0}
    for c, row in enumerate(rep['concepts']['concepts']):
        sp = row['features_spread']
        assert len(sp['features']) <= 20 and sp['f1_explain'] == sorted(sp['f1_explain'])
        assert (sp['n_features'] is not None) == (bool(sp['f1_explain']) and sp['f1_explain'][-1] >= 0.9)
        if not sp['features']:
            continue
        fire = {}
        for u in sp['features']:  # each chosen feature at its threshold of best EXPLAIN F1
            f1s = [f1_of(acts[explain, :, u] > thr[g, u], y[explain, :, c])[2] for g in range(len(THRESHOLD_FRACS))]
            fire[u] = acts[:, :, u] > thr[int(np.nanargmax(f1s)), u]  # (n, T)
        cover = np.zeros(y.shape[:2], dtype=bool)
        for u, f1_step in zip(sp['features'], sp['f1_explain']):
            cover |= fire[u]
            assert f1_step == pytest.approx(f1_of(cover[explain], y[explain, :, c])[2], abs=1e-4)
        assert sp['f1'] == pytest.approx(f1_of(cover[score], y[score, :, c])[2], abs=1e-4)
    spreads = [r['features_spread']['f1'] for r in rep['concepts']['concepts'] if r['n_positive_score']]
    assert rep['concepts']['summary']['features_spread']['median_f1'] == pytest.approx(np.median(spreads), abs=1e-4)
    assert 'reached (EXPLAIN tokens) by 1 feature for' in labelled['stdout']


def test_make_analysis_labels_the_concepts_before_analyze():
    """`make analysis` runs label_concepts.py (which skips up-to-date labels) before analyze.py, and redoes a report
    older than the labels or without the concept section (make -n: the commands, none run)."""
    out = subprocess.run(['make', '-n', 'analysis', f'PYTHON={sys.executable}'], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    label = out.index('label_concepts.py --data_dir=data/pystdlib')
    assert label < out.index('analyze.py config/demo/analysis.py')
    assert '-nt data/pystdlib/concepts.json' in out and '"by_feature"' in out and '"balanced_accuracy"' in out


def test_labels_of_other_tokens_by_their_fingerprint_are_one_line_exit_2(runs, labelled):  # noqa: F811
    # as label_concepts.py writes it, of other tokens
    code, lines = analyze_with_edited_labels(runs, lambda e: e.update(tokens_sha256='0' * 64))
    assert code == 2 and len(lines) == 1 and 'tokens_sha256' in lines[0] and 'label_concepts.py' in lines[0], lines


# ----------------------------------------------------------------------------- by_feature: the concepts each detects

def test_by_feature_against_brute_force(runs, brute, labelled):  # noqa: F811
    """Every (feature, concept) pair: the threshold of the grid of best EXPLAIN F1 (first on ties), then P/R/F1 on the
    SCORE tokens; listed where that F1 >= 0.5, best first. Some pairs fall just under the cut, and for some the
    threshold best on the SCORE tokens is another (so a cut or a choice made otherwise changes the list)."""
    rep = labelled['report']
    starts, explain, score = (rep['tokens'][k] for k in ('context_starts', 'explain', 'score'))
    acts = brute['features']  # (n, T, u)
    y = np.stack([labelled['y'][s:s + T] for s in starts])  # (n, T, C)
    thr = grid_thresholds(acts, explain)
    want, near, other_g = {}, 0, 0
    for u in range(acts.shape[-1]):
        for c in range(y.shape[-1]):
            f1e = np.nan_to_num([f1_of(acts[explain, :, u] > thr[g, u], y[explain, :, c])[2]
                                 for g in range(len(THRESHOLD_FRACS))], nan=-1.0)
            g = int(np.argmax(f1e))
            p, r, f1 = f1_of(acts[score, :, u] > thr[g, u], y[score, :, c])
            if f1 >= 0.5:
                want.setdefault(str(u), []).append((c, f1, p, r))
            near += 0.25 <= f1 < 0.5
            f1s = np.nan_to_num([f1_of(acts[score, :, u] > thr[k, u], y[score, :, c])[2]
                                 for k in range(len(THRESHOLD_FRACS))], nan=-1.0)
            other_g += f1s.max() >= 0.5 > np.nan_to_num(f1, nan=-1.0)
    by = rep['concepts']['by_feature']
    assert by['min_f1'] == 0.5 and by['row'] == ['concept', 'f1', 'precision', 'recall']
    assert near >= 1 and other_g >= 1, (near, other_g)  # the test has teeth
    assert sorted(by['features'], key=int) == sorted(want, key=int)
    for f, rows in want.items():
        rows.sort(key=lambda x: (-x[1], x[0]))
        got = by['features'][f]
        assert [x[0] for x in got] == [x[0] for x in rows], f
        assert np.allclose([x[1:] for x in got], [x[1:] for x in rows], atol=1e-4), f


def test_by_feature_lists_the_planted_feature_and_agrees_with_the_best_detectors(labelled):
    sec = labelled['report']['concepts']
    names = labelled['names']
    assert sec['by_feature']['features'][str(PLANT_FEATURE)][0] == [names.index('planted_feature'), 1.0, 1.0, 1.0]
    for c, row in enumerate(sec['concepts']):  # a concept's best feature, when >= 0.5, is listed with its numbers
        best = row['features']
        listed = {x[0]: x[1:] for x in sec['by_feature']['features'].get(str(best['id']), [])}
        assert (c in listed) == (best['f1'] is not None and best['f1'] >= 0.5), row['name']
        if c in listed:
            assert listed[c] == [best['f1'], best['precision'], best['recall']]
    assert not any(x[0] == names.index('never') for rows in sec['by_feature']['features'].values() for x in rows)


# ----------------------------------------------------------------------------- a labelled folder corpus, end to end

@pytest.fixture(scope='module')
def folder_report(tmp_path_factory):
    """A folder of Python files (pkg/), text files (notes/) and a top-level file -> data/text/prepare.py -> two tiny
    runs (test_analyze.train_run) -> label_concepts.py -> analyze.py. Returns the data folder and report.json."""
    root = tmp_path_factory.mktemp('folder_report')
    files = {f'pkg/m{i}.py': ''.join(f'def f{i}_{j}(x):\n    return [x + {j} for _ in range(3)]  # n{j}\n\n'
                                     for j in range(25)) for i in range(6)}
    files |= {f'notes/n{i}.txt': ''.join(f'Note {j} of file {i}: read the pages {j} and {j + i}.\n'
                                         for j in range(40)) for i in range(6)}
    files['top.py'] = 'x = 1\n' * 40
    for rel, text in files.items():
        os.makedirs(root / 'corpus' / os.path.dirname(rel), exist_ok=True)
        (root / 'corpus' / rel).write_text(text)
    data = str(root / 'data')
    run_script('data/text/prepare.py', f"--input={root / 'corpus'}", '--vocab_size=300', f'--out_dir={data}',
               '--num_threads=1', '--val_fraction=0.3')
    a, b = train_run(root, 'a', data, 1337, N_A), train_run(root, 'b', data, 1338, N_B)
    run_script('label_concepts.py', f'--data_dir={data}')
    p = run_script('analyze.py', f'--out_dir={a}', f'--run_b={b}', *ARGS)
    return data, json.load(open(os.path.join(a, 'analysis', 'report.json'))), p.stdout


def test_the_report_of_a_labelled_folder_corpus_has_its_folder_concepts(folder_report):
    data, rep, stdout = folder_report
    info = json.load(open(os.path.join(data, 'concepts.json')))
    rows = rep['concepts']['concepts']
    assert [(r['name'], r['kind']) for r in rows] == [(c['name'], c['kind']) for c in info['concepts']]
    assert [r['name'] for r in rows if r['kind'] == 'folder'] == ['folder:notes', 'folder:pkg']
    # a folder's positive SCORE tokens, from documents.json and val.bin alone: the tokens of its documents
    val = np.fromfile(os.path.join(data, 'val.bin'), dtype=np.uint16)
    eot = json.load(open(os.path.join(data, 'meta.json')))['eot_token']
    paths = json.load(open(os.path.join(data, 'documents.json')))['val']
    doc = np.cumsum(val == eot) - (val == eot)  # (n,) each token's document index (end-of-text: its document's)
    folder = np.array([p.split('/')[0] if '/' in p else '' for p in paths])[doc]
    folder[val == eot] = ''
    score = np.concatenate([np.arange(s, s + T) for s in np.array(rep['tokens']['context_starts'])[
        rep['tokens']['score']]])
    for r in rows:
        if r['kind'] == 'folder':
            assert r['n_positive_score'] == int((folder[score] == r['name'][len('folder:'):]).sum()) > 0
            assert r['features']['f1'] is not None and r['neurons']['f1'] is not None
    assert rep['concepts']['summary']['features']['n_concepts_scored'] == sum(r['n_positive_score'] > 0 for r in rows)
    assert f"concepts ({rep['concepts']['summary']['features']['n_concepts_scored']} scored)" in stdout


def test_the_plot_with_many_concepts(tmp_path):
    rows = [{'name': f'folder:f{i:03d}', 'kind': 'folder', 'features': {'f1': i / 130}, 'neurons': {'f1': 0.1}}
            for i in range(120)]
    plot_concepts({'concepts': rows, 'summary': {n: {'median_best_f1': 0.5} for n in UNIT_SETS}},
                  str(tmp_path / 'c.png'))
    assert (tmp_path / 'c.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
