"""
What a feature browser shows of analyze.py's report (<out_dir>/analysis/report.json): found and checked against the
SAE (find_analysis), then each feature's explanation, held-out scores and best match in the other run (SiteAnalysis),
and with the report's ground-truth concepts (run A's site only) every concept's best feature and neuron and the
concepts each feature detects (site_concepts).
"""
import os
from typing import NamedTuple

from monosemanticity.common import UserError, print0, read_json

N_EXPLAIN = 3  # patterns of each feature's explanation in INDEX.explain
ANALYSIS_KEYS = ('threshold', 'patterns', 'pattern_precision', 'pattern_fires', 'output', 'tp', 'fp', 'fn',
                 'precision', 'recall', 'f1', 'n_fire_explain', 'n_fire_score')  # of a unit, in a record's analysis


class SiteAnalysis(NamedTuple):
    """What a site shows of analyze.py's report on its SAE (docs/browser.md)."""
    meta: dict  # INDEX.meta.analysis
    index: dict  # INDEX's per-feature arrays f1, explain, match (and concepts)
    records: list[dict]  # per feature, its record's `analysis`


def find_analysis(setting: str, out_dir: str, sae_path: str, n_features: int) -> SiteAnalysis | None:
    """The report the site shows. setting '': none; a path: that report, which must be a complete analysis of this
    SAE (UserError otherwise); 'auto': <out_dir>/analysis/report.json if it is complete, of this SAE and newer than
    its weights, else none (with one note when the file exists but does not apply)."""
    if setting and setting != 'auto':
        report, problem = check_report(setting, sae_path, n_features, check_age=False)
        if problem:
            raise UserError(f"--analysis={setting}: {problem}: pass the report.json of an analysis of this SAE "
                            f"(analyze.py), or --analysis='' for none")
        return site_analysis(report, setting, out_dir, report_side(report, sae_path))
    path = os.path.join(out_dir, 'analysis', 'report.json')
    if not setting or not os.path.isfile(path):
        return None
    report, problem = check_report(path, sae_path, n_features, check_age=True)
    if problem:
        print0(f"note: {path} is not shown: {problem} (rerun analyze.py, or set --analysis)")
        return None
    return site_analysis(report, path, out_dir, report_side(report, sae_path))


def report_side(report: dict, sae_path: str) -> str | None:
    """'a' or 'b': the run of the report whose SAE is the one at sae_path; None if neither."""
    here = os.path.realpath(sae_path)
    return next((side for side in ('a', 'b') if os.path.realpath(report['runs'][side]['sae']) == here), None)


def check_report(path: str, sae_path: str, n_features: int, check_age: bool) -> tuple[dict, str]:
    """(the report, '') if path holds a complete analyze.py report of the SAE at sae_path, with one unit per feature
    in id order (and, check_age, newer than the SAE's weights); else (its content, what is wrong in a few words)."""
    try:
        report = read_json(path)
        if report.get('complete') is not True:
            return report, "it is not complete (analyze.py did not finish)"
        side = report_side(report, sae_path)
        if side is None:
            runs = report['runs']
            return report, (f"it analyses the SAEs {runs['a']['sae']} and {runs['b']['sae']}, not "
                            f"{os.path.abspath(sae_path)}")
        key = 'features' if side == 'a' else 'features_b'
        units, best = report['interpretability'][key]['units'], report['universality'][key]['best']
        if [u['id'] for u in units] != list(range(n_features)) or len(best) != n_features:
            return report, f"its run {side} has {len(units)} features, the SAE has {n_features}"
    except UserError as e:
        return {}, str(e)
    except (KeyError, TypeError, AttributeError) as e:
        return {}, f"it is not an analyze.py report ({type(e).__name__}: {e})"
    weights = os.path.join(sae_path, 'sae_weights.safetensors')
    if check_age and os.path.getmtime(path) < os.path.getmtime(weights):
        return report, f"it is older than {weights}"
    return report, ''


def site_analysis(report: dict, path: str, out_dir: str, side: str) -> SiteAnalysis:
    """The site's view of a checked report: side 'a' shows interpretability.features and universality.features
    (best matches in run b), side 'b' features_b (best matches in run a); neurons are run A's. O(F)."""
    key, other = ('features', 'b') if side == 'a' else ('features_b', 'a')
    interp, univ = report['interpretability'], report['universality']
    units, best = interp[key]['units'], univ[key]['best']
    site_dir, folder = os.path.abspath(os.path.join(out_dir, 'interface')), os.path.dirname(os.path.abspath(path))
    other_site = os.path.relpath(os.path.join(os.path.abspath(report['runs'][other]['out_dir']), 'interface'),
                                 site_dir)
    plots = {name: os.path.relpath(os.path.join(folder, f'{name}.png'), site_dir).replace(os.sep, '/')
             if os.path.isfile(os.path.join(folder, f'{name}.png')) else None
             for name in ('interpretability', 'universality')}
    corr = {unit: {k: univ[part][k] for k in ('median_max_corr', 'mean_max_corr')}
            for unit, part in (('features', key), ('neurons', 'neurons'))}
    meta = {'report': os.path.abspath(path), 'side': side, 'other_site': other_site.replace(os.sep, '/') + '/',
            'rule': report['rule'],
            'tokens': {k: report['tokens'][k] for k in ('n_explain_tokens', 'n_score_tokens', 'n_tokens')},
            'summary': {'features': interp[key]['summary'], 'neurons': interp['neurons']['summary']},
            'universality': corr, 'plots': plots}
    index = {'f1': [u['f1'] for u in units], 'explain': [u['patterns'][:N_EXPLAIN] for u in units],
             'match': [[j, r] for j, r in best]}
    records = [{**{k: u[k] for k in ANALYSIS_KEYS}, 'match': {'feature': j, 'corr': r}}
               for u, (j, r) in zip(units, best)]
    if side == 'a' and 'concepts' in report:  # the concept report is of run A's features and neurons
        meta['concepts'], index['concepts'], detects = site_concepts(report['concepts'], folder, site_dir, len(units))
        for record, rows in zip(records, detects):
            record['concepts'] = rows
    return SiteAnalysis(meta, index, records)


def site_concepts(section: dict, folder: str, site_dir: str, n_features: int) -> tuple[dict, list, list]:
    """Of the report's 'concepts' (docs/formats.md): INDEX.meta.analysis.concepts, INDEX.concepts (per feature
    [[concept, f1], ...]) and per feature its record's analysis.concepts ([[concept, f1, precision, recall], ...]),
    best first (docs/browser.md). A report without 'by_feature' (older) gives min_f1 null and empty lists. O(F + C)."""
    by_feature = section.get('by_feature')
    detects = [[] for _ in range(n_features)]
    for f, rows in (by_feature or {}).get('features', {}).items():
        detects[int(f)] = rows
    n_detecting = [0] * len(section['concepts'])
    for rows in detects:
        for row in rows:
            n_detecting[row[0]] += 1
    plot = os.path.join(folder, 'concepts.png')
    unit = lambda b: {k: b[k] for k in ('id', 'precision', 'recall', 'f1')}  # noqa: E731
    concepts = [{'name': c['name'], 'kind': c['kind'], 'base_rate': c['base_rate_score'],
                 'n_positive': c['n_positive_score'], 'feature': unit(c['features']), 'neuron': unit(c['neurons']),
                 'spread': ({k: c['features_spread'][k] for k in ('n_features', 'features', 'f1')}
                            if 'features_spread' in c else None),
                 'n_detecting': n_detecting[i] if by_feature is not None else None}
                for i, c in enumerate(section['concepts'])]
    meta = {'min_f1': by_feature['min_f1'] if by_feature is not None else None,
            'plot': os.path.relpath(plot, site_dir).replace(os.sep, '/') if os.path.isfile(plot) else None,
            'rule': section['rule'], 'spread': section.get('spread'),
            'tokens': {k: section[k] for k in ('n_explain_tokens', 'n_score_tokens')},
            'summary': section['summary'], 'concepts': concepts}
    return meta, [[row[:2] for row in rows] for rows in detects], detects
