"""
A sweep's feature browser, <sweep_dir>/interface/: every SAE's site in <name>/ (site.build_sites: the sweep's SAEs
share each batch's forward pass; each feature record with its `relatives` in the other sizes of its family), the
sweep page (every SAE, the families, the Pareto plot) and family.html?family=NAME (how the smallest dictionary's
features split and merge in the larger ones; with the SAEs' concept axis, how each ground-truth concept's best
feature splits: concept_axis.concept_splits), built in one temp folder swapped in when complete. The families come
from <sweep_dir>/families.json (families.py), computed first when it is absent, older than an SAE, or linked with
other settings.
"""
import os
import shutil
import time

from monosemanticity import families as fam
from monosemanticity.common import UserError, print0, read_json
from monosemanticity.concept_axis import concept_splits
from monosemanticity.runs import Transformer, load_inputs, load_vocab
from monosemanticity.site import (ASSETS, SWEEP_PAGES, SWEEP_SHARED, SiteJob, SiteSettings, SiteSummary, build_sites,
                                  js, swap_in, temp_dir_for)
from monosemanticity.sweep import PARETO_FIELDS


def build_sweep_site(sweep_dir: str, transformer: Transformer, settings: SiteSettings, config: dict) -> str:
    """<sweep_dir>/interface/: every SAE's site in <name>/ (site.build_sites: each batch of contexts through the
    transformer once for all of them; each site with its relatives and INDEX.meta.sweep), the sweep page and the
    family pages, built in one temp folder swapped in when complete; returns its path. config: the build's config,
    kept in each member's meta.json."""
    members = fam.sweep_members(sweep_dir)
    t_links = time.time()
    links = linked_families(sweep_dir, members, transformer, settings)
    t_links = time.time() - t_links
    final_dir = os.path.join(sweep_dir, 'interface')
    tmp_dir = temp_dir_for(final_dir)
    os.makedirs(tmp_dir)
    vocab = load_vocab(transformer.data_dir, transformer.data_meta, transformer.model.config.vocab_size)
    n_fam = len(links['families'])
    print0(f"{len(members)} SAEs of {sweep_dir} ({n_fam} famil{'y' if n_fam == 1 else 'ies'}, linked in "
           f"{t_links:.1f}s), {settings.n_contexts} contexts, device {transformer.device} ({transformer.dtype})")
    jobs = []
    for m in members:
        family = fam.family_of(links, m.name)
        relatives = ([f['relatives'] for f in family['features'][m.name]] if family else
                     [[] for _ in range(m.n_features)])
        sweep = {'member': m.name, 'family': family['name'] if family else None, 'root': '../'}
        jobs.append(SiteJob(load_inputs(transformer, m.dir), os.path.join(tmp_dir, m.name), sweep, relatives))
    summaries = dict(zip((m.name for m in members), build_sites(jobs, settings, config, vocab)))
    write_sweep_root(tmp_dir, sweep_dir, members, links, summaries, vocab)
    return swap_in(tmp_dir, final_dir)


def linked_families(sweep_dir: str, members: list, transformer: Transformer, s: SiteSettings) -> dict:
    """<sweep_dir>/families.json (families.py), computed and written first when absent, stale or linked with other
    settings (s's family_link, family_threshold, family_min_density, family_contexts, split, seed); the sweep's SAEs
    of no family have no relatives: families [] when there is none."""
    data = fam.read_families(sweep_dir, members, s.family_link, s.family_threshold, s.family_min_density,
                             s.family_contexts, s.split, s.seed)
    if data is not None:
        return data
    if not fam.find_families(members):
        return {'families': []}
    print0(f"linking the features of the families of {sweep_dir} ({fam.FAMILIES_FILE} is absent, older than an "
           f"SAE or linked otherwise; --family_link, --family_threshold, --family_min_density and "
           f"--family_contexts set how)")
    data = fam.link_sweep(sweep_dir, members, transformer, s.split, s.family_contexts, s.batch_size, s.family_link,
                          s.family_threshold, s.family_min_density, s.seed)
    fam.write_families(sweep_dir, data)
    return data


def sweep_records(sweep_dir: str, members: list) -> list[dict]:
    """data/sweep.js's members: pareto.json's records (sweep.py) in its order, then the SAEs it lacks (their
    numbers null), each with the link to its site."""
    path = os.path.join(sweep_dir, 'pareto.json')
    pareto = {r['name']: r for r in (read_json(path) if os.path.isfile(path) else [])}
    names = {m.name for m in members}
    records = [r for r in pareto.values() if r['name'] in names]
    for m in members:
        if m.name not in pareto:
            k = m.cfg.get('k')
            records.append({**dict.fromkeys(PARETO_FIELDS), 'name': m.name, 'kind': m.kind,
                            'n_features': m.n_features, 'k': k, 'sparsity': f"k={k}" if k else None})
    return [{**r, 'href': f"{r['name']}/index.html"} for r in records]


def family_nodes(family: dict, summaries: dict[str, SiteSummary], vocab: list) -> dict:
    """data/family_<NAME>.js's nodes: per member, per feature its parents and children (families.json's links),
    whether it was linked (not ultralow on the family's tokens) and the numbers its card shows (from its site's
    statistics)."""
    nodes, min_density = {}, family['min_density']
    for li, member in enumerate(family['members']):
        feats, summary = family['features'][member], summaries[member]
        children = [[] for _ in feats]
        if li + 1 < len(family['members']):
            for j, f in enumerate(family['features'][family['members'][li + 1]]):
                for p in f['parents']:
                    children[p['feature']].append(j)
        nodes[member] = [{'parents': f['parents'], 'children': children[i], 'linked': f['density'] >= min_density,
                          'density': float(f'{summary.density[i]:.4g}'), 'max_act': round(float(summary.max_act[i]), 4),
                          'top_tokens': [vocab[t] for t in summary.top_tokens[i][:5]]} for i, f in enumerate(feats)]
    return nodes


def write_sweep_root(site_dir: str, sweep_dir: str, members: list, links: dict, summaries: dict[str, SiteSummary],
                     vocab: list) -> None:
    """The sweep site's own files: its pages (interface/sweep.html as index.html), pareto.png, data/sweep.js and
    data/family_<NAME>.js (docs/browser.md)."""
    for name in SWEEP_PAGES + SWEEP_SHARED:
        if not os.path.isfile(os.path.join(ASSETS, name)):
            raise UserError(f"{os.path.join(ASSETS, name)} is missing: the repo's interface/ folder is incomplete")
        shutil.copyfile(os.path.join(ASSETS, name), os.path.join(site_dir, 'index.html' if name == 'sweep.html'
                                                                  else name))
    png = os.path.join(sweep_dir, 'pareto.png')
    if os.path.isfile(png):
        shutil.copyfile(png, os.path.join(site_dir, 'pareto.png'))
    os.makedirs(os.path.join(site_dir, 'data'))
    heads = [{k: f[k] for k in ('name', 'kind', 'members', 'sizes', 'link', 'threshold', 'min_density', 'n_tokens')}
             for f in links['families']]
    sweep = {'members': sweep_records(sweep_dir, members), 'families': heads,
             'pareto_png': 'pareto.png' if os.path.isfile(png) else None}
    with open(os.path.join(site_dir, 'data', 'sweep.js'), 'w', encoding='ascii') as fh:
        fh.write(f"window.SWEEP={js(sweep)};\n")
    for family, head in zip(links['families'], heads):
        data = {**head, 'nodes': family_nodes(family, summaries, vocab), 'concepts': family_concepts(sweep_dir, family)}
        with open(os.path.join(site_dir, 'data', f"family_{family['name']}.js"), 'w', encoding='ascii') as fh:
            fh.write(f"window.FAMILY={js(data)};\n")


def family_concepts(sweep_dir: str, family: dict) -> list[dict] | None:
    """FAMILY.concepts: concept_splits of the family when every member has a metrics.json with the concept axis (of
    the same labels), else None."""
    paths = [os.path.join(sweep_dir, m, 'metrics.json') for m in family['members']]
    axes = {m: read_json(p).get('concepts') if os.path.isfile(p) else None for m, p in zip(family['members'], paths)}
    if any(a is None for a in axes.values()) or len({a['labels'] for a in axes.values()}) > 1:
        return None
    return concept_splits(family, axes)
