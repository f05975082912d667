"""
Regenerate the README's results from a finished demo run (`make demo`), so that they are never hand-edited:
the results table between the `<!-- results:start -->` / `<!-- results:end -->` markers of README.md, the
table of tools/guards.py between `<!-- guards:start -->` / `<!-- guards:end -->`, and
screenshots of the feature browser (assets/index.png, assets/feature.png) taken with headless Chromium.
After `make sweep` also the sweep's block between `<!-- sweep:start -->` / `<!-- sweep:end -->`: its Pareto table
(out/demo/sweep/pareto.json), assets/pareto.png, two feature families chosen by split_score below, and screenshots
of the sweep site (assets/sweep.png, assets/family.png).

    python tools/readme_assets.py [--out_dir=out/demo] [--feature=ID]      (or: make readme)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for common.py
from common import REPO_ROOT, atomic_write_bytes, die, results_table  # noqa: E402
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



def replace_block(text: str, name: str, body: str) -> str:
    """text with what lies between <!-- name:start --> and <!-- name:end --> replaced by body."""
    start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
    if start not in text or end not in text:
        die(f"README.md has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def read_js(path: str, prefix: str):
    """The JSON of a site data file `<prefix>{...};`."""
    with open(path, encoding='ascii') as f:
        text = f.read().strip()
    return json.loads(text[len(prefix):].rstrip(';'))


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
MAX_DENSITY = 0.01  # the README shows families of features firing on < 1% of tokens (broad ones split into noise)


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
    """The README's sweep block (None if the sweep or its site is not there), its PNGs copied / shot into assets/."""
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
             pareto_markdown(records), '', '![the Pareto plot of the demo sweep](assets/pareto.png)']
    sweep = read_js(os.path.join(site_dir, 'data', 'sweep.js'), 'window.SWEEP=')
    for fam in sweep['families']:
        family = read_js(os.path.join(site_dir, 'data', f"family_{fam['name']}.js"), 'window.FAMILY=')
        first = family['nodes'][family['members'][0]]  # specific features (density < MAX_DENSITY) split most
        roots = sorted([r for r in range(len(first)) if first[r]['density'] < MAX_DENSITY] or range(len(first)),
                       key=lambda r: split_score(family, r), reverse=True)[:2]
        parts.append(f"\nFamily `{family['name']}` ({' -> '.join(map(str, family['sizes']))} features; parents by "
                     f"{family['link']} cosine, correlation on {family['n_tokens']:,} val tokens): the two features of "
                     f"{family['members'][0]} that split most (descendants in {family['members'][-1]} through links "
                     f"of cos >= {MIN_COS}; scores {', '.join(str(split_score(family, r)[0]) for r in roots)}):\n")
        parts += [family_markdown(family, r, os.path.relpath(site_dir, REPO_ROOT)) for r in roots]
        screenshot(f"file://{site}/family.html?family={family['name']}&root={roots[0]}",
                   os.path.join(REPO_ROOT, 'assets', 'family.png'), 1400, 900)
    return '\n'.join(parts)


readme = os.path.join(REPO_ROOT, 'README.md')
text = open(readme).read()
note = f"<!-- written by tools/readme_assets.py from {out_dir}: do not edit by hand -->"
text = replace_block(text, 'results', f"{note}\n{results_table(out_dir)}\n\nThe feature shown below is #{feature}.")
text = replace_block(text, 'guards', '<!-- written from tools/guards.py by make readme: do not edit by hand -->\n'
                                     f'{markdown()}')  # the mutation-check table of tools/guards.py
block = sweep_block(os.path.join(out_dir, 'sweep'))
if block is None:
    print(f"no finished sweep site in {out_dir}/sweep (make sweep): the README's sweep block is left as it is")
else:
    text = replace_block(text, 'sweep', block)
atomic_write_bytes(readme, text.encode())
print(f"updated {readme}")
