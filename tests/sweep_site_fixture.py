"""A made-up sweep site in the format of docs/browser.md (no model, no build), for tests/test_browser.py: a
family of three TopK sizes (4 -> 8 -> 16 features) and one SAE in no family. Token texts are markup, so a page that
puts one on the page as HTML shows it."""
import json
import os
import shutil
import struct
import zlib

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'interface')
SWEEP_ONLY = ('sweep.html', 'family.html', 'page_sweep.js', 'page_family.js')  # the site root's pages
ROOT_SHARED = ('common.js', 'errors.js', 'style.css')
VOCAB = ['the', ' cat', '<b>x</b>', '<img src=x onerror="window.__pwned=1">', '&amp;', '\n', ' sat', '日', '<i>',
         ' on', '"><svg onload="window.__pwned=2">', ' mat']
FAMILY = 'topk_k4'
SIZES = (4, 8, 16)
MEMBERS = [f'topk_{n}_k4' for n in SIZES]
LONE = 'a23_16_l1'
# PARENTS[i][j]: the parents, in member i - 1, of feature j of member i, best first (0 splits most; feature 2 of the
# middle member merges 0 and 1; feature 14 of the largest has no parent and 15 is not linked: ultralow)
PARENTS = [None, [[0], [0], [0, 1], [1], [1], [2], [3], [0]],
           [[0], [0], [1], [1], [2], [2], [7], [3], [3], [4], [5], [6], [6], [7], [], []]]
NO_PARENT, ULTRALOW = (2, 14), (2, 15)  # (member, feature)
N_TOKENS, N_INTERVALS, HIST_BINS = 1000, 4, 8


def js(name: str, obj) -> str:
    return f"window.{name}={json.dumps(obj, ensure_ascii=True)};\n"


def write(path: str, text: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb' if isinstance(text, bytes) else 'w') as f:
        f.write(text)


def png(width: int = 120, height: int = 60) -> bytes:
    """A grey PNG image, made by hand."""
    chunk = lambda kind, data: (struct.pack('>I', len(data)) + kind + data +  # noqa: E731
                                struct.pack('>I', zlib.crc32(kind + data)))
    rows = b''.join(b'\x00' + b'\xc8' * width for _ in range(height))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)) +
            chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))


def family_nodes() -> dict:
    """FAMILY.nodes: per member, per feature {parents, children, linked, density, max_act, top_tokens}."""
    nodes = {}
    for i, (member, n) in enumerate(zip(MEMBERS, SIZES)):
        nodes[member] = [{'parents': [{'feature': p, 'cos': round(0.9 - 0.03 * j - 0.1 * r, 3),
                                       'corr': round(0.8 - 0.02 * j - 0.1 * r, 3),
                                       'masked': round(0.95 - 0.02 * j - 0.1 * r, 3)}
                                      for r, p in enumerate(PARENTS[i][j])] if i else [],
                          'children': [], 'linked': (i, j) != ULTRALOW,
                          'density': 0.0 if (i, j) == ULTRALOW else round(0.002 * (j + 1), 4),
                          'max_act': 1.0 + j, 'top_tokens': [] if (i, j) == (2, 15) else
                          [VOCAB[(i + j + t) % len(VOCAB)] for t in range(3)] + ([[0xE6, 0x97]] if j == 0 else [])}
                         for j in range(n)]
        if i:
            for j, ps in enumerate(PARENTS[i]):
                for p in ps:
                    nodes[MEMBERS[i - 1]][p]['children'].append(j)
    return nodes


def ancestors(i: int, j: int, level: int) -> set[int]:
    """The features of member `level` that feature j of member i descends from, through any of its parents."""
    found = {j}
    while i > level:
        found, i = {p for x in found for p in PARENTS[i][x]}, i - 1
    return found


def relatives(i: int, j: int) -> list[dict]:
    """Top 3 per other member: its ancestors there, or its descendants there, then the lowest other ids; none for
    the ultralow feature."""
    out = []
    if (i, j) == ULTRALOW:
        return out
    for m, (member, n) in enumerate(zip(MEMBERS, SIZES)):
        if m == i:
            continue
        near = sorted(ancestors(i, j, m)) if m < i else [k for k in range(n) if j in ancestors(m, k, i)]
        ids = (near + [k for k in range(n) if k not in near])[:3]
        out += [{'sae': member, 'n_features': n, 'feature': k, 'cos': round(0.9 - 0.2 * r, 3),
                 'corr': round(0.7 - 0.2 * r, 3), 'masked': round(0.8 - 0.2 * r, 3)} for r, k in enumerate(ids)
                if (m, k) != ULTRALOW]
    return out


def feature_record(j: int, n: int, rel: list[dict]) -> dict:
    """A feature of features/0000.js with every key the feature page draws."""
    fire = 0 if j == n - 1 else 10 + j
    window = {'context': j, 'pos': 3, 'act': 1.0, 'start': 1, 'tokens': [0, 1, 2, 3, 4, 5], 'acts': [0, 0.2, 1.0, 0, 0],
              'effects': [0, 0.01, -0.02, 0, 0]}
    return {'id': j, 'n_fire': fire, 'density': fire / N_TOKENS, 'max': float(fire > 0), 'mean': 0.5 * (fire > 0),
            'hist': [fire // HIST_BINS] * HIST_BINS,
            'intervals': [{'lo': k / N_INTERVALS, 'hi': (k + 1) / N_INTERVALS, 'n': 0, 'share': 0.0, 'samples': []}
                          for k in range(N_INTERVALS)],
            'top': [window] if fire else [], 'top_tokens': [[2, fire]] if fire else [],
            'logits': {'pos': [[1, 0.5]], 'neg': [[3, -0.5]], 'hist': [1, 2, 3], 'lo': -0.5, 'hi': 0.5},
            'cos': [[(j + 1) % n, 0.3]], 'coact': [], 'relatives': rel}


def write_member(root: str, member: str, n: int, family: str | None, rels: list[list[dict]]) -> None:
    """<root>/<member>/: the single-SAE pages and their data, INDEX.meta.sweep set."""
    site = os.path.join(root, member)
    shutil.copytree(ASSETS, site, ignore=shutil.ignore_patterns('*.md', '__pycache__', *SWEEP_ONLY))
    meta = {'n_features': n, 'n_tokens': N_TOKENS, 'n_contexts': 10, 'context_length': 100,
            'site': 'blocks.0.mlp_hidden', 'architecture': member.split('_')[0], 'dataset': 'fixture',
            'split': 'val', 'ultralow': 1e-5, 'top_k': 1, 'window': 2, 'n_intervals': N_INTERVALS,
            'interval_samples': 1, 'hist_bins': HIST_BINS, 'features_per_file': 64, 'ablation': 'local',
            'coact_tokens': 500, 'built': 'fixture', 'sweep': {'member': member, 'family': family, 'root': '../'}}
    write(os.path.join(site, 'data', 'vocab.js'), js('VOCAB', VOCAB))
    write(os.path.join(site, 'data', 'index.js'), js('INDEX', {
        'meta': meta, 'n_fire': [0 if j == n - 1 else 10 + j for j in range(n)], 'max': [1.0] * n, 'mean': [0.5] * n,
        'top_tokens': [[2, j % len(VOCAB)] for j in range(n)], 'top_logits': [[1] for _ in range(n)]}))
    write(os.path.join(site, 'data', 'examples.js'), js('EXAMPLES', [
        {'start': 0, 'tokens': [0, 1, 6], 'features': [[0], [], [1]], 'acts': [[1.0], [], [0.5]]}]))
    write(os.path.join(site, 'features', '0000.js'),
          f"loadFeatures({json.dumps([feature_record(j, n, rels[j]) for j in range(n)])});\n")


def write_sweep_site(site: str, pareto_png: bool = True) -> dict:
    """The whole made-up sweep site at `site`; returns the family data and the members."""
    os.makedirs(site)
    for i, (member, n) in enumerate(zip(MEMBERS, SIZES)):
        write_member(site, member, n, FAMILY, [relatives(i, j) for j in range(n)])
    write_member(site, LONE, 16, None, [[] for _ in range(16)])
    shutil.copy(os.path.join(ASSETS, 'sweep.html'), os.path.join(site, 'index.html'))
    for name in SWEEP_ONLY[1:] + ROOT_SHARED:
        shutil.copy(os.path.join(ASSETS, name), os.path.join(site, name))
    records = [{'name': m, 'kind': 'topk', 'n_features': n, 'k': 4, 'l1_coeff': None, 'sparsity': 'k=4',
                'l0': 4.0, 'fvu': 0.3 - 0.05 * i, 'loss_recovered': 0.8 + 0.05 * i, 'alive_frac': 0.9}
               for i, (m, n) in enumerate(zip(MEMBERS, SIZES))]
    records.append({'name': LONE, 'kind': 'anthropic2023', 'n_features': 16, 'k': None, 'l1_coeff': 0.003,
                    'sparsity': 'λ=0.003', 'l0': 7.5, 'fvu': 0.2, 'loss_recovered': 0.9, 'alive_frac': 0.75})
    family = {'name': FAMILY, 'kind': 'topk', 'members': MEMBERS, 'sizes': list(SIZES), 'link': 'masked',
              'threshold': 0.4, 'min_density': 1e-5, 'n_tokens': 2048}
    write(os.path.join(site, 'data', 'sweep.js'), js('SWEEP', {
        'members': [{**r, 'href': f"{r['name']}/index.html"} for r in records], 'families': [family],
        'pareto_png': 'pareto.png' if pareto_png else None}))
    nodes = family_nodes()
    write(os.path.join(site, 'data', f'family_{FAMILY}.js'), js('FAMILY', {**family, 'nodes': nodes}))
    if pareto_png:
        write(os.path.join(site, 'pareto.png'), png())
    return {'site': site, 'family': FAMILY, 'members': MEMBERS, 'sizes': SIZES, 'lone': LONE, 'nodes': nodes,
            'records': records}
