"""
Feature families across dictionary sizes (the paper's "feature splitting"): the SAEs of a sweep that differ only
in n_features, every feature linked to its closest features in the other sizes. build_interface.py --sweep_dir=...
computes them (family_link, family_contexts: its config keys) before it builds the sweep's site:

    python build_interface.py config/demo/interface.py --sweep_dir=out/demo/sweep --family_link=activation

A family is the SAEs of <sweep_dir>/<name>/ (SAELens exports, as train_sae.py writes them) whose kind and every
other SAE key (their cfg.json and metrics.json's config; matryoshka_widths excepted, as it scales with F) agree,
with >= 2 distinct sizes. For every pair of its members: the decoder cosine of their unit decoder directions and
the Pearson correlation of their activations over the val tokens of family_contexts random contexts (the
transformer's site activations encoded by each SAE; a feature silent on them has correlation 0). The parent of a
feature is its best match by family_link (decoder cosine or activation correlation) in the next smaller member;
its relatives are its 3 best matches in each other member. Written to <sweep_dir>/families.json (format:
docs/formats.md), computed again when it is absent, older than an SAE or linked with other settings.
"""
import json
import os
import time
import warnings
from typing import NamedTuple

import numpy as np
import torch

from monosemanticity.common import UserError, atomic_file, progress, read_json
from monosemanticity.runs import TokenFile, load_sae, pick_contexts
from monosemanticity.sweep import RUN_KEYS

FAMILIES_FILE = 'families.json'
LINKS = ('decoder', 'activation')
N_RELATIVES = 3  # relatives per feature in each other member of its family
SIZE_KEYS = ('n_features', 'd_sae', 'matryoshka_widths')  # what may differ within a family
NOT_SAE_KEYS = ('name', 'device', 'dtype', 'model_name')  # settings that do not make an SAE another kind of SAE


# ----------------------------------------------------------------------------- the families of a sweep

class SweepMember(NamedTuple):
    name: str
    dir: str  # <sweep_dir>/<name>: sae_weights.safetensors + cfg.json (+ metrics.json, ckpt.pt)
    cfg: dict  # its cfg.json
    config: dict  # its training config (metrics.json's 'config'; {} without one)
    kind: str
    n_features: int


class Family(NamedTuple):
    name: str  # the kind and the keys that set it apart from the sweep's other SAEs of its kind, e.g. 'topk_k20'
    kind: str
    members: list[str]  # smallest -> largest
    sizes: list[int]


def sweep_members(sweep_dir: str) -> list[SweepMember]:
    """The SAE exports in sweep_dir's sub-folders, by name; UserError if there is no such folder or none."""
    if not os.path.isdir(sweep_dir):
        raise UserError(f"{sweep_dir} is not a folder: train a sweep with train_sae.py config/demo/sweep.py "
                        f"(or set --sweep_dir)")
    members = []
    for name in sorted(os.listdir(sweep_dir)):
        path = os.path.join(sweep_dir, name)
        if not (os.path.isfile(os.path.join(path, 'cfg.json'))
                and os.path.isfile(os.path.join(path, 'sae_weights.safetensors'))):
            continue
        cfg = read_json(os.path.join(path, 'cfg.json'))
        metrics_path = os.path.join(path, 'metrics.json')
        config = read_json(metrics_path).get('config', {}) if os.path.isfile(metrics_path) else {}
        kind = cfg.get('sae_kind') or cfg.get('architecture', 'standard')
        members.append(SweepMember(name, path, cfg, config, kind, int(cfg['d_sae'])))
    if not members:
        raise UserError(f"{sweep_dir} holds no SAE (no <name>/cfg.json + sae_weights.safetensors): train a sweep "
                        f"with train_sae.py config/demo/sweep.py first")
    return members


def families_or_error(sweep_dir: str, members: list[SweepMember]) -> list[Family]:
    """find_families, or UserError when the sweep has none."""
    families = find_families(members)
    if not families:
        raise UserError(f"{sweep_dir}: no family (SAEs alike but for n_features, >= 2 sizes) among "
                        f"{', '.join(m.name for m in members)}: add sizes to the sweep (config/demo/sweep.py)")
    return families


def sae_identity(m: SweepMember) -> dict:
    """Every key that makes m the SAE it is but its size: cfg.json's and its training config's (the sweep's stream
    keys, sweep.RUN_KEYS, are shared by every SAE of a sweep)."""
    skip = set(SIZE_KEYS) | set(NOT_SAE_KEYS)
    ident = {k: v for k, v in m.cfg.items() if k not in skip}
    ident.update({k: v for k, v in m.config.items() if k not in skip and k not in RUN_KEYS})
    return {k: json.dumps(v, sort_keys=True) for k, v in ident.items()}  # comparable, hashable


def find_families(members: list[SweepMember]) -> list[Family]:
    """The groups of members alike in everything but their size, with >= 2 sizes (one member per size: the first
    by name), each ordered smallest -> largest; by name."""
    groups: dict[tuple, list[SweepMember]] = {}
    for m in members:
        groups.setdefault(tuple(sorted(sae_identity(m).items())), []).append(m)
    families, names = [], set()
    for key, group in groups.items():
        by_size = {}
        for m in group:
            by_size.setdefault(m.n_features, m)
        if len(by_size) < 2:
            continue
        kept = [by_size[n] for n in sorted(by_size)]
        name = family_name(kept[0], dict(key), members)
        while name in names:
            name += '+'
        names.add(name)
        families.append(Family(name, kept[0].kind, [m.name for m in kept], [m.n_features for m in kept]))
    return sorted(families, key=lambda f: f.name)


def family_name(first: SweepMember, ident: dict, members: list[SweepMember]) -> str:
    """The kind plus the training keys on which the sweep's other SAEs of this kind differ, e.g. 'topk_k20'."""
    others = [sae_identity(m) for m in members if m.kind == first.kind]
    keys = [k for k in (first.config or first.cfg) if k in ident and k != 'kind'
            and any(o.get(k) != ident[k] for o in others) and not isinstance(json.loads(ident[k]), (dict, list))]
    name = '_'.join([first.kind] + [f"{k}{json.loads(ident[k])}" for k in keys])
    return ''.join(c if c.isalnum() or c in '_.=+-' else '-' for c in name)


# ----------------------------------------------------------------------------- decoder cosine, activation correlation

def unit_decoder(sae) -> torch.Tensor:
    """(F, d_in) float32: the SAE's decoder directions, each of norm 1 (0 for a zero column)."""
    W = sae.W_dec.detach().float().T  # sae.W_dec is (d_in, F)
    return W / W.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cross_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (N, Fa), b (N, Fb) activations -> aᵀb (Fa, Fb) float64, through sparse matrices (SAE codes are sparse)."""
    a_sp = a.T.to_sparse().to(torch.float64)
    b_sp = b.to_sparse().to(torch.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')  # used inside, and works
        return torch.sparse.mm(a_sp, b_sp).to_dense()


class CorrelationSums:
    """Running sums over tokens of the activations of several SAEs, float64: Σx and Σx² per feature and Σxy per
    pair of features of two SAEs, so their Pearson correlations come from a stream of batches (no N x F kept).
    dense=True: the cross products by a dense matmul (units active on most tokens, e.g. neurons)."""

    def __init__(self, sizes: list[int], device='cpu', dense: bool = False):
        self.n, self.dense = 0, dense
        self.sum = [torch.zeros(F, dtype=torch.float64, device=device) for F in sizes]
        self.sum_sq = [torch.zeros(F, dtype=torch.float64, device=device) for F in sizes]
        self.sum_xy = {(i, j): torch.zeros(sizes[i], sizes[j], dtype=torch.float64, device=device)
                       for i in range(len(sizes)) for j in range(i + 1, len(sizes))}

    def add_(self, acts: list[torch.Tensor]) -> None:
        """acts[i] (N, F_i): the same N tokens' activations in each SAE."""
        self.n += len(acts[0])
        for i, a in enumerate(acts):
            self.sum[i] += a.sum(0, dtype=torch.float64)
            self.sum_sq[i] += a.square().sum(0, dtype=torch.float64)
        for (i, j), s in self.sum_xy.items():
            s += acts[i].T.double() @ acts[j].double() if self.dense else cross_products(acts[i], acts[j])

    def corr(self, i: int, j: int) -> torch.Tensor:
        """(F_i, F_j) float64 Pearson correlations of SAE i's features with SAE j's (i < j); 0 where one is constant."""
        n = self.n
        cov = n * self.sum_xy[i, j] - self.sum[i][:, None] * self.sum[j][None, :]
        var_i = (n * self.sum_sq[i] - self.sum[i] ** 2).clamp_min(0)
        var_j = (n * self.sum_sq[j] - self.sum[j] ** 2).clamp_min(0)
        denom = (var_i[:, None] * var_j[None, :]).sqrt()
        return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))


@torch.no_grad()
def correlation_sums(transformer, saes: list, site: str, contexts) -> CorrelationSums:
    """Stream the contexts through the transformer and each SAE (encode of the site's activations), summing."""
    sums = CorrelationSums([s.cfg.n_features for s in saes], transformer.device)
    for b0, b1 in contexts.bar('activation correlations'):
        tokens = contexts.read(b0, b1)
        with transformer.autocast:
            _, _, acts = transformer.model.run(tokens[:, :-1], capture=[site], need_logits=False)
            x = acts[site].reshape(-1, acts[site].size(-1))  # (B*T, d_in)
            sums.add_([s.encode(x).float() for s in saes])
    return sums


# ----------------------------------------------------------------------------- links: parents, relatives

def link_family(family: Family, decoders: list[torch.Tensor], sums: CorrelationSums, link: str) -> dict:
    """A family's entry of families.json from its members' unit decoders (F_i, d_in) and activation sums.
    Bricken et al. 2023, "Towards Monosemanticity", section "Feature Splitting": the features of a small dictionary
    split into groups of features of a larger one trained on the same activations; like the paper, we relate the
    features of different sizes by decoder cosine and by activation correlation on the same tokens."""
    if link not in LINKS:
        raise UserError(f"family_link='{link}' is not one of {', '.join(LINKS)}")
    L = len(family.members)
    features = [[{'parent': -1, 'parent_cos': None, 'parent_corr': None, 'relatives': []} for _ in range(F)]
                for F in family.sizes]
    for i in range(L):
        for j in range(i + 1, L):
            cos = (decoders[i] @ decoders[j].T).double()  # (F_i, F_j)
            corr = sums.corr(i, j)
            score = cos if link == 'decoder' else corr
            if j == i + 1:  # the parent of each feature of member j: its best match in member i
                parent = score.argmax(0)
                cols = torch.arange(len(parent))
                for f, p, c, r in zip(features[j], parent.tolist(), cos[parent, cols].tolist(),
                                      corr[parent, cols].tolist()):
                    f.update(parent=p, parent_cos=round(c, 4), parent_corr=round(r, 4))
            add_relatives_(features[i], score, cos, corr, family.members[j], family.sizes[j])
            add_relatives_(features[j], score.T, cos.T, corr.T, family.members[i], family.sizes[i])
    for f_list in features:
        for f in f_list:
            f['relatives'].sort(key=lambda r: r['n_features'])  # stable: by size, then by score within a size
    return {'name': family.name, 'kind': family.kind, 'members': family.members, 'sizes': family.sizes,
            'n_tokens': sums.n, 'link': link, 'features': dict(zip(family.members, features))}


def add_relatives_(features: list[dict], score: torch.Tensor, cos: torch.Tensor, corr: torch.Tensor,
                   other: str, n_other: int) -> None:
    """Append to each feature (row of score (F, F_other)) its N_RELATIVES best matches in member `other`."""
    top = score.topk(min(N_RELATIVES, n_other), dim=1).indices  # (F, r)
    for f, ids, cs, rs in zip(features, top.tolist(), cos.gather(1, top).tolist(), corr.gather(1, top).tolist()):
        f['relatives'] += [{'sae': other, 'n_features': n_other, 'feature': j, 'cos': round(c, 4),
                            'corr': round(r, 4)} for j, c, r in zip(ids, cs, rs)]


def link_sweep(sweep_dir: str, members: list[SweepMember], transformer, split: str, n_contexts: int,
               batch_size: int, link: str, seed: int) -> dict:
    """families.json's content: every family of the sweep, linked (activation sums over the same contexts)."""
    if n_contexts < 1:
        raise UserError(f"family_contexts={n_contexts} must be >= 1")
    if link not in LINKS:
        raise UserError(f"family_link='{link}' is not one of {', '.join(LINKS)}")
    families = families_or_error(sweep_dir, members)
    file = TokenFile(transformer.data_dir, split, transformer.data_meta['dtype'], transformer.device)
    contexts = pick_contexts(file, transformer.context_length, n_contexts, batch_size, np.random.default_rng(seed))
    by_name = {m.name: m for m in members}
    linked = []
    for fam in progress(families, desc='families', disable=len(families) < 2):
        loaded = [load_sae(by_name[name].dir, transformer) for name in fam.members]
        sums = correlation_sums(transformer, [s.sae for s in loaded], loaded[0].site, contexts)
        linked.append(link_family(fam, [unit_decoder(s.sae) for s in loaded], sums, link))
    return {'link': link, 'n_tokens': contexts.n_tokens, 'split': split, 'dataset': transformer.data_dir,
            'transformer': os.path.abspath(transformer.ckpt_path), 'family_contexts': n_contexts,
            'context_length': contexts.length, 'seed': seed, 'context_starts': contexts.starts.tolist(),
            'built': time.strftime('%Y-%m-%d %H:%M:%S'), 'families': linked}


# ----------------------------------------------------------------------------- families.json

def write_families(sweep_dir: str, data: dict) -> str:
    """<sweep_dir>/families.json, compact (one line per feature), written to a temp name and renamed."""
    path = os.path.join(sweep_dir, FAMILIES_FILE)
    head = {k: v for k, v in data.items() if k != 'families'}
    with atomic_file(path, 'w', encoding='ascii') as f:
        f.write('{\n' + ''.join(f'"{k}": {json.dumps(v)},\n' for k, v in head.items()) + '"families": [\n')
        for fi, fam in enumerate(data['families']):
            f.write('{' + ', '.join(f'"{k}": {json.dumps(v)}' for k, v in fam.items() if k != 'features'))
            f.write(', "features": {\n')
            for mi, (member, feats) in enumerate(fam['features'].items()):
                rows = ',\n'.join(json.dumps(x, separators=(',', ':')) for x in feats)
                f.write(f'{json.dumps(member)}: [\n{rows}]' + (',\n' if mi < len(fam['features']) - 1 else '\n'))
            f.write('}}' + (',\n' if fi < len(data['families']) - 1 else '\n'))
        f.write(']}\n')
    return path


def read_families(sweep_dir: str, members: list[SweepMember], link: str, n_contexts: int, split: str,
                  seed: int) -> dict | None:
    """families.json when it is newer than every SAE of the sweep, names the families the sweep has now and was
    linked with these settings (link_sweep's), else None (build_interface.py computes it anew)."""
    path = os.path.join(sweep_dir, FAMILIES_FILE)
    if not os.path.isfile(path):
        return None
    newest = max(os.path.getmtime(os.path.join(m.dir, 'sae_weights.safetensors')) for m in members)
    if os.path.getmtime(path) < newest:
        return None
    data = read_json(path)
    if (data.get('link'), data.get('family_contexts'), data.get('split'), data.get('seed')) != (link, n_contexts,
                                                                                               split, seed):
        return None
    have = [(f['name'], f['members'], f['sizes']) for f in data.get('families', [])]
    want = [(f.name, f.members, f.sizes) for f in find_families(members)]
    return data if have == want else None


def family_of(data: dict, member: str) -> dict | None:
    """The family entry of families.json that holds member, or None."""
    return next((f for f in data['families'] if member in f['members']), None)

