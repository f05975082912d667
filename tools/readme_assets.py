"""
Regenerate the results in the README and docs/ from a finished demo run (`make demo`), so that they are never
hand-edited. Each block lies between `<!-- NAME:start -->` / `<!-- NAME:end -->` markers in the file BLOCK_FILES
names: the results table (`results`, README.md), the table of tools/guards.py (`guards`, docs/guards.md), and
screenshots of the feature browser (assets/index.png, assets/feature.png) taken with headless Chromium.
After `make sweep` also the sweep's block (`sweep`, docs/sweeps.md): its Pareto table (out/demo/sweep/pareto.json),
assets/pareto.png, two feature families chosen by split_score below, and screenshots of the sweep site
(assets/sweep.png, assets/family.png).
After `make analysis` also the analysis block (`analysis`, docs/findings.md): the features-vs-neurons and
universality tables of out/demo/analysis/report.json, its plots (assets/interpretability.png,
assets/universality.png), the explanations at a few quantiles of F1, and a feature page showing its explanation
(assets/analysis_feature.png); with concept labels also the concept block (`concepts`, docs/findings.md): the
summary, every concept's best feature, neuron and spread, and assets/concepts.png.
After `python -m bench.saelens` also the SAELens block (`saelens`, README.md): its table of ours vs SAELens
(out/demo/sweep/saelens/side_by_side.json). Links in a block are relative to the file that holds it.

    python tools/readme_assets.py [--out_dir=out/demo] [--feature=ID]      (or: make readme)
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for common.py
from monosemanticity.common import REPO_ROOT, atomic_write_bytes, die, read_site_data, results_table  # noqa: E402
from monosemanticity.families import SCORE_KEYS  # noqa: E402
from configurator import configure  # noqa: E402
from tools.guards import markdown  # noqa: E402
from bench.saelens import side_by_side  # noqa: E402

out_dir = 'out/demo'  # the run folder
feature = 0  # the feature page to show
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

site = os.path.abspath(os.path.join(out_dir, 'interface'))
if not os.path.isfile(os.path.join(site, 'index.html')):
    die(f"{site}/index.html not found: run `make demo` first")
chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
if chromium is None:
    die("chromium not found: apt-get install -y chromium")


def screenshot(url: str, path: str, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
                        '--disable-background-networking', '--disable-component-update', '--disable-sync',
                        '--hide-scrollbars', f'--user-data-dir={profile}', f'--window-size={width},{height}',
                        '--virtual-time-budget=5000', f'--screenshot={path}', url],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {path}")


os.makedirs(os.path.join(REPO_ROOT, 'assets'), exist_ok=True)
screenshot(f"file://{site}/index.html", os.path.join(REPO_ROOT, 'assets', 'index.png'), 1200, 430)
screenshot(f"file://{site}/feature.html?f={feature}", os.path.join(REPO_ROOT, 'assets', 'feature.png'), 1400, 1400)



# each generated block and the file (in the repo) that holds it
BLOCK_FILES = {'results': 'README.md', 'saelens': 'README.md', 'sweep': 'docs/sweeps.md',
               'analysis': 'docs/findings.md', 'concepts': 'docs/findings.md', 'guards': 'docs/guards.md',
               'ground_truth': 'README.md'}


def link(path: str, name: str) -> str:
    """path (absolute, or relative to the current folder) as a link from the file that holds block name."""
    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.join(REPO_ROOT, BLOCK_FILES[name])))


def replace_block(name: str, body: str) -> None:
    """Replace what lies between <!-- name:start --> and <!-- name:end --> in BLOCK_FILES[name] by body."""
    path = os.path.join(REPO_ROOT, BLOCK_FILES[name])
    with open(path) as f:
        text = f.read()
    start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
    if start not in text or end not in text:
        die(f"{BLOCK_FILES[name]} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_bytes(path, f"{head}{start}\n{body}\n{end}{tail}".encode())
    print(f"updated {path} ({name})")


def pareto_markdown(records: list[dict]) -> str:
    rows = ['| SAE | kind | features | sparsity | L0 | FVU | loss recovered (zero / mean abl.) | KL | alive | '
            'ultralow of alive | concept F1 | trained by |',
            '| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |']
    for r in records:
        concept = '–' if r.get('concept_f1') is None else f"{r['concept_f1']:.3f}"
        rows.append(f"| {r['name']} | {r['kind']} | {r['n_features']} | {r['sparsity']} | {r['l0']:.1f} | "
                    f"{r['fvu']:.3f} | {r['loss_recovered']:.3f} / {r['loss_recovered_mean_abl']:.3f} | "
                    f"{r['kl_spliced']:.3f} | {r['alive_frac']:.1%} | {r['ultralow_frac_of_alive']:.1%} | "
                    f"{concept} | {'SAELens' if r.get('source') == 'saelens' else 'this repo'} |")
    neurons = next((r['concept_f1_neurons'] for r in records if r.get('concept_f1_neurons') is not None), None)
    if neurons is not None:
        rows.append(f"\nConcept F1: the median over the ground-truth concepts of the best single feature's held-out "
                    f"F1 (the [concept axis](#the-concept-axis)); the best single neurons' median on the same tokens: "
                    f"{neurons:.3f}.")
    return '\n'.join(rows)


def splits_markdown(family: dict, site_rel: str, n: int = 6) -> str:
    """The concepts whose best feature in the family's smallest SAE has the most parts in the largest
    (FAMILY.concepts, concept_axis.concept_splits): a table, n rows."""
    rows = sorted(family['concepts'], key=lambda r: (-len(r['sizes'][-1]['parts']), -(r['root'][4] or 0)))
    small, large = family['members'][0], family['members'][-1]
    n_split = sum(r['split'] for r in rows)
    out = [f"{n_split} of the {len(rows)} concepts split: their best feature in {small} has two or more descendants "
           f"in {large} that each detect a part of the concept (held-out precision >= 0.5). The {n} with the most "
           f"parts:\n", f"| concept | {small}: best feature, F1 | {large}: its parts (recall each) | {large}: best "
                         f"feature, F1 |", '| --- | --- | --- | --- |']
    for r in rows[:n]:
        last = r['sizes'][-1]
        parts = ', '.join(f"[#{c[0]}]({site_rel}/{large}/feature.html?f={c[0]}) {c[3]:.2f}" for c in last['parts'])
        out.append(f"| `{r['concept']}` | [#{r['root'][0]}]({site_rel}/{small}/feature.html?f={r['root'][0]}) "
                   f"{r['root'][4]:.2f} | {parts or 'none'} | [#{last['best'][0]}]({site_rel}/{large}/feature.html?"
                   f"f={last['best'][0]}) {last['best'][4]:.2f} |")
    return '\n'.join(out)


LINK_NAMES = {'masked': 'masked cosine of the decoded activations', 'decoder': 'decoder cosine',
              'activation': 'activation correlation'}
MAX_DENSITY = 0.01  # docs/sweeps.md shows families of features firing on < 1% of tokens (broad ones split into noise)


def split_score(family: dict, root: int) -> tuple[int, int]:
    """(descendants of root in the largest member, its children): the features reached through parent links (each
    scoring >= the family's threshold), each once."""
    members, nodes = family['members'], family['nodes']
    level, first = [root], 0
    for i in range(len(members) - 1):
        level = sorted({c for p in level for c in nodes[members[i]][p]['children']})
        first = first or len(level)
    return len(level), first


def tokens(node: dict) -> str:
    return ', '.join('`' + (t if isinstance(t, str) else bytes(t).decode('utf-8', 'replace')).replace('`', "'")
                     .replace('\n', '\\n').replace('|', '\\|') + '`' for t in node['top_tokens'][:4])


def parent_link(node: dict, parent: int) -> dict:
    """The record of node's link to its parent `parent` ({feature, cos, corr, masked})."""
    return next(p for p in node['parents'] if p['feature'] == parent)


def family_markdown(family: dict, root: int, site_rel: str) -> str:
    """A nested list: the root and, per larger size, its children (at most 3 each, best link first)."""
    members, nodes, key = family['members'], family['nodes'], SCORE_KEYS[family['link']]
    lines = []

    def walk(level: int, f: int, parent: int | None, depth: int) -> None:
        node, member = nodes[members[level]][f], members[level]
        link = f"[{member} #{f}]({site_rel}/{member}/feature.html?f={f})"
        via = ''
        if parent is not None:
            p = parent_link(node, parent)
            others = [f"#{q['feature']}" for q in node['parents'] if q['feature'] != parent]
            via = (f" (masked {p['masked']:.2f}, cos {p['cos']:.2f}, corr {p['corr']:.2f}" +
                   (f"; also a child of {members[level - 1]} {', '.join(others)}" if others else '') + ')')
        lines.append(f"{'  ' * depth}- {link}{via}: density {node['density']:.2%}, fires on {tokens(node)}")
        if level + 1 < len(members):
            kids = nodes[members[level + 1]]
            for c in sorted(node['children'], key=lambda c: -parent_link(kids[c], f)[key])[:3]:
                walk(level + 1, c, f, depth + 1)
    walk(0, root, None, 0)
    return '\n'.join(lines)


def orphans_markdown(family: dict) -> str:
    """How many features of each larger member have no parent (none scoring >= the threshold) or are not linked."""
    parts = []
    for member in family['members'][1:]:
        nodes = family['nodes'][member]
        none = sum(n['linked'] and not n['parents'] for n in nodes)
        low = sum(not n['linked'] for n in nodes)
        one = sum(len(n['parents']) == 1 for n in nodes)
        several = sum(len(n['parents']) > 1 for n in nodes)
        parts.append(f"{member}: of its {len(nodes)} features {none / len(nodes):.1%} without a parent, "
                     f"{one / len(nodes):.1%} with one, {several / len(nodes):.1%} with several, {low} not linked "
                     f"(ultralow)")
    return '; '.join(parts)


def sweep_block(sweep_dir: str) -> str | None:
    """The sweep block (None if the sweep or its site is not there), its PNGs copied / shot into assets/."""
    site_dir = os.path.join(sweep_dir, 'interface')
    if not (os.path.isfile(os.path.join(sweep_dir, 'pareto.json')) and os.path.isfile(os.path.join(site_dir,
                                                                                                   'index.html'))):
        return None
    with open(os.path.join(sweep_dir, 'pareto.json')) as f:
        records = json.load(f)
    shutil.copyfile(os.path.join(sweep_dir, 'pareto.png'), os.path.join(REPO_ROOT, 'assets', 'pareto.png'))
    site = os.path.abspath(site_dir)
    screenshot(f"file://{site}/index.html", os.path.join(REPO_ROOT, 'assets', 'sweep.png'), 1200, 700)
    parts = [f"<!-- written by tools/readme_assets.py from {sweep_dir}: do not edit by hand -->",
             pareto_markdown(records), '',
             f"![the Pareto plot of the demo sweep]({link(os.path.join(REPO_ROOT, 'assets', 'pareto.png'), 'sweep')})"]
    sweep = read_site_data(os.path.join(site_dir, 'data', 'sweep.js'))
    for fam in sweep['families']:
        family = read_site_data(os.path.join(site_dir, 'data', f"family_{fam['name']}.js"))
        first = family['nodes'][family['members'][0]]  # specific features (density < MAX_DENSITY) split most
        roots = sorted([r for r in range(len(first)) if first[r]['density'] < MAX_DENSITY] or range(len(first)),
                       key=lambda r: split_score(family, r), reverse=True)[:2]
        name = LINK_NAMES[family['link']]
        parts.append(f"\nFamily `{family['name']}` ({' -> '.join(map(str, family['sizes']))} features; parents: the "
                     f"features of the next smaller size of {name} >= {family['threshold']} on "
                     f"{family['n_tokens']:,} val tokens, none, one or several; {orphans_markdown(family)}). The two "
                     f"features of {family['members'][0]} that split most (descendants in {family['members'][-1]}: "
                     f"{', '.join(str(split_score(family, r)[0]) for r in roots)}):\n")
        parts += [family_markdown(family, r, link(site_dir, 'sweep')) for r in roots]
        if family.get('concepts'):
            parts += ['', splits_markdown(family, link(site_dir, 'sweep'))]
        screenshot(f"file://{site}/family.html?family={family['name']}&root={roots[0]}",
                   os.path.join(REPO_ROOT, 'assets', 'family.png'), 1400, 900)
    return '\n'.join(parts)


QUANTILES = (0.9, 0.5, 0.1)  # the explanations shown: the units at these quantiles of F1
MIN_SHOWN_FIRES = 50  # the feature page shown fires on at least this many SCORE tokens


def md_text(text: str) -> str:
    """A unit's explanation text inside a markdown table cell."""
    return '`' + text.replace('`', "'").replace('|', '\\|') + '`'


def quantile_units(units: list[dict]) -> list[tuple[float, dict]]:
    """The scored units at QUANTILES of F1 (by rank, ties by id)."""
    scored = sorted((u for u in units if u['f1'] is not None), key=lambda u: (u['f1'], u['id']))
    return [(q, scored[min(int(q * len(scored)), len(scored) - 1)]) for q in QUANTILES] if scored else []


def analysis_block(out_dir: str) -> str | None:
    """The analysis block (None if there is no complete report), its PNGs copied / shot into assets/."""
    path = os.path.join(out_dir, 'analysis', 'report.json')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        report = json.load(f)
    if not report.get('complete'):
        return None
    if 'with_score_firings' not in report['interpretability']['features']['summary']:
        die(f"{path} predates the rule that scores a unit with no SCORE firing F1 0: rerun "
            f"`python analyze.py config/demo/analysis.py --out_dir={out_dir}`")
    for png in ('interpretability.png', 'universality.png'):
        shutil.copyfile(os.path.join(out_dir, 'analysis', png), os.path.join(REPO_ROOT, 'assets', png))
    interp, univ, tok = report['interpretability'], report['universality'], report['tokens']
    rows = ['| units | scored (dead) | no SCORE firing | median F1 | without them | mean F1 | F1 > 0.5 | '
            'median precision | median recall | median max corr. with run B | mean max corr. |',
            '| --- |' + ' ---: |' * 10]
    for key, name in (('features', 'SAE features (run A)'), ('neurons', 'MLP neurons (run A)'),
                      ('features_b', 'SAE features (run B)')):
        s, u, w = interp[key]['summary'], univ[key], interp[key]['summary']['with_score_firings']
        with_a = ' (with run A)' if key == 'features_b' else ''
        rows.append(f"| {name} | {s['n_scored']} of {s['n_units']} ({s['n_dead_explain']}) | "
                    f"{s['n_no_score_firings']} | {s['median_f1']:.3f} | {w['median_f1']:.3f} ({w['n_scored']}) | "
                    f"{s['mean_f1']:.3f} | {s['share_f1_above_0.5']:.1%} | {s['median_precision']:.3f} | "
                    f"{s['median_recall']:.3f} | {u['median_max_corr']:.3f}{with_a} | {u['mean_max_corr']:.3f} |")
    rule, assets = report['rule'], link(os.path.join(REPO_ROOT, 'assets'), 'analysis')
    parts = [f"<!-- written by tools/readme_assets.py from {path}: do not edit by hand -->",
             f"Explanations from {tok['n_explain_tokens']:,} val tokens, scored on {tok['n_score_tokens']:,} other "
             f"val tokens; correlations over all {tok['n_tokens']:,}. A unit fires above {rule['fire_frac']} x its "
             f"max activation on the explanation tokens; at most {rule['max_patterns']} patterns, each of precision "
             f">= {rule['min_precision']} covering >= {rule['min_pattern_fires']} firings. Scored: the units that "
             f"fire on the explanation tokens (dead: the others, left out); one that never fires on the held-out "
             f"tokens (no SCORE firing) scores F1 0 (precision 0, recall 0/0 counted 0), and every number but "
             f"'without them' (the median F1 of the others, their count) counts it.\n", '\n'.join(rows), '',
             f"![F1 of the offline explanations: features vs neurons]({assets}/interpretability.png)",
             f"![max correlation with the other run: features vs neurons]({assets}/universality.png)", '',
             '| unit | F1 quantile | F1 (P / R) | explanation (the first 4 patterns) |', '| --- | ---: | --- | --- |']
    for key, name in (('features', 'feature'), ('neurons', 'neuron')):
        for q, u in quantile_units(interp[key]['units']):
            text = ' | '.join(u['text'].split(' | ')[:4]) if u['patterns'] else u['text']
            parts.append(f"| {name} #{u['id']} | {q:.0%} | {u['f1']:.2f} ({u['precision']:.2f} / "
                         f"{u['recall']:.2f}) | {md_text(text)} |")
    units, best = interp['features']['units'], univ['features']['best']
    shown = max((u for u in units if u['f1'] is not None and u['n_fire_score'] >= MIN_SHOWN_FIRES),
                key=lambda u: u['f1'] + best[u['id']][1], default=None)
    if shown is not None:
        site = os.path.abspath(os.path.join(out_dir, 'interface'))
        screenshot(f"file://{site}/feature.html?f={shown['id']}",
                   os.path.join(REPO_ROOT, 'assets', 'analysis_feature.png'), 1200, 900)
        parts.append(f"\nThe feature of highest F1 + match r among those firing on >= {MIN_SHOWN_FIRES} SCORE tokens, "
                     f"#{shown['id']} (F1 {shown['f1']:.2f}, r = {best[shown['id']][1]:.2f} with run B's "
                     f"#{best[shown['id']][0]}):\n\n![feature #{shown['id']}'s page with its explanation, score and "
                     f"best match in run B]({assets}/analysis_feature.png)")
    return '\n'.join(parts)


def saelens_block(path: str) -> str | None:
    """bench/saelens.py's side_by_side.json as the README's table, with the budget, the machine and its load."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        r = json.load(f)
    ratios = [p['saelens_over_ours'] for p in r['points']]
    return (f"<!-- written by tools/readme_assets.py from {path}: do not edit by hand -->\n"
            f"Measured {r['date']} on {r['cpus']} CPU cores ({r['threads']} threads each side), torch {r['torch']}, "
            f"SAELens {r['saelens_version']}: {r['max_steps']:,} steps of {r['batch_size']:,} rows, "
            f"{r['autocast_dtype']}, lr {r['lr']:g}, dead after {r['auxk_dead_tokens']:,} silent tokens; metrics on "
            f"{r['eval_tokens']:,} val tokens. Seconds per step count the training steps alone (data reading "
            f"excluded); SAELens / ours is their ratio ({min(ratios):.2f}x to {max(ratios):.2f}x). The load column "
            f"is the machine's 1-minute load average when each training began → ended (2 cores: ~2 means busy with "
            f"the bench alone).\n\n{side_by_side(r)}")


def concepts_block(out_dir: str) -> str | None:
    """The concept block (None without a complete report holding a 'concepts' section): the summary, every
    concept's best feature and neuron and spread, and assets/concepts.png; with the sparse probes their summary
    table and assets/probing.png."""
    path = os.path.join(out_dir, 'analysis', 'report.json')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        report = json.load(f)
    c = report.get('concepts')
    if not report.get('complete') or c is None:
        return None
    png = 'concepts.png'
    shutil.copyfile(os.path.join(out_dir, 'analysis', png), os.path.join(REPO_ROOT, 'assets', png))
    sm, sp = c['summary'], c['summary']['features_spread']
    rows = ['| | concepts scored | median best F1 | best F1 >= 0.5 |', '| --- | ---: | ---: | ---: |']
    for key, name in (('features', 'SAE features (run A)'), ('neurons', 'MLP neurons (run A)')):
        rows.append(f"| {name} | {sm[key]['n_concepts_scored']} | {sm[key]['median_best_f1']:.3f} | "
                    f"{sm[key]['share_best_f1_at_least_0.5']:.0%} |")
    table = ['| concept | SCORE base rate | best feature: F1 (P / R) | best neuron: F1 (P / R) | '
             'features to F1 0.9 (held-out F1 of the set) |', '| --- | ---: | --- | --- | --- |']
    for k in c['concepts']:
        f_, n_, s_ = k['features'], k['neurons'], k.get('features_spread')
        if f_ is None or n_ is None:
            continue
        need = '' if s_ is None else (f"{s_['n_features']} ({s_['f1']:.2f})" if s_['n_features'] else
                                      f"not reached: {len(s_['features'])} chosen ({s_['f1']:.2f})")
        table.append(f"| `{k['name']}` | {k['base_rate_score']:.1%} | #{f_['id']}: {f_['f1']:.2f} "
                     f"({f_['precision']:.2f} / {f_['recall']:.2f}) | #{n_['id']}: {n_['f1']:.2f} "
                     f"({n_['precision']:.2f} / {n_['recall']:.2f}) | {need} |")
    assets = link(os.path.join(REPO_ROOT, 'assets'), 'concepts')
    probes = []
    if 'probe' in sm:  # the sparse probes
        shutil.copyfile(os.path.join(out_dir, 'analysis', 'probing.png'),
                        os.path.join(REPO_ROOT, 'assets', 'probing.png'))
        probes = ['', *probe_table(sm['probe'], c['probe'], c['concepts']), '',
                  f"![sparse probes: balanced accuracy against k, features vs neurons]({assets}/probing.png)"]
    return '\n'.join([f"<!-- written by tools/readme_assets.py from {path}: do not edit by hand -->",
                      f"{c['n_score_tokens']:,} SCORE tokens (thresholds and units chosen on {c['n_explain_tokens']:,} "
                      f"EXPLAIN tokens). Spread: {sp['n_one']} concepts reach F1 0.9 on the EXPLAIN tokens with one "
                      f"feature, {sp['n_reached'] - sp['n_one']} with 2 or more, {sp['n_not_reached']} not within "
                      f"the greedy limit; the greedy sets' median held-out F1 is {sp['median_f1']:.2f}.", '',
                      *rows, '', *table, '',
                      f"![the best single feature vs the best single neuron per concept]({assets}/concepts.png)",
                      *probes])


def ground_truth_block(out_dir: str) -> str | None:
    """README's ground-truth block (None without a complete report holding 'concepts'): features vs neurons in a
    few numbers (with the sparse probes and the sweep's concept axis when there), assets/concepts.png, and three
    concepts to open in run A's browser: the one a feature detects best, the one features lead neurons on most, the
    one neurons lead features on most."""
    path = os.path.join(out_dir, 'analysis', 'report.json')
    report = json.load(open(path)) if os.path.isfile(path) else {}
    c = report.get('concepts')
    if not report.get('complete') or c is None:
        return None
    sm = c['summary']
    rows = ['| run A, held-out tokens | SAE features | MLP neurons |', '| --- | ---: | ---: |',
            f"| median over {sm['features']['n_concepts_scored']} concepts of the best single unit's F1 | "
            f"{sm['features']['median_best_f1']:.3f} | {sm['neurons']['median_best_f1']:.3f} |",
            f"| concepts whose best single unit has F1 >= 0.5 | {sm['features']['share_best_f1_at_least_0.5']:.0%} | "
            f"{sm['neurons']['share_best_f1_at_least_0.5']:.0%} |"]
    if 'probe' in sm:
        for k in ('1', '20'):
            rows.append(f"| sparse probe on the top {k} unit{'s' if k != '1' else ''}: median balanced accuracy | "
                        f"{sm['probe']['features'][k]['median']:.3f} | {sm['probe']['neurons'][k]['median']:.3f} |")
    pareto = os.path.join(out_dir, 'sweep', 'pareto.json')
    family = [r for r in (json.load(open(pareto)) if os.path.isfile(pareto) else [])
              if r['kind'] == 'topk' and r.get('k') == 20 and r.get('source') == 'ours' and r.get('concept_f1')]
    if len(family) > 1:
        family.sort(key=lambda r: r['n_features'])
        rows.append(f"| the sweep's TopK k = 20 SAEs, {' / '.join(str(r['n_features']) for r in family)} features: "
                    f"median best F1 (the concept axis, other tokens) | "
                    f"{' / '.join(format(r['concept_f1'], '.3f') for r in family)} | "
                    f"{family[0]['concept_f1_neurons']:.3f} |")
    scored = [r for r in c['concepts'] if r['n_positive_score'] and r['features']['f1'] is not None
              and r['neurons']['f1'] is not None]
    picks = []
    for why, key in (('detected best by one feature', lambda r: r['features']['f1']),
                     ('features lead neurons most, after it', lambda r: r['features']['f1'] - r['neurons']['f1']),
                     ('neurons lead features most', lambda r: r['neurons']['f1'] - r['features']['f1'])):
        picks.append((why, max((r for r in scored if r not in [p for _, p in picks]), key=key)))
    site = link(os.path.join(out_dir, 'interface'), 'ground_truth')
    opens = [f"- `{r['name']}` ({why}): [the concept]({site}/concepts.html?concept={urllib.parse.quote(r['name'])}), "
             f"its best feature [#{r['features']['id']}]({site}/feature.html?f={r['features']['id']}) (F1 "
             f"{r['features']['f1']:.2f}), best neuron #{r['neurons']['id']} (F1 {r['neurons']['f1']:.2f})"
             for why, r in picks]
    return '\n'.join([f"<!-- written by tools/readme_assets.py from {path}: do not edit by hand -->", *rows, '',
                      f"![the best single feature vs the best single neuron per concept]"
                      f"({link(os.path.join(REPO_ROOT, 'assets', 'concepts.png'), 'ground_truth')})", '',
                      'Three concepts to open (after `make demo` and `make analysis`):', '', *opens])


def probe_table(summary: dict, settings: dict, concepts: list[dict]) -> list[str]:
    """The sparse probes' summary (report.json's concepts.summary.probe, concepts.probe): per k the median
    (interquartile range) and mean held-out balanced accuracy of the top-k features' and top-k neurons' probes, and
    the medians over the lexical and over the structural concepts (from the concepts' rows)."""
    ks = [str(k) for k in settings['k'] if str(k) in summary['features']]
    probed = [r for r in concepts if r.get('probe') is not None]
    kinds = {kind: [r['probe'] for r in probed if r['kind'] == kind] for kind in ('lexical', 'structural')}
    rows = [f"Sparse probes of {summary['n_concepts_probed']} concepts (a logistic regression on the top k units by "
            f"absolute mean difference / std, fit on up to {settings['per_class']} + {settings['per_class']} EXPLAIN "
            f"tokens, scored on as many SCORE tokens): balanced accuracy, median (interquartile range) and mean over "
            f"the concepts, and the medians over the {len(kinds['lexical'])} lexical and the "
            f"{len(kinds['structural'])} structural concepts.", '',
            '| k | SAE features (run A) | MLP neurons (run A) | lexical: features / neurons | '
            'structural: features / neurons |', '| ---: | --- | --- | --- | --- |']
    for k in ks:
        f_, n_ = summary['features'][k], summary['neurons'][k]
        by_kind = [' / '.join(f"{statistics.median(p[name]['balanced_accuracy'][k] for p in ps):.3f}"
                              for name in ('features', 'neurons')) if ps else 'n/a' for ps in kinds.values()]
        rows.append(f"| {k} | {f_['median']:.3f} ({f_['q25']:.3f}-{f_['q75']:.3f}), mean {f_['mean']:.3f} | "
                    f"{n_['median']:.3f} ({n_['q25']:.3f}-{n_['q75']:.3f}), mean {n_['mean']:.3f} | "
                    f"{by_kind[0]} | {by_kind[1]} |")
    return rows


def optional_block(name: str, block: str | None, missing: str) -> None:
    """Write block into its file, or, when its run is missing (block None), say so and leave the file's as it is."""
    if block is None:
        print(f"{missing}: {BLOCK_FILES[name]}'s {name} block is left as it is")
    else:
        replace_block(name, block)


note = f"<!-- written by tools/readme_assets.py from {out_dir}: do not edit by hand -->"
replace_block('results', f"{note}\n{results_table(out_dir)}\n\nThe feature shown below is #{feature}.")
replace_block('guards', '<!-- written from tools/guards.py by make readme: do not edit by hand -->\n'
                        f'{markdown()}')  # the mutation-check table of tools/guards.py
optional_block('sweep', sweep_block(os.path.join(out_dir, 'sweep')),
               f"no finished sweep site in {out_dir}/sweep (make sweep)")
optional_block('saelens', saelens_block(os.path.join(out_dir, 'sweep', 'saelens', 'side_by_side.json')),
               f"no {out_dir}/sweep/saelens/side_by_side.json (python -m bench.saelens)")
optional_block('concepts', concepts_block(out_dir),
               f"no concept section in {out_dir}/analysis/report.json (label_concepts.py, then make analysis)")
optional_block('analysis', analysis_block(out_dir), f"no complete {out_dir}/analysis/report.json (make analysis)")
optional_block('ground_truth', ground_truth_block(out_dir),
               f"no concept section in {out_dir}/analysis/report.json (label_concepts.py, then make analysis)")
