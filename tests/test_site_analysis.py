"""build_interface.py shows analyze.py's report (docs/browser.md, /analysis in the contract): a tiny site of run A
and one of run B, a synthesized report.json naming both SAEs; the data hold exactly the report's numbers of each
side, the site without a report is the site as before, and the pages (headless Chromium) show and link them; with the
report's ground-truth concepts (run A's site only) the concepts page, a feature's concepts and the index's filter."""
import base64
import glob
import json
import os
import shutil
from urllib.parse import quote_plus

import numpy as np
import pytest

from monosemanticity import site_analysis as sa
from monosemanticity.common import UserError
from conftest import run_failing, run_script
from test_interface import ARGS, D_IN, N_FEAT, XSS, build_site, read_features, read_js

CAT = [ord(c) for c in 'cat']  # feature 5's first pattern: three ASCII tokens, shown as the chips c a t
SCRIPT_TOKEN = 256  # XSS[0] as one token: in the explanations of SEARCHED only, so a search for it finds them
SEARCHED = (11, 23)
CONCEPTS = ['comment', 'def', 'for_loop', XSS[1].decode(), 'never']  # one name is markup: shown as text
DETECTS = {5: [[1, 0.912, 0.9, 0.925], [0, 0.613, 0.55, 0.693]], 11: [[1, 0.7, 0.8, 0.622]], 3: [[3, 0.55, 0.5, 0.611]],
           20: [[1, 0.5, 0.45, 0.563]]}  # by_feature: feature -> [concept, f1, precision, recall], best first


def fake_units(rng: np.random.Generator, n: int, n_other: int, vocab_size: int) -> tuple[list[dict], list]:
    """n units as analyze.py writes them (the contract's U), and per unit its best match [j, r] in n_other units.
    Scores have 3 digits (no ties when the pages round them); unit 7 is never active (not scored); unit 8 fires on the
    EXPLAIN tokens only (F1 0)."""
    units, best = [], []
    for i in range(n):
        patterns = [[int(t) for t in rng.integers(32, 127, rng.integers(1, 4))] for _ in range(rng.integers(1, 5))]
        patterns[0] = CAT if i == 5 else patterns[0]
        patterns = [[SCRIPT_TOKEN]] + patterns if i in SEARCHED else patterns
        tp, fp, fn = (int(x) for x in rng.integers(1, 30, 3))
        p, r = round(tp / (tp + fp), 3), round(tp / (tp + fn), 3)
        unit = {'id': i, 'threshold': round(float(rng.uniform(0.1, 2)), 3), 'n_fire_explain': int(rng.integers(1, 50)),
                'n_fire_score': tp + fn, 'patterns': patterns,
                'pattern_precision': [round(float(x), 3) for x in rng.uniform(0.5, 1, len(patterns))],
                'pattern_fires': [int(x) for x in rng.integers(2, 20, len(patterns))], 'text': '',
                'output': [int(x) for x in rng.integers(0, vocab_size, 5)], 'tp': tp, 'fp': fp, 'fn': fn,
                'precision': p, 'recall': r, 'f1': round(2 * p * r / (p + r), 3)}
        if i == 7:
            unit.update(threshold=None, n_fire_explain=0, n_fire_score=0, patterns=[], pattern_precision=[],
                        pattern_fires=[], tp=0, fp=0, fn=0, precision=None, recall=None, f1=None)
        if i == 8:
            unit.update(n_fire_score=0, tp=0, fn=0, precision=0.0, recall=0.0, f1=0.0)
        units.append(unit)
        best.append([int(rng.integers(n_other)), round(float(rng.uniform(0, 1)), 2) + 0.001 * int(rng.integers(1, 5))])
    return units, best


def summary(units: list[dict]) -> dict:
    """The contract's S of the units (plausible numbers: the site copies them, it does not recompute them)."""
    def stats(part: list[dict]) -> dict:
        f1 = np.array([u['f1'] for u in part])
        return {'n_scored': len(f1), 'median_f1': round(float(np.median(f1)), 4),
                'mean_f1': round(float(f1.mean()), 4), 'share_f1_above_0.5': round(float((f1 > 0.5).mean()), 4),
                'median_precision': 0.61, 'median_recall': 0.52,
                'f1_hist': {'edges': [round(k / 20, 2) for k in range(21)],
                            'counts': np.histogram(f1, bins=20, range=(0, 1))[0].tolist()}}
    scored = [u for u in units if u['f1'] is not None]
    fired = stats([u for u in scored if u['n_fire_score']])
    fired['median_f1'] = round(fired['median_f1'] + 0.05, 4)  # unlike the main median once rounded by the page
    return {'n_units': len(units), 'n_dead_explain': len(units) - len(scored),
            'n_no_score_firings': len(scored) - fired['n_scored'], **stats(scored), 'with_score_firings': fired}


def fake_report(out_a: str, out_b: str, vocab_size: int, seed: int = 0) -> dict:
    """A complete report.json of runs out_a and out_b (the contract's format), different numbers for each side."""
    rng = np.random.default_rng(seed)
    interp, univ = {}, {}
    for part, n, n_other in (('features', N_FEAT, N_FEAT), ('neurons', D_IN, D_IN), ('features_b', N_FEAT, N_FEAT)):
        units, best = fake_units(rng, n, n_other, vocab_size)
        interp[part] = {'summary': summary(units), 'units': units}
        r = np.array([x[1] for x in best])
        univ[part] = {'n_tokens': 960, 'median_max_corr': round(float(np.median(r)), 4),
                      'mean_max_corr': round(float(r.mean()), 4),
                      'hist': {'edges': [round(k / 20, 2) for k in range(21)],
                               'counts': np.histogram(r, bins=20, range=(0, 1))[0].tolist()}, 'best': best}
    run = lambda out: {'out_dir': os.path.abspath(out), 'sae': os.path.abspath(os.path.join(out, 'sae')),  # noqa
                       'transformer': os.path.abspath(os.path.join(out, 'transformer', 'ckpt.pt')),
                       'site': 'blocks.0.mlp_hidden'}
    return {'complete': True, 'built': '2026-01-01 00:00:00', 'config': {'seed': 1337},
            'runs': {'a': run(out_a), 'b': run(out_b)},
            'tokens': {'dataset': 'data', 'split': 'val', 'context_length': 32, 'context_starts': [0, 33],
                       'explain': [0], 'score': [1], 'n_explain_tokens': 480, 'n_score_tokens': 448, 'n_tokens': 928},
            'rule': {'fire_frac': 0.5, 'min_precision': 0.5, 'min_pattern_fires': 2, 'max_patterns': 10,
                     'text': 'fires above half its max over the EXPLAIN tokens'},
            'interpretability': interp, 'universality': univ,
            'seconds': {'passes': 1.0, 'explain': 1.0, 'universality': 1.0, 'plots': 1.0, 'total': 4.0}}


ONE_PIXEL_PNG = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ'
                                 'AAAABJRU5ErkJggg==')


def fake_concepts(rng: np.random.Generator) -> dict:
    """A report's 'concepts' section (docs/formats.md) over run A's N_FEAT features and D_IN neurons: feature 5 the
    best for 'def' (F1 0.912), 'for_loop' reaches the spread's F1 with 2 features, concept 3 not with 20, the others
    stop earlier; 'never' has no SCORE token."""
    def unit(n: int) -> dict:
        p, r = (round(float(x), 3) for x in rng.uniform(0.1, 0.9, 2))
        return {'id': int(rng.integers(n)), 'threshold_frac': 0.3, 'threshold': 0.5, 'f1_explain': 0.4,
                'precision': p, 'recall': r, 'f1': round(2 * p * r / (p + r), 3)}
    rows = []
    for c, name in enumerate(CONCEPTS):
        row = {'name': name, 'kind': 'lexical' if c < 2 else 'structural', 'n_positive_score': 40 + c,
               'base_rate_score': round(0.01 * (c + 1) + 0.0012, 4), 'features': unit(N_FEAT), 'neurons': unit(D_IN),
               'features_spread': {'n_features': None, 'features': [int(x) for x in rng.integers(N_FEAT, size=3)],
                                   'f1_explain': [0.3, 0.4, 0.45], 'f1': 0.41}}
        rows.append(row)
    rows[1]['features'].update(id=5, precision=0.9, recall=0.925, f1=0.912)
    rows[2]['features_spread'].update(n_features=2, features=[9, 4], f1_explain=[0.6, 0.93], f1=0.9)
    rows[3]['features_spread'].update(features=list(range(20)), f1_explain=[0.01 * k for k in range(20)])
    rows[4].update(n_positive_score=0, base_rate_score=0.0)
    rows[4]['features'].update(id=0, precision=None, recall=None, f1=None)  # 'best' of none: not said on its page
    return {'labels': '/data/concepts.json', 'rule': 'a unit detects a concept where its activation > a threshold',
            'threshold_fracs': [0.1, 0.5], 'spread': {'pool': 32, 'max_features': 20, 'target_f1': 0.9},
            'n_explain_tokens': 480, 'n_score_tokens': 448,
            'summary': {'features': {'n_concepts_scored': 4, 'median_best_f1': 0.45,
                                     'share_best_f1_at_least_0.5': 0.25},
                        'neurons': {'n_concepts_scored': 4, 'median_best_f1': 0.2, 'share_best_f1_at_least_0.5': 0.0},
                        'features_spread': {'n_one': 0, 'n_reached': 1, 'n_not_reached': 3, 'median_f1': 0.41}},
            'concepts': rows,
            'by_feature': {'min_f1': 0.5, 'row': ['concept', 'f1', 'precision', 'recall'],
                           'features': {str(f): rows for f, rows in DETECTS.items()}}}


def write_report(path: str, report: dict) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(report, f)
    return path


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict:
    """Run A's site built before any report ('plain'), then its report and PNGs in <A>/analysis/; run B (a copy of
    A's transformer and SAE in its own out_dir). Sites: A with analysis='auto', A with analysis='', B with the
    report given as a path."""
    root = str(tmp_path_factory.mktemp('site_analysis'))
    a = build_site(root)
    plain = os.path.join(root, 'plain')
    shutil.copytree(a['site'], plain)
    out_b = os.path.join(root, 'out_b')
    for part in ('transformer', 'sae'):
        shutil.copytree(os.path.join(a['out'], part), os.path.join(out_b, part))
    report = fake_report(a['out'], out_b, a['enc'].n_vocab)
    report['concepts'] = fake_concepts(np.random.default_rng(1))
    path = write_report(os.path.join(a['out'], 'analysis', 'report.json'), report)
    for name in ('interpretability', 'universality'):
        open(os.path.join(a['out'], 'analysis', f'{name}.png'), 'wb').close()
    with open(os.path.join(a['out'], 'analysis', 'concepts.png'), 'wb') as f:  # concepts.html shows it: a real PNG
        f.write(ONE_PIXEL_PNG)
    none_dir = os.path.join(root, 'none')
    run_script('build_interface.py', f"--out_dir={a['out']}", *ARGS, '--analysis=')
    shutil.copytree(a['site'], none_dir)
    p = run_script('build_interface.py', f"--out_dir={a['out']}", *ARGS)  # auto: finds the report
    run_script('build_interface.py', f'--out_dir={out_b}', *ARGS, f'--analysis={path}')
    return {**a, 'plain': plain, 'none': none_dir, 'report': report, 'path': path, 'out_b': out_b,
            'site_b': os.path.join(out_b, 'interface'), 'stdout_auto': p.stdout}


def side_of(report: dict, side: str) -> tuple[list[dict], list]:
    key = 'features' if side == 'a' else 'features_b'
    return report['interpretability'][key]['units'], report['universality'][key]['best']


@pytest.mark.parametrize('side', ['a', 'b'])
def test_site_holds_the_reports_numbers_of_its_side(runs, side):
    site, other = (runs['site'], runs['site_b']) if side == 'a' else (runs['site_b'], runs['site'])
    report, (units, best) = runs['report'], side_of(runs['report'], side)
    index, feats = read_js(os.path.join(site, 'data', 'index.js')), read_features(site)
    assert index['f1'] == [u['f1'] for u in units] and index['f1'][7] is None
    assert index['explain'] == [u['patterns'][:3] for u in units]
    assert index['match'] == best
    detects = {i: DETECTS.get(i, []) for i in range(N_FEAT)}  # the concept report is of run A's features
    for i, u in enumerate(units):
        assert feats[i]['analysis'] == {**{k: u[k] for k in sa.ANALYSIS_KEYS},
                                        'match': {'feature': best[i][0], 'corr': best[i][1]},
                                        **({'concepts': detects[i]} if side == 'a' else {})}
    assert index.get('concepts') == ([[row[:2] for row in detects[i]] for i in range(N_FEAT)] if side == 'a' else None)
    key = 'features' if side == 'a' else 'features_b'
    univ = report['universality']
    sec = report['concepts']
    plot = os.path.relpath(os.path.join(runs['out'], 'analysis', 'concepts.png'), site)
    concepts = {'min_f1': 0.5, 'plot': plot, 'rule': sec['rule'], 'spread': sec['spread'],
                'tokens': {'n_explain_tokens': 480, 'n_score_tokens': 448}, 'summary': sec['summary'],
                'concepts': [{'name': c['name'], 'kind': c['kind'], 'base_rate': c['base_rate_score'],
                              'n_positive': c['n_positive_score'],
                              'feature': {k: c['features'][k] for k in ('id', 'precision', 'recall', 'f1')},
                              'neuron': {k: c['neurons'][k] for k in ('id', 'precision', 'recall', 'f1')},
                              'spread': {k: c['features_spread'][k] for k in ('n_features', 'features', 'f1')},
                              'n_detecting': sum(row[0] == k for rows in DETECTS.values() for row in rows)}
                             for k, c in enumerate(sec['concepts'])]}
    assert [c['n_detecting'] for c in concepts['concepts']] == [1, 3, 0, 1, 0]
    assert index['meta']['analysis'] == {**({'concepts': concepts} if side == 'a' else {}),
        'report': runs['path'], 'side': side, 'rule': report['rule'],
        'other_site': os.path.relpath(other, site) + '/',
        'tokens': {k: report['tokens'][k] for k in ('n_explain_tokens', 'n_score_tokens', 'n_tokens')},
        'summary': {'features': report['interpretability'][key]['summary'],
                    'neurons': report['interpretability']['neurons']['summary']},
        'universality': {'features': {k: univ[key][k] for k in ('median_max_corr', 'mean_max_corr')},
                         'neurons': {k: univ['neurons'][k] for k in ('median_max_corr', 'mean_max_corr')}},
        'plots': {name: os.path.relpath(os.path.join(runs['out'], 'analysis', f'{name}.png'), site)
                  for name in ('interpretability', 'universality')}}
    for name, href in index['meta']['analysis']['plots'].items():
        assert os.path.isfile(os.path.join(site, href)), name
    assert os.path.isfile(os.path.join(site, index['meta']['analysis']['other_site'], 'feature.html'))


def test_without_a_report_the_site_is_as_before(runs):
    """analysis='' (and 'auto' before any report): the same data files as before the analysis; with the report:
    the same data plus only the analysis keys."""
    plain, none, shown = runs['plain'], runs['none'], runs['site']
    rel = sorted(os.path.relpath(p, plain) for p in glob.glob(os.path.join(plain, '**', '*'), recursive=True))
    assert rel == sorted(os.path.relpath(p, none) for p in glob.glob(os.path.join(none, '**', '*'), recursive=True))
    for name in rel:
        if os.path.isdir(os.path.join(plain, name)) or name in ('data/index.js', 'meta.json'):
            continue
        assert open(os.path.join(plain, name), 'rb').read() == open(os.path.join(none, name), 'rb').read(), name
    index = {d: read_js(os.path.join(d, 'data', 'index.js')) for d in (plain, none, shown)}
    meta = {d: json.load(open(os.path.join(d, 'meta.json'))) for d in (plain, none, shown)}
    for d in (plain, none, shown):
        index[d]['meta'].pop('built')
        meta[d].pop('built'), meta[d].pop('seconds')
    assert index[none] == index[plain] and meta[none] == meta[plain]
    assert 'analysis' not in meta[plain]['config'] and 'analysis' not in index[plain]['meta']
    assert not any('analysis' in f for f in read_features(none).values())
    assert meta[shown].pop('analysis') == index[shown]['meta'].pop('analysis') and meta[shown] == meta[plain]
    assert {k: index[shown].pop(k) is not None for k in ('f1', 'explain', 'match', 'concepts')}
    assert index[shown] == index[plain]
    assert [{k: v for k, v in f.items() if k != 'analysis'} for f in read_features(shown).values()] == \
        list(read_features(plain).values())
    assert 'is not shown' not in runs['stdout_auto']


def test_a_report_without_concepts_is_shown_as_before(runs):
    """A report without 'concepts' (older, or a dataset without labels): no concept key anywhere; one without
    'by_feature' (made before it): the concepts, no per-feature lists (min_f1 and n_detecting null, lists empty)."""
    report, path, out = runs['report'], runs['path'], runs['out']
    shown = sa.site_analysis(report, path, out, 'a')
    older = sa.site_analysis({k: v for k, v in report.items() if k != 'concepts'}, path, out, 'a')
    assert 'concepts' not in older.meta and 'concepts' not in older.index
    assert not any('concepts' in r for r in older.records)
    assert {k: v for k, v in shown.meta.items() if k != 'concepts'} == older.meta
    assert {k: v for k, v in shown.index.items() if k != 'concepts'} == older.index
    assert [{k: v for k, v in r.items() if k != 'concepts'} for r in shown.records] == older.records
    side_b = sa.site_analysis(report, path, runs['out_b'], 'b')
    assert 'concepts' not in side_b.meta and 'concepts' not in side_b.index
    no_by = json.loads(json.dumps(report))
    del no_by['concepts']['by_feature']
    before = sa.site_analysis(no_by, path, out, 'a')
    assert before.meta['concepts']['min_f1'] is None
    assert [c['n_detecting'] for c in before.meta['concepts']['concepts']] == [None] * len(CONCEPTS)
    assert before.index['concepts'] == [[]] * N_FEAT and all(r['concepts'] == [] for r in before.records)


@pytest.mark.parametrize('problem', ['stale', 'foreign', 'incomplete', 'other_size'])
def test_auto_ignores_a_report_that_does_not_apply(runs, tmp_path, capsys, problem):
    report = json.loads(json.dumps(runs['report']))
    sae_path = os.path.join(runs['out'], 'sae')
    if problem == 'foreign':
        report['runs']['a']['sae'] = report['runs']['b']['sae'] = str(tmp_path / 'elsewhere' / 'sae')
    if problem == 'incomplete':
        report['complete'] = False
    path = write_report(str(tmp_path / 'analysis' / 'report.json'), report)
    if problem == 'stale':
        t = os.path.getmtime(os.path.join(sae_path, 'sae_weights.safetensors'))
        os.utime(path, (t - 60, t - 60))
    n_features = N_FEAT + 1 if problem == 'other_size' else N_FEAT
    assert sa.find_analysis('auto', str(tmp_path), sae_path, n_features) is None
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith('note:')]
    assert len(notes) == 1 and path in notes[0] and 'is not shown' in notes[0], notes
    assert sa.find_analysis('auto', str(tmp_path / 'nothing'), sae_path, N_FEAT) is None  # no report: no note
    assert capsys.readouterr().out == ''
    if problem != 'stale':  # an explicit path is used whatever its age, but must be of this SAE
        with pytest.raises(UserError, match="--analysis=''"):
            sa.find_analysis(path, str(tmp_path), sae_path, n_features)
    else:
        assert sa.find_analysis(path, str(tmp_path), sae_path, N_FEAT).meta['side'] == 'a'


def test_explicit_foreign_report_is_one_line_exit_2(runs, tmp_path):
    report = json.loads(json.dumps(runs['report']))
    report['runs']['b']['sae'] = str(tmp_path / 'elsewhere' / 'sae')
    path = write_report(str(tmp_path / 'report.json'), report)
    code, lines, err = run_failing('build_interface.py', f"--out_dir={runs['out_b']}", *ARGS, f'--analysis={path}')
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f'error: --analysis={path}: ') and os.path.join(runs['out_b'], 'sae') in lines[0]
    assert "--analysis=''" in lines[0]
    assert not glob.glob(os.path.join(runs['out_b'], 'interface.*'))  # refused before building: no temp folder


# ----------------------------------------------------------------------------- the pages (headless Chromium)

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    from tools import webdriver
    if not webdriver.available():
        pytest.skip('chromium/chromedriver not installed (apt-get install chromium chromium-driver)')
    b = webdriver.Browser(str(tmp_path_factory.mktemp('chromium_analysis')))
    yield b
    b.quit()


def test_feature_page_shows_explanation_score_and_links_the_best_match(runs, browser):
    units, best = side_of(runs['report'], 'a')
    fid = 5
    u, (j, r) = units[fid], best[fid]
    browser.open(os.path.join(runs['site'], 'feature.html') + f'?f={fid}')
    assert browser.errors() == []
    chips = browser.js("return Array.from(document.querySelectorAll('#patterns tbody tr')).map(tr => "
                       "Array.from(tr.querySelectorAll('.chip')).map(c => c.textContent))")
    assert chips[0] == ['c', 'a', 't'] and [len(c) for c in chips] == [len(p) for p in u['patterns']]
    score = browser.js("return document.getElementById('score').textContent")
    assert f"F1 {u['f1']:.3f}" in score and f"precision {u['precision']:.3f}" in score
    assert f"recall {u['recall']:.3f}" in score
    split = browser.js("return document.getElementById('split').textContent")
    assert f"{u['threshold']}" in split and '480 tokens' in split and '448 tokens' in split
    assert browser.js("return document.querySelectorAll('#output .chip').length") == len(u['output'])
    link = browser.js("const a = document.getElementById('matchlink'); return [a.textContent, a.getAttribute('href'),"
                      " a.href]")
    assert link[0].startswith(f'#{j} (r = ') and abs(float(link[0].split('= ')[1].rstrip(')')) - r) < 0.0051
    assert link[1] == os.path.relpath(runs['site_b'], runs['site']) + f'/feature.html?f={j}'
    assert link[2] == 'file://' + os.path.join(runs['site_b'], 'feature.html') + f'?f={j}'
    browser.click('#matchlink')  # into run B's site: its feature j, whose own best match links back into A's
    browser.wait(f"return document.getElementById('title').textContent === 'Feature #{j}' && "
                 "document.body.getAttribute('data-ready') === '1'")
    back = side_of(runs['report'], 'b')[1][j][0]
    assert browser.js("return document.getElementById('matchlink').href") == \
        'file://' + os.path.join(runs['site'], 'feature.html') + f'?f={back}'
    browser.open(os.path.join(runs['site'], 'feature.html') + '?f=7')  # not scored: said so
    assert 'not scored' in browser.js("return document.getElementById('score').textContent")
    browser.open(os.path.join(runs['site'], 'feature.html') + '?f=8')  # no SCORE firing: F1 0, said so
    score = browser.js("return document.getElementById('score').textContent")
    assert 'F1 0' in score and 'no firing on the SCORE tokens' in score and 'recall' not in score
    browser.open(os.path.join(runs['plain'], 'feature.html') + f'?f={fid}')  # no report: no panel
    assert browser.errors() == [] and browser.js("return document.getElementById('explanation')") is None


def shown_ids(browser) -> list[int]:
    return browser.js("return Array.from(document.querySelectorAll('#table tbody tr')).map(r => +r.dataset.id)")


def test_index_sorts_by_f1_and_match_and_searches_explanations(runs, browser):
    units, best = side_of(runs['report'], 'a')
    index = read_js(os.path.join(runs['site'], 'data', 'index.js'))
    browser.open(os.path.join(runs['site'], 'index.html'))
    assert browser.errors() == []
    f1 = [-1.0 if u['f1'] is None else u['f1'] for u in units]  # not scored: below every score
    browser.click('th[data-key="f1"]')  # best first
    assert shown_ids(browser) == sorted(range(N_FEAT), key=lambda i: (-f1[i], i))
    browser.click('th[data-key="f1"]')
    assert shown_ids(browser) == sorted(range(N_FEAT), key=lambda i: (f1[i], i))
    browser.click('th[data-key="match_r"]')
    assert shown_ids(browser) == sorted(range(N_FEAT), key=lambda i: (-best[i][1], i))
    cells = browser.js("return Array.from(document.querySelectorAll('#table tbody tr')).map(r => "
                       "[+r.dataset.id, r.querySelector('a.mlink').getAttribute('href')])")
    assert all(href == f"{index['meta']['analysis']['other_site']}feature.html?f={best[i][0]}" for i, href in cells)
    summary = browser.js("return document.getElementById('analysis').textContent")
    S = runs['report']['interpretability']
    assert f"median F1 {S['features']['summary']['median_f1']:.2f}" in summary
    assert f"{S['neurons']['summary']['median_f1']:.2f} for the neurons" in summary and '(run A)' in summary
    F, N = S['features']['summary'], S['neurons']['summary']
    assert F['n_no_score_firings'] == N['n_no_score_firings'] == 1  # unit 8 of each
    assert f"{F['n_scored']} of {F['n_units']} and {N['n_scored']} of {N['n_units']} scored; of them 1 and 1 never " \
        f"fire on the SCORE tokens and count as F1 0 (without them: median " \
        f"{F['with_score_firings']['median_f1']:.2f} vs {N['with_score_firings']['median_f1']:.2f})" in summary
    assert browser.js("return document.getElementById('plot_universality').getAttribute('href')") == \
        index['meta']['analysis']['plots']['universality']
    # search: a token found only in explanations (of SEARCHED) and maybe among a feature's top tokens / logits
    browser.type('#q', XSS[0].decode())
    found = set(shown_ids(browser))
    in_chips = {i for i in range(N_FEAT) if SCRIPT_TOKEN in index['top_tokens'][i] + index['top_logits'][i]}
    assert set(SEARCHED) <= found and found <= set(SEARCHED) | in_chips
    assert set(SEARCHED) - in_chips  # one found by its explanation alone
    chips = browser.js(f"return Array.from(document.querySelectorAll('tr[data-id=\"{SEARCHED[0]}\"] td.explain "
                       ".chip')).map(c => c.textContent)")
    assert chips[0] == XSS[0].decode()  # the token's text, not markup
    assert browser.js("return document.querySelectorAll('#table script, #table img').length") == 0
    assert browser.errors() == []


# ----------------------------------------------------------------------------- ground-truth concepts on the pages

def concept_rows(browser) -> list[list]:
    """concepts.html's table: per row [name, best feature's href, its text, neuron cell, index link's href or None,
    that count's text, spread's feature links]."""
    return browser.js("return Array.from(document.querySelectorAll('#ctable tbody tr')).map(tr => {"
                      "const i = tr.querySelector('a.ilink'); return [tr.dataset.concept, "
                      "tr.querySelector('a.bestf').getAttribute('href'), tr.querySelector('a.bestf').textContent, "
                      "tr.querySelector('td.bestn').textContent, i && i.getAttribute('href'), "
                      "tr.lastElementChild.textContent, Array.from(tr.querySelectorAll('td.spread a.flink'))"
                      ".map(a => a.getAttribute('href'))]})")


def test_concepts_page_lists_every_concept_with_its_best_feature_and_neuron_linked(runs, browser):
    sec = runs['report']['concepts']
    browser.open(os.path.join(runs['site'], 'concepts.html'))
    assert browser.errors() == []
    rows = concept_rows(browser)
    n_detecting = [1, 3, 0, 1, 0]
    assert rows == [[c['name'], f"feature.html?f={c['features']['id']}", f"#{c['features']['id']}",
                     f"neuron {c['neurons']['id']}",
                     f"index.html?concept={quote_plus(c['name'])}" if n else None, str(n),
                     [f'feature.html?f={f}' for f in c['features_spread']['features']]]
                    for c, n in zip(sec['concepts'], n_detecting)]
    cells = browser.js("return Array.from(document.querySelectorAll('#ctable tbody tr')).map(tr => "
                       "Array.from(tr.children).map(td => td.textContent))")
    assert cells[1][4:7] == ['0.900', '0.925', '0.912'] and cells[4][6] == ''  # P R F1; null: blank
    assert cells[2][11].startswith('2 (held-out F1 0.90): ')
    assert cells[0][11].startswith('not reached (no raise after 3, held-out F1 0.41): ')  # the greedy stopped
    assert cells[3][11].startswith('not within 20 (held-out F1 0.41): #0 #1 ')
    assert browser.js("return document.getElementById('cplot').getAttribute('src')") == \
        read_js(os.path.join(runs['site'], 'data', 'index.js'))['meta']['analysis']['concepts']['plot']
    browser.click('#ctable th[data-key="f_f1"]')  # best feature's F1, best first; not scored last
    f1 = [c['features']['f1'] for c in sec['concepts']]
    assert [r[0] for r in concept_rows(browser)] == [CONCEPTS[k] for k in sorted(
        range(len(f1)), key=lambda k: (-(f1[k] if f1[k] is not None else -1), k))]
    assert browser.js("return document.querySelectorAll('#ctable script, #ctable img').length") == 0
    browser.open(os.path.join(runs['site'], 'concepts.html') + '?concept=def')  # the row a feature page links to
    assert browser.js("return Array.from(document.querySelectorAll('#ctable tr.hl')).map(r => r.dataset.concept)") \
        == ['def']
    browser.click('#ctable tr.hl a.ilink')  # its features: the index filtered by it
    browser.wait("return location.pathname.endsWith('index.html') && document.body.getAttribute('data-ready')")
    assert shown_ids(browser) == [5, 11, 20]
    # no concept report: one line saying how to make one (no analysis); run B's site: run A's concepts
    browser.open(os.path.join(runs['plain'], 'concepts.html'))
    line = browser.js("return document.getElementById('noconcepts').textContent")
    assert browser.errors() == [] and 'python label_concepts.py --data_dir=' in line and 'analyze.py' in line
    assert browser.js("return document.getElementById('ctable')") is None
    browser.open(os.path.join(runs['site_b'], 'concepts.html'))
    assert browser.js("return document.querySelector('#noconcepts a').href") == \
        'file://' + os.path.join(runs['site'], 'concepts.html')


def test_feature_page_lists_the_concepts_it_detects_each_linked(runs, browser):
    browser.open(os.path.join(runs['site'], 'feature.html') + '?f=5')
    assert browser.errors() == []
    rows = browser.js("return Array.from(document.querySelectorAll('#detects tbody tr')).map(tr => "
                      "[tr.querySelector('a.clink').getAttribute('href'), "
                      "...Array.from(tr.children).map(td => td.textContent)])")
    assert rows == [['concepts.html?concept=def', 'def', 'lexical', '2.12%', '0.900', '0.925', '0.912'],
                    ['concepts.html?concept=comment', 'comment', 'lexical', '1.12%', '0.550', '0.693', '0.613']]
    assert browser.js("return document.getElementById('bestfor').textContent") == \
        'the best single feature of all for: def (F1 0.912)'
    browser.open(os.path.join(runs['site'], 'feature.html') + '?f=3')  # a concept named in markup: as text
    assert browser.js("return document.querySelector('#detects a.clink').textContent") == XSS[1].decode()
    assert browser.js("return document.querySelector('#detects a.clink').getAttribute('href')") == \
        'concepts.html?concept=' + quote_plus(XSS[1].decode())
    browser.click('#detects a.clink')
    browser.wait("return location.pathname.endsWith('concepts.html') && document.body.getAttribute('data-ready')")
    assert browser.js("return document.querySelector('#ctable tr.hl').dataset.concept") == XSS[1].decode()
    assert browser.errors() == []
    browser.open(os.path.join(runs['site'], 'feature.html') + '?f=0')  # detects none: said so
    assert 'Detects none of the 5 concepts' in browser.js("return document.getElementById('nodetects').textContent")
    assert browser.js("return document.getElementById('bestfor')") is None  # the 'best' for 'never', of no F1
    for site in (runs['site_b'], runs['plain']):  # run B's site and a site without a report: no panel
        browser.open(os.path.join(site, 'feature.html') + '?f=5')
        assert browser.errors() == [] and browser.js("return document.getElementById('concepts')") is None


def test_index_filters_by_a_concept(runs, browser):
    browser.open(os.path.join(runs['site'], 'index.html') + '?concept=def')
    assert browser.errors() == []
    assert shown_ids(browser) == [5, 11, 20]  # the features detecting it, best F1 first
    assert browser.js("return document.getElementById('concept').value") == 'def'
    cells = browser.js("return Array.from(document.querySelectorAll('#table tbody tr td.clist')).map(td => "
                       "Array.from(td.querySelectorAll('a.clink')).map(a => [a.textContent, a.getAttribute('href')]))")
    assert cells[0] == [['def 0.91', 'concepts.html?concept=def'], ['comment 0.61', 'concepts.html?concept=comment']]
    browser.js("const s = document.getElementById('concept'); s.value = 'comment'; "
               "s.dispatchEvent(new Event('change'))")
    assert shown_ids(browser) == [5]
    browser.js("const s = document.getElementById('concept'); s.value = ''; s.dispatchEvent(new Event('change'))")
    assert len(shown_ids(browser)) == N_FEAT
    assert shown_ids(browser)[:4] == [5, 11, 3, 20]  # still by the concept column: each feature's best F1
    browser.click('th[data-key="id"]')
    browser.click('th[data-key="cf1"]')  # again: best first, those detecting none last
    assert shown_ids(browser)[:5] == [5, 11, 3, 20, 0]
    assert browser.js("return document.getElementById('conceptslink').getAttribute('href')") == 'concepts.html'
    browser.open(os.path.join(runs['site'], 'index.html') + '?concept=nosuch')
    assert 'nosuch' in browser.js("return document.getElementById('noconcept').textContent")
    assert len(shown_ids(browser)) == N_FEAT and browser.errors() == []
    browser.open(os.path.join(runs['site_b'], 'index.html') + '?concept=def')  # run B: no concept filter
    assert browser.js("return document.getElementById('concept')") is None and len(shown_ids(browser)) == N_FEAT
