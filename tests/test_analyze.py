"""analyze.py on two tiny runs (transformers from two seeds, an SAE each): every number of report.json against brute
force over all the contexts' tokens, the EXPLAIN / SCORE split, and bad input."""
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from autoencoder import load_saelens
from conftest import TINY_MODEL, make_token_dataset, run_failing, run_script
from monosemanticity import explanations, findings
from monosemanticity.families import CorrelationSums
from monosemanticity.findings import (LABELS, AnalysisSettings, analysis_report, explain_all, firing_thresholds,
                                      load_runs, pass1_maxima_and_correlations, pass2_firings, pick_split)
from model import load_gpt
from test_families import D_IN, SITE, save_sae  # an SAE export whose features read their own decoder directions

T, CTX, BATCH, N_A, N_B, DEAD = 32, 30, 7, 32, 24, 5  # run A's feature DEAD never fires
ARGS = [f'--n_contexts={CTX}', f'--batch_size={BATCH}', '--explain_frac=0.4', '--device=cpu', '--seed=3']
UNITS = ('features', 'neurons', 'features_b')


def train_run(root, name: str, data: str, seed: int, n_features: int) -> str:
    """<root>/<name>: a tiny transformer trained with this seed, and an SAE of random directions on its MLP."""
    out = str(root / name)
    run_script('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *TINY_MODEL, '--max_iters=30',
               '--eval_interval=30', '--eval_iters=2', '--learning_rate=1e-2', f'--seed={seed}')
    W = torch.nn.functional.normalize(torch.randn(n_features, D_IN, generator=torch.Generator().manual_seed(seed)),
                                      dim=1)
    if name == 'a':
        W[DEAD] = 0  # reads nothing: its pre-activation is b_enc < 0
    save_sae(os.path.join(out, 'sae'), W)
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('analyze')
    data = make_token_dataset(str(root / 'data'), n_train=4000, n_val=2000)
    a, b = train_run(root, 'a', data, 1337, N_A), train_run(root, 'b', data, 1338, N_B)
    p = run_script('analyze.py', f'--out_dir={a}', f'--run_b={b}', *ARGS)
    report = json.load(open(os.path.join(a, 'analysis', 'report.json')))
    return {'root': root, 'a': a, 'b': b, 'data': data, 'stdout': p.stdout, 'report': report}


@pytest.fixture(scope='module')
def brute(runs):
    """Every unit's activation on every token of the report's contexts (computed in the script's batches),
    independently of analyze.py's code: {'tokens': (n, T), 'features'|'neurons'|'features_b'|'neurons_b': (n, T, u)}."""
    torch.set_num_threads(1)  # as the script (OMP_NUM_THREADS=1): the same floats
    starts = runs['report']['tokens']['context_starts']
    val = np.fromfile(os.path.join(runs['data'], 'val.bin'), dtype=np.uint16).astype(np.int64)
    tokens = torch.from_numpy(np.stack([val[s:s + T] for s in starts]))
    out = {'tokens': tokens.numpy()}
    for run, suffix in ((runs['a'], ''), (runs['b'], '_b')):
        model = load_gpt(torch.load(os.path.join(run, 'transformer', 'ckpt.pt'), weights_only=True), 'cpu')
        sae = load_saelens(os.path.join(run, 'sae'))
        xs, fs = [], []
        with torch.no_grad():
            for b0 in range(0, len(tokens), BATCH):
                x = model.run(tokens[b0:b0 + BATCH], capture=[SITE], need_logits=False)[2][SITE].reshape(-1, D_IN)
                xs.append(x)
                fs.append(sae.encode(x))
        out['neurons' + suffix] = torch.cat(xs).view(len(tokens), T, -1).double().numpy()
        out['features' + suffix] = torch.cat(fs).view(len(tokens), T, -1).double().numpy()
        out['model' + suffix], out['sae' + suffix] = model, sae
    return out


def matches(tokens: np.ndarray, patterns: list[list[int]]) -> np.ndarray:
    """(n, T) bool: where any pattern (token ids, first token first, the unit's token last) ends, by a plain loop;
    a pattern never reaches before its context's start."""
    hit = np.zeros(tokens.shape, dtype=bool)
    for c in range(tokens.shape[0]):
        for t in range(tokens.shape[1]):
            hit[c, t] = any(t + 1 >= len(p) and list(tokens[c, t + 1 - len(p):t + 1]) == list(p) for p in patterns)
    return hit


def f1_score(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def thresholds(acts: np.ndarray, explain: list[int], fire_frac: float = 0.5) -> np.ndarray:
    """(u,) fire_frac x each unit's max over the EXPLAIN contexts' tokens, nan where that max is <= 0."""
    m = acts[explain].reshape(-1, acts.shape[-1]).max(0)
    return np.where(m > 0, fire_frac * m, np.nan)


def scores(brute: dict, report: dict, name: str, contexts: list[int]) -> list[tuple]:
    """Per unit (tp, fp, fn, precision, recall, f1) of the report's patterns on `contexts`, firing by brute force
    (0/0 counts 0: a unit that never fires there scores 0, 0, 0)."""
    acts, units = brute[name], report['interpretability'][name]['units']
    thr = thresholds(acts, report['tokens']['explain'], report['rule']['fire_frac'])
    out = []
    for u, unit in enumerate(units):
        fire = acts[contexts, :, u] > thr[u] if np.isfinite(thr[u]) else np.zeros((len(contexts), T), dtype=bool)
        pred = matches(brute['tokens'][contexts], unit['patterns'])
        tp, fp, fn = int((fire & pred).sum()), int((~fire & pred).sum()), int((fire & ~pred).sum())
        out.append((tp, fp, fn, *f1_score(tp, fp, fn)))
    return out


# ----------------------------------------------------------------------------- the report against brute force

def test_report_is_complete_and_the_split_partitions_the_contexts(runs):
    rep, d = runs['report'], os.path.join(runs['a'], 'analysis')
    assert sorted(os.listdir(d)) == ['interpretability.png', 'report.json', 'universality.png']
    for png in ('interpretability.png', 'universality.png'):
        assert open(os.path.join(d, png), 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert not [n for n in os.listdir(runs['a']) if '.tmp' in n or '.old' in n]
    assert rep['complete'] is True and rep['runs']['a']['site'] == rep['runs']['b']['site'] == SITE
    assert rep['runs']['b']['sae'] == os.path.abspath(os.path.join(runs['b'], 'sae'))
    tok = rep['tokens']
    explain, score = tok['explain'], tok['score']
    assert len(tok['context_starts']) == CTX and len(explain) == round(0.4 * CTX)
    assert explain == sorted(explain) and score == sorted(score) and not set(explain) & set(score)
    assert sorted(explain + score) == list(range(CTX))
    assert (tok['n_explain_tokens'], tok['n_score_tokens'], tok['n_tokens']) == (len(explain) * T, len(score) * T,
                                                                                 CTX * T)
    assert [len(rep['interpretability'][n]['units']) for n in UNITS] == [N_A, D_IN, N_B]
    assert 'median F1' in runs['stdout'] and '--analysis=' in runs['stdout'].splitlines()[-1]


@pytest.mark.parametrize('name', UNITS)
def test_thresholds_and_firings_from_the_explain_tokens(runs, brute, name):
    rep = runs['report']
    acts, units = brute[name], rep['interpretability'][name]['units']
    explain, score = rep['tokens']['explain'], rep['tokens']['score']
    thr = thresholds(acts, explain)
    got = np.array([np.nan if u['threshold'] is None else u['threshold'] for u in units])
    np.testing.assert_allclose(got, thr, rtol=1e-5)  # nan where the unit never fires on EXPLAIN tokens
    all_max = acts.reshape(-1, acts.shape[-1]).max(0)
    assert (0.5 * all_max > thr + 1e-6).sum() >= 3  # units whose max lies in the SCORE split: the test has teeth
    fire = acts > np.where(np.isnan(thr), np.inf, thr)
    assert [u['n_fire_explain'] for u in units] == fire[explain].sum((0, 1)).tolist()
    assert [u['n_fire_score'] for u in units] == fire[score].sum((0, 1)).tolist()
    if name == 'features':
        assert units[DEAD]['threshold'] is None and units[DEAD]['f1'] is None and units[DEAD]['patterns'] == []


def check_scores_and_summary(brute: dict, report: dict, name: str) -> tuple[int, int]:
    """Every unit's TP/FP/FN and P/R/F1 against brute force: not scored (None) when it never fires on the EXPLAIN
    tokens, else scored, F1 0 when it never fires on the SCORE tokens; the summary both ways recomputed. Returns
    (units scored, units of them with no SCORE firing)."""
    units = report['interpretability'][name]['units']
    want = scores(brute, report, name, report['tokens']['score'])
    f1s, fired = [], []
    for u, (tp, fp, fn, p, r, f1) in zip(units, want):
        assert (u['tp'], u['fp'], u['fn']) == (tp, fp, fn), u['id']
        if u['threshold'] is None or not u['n_fire_explain']:
            assert u['precision'] is u['recall'] is u['f1'] is None
            continue
        assert (u['precision'], u['recall'], u['f1']) == pytest.approx((p, r, f1), abs=5e-5)
        if not u['n_fire_score']:
            assert (u['precision'], u['recall'], u['f1']) == (0, 0, 0)
        f1s.append(f1)
        fired.append(tp + fn > 0)
    s = report['interpretability'][name]['summary']
    f1s, fired = np.array(f1s), np.array(fired, dtype=bool)
    assert (s['n_units'], s['n_dead_explain']) == (len(units), len(units) - len(f1s))
    assert (s['n_scored'], s['n_no_score_firings']) == (len(f1s), (~fired).sum())
    for got, f in ((s, f1s), (s['with_score_firings'], f1s[fired])):
        assert got['n_scored'] == len(f)
        assert got['median_f1'] == pytest.approx(np.median(f), abs=1e-4)
        assert got['mean_f1'] == pytest.approx(f.mean(), abs=1e-4)
        assert got['share_f1_above_0.5'] == pytest.approx((f > 0.5).mean(), abs=1e-4)
        assert got['f1_hist']['counts'] == np.histogram(f, bins=np.linspace(0, 1, 21))[0].tolist()
    return len(f1s), int((~fired).sum())


@pytest.mark.parametrize('name', UNITS)
def test_scores_are_the_patterns_on_the_score_tokens(runs, brute, name):
    rep = runs['report']
    check_scores_and_summary(brute, rep, name)
    units = rep['interpretability'][name]['units']
    assert sum(u['tp'] > 0 for u in units) >= len(units) // 3  # patterns that match firings: the test has teeth


def test_a_unit_that_never_fires_on_the_score_tokens_scores_f1_0(runs, brute, tmp_path):
    """analyze.py with fire_frac 0.99: many units fire near their max on the EXPLAIN tokens only. Each scores F1 0 and
    counts in the main numbers (mean F1 ...), not in 'with_score_firings'; the printed table and report's rule say
    so. (min_pattern_fires 1: units of a few firings get patterns, some F1 above 0.)"""
    a = copy_run(runs['a'], str(tmp_path / 'a'))
    p = run_script('analyze.py', f'--out_dir={a}', f"--run_b={runs['b']}", *ARGS, '--fire_frac=0.99',
                   '--min_pattern_fires=1')
    rep = json.load(open(os.path.join(a, 'analysis', 'report.json')))
    assert rep['rule']['no_score_firing'] == 'f1_0' and 'never on the SCORE tokens scores F1 0' in rep['rule']['text']
    table = p.stdout.splitlines()
    for name in UNITS:
        n_scored, n_silent = check_scores_and_summary(brute, rep, name)
        assert n_silent >= 3, name  # the test has teeth
        s = rep['interpretability'][name]['summary']
        w = s['with_score_firings']
        assert s['median_f1'] <= w['median_f1'] and s['mean_f1'] < w['mean_f1']
        row = next(line for line in table if line.startswith(LABELS[name]))  # units dead scored no-SCORE-firing ...
        assert row.split()[-9:-1] == [str(s['n_units']), str(s['n_dead_explain']), str(n_scored), str(n_silent),
                                      f"{s['median_f1']:.3f}", f"{s['share_f1_above_0.5']:.1%}",
                                      f"{w['median_f1']:.3f}", f"({w['n_scored']})"]


def test_the_printed_table_gives_the_median_f1_both_ways():
    """summary_table on hand-made units: features 2 dead, 4 scored of which 2 with no SCORE firing (F1 0): median
    F1 of 0 0 .4 .8 = 0.2, F1 > 0.5 25%, without them median of .4 .8 = 0.6 over 2 units."""
    def units(rows):
        return [{'f1': f, 'precision': f, 'recall': f, 'n_fire_score': n} for f, n in rows]
    rows = {'features': [(0.8, 3), (0.0, 0), (None, 0), (0.4, 2), (0.0, 0), (None, 0)], 'neurons': [(0.3, 1)],
            'features_b': [(0.0, 0)]}
    interp = {name: {'summary': explanations.summarize(units(r))} for name, r in rows.items()}
    table = findings.summary_table(interp, {name: {'median_max_corr': 0.5} for name in rows}).splitlines()
    assert table[1].split()[-9:] == ['6', '2', '4', '2', '0.200', '25.0%', '0.600', '(2)', '0.500']
    assert table[2].split()[-9:] == ['1', '0', '1', '0', '0.300', '0.0%', '0.300', '(1)', '0.500']
    assert table[3].split()[-9:] == ['1', '0', '1', '1', '0.000', '0.0%', 'n/a', '(0)', '0.500']
    assert 'counted F1 0' in table[-1]


def test_the_f1_plot_shows_every_scored_unit_and_the_median_without_those_of_no_score_firing(monkeypatch, tmp_path):
    """interpretability.png: the F1 of every scored unit (0 for one with no SCORE firing, none for a dead one), its
    legend naming how many had no SCORE firing, and the median without them (dotted)."""
    def units(rows):
        return [{'f1': f, 'precision': f, 'recall': f, 'n_fire_score': n} for f, n in rows]
    rows = {'features': [(0.8, 3), (0.0, 0), (None, 0), (0.4, 2), (0.0, 0)], 'neurons': [(0.3, 1), (0.1, 4)]}
    interp = {name: {'units': units(r), 'summary': explanations.summarize(units(r))} for name, r in rows.items()}
    drawn = {}
    monkeypatch.setattr(findings, 'plot_distributions', lambda series, xlabel, title, path, notes=None: drawn.update(
        series=series, notes=notes))
    findings.plot_interpretability(interp, str(tmp_path / 'interpretability.png'))
    assert [values for _, values in drawn['series']] == [[0.8, 0.0, 0.4, 0.0], [0.3, 0.1]]
    (note_f, median_f), (note_n, median_n) = drawn['notes']
    assert (median_f, median_n) == (0.6, 0.2)  # without the units of no SCORE firing
    assert '2 with no SCORE firing at F1 0; without them 0.60' in note_f and '0 with no SCORE firing' in note_n


@pytest.mark.parametrize('name', UNITS)
def test_patterns_are_counted_on_the_explain_tokens(runs, brute, name):
    """Each pattern's firings and precision are those of the EXPLAIN contexts (in the report's order): the
    explanations were built from the EXPLAIN tokens at the right positions."""
    rep = runs['report']
    acts, explain = brute[name], rep['tokens']['explain']
    thr = thresholds(acts, explain)
    n_patterns = 0
    for u, unit in enumerate(rep['interpretability'][name]['units']):
        fire = acts[explain, :, u] > thr[u]
        for p, fires, precision in zip(unit['patterns'], unit['pattern_fires'], unit['pattern_precision']):
            hit = matches(brute['tokens'][explain], [p])
            assert fires == (fire & hit).sum() and precision == pytest.approx(fires / hit.sum(), abs=5e-5)
            n_patterns += 1
    assert n_patterns >= len(rep['interpretability'][name]['units'])


@pytest.mark.parametrize('name', ['features', 'neurons'])
def test_scored_on_held_out_tokens_not_the_explain_ones(runs, brute, name):
    """The same patterns scored on the EXPLAIN contexts give other numbers: the report scored the SCORE split."""
    rep = runs['report']
    units = rep['interpretability'][name]['units']
    on_explain = scores(brute, rep, name, rep['tokens']['explain'])
    got = [(u['tp'], u['fp'], u['fn']) for u in units]
    assert sum(g != w[:3] for g, w in zip(got, on_explain)) >= len(units) // 2
    scored = [u['f1'] is not None for u in units]
    f1_explain = np.array([w[5] for w, s in zip(on_explain, scored) if s])
    f1_score = np.array([u['f1'] for u, s in zip(units, scored) if s])
    assert f1_explain.mean() > f1_score.mean()  # built on the EXPLAIN tokens, the patterns fit them better


@pytest.mark.parametrize('name, other', [('features', 'features_b'), ('neurons', 'neurons_b'),
                                         ('features_b', 'features')])
def test_universality_is_the_max_correlation_over_all_tokens(runs, brute, name, other):
    uni = runs['report']['universality'][name]
    a, b = (brute[n].reshape(CTX * T, -1) for n in (name, other))
    with np.errstate(invalid='ignore', divide='ignore'):  # numpy: nan for a constant unit
        corr = np.nan_to_num(np.corrcoef(a.T, b.T)[:a.shape[1], a.shape[1]:])
    best = corr.max(1)
    assert uni['n_tokens'] == CTX * T and len(uni['best']) == a.shape[1]
    for i, (j, r) in enumerate(uni['best']):
        assert r == pytest.approx(best[i], abs=1e-4) and corr[i, j] == pytest.approx(best[i], abs=1e-6)
    assert uni['median_max_corr'] == pytest.approx(np.median(best), abs=1e-4)
    assert uni['mean_max_corr'] == pytest.approx(best.mean(), abs=1e-4)
    assert uni['hist']['edges'] == pytest.approx(np.linspace(0, 1, 21).tolist())
    assert uni['hist']['counts'] == np.histogram(np.clip(best, 0, 1), bins=np.linspace(0, 1, 21))[0].tolist()
    assert best.std() > 0.02 and best.max() > 0.3  # spread out: the test has teeth


def test_output_tokens_are_the_logit_lens_of_each_direction(runs, brute):
    """A feature's output tokens come from its decoder row, a neuron's from its c_proj column (the unit vector of
    the site), each through ln_f (centred, times γ) and the unembedding."""
    model, sae = brute['model'], brute['sae']
    for name, W in (('features', sae.W_dec.detach().T), ('neurons', torch.eye(D_IN))):
        u = W @ model.transformer.h[0].mlp.c_proj.weight.T  # (n, C)
        logits = ((u - u.mean(1, keepdim=True)) * model.transformer.ln_f.weight) @ model.lm_head.weight.T
        want = logits.topk(5, dim=1).indices.tolist()
        got = [u['output'] for u in runs['report']['interpretability'][name]['units']]
        assert got == want


def test_dense_correlation_sums_equal_numpy_corrcoef():
    g = torch.Generator().manual_seed(0)
    acts = [torch.randn(500, 7, generator=g) + 3, torch.randn(500, 5, generator=g)]
    acts[1][:, 2] = 1.5  # constant: correlation 0
    acts[1][:, 0] = acts[0][:, 4] * -2 + 0.1
    sums = CorrelationSums([7, 5], dense=True)
    for b0 in range(0, 500, 120):
        sums.add_([a[b0:b0 + 120] for a in acts])
    with np.errstate(invalid='ignore', divide='ignore'):
        want = np.nan_to_num(np.corrcoef(acts[0].double().T.numpy(), acts[1].double().T.numpy())[:7, 7:])
    np.testing.assert_allclose(sums.corr(0, 1).numpy(), want, atol=1e-10)


# ----------------------------------------------------------------------------- the library's settings

def test_the_findings_steps_use_the_settings_they_are_given(runs):
    """monosemanticity.findings called directly: the script's settings give its report's contexts and split, and other
    settings (fewer and shorter contexts, another seed, split share, threshold, pattern and output-token counts) are
    the ones applied, not defaults read from elsewhere."""
    config = {'out_dir': runs['a'], 'run_b': runs['b'], 'sae_dir': '', 'dataset': '', 'split': 'val',
              'n_contexts': CTX, 'explain_frac': 0.4, 'context_length': 0, 'batch_size': BATCH, 'fire_frac': 0.5,
              'min_precision': 0.5, 'min_pattern_fires': 2, 'max_patterns': 10, 'n_output_tokens': 5, 'seed': 3,
              'device': 'cpu', 'dtype': 'float32'}  # analyze.py's defaults with ARGS
    s = AnalysisSettings.from_config(config)
    contexts, halves = pick_split(load_runs(s, 'cpu')[0].transformer, s)
    tok = runs['report']['tokens']
    assert (contexts.starts.tolist(), halves.explain.tolist()) == (tok['context_starts'], tok['explain'])

    other = dataclasses.replace(s, sae_dir='sae', n_contexts=12, explain_frac=0.25, context_length=16, batch_size=5,
                                fire_frac=0.3, min_pattern_fires=1, max_patterns=1, n_output_tokens=2, seed=4)
    pair = load_runs(other, 'cpu')
    contexts, halves = pick_split(pair[0].transformer, other)
    assert (contexts.n, contexts.length, len(halves.explain), len(halves.score)) == (12, 16, 3, 9)
    assert contexts.batches == [(0, 5), (5, 10), (10, 12)] and contexts.starts.tolist() != tok['context_starts'][:12]
    stats = pass1_maxima_and_correlations(pair, contexts, halves)
    thresholds = {name: firing_thresholds(m, other.fire_frac) for name, m in stats.explain_max.items()}
    firings = pass2_firings(pair, contexts, halves, thresholds)
    interpretability = explain_all(pair, contexts, halves, thresholds, firings, other)
    units = [u for name in UNITS for u in interpretability[name]['units']]
    assert all(len(u['patterns']) <= 1 and len(u['output']) == 2 for u in units)
    assert sum(len(u['patterns']) == 1 for u in units) >= len(units) // 2
    assert max(len(u['patterns']) for name in UNITS for u in runs['report']['interpretability'][name]['units']) > 1
    for name in UNITS:  # fire_frac: 0.3 x each unit's max over the 3 EXPLAIN contexts' tokens
        got = [np.inf if u['threshold'] is None else u['threshold'] for u in interpretability[name]['units']]
        want = stats.explain_max[name].double().numpy()
        np.testing.assert_allclose(got, np.where(want > 0, 0.3 * want, np.inf), rtol=1e-5)
    rep = analysis_report(config, other, pair, contexts, halves, interpretability, {}, {})
    assert rep['config'] is config and (rep['rule']['fire_frac'], rep['rule']['max_patterns']) == (0.3, 1)
    assert (rep['tokens']['n_explain_tokens'], rep['tokens']['n_tokens']) == (3 * 16, 12 * 16)


# ----------------------------------------------------------------------------- bad input

def copy_run(src: str, dst: str) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns('analysis*'))
    return dst


def test_bad_input_is_one_line_and_leaves_the_old_analysis(runs, tmp_path):
    report_path = os.path.join(runs['a'], 'analysis', 'report.json')
    before = open(report_path).read()
    code, lines, _ = run_failing('analyze.py', f"--out_dir={runs['a']}", f"--run_b={tmp_path / 'none'}", *ARGS)
    assert code == 2 and len(lines) == 1 and 'make analysis' in lines[0] and 'train_transformer.py' in lines[0], lines
    other_site = copy_run(runs['b'], str(tmp_path / 'other_site'))
    cfg_path = os.path.join(other_site, 'sae', 'cfg.json')
    cfg = json.load(open(cfg_path))
    json.dump({**cfg, 'hook_name': 'blocks.0.mlp_out'}, open(cfg_path, 'w'))
    code, lines, _ = run_failing('analyze.py', f"--out_dir={runs['a']}", f'--run_b={other_site}', *ARGS)
    assert code == 2 and len(lines) == 1 and 'blocks.0.mlp_out' in lines[0] and SITE in lines[0], lines
    assert open(report_path).read() == before


def test_nonfinite_activations_are_refused_naming_the_run_and_site(runs, tmp_path):
    """Finite weights whose activations overflow float32 (an encoder of 3e38s): one line, no analysis written."""
    a = copy_run(runs['a'], str(tmp_path / 'a'))
    path = os.path.join(runs['b'], 'sae', 'sae_weights.safetensors')
    b = copy_run(runs['b'], str(tmp_path / 'b'))
    weights = load_file(path)
    save_file({**weights, 'W_enc': torch.full_like(weights['W_enc'], 3e38),  # W_enc·(x - b_dec) ≈ 3e38·640: inf
               'b_dec': torch.full_like(weights['b_dec'], -10.0)},
              os.path.join(b, 'sae', 'sae_weights.safetensors'))
    code, lines, _ = run_failing('analyze.py', f'--out_dir={a}', f'--run_b={b}', *ARGS)
    assert code == 2 and len(lines) == 1 and 'run B' in lines[0] and SITE in lines[0] and 'NaN' in lines[0], lines
    assert not os.path.exists(os.path.join(a, 'analysis'))
