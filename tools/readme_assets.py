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
(assets/analysis_feature.png). Links in a block are relative to the file that holds it.

    python tools/readme_assets.py [--out_dir=out/demo] [--feature=ID]      (or: make readme)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for common.py
from monosemanticity.common import REPO_ROOT, atomic_write_bytes, die, read_site_data, results_table  # noqa: E402
from configurator import configure  # noqa: E402
from tools.guards import markdown  # noqa: E402

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



BLOCK_FILES = {'results': 'README.md', 'sweep': 'docs/sweeps.md', 'analysis': 'docs/findings.md',
               'guards': 'docs/guards.md'}  # each generated block and the file (in the repo) that holds it


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
            'ultralow of alive | trained by |',
            '| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |']
    for r in records:
        rows.append(f"| {r['name']} | {r['kind']} | {r['n_features']} | {r['sparsity']} | {r['l0']:.1f} | "
                    f"{r['fvu']:.3f} | {r['loss_recovered']:.3f} / {r['loss_recovered_mean_abl']:.3f} | "
                    f"{r['kl_spliced']:.3f} | {r['alive_frac']:.1%} | {r['ultralow_frac_of_alive']:.1%} | "
                    f"{'SAELens' if r.get('source') == 'saelens' else 'this repo'} |")
    return '\n'.join(rows)


MIN_COS = 0.5  # a split counts only through parent links of at least this decoder cosine
MAX_DENSITY = 0.01  # docs/sweeps.md shows families of features firing on < 1% of tokens (broad ones split into noise)


def split_score(family: dict, root: int) -> tuple[int, int]:
    """(descendants of root in the largest member reached through links of cos >= MIN_COS, its children so)."""
    members, nodes = family['members'], family['nodes']
    level, first = [root], 0
    for i, member in enumerate(members[1:]):
        level = [c for p in level for c in nodes[members[i]][p]['children'] if nodes[member][c]['cos'] >= MIN_COS]
        first = first or len(level)
    return len(level), first


def tokens(node: dict) -> str:
    return ', '.join('`' + (t if isinstance(t, str) else bytes(t).decode('utf-8', 'replace')).replace('`', "'")
                     .replace('\n', '\\n').replace('|', '\\|') + '`' for t in node['top_tokens'][:4])


def family_markdown(family: dict, root: int, site_rel: str) -> str:
    """A nested list: the root and, per larger size, its descendants (links of cos >= MIN_COS, at most 3 each)."""
    members, nodes = family['members'], family['nodes']
    lines = []

    def walk(level: int, f: int, depth: int) -> None:
        node, member = nodes[members[level]][f], members[level]
        link = f"[{member} #{f}]({site_rel}/{member}/feature.html?f={f})"
        via = '' if level == 0 else f" (cos {node['cos']:.2f}, corr {node['corr']:.2f})"
        lines.append(f"{'  ' * depth}- {link}{via}: density {node['density']:.2%}, fires on {tokens(node)}")
        if level + 1 < len(members):
            kids = [c for c in node['children'] if nodes[members[level + 1]][c]['cos'] >= MIN_COS]
            for c in sorted(kids, key=lambda c: -nodes[members[level + 1]][c]['cos'])[:3]:
                walk(level + 1, c, depth + 1)
    walk(0, root, 0)
    return '\n'.join(lines)


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
        parts.append(f"\nFamily `{family['name']}` ({' -> '.join(map(str, family['sizes']))} features; parents by "
                     f"{family['link']} cosine, correlation on {family['n_tokens']:,} val tokens): the two features of "
                     f"{family['members'][0]} that split most (descendants in {family['members'][-1]} through links "
                     f"of cos >= {MIN_COS}; scores {', '.join(str(split_score(family, r)[0]) for r in roots)}):\n")
        parts += [family_markdown(family, r, link(site_dir, 'sweep')) for r in roots]
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
    for png in ('interpretability.png', 'universality.png'):
        shutil.copyfile(os.path.join(out_dir, 'analysis', png), os.path.join(REPO_ROOT, 'assets', png))
    interp, univ, tok = report['interpretability'], report['universality'], report['tokens']
    rows = ['| units | scored | median F1 | mean F1 | F1 > 0.5 | median precision | median recall | '
            'median max corr. with run B | mean max corr. |', '| --- |' + ' ---: |' * 8]
    for key, name in (('features', 'SAE features (run A)'), ('neurons', 'MLP neurons (run A)')):
        s, u = interp[key]['summary'], univ[key]
        rows.append(f"| {name} | {s['n_scored']} of {s['n_units']} | {s['median_f1']:.3f} | {s['mean_f1']:.3f} | "
                    f"{s['share_f1_above_0.5']:.1%} | {s['median_precision']:.3f} | {s['median_recall']:.3f} | "
                    f"{u['median_max_corr']:.3f} | {u['mean_max_corr']:.3f} |")
    s = interp['features_b']['summary']
    rows.append(f"| SAE features (run B) | {s['n_scored']} of {s['n_units']} | {s['median_f1']:.3f} | "
                f"{s['mean_f1']:.3f} | {s['share_f1_above_0.5']:.1%} | {s['median_precision']:.3f} | "
                f"{s['median_recall']:.3f} | {univ['features_b']['median_max_corr']:.3f} (with run A) | "
                f"{univ['features_b']['mean_max_corr']:.3f} |")
    rule, assets = report['rule'], link(os.path.join(REPO_ROOT, 'assets'), 'analysis')
    parts = [f"<!-- written by tools/readme_assets.py from {path}: do not edit by hand -->",
             f"Explanations from {tok['n_explain_tokens']:,} val tokens, scored on {tok['n_score_tokens']:,} other "
             f"val tokens; correlations over all {tok['n_tokens']:,}. A unit fires above {rule['fire_frac']} x its "
             f"max activation on the explanation tokens; at most {rule['max_patterns']} patterns, each of precision "
             f">= {rule['min_precision']} covering >= {rule['min_pattern_fires']} firings.\n", '\n'.join(rows), '',
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


note = f"<!-- written by tools/readme_assets.py from {out_dir}: do not edit by hand -->"
replace_block('results', f"{note}\n{results_table(out_dir)}\n\nThe feature shown below is #{feature}.")
replace_block('guards', '<!-- written from tools/guards.py by make readme: do not edit by hand -->\n'
                        f'{markdown()}')  # the mutation-check table of tools/guards.py
block = sweep_block(os.path.join(out_dir, 'sweep'))
if block is None:
    print(f"no finished sweep site in {out_dir}/sweep (make sweep): {BLOCK_FILES['sweep']}'s block is left as it is")
else:
    replace_block('sweep', block)
block = analysis_block(out_dir)
if block is None:
    print(f"no complete {out_dir}/analysis/report.json (make analysis): {BLOCK_FILES['analysis']}'s block is left "
          f"as it is")
else:
    replace_block('analysis', block)
