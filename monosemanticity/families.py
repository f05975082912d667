"""
Feature families across dictionary sizes (the paper's "feature splitting"): the SAEs of a sweep that differ only
in n_features, every feature linked to its parents in the next smaller size and to its closest features in the
other sizes. build_interface.py --sweep_dir=... computes them (family_link, family_threshold, family_min_density,
family_contexts: its config keys) before it builds the sweep's site:

    python build_interface.py config/demo/interface.py --sweep_dir=out/demo/sweep --family_link=decoder

A family is the SAEs of <sweep_dir>/<name>/ (SAELens exports, as train_sae.py writes them) whose kind and every
other SAE key (their cfg.json and metrics.json's config; matryoshka_widths excepted, as it scales with F) agree,
with >= 2 distinct sizes. For every pair of its members, three scores per pair of features: the masked cosine of
their decoded activations (f_i(x)·W_dec[:, i], so the masked cosine of the activations times the decoder cosine) over
the val tokens of family_contexts random contexts (the transformer's site activations encoded by each SAE), the
decoder cosine of their unit decoder directions, and the Pearson correlation of their
activations (a feature silent on the tokens scores 0). family_link picks the score links are made by. The parents
of a feature are every feature of the next smaller member scoring >= family_threshold with it, best first: none,
one or several (features split and merge); its relatives are its 3 best matches (score > 0) in each other member.
A feature firing on fewer than family_min_density of the tokens has neither and is no one's. Written to
<sweep_dir>/families.json (format: docs/formats.md), computed again when it is absent, older than an SAE or linked
with other settings.
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
LINKS = ('masked', 'decoder', 'activation')  # family_link's values
SCORE_KEYS = {'masked': 'masked', 'decoder': 'cos', 'activation': 'corr'}  # each link's score in a record
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


# ----------------------------------------------------------------------------- the scores of a pair of features

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


def products(a: torch.Tensor, b: torch.Tensor, dense: bool) -> torch.Tensor:
    """aᵀb (Fa, Fb) float64 of a (N, Fa) and b (N, Fb): by a dense matmul, or cross_products."""
    return a.T.double() @ b.double() if dense else cross_products(a, b)


def ratio_or_zero(num: torch.Tensor, norm_sq: torch.Tensor) -> torch.Tensor:
    """num / sqrt(norm_sq), 0 where norm_sq is 0."""
    norm = norm_sq.clamp_min(0).sqrt()
    return torch.where(norm > 0, num / norm.clamp_min(1e-300), torch.zeros_like(num))


class CorrelationSums:
    """Running sums over tokens of the activations of several SAEs, float64: Σx, Σx² and the tokens it fires on
    (x > 0) per feature and Σxy per pair of features of two SAEs, so their Pearson correlations come from a stream
    of batches (no N x F kept). dense=True: the cross products by a dense matmul (units active on most tokens, e.g.
    neurons). masked=True: also, per pair of features i, j of two SAEs, Σx_j² over the tokens where i fires and Σx_i²
    over those where j fires (two more (F_i, F_j) sums per pair of SAEs), for their masked cosines."""

    def __init__(self, sizes: list[int], device='cpu', dense: bool = False, masked: bool = False):
        self.n, self.dense = 0, dense
        self.sum = [torch.zeros(F, dtype=torch.float64, device=device) for F in sizes]
        self.sum_sq = [torch.zeros(F, dtype=torch.float64, device=device) for F in sizes]
        self.n_fire = [torch.zeros(F, dtype=torch.int64, device=device) for F in sizes]
        pairs = [(i, j) for i in range(len(sizes)) for j in range(i + 1, len(sizes))]
        self.sum_xy = {(i, j): torch.zeros(sizes[i], sizes[j], dtype=torch.float64, device=device) for i, j in pairs}
        # (i, j) -> (Σ_{x_i > 0} x_j², Σ_{x_j > 0} x_i²), each (F_i, F_j)
        self.sq_where_fires = {(i, j): tuple(torch.zeros(sizes[i], sizes[j], dtype=torch.float64, device=device)
                                             for _ in range(2)) for i, j in pairs} if masked else {}

    def add_(self, acts: list[torch.Tensor]) -> None:
        """acts[i] (N, F_i): the same N tokens' activations in each SAE."""
        self.n += len(acts[0])
        for i, a in enumerate(acts):
            self.sum[i] += a.sum(0, dtype=torch.float64)
            self.sum_sq[i] += a.square().sum(0, dtype=torch.float64)
            self.n_fire[i] += (a > 0).sum(0)
        for (i, j), s in self.sum_xy.items():
            s += acts[i].T.double() @ acts[j].double() if self.dense else cross_products(acts[i], acts[j])
        for (i, j), (sq_j, sq_i) in self.sq_where_fires.items():  # 1[x_i > 0]ᵀ x_j² and (x_i²)ᵀ 1[x_j > 0]
            sq_j += products((acts[i] > 0).to(acts[j].dtype), acts[j].square(), self.dense)
            sq_i += products(acts[i].square(), (acts[j] > 0).to(acts[i].dtype), self.dense)

    def density(self, i: int) -> torch.Tensor:
        """(F_i,) float64: the share of the tokens each feature of SAE i fires on."""
        return self.n_fire[i].double() / max(self.n, 1)

    def corr(self, i: int, j: int) -> torch.Tensor:
        """(F_i, F_j) float64 Pearson correlations of SAE i's features with SAE j's (i < j); 0 where one is constant."""
        n = self.n
        cov = n * self.sum_xy[i, j] - self.sum[i][:, None] * self.sum[j][None, :]
        var_i = (n * self.sum_sq[i] - self.sum[i] ** 2).clamp_min(0)
        var_j = (n * self.sum_sq[j] - self.sum[j] ** 2).clamp_min(0)
        denom = (var_i[:, None] * var_j[None, :]).sqrt()
        return torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))

    def masked_cos(self, i: int, j: int) -> torch.Tensor:
        """(F_i, F_j) float64 (masked=True; i < j): per pair, the cosine of the two features' activations over the
        tokens where feature i fires, and over those where j fires: the greater of the two (0 where a norm is 0).
        As x_i = 0 off its tokens, Σ_{x_i>0} x_i·x_j = Σ x_i·x_j and Σ_{x_i>0} x_i² = Σ x_i²: only the other
        feature's norm is masked."""
        sq_j_where_i, sq_i_where_j = self.sq_where_fires[i, j]
        by_i = ratio_or_zero(self.sum_xy[i, j], self.sum_sq[i][:, None] * sq_j_where_i)
        by_j = ratio_or_zero(self.sum_xy[i, j], sq_i_where_j * self.sum_sq[j][None, :])
        return torch.maximum(by_i, by_j)


@torch.no_grad()
def correlation_sums(transformer, saes: list, site: str, contexts) -> CorrelationSums:
    """Stream the contexts through the transformer and each SAE (encode of the site's activations), summing (the
    masked sums too)."""
    sums = CorrelationSums([s.cfg.n_features for s in saes], transformer.device, masked=True)
    for b0, b1 in contexts.bar('activation sums'):
        tokens = contexts.read(b0, b1)
        with transformer.autocast:
            _, _, acts = transformer.model.run(tokens[:, :-1], capture=[site], need_logits=False)
            x = acts[site].reshape(-1, acts[site].size(-1))  # (B*T, d_in)
            sums.add_([s.encode(x).float() for s in saes])
    return sums


# ----------------------------------------------------------------------------- links: parents, relatives

def link_family(family: Family, decoders: list[torch.Tensor], sums: CorrelationSums, link: str, threshold: float,
                min_density: float) -> dict:
    """A family's entry of families.json from its members' unit decoders (F_i, d_in) and activation sums (masked=True).
    Bricken et al. 2023, "Towards Monosemanticity", section "Feature Splitting": the features of a small dictionary
    split into groups of features of a larger one trained on the same activations, and features both split and
    merge, so a feature has as parents every feature of the next smaller member whose score (by link) with it is
    >= threshold: none, one or several. A feature of density < min_density on the sums' tokens (the paper's
    ultralow-density cluster) has no parent, relative or child."""
    if link not in LINKS:
        raise UserError(f"family_link='{link}' is not one of {', '.join(LINKS)}")
    L = len(family.members)
    density = [sums.density(i) for i in range(L)]
    linked = [d >= min_density for d in density]
    features = [[{'density': float(f'{d:.4g}'), 'parents': [], 'relatives': []} for d in dens.tolist()]
                for dens in density]
    for i in range(L):
        for j in range(i + 1, L):
            cos = (decoders[i] @ decoders[j].T).double()
            # Bricken et al. 2023, feature splitting: "masked cosine similarity between decoded neuron activations":
            # the decoded activations f_i(x)·d_i over the tokens (d_i the unit decoder direction) have cosine
            # (masked activation cosine)·(d_i·d_j)
            scores = {'cos': cos, 'corr': sums.corr(i, j), 'masked': sums.masked_cos(i, j) * cos}  # (F_i, F_j) each
            both_linked = linked[i][:, None] & linked[j][None, :]
            score = scores[SCORE_KEYS[link]].masked_fill(~both_linked, -float('inf'))
            if j == i + 1:  # the parents of member j's features, in member i
                add_parents_(features[j], score, scores, threshold)
            add_relatives_(features[i], score, scores, family.members[j], family.sizes[j])
            add_relatives_(features[j], score.T, {k: v.T for k, v in scores.items()}, family.members[i],
                           family.sizes[i])
    for f_list in features:
        for f in f_list:
            f['relatives'].sort(key=lambda r: r['n_features'])  # stable: by size, then by score within a size
    return {'name': family.name, 'kind': family.kind, 'members': family.members, 'sizes': family.sizes,
            'n_tokens': sums.n, 'link': link, 'threshold': threshold, 'min_density': min_density,
            'features': dict(zip(family.members, features))}


def link_record(scores: dict[str, list], n: int) -> dict:
    """A link's three scores (entry n of each list), rounded."""
    return {k: round(scores[k][n], 4) for k in ('cos', 'corr', 'masked')}


def add_parents_(features: list[dict], score: torch.Tensor, scores: dict[str, torch.Tensor], threshold: float) -> None:
    """Give each feature (column of score (F_smaller, F)) as parents every feature of the smaller member whose score
    is >= threshold, best first."""
    parent, child = torch.nonzero(score >= threshold, as_tuple=True)
    best = score[parent, child].numpy()
    values = {k: v[parent, child].tolist() for k, v in scores.items()}
    parent, child = parent.tolist(), child.tolist()
    for n in np.lexsort((-best, child)).tolist():  # by child, then best first
        features[child[n]]['parents'].append({'feature': parent[n], **link_record(values, n)})


def add_relatives_(features: list[dict], score: torch.Tensor, scores: dict[str, torch.Tensor], other: str,
                   n_other: int) -> None:
    """Append to each feature (row of score (F, F_other)) its N_RELATIVES best matches in member `other`, those of
    score > 0."""
    top = score.topk(min(N_RELATIVES, n_other), dim=1).indices  # (F, r)
    best = score.gather(1, top).tolist()
    values = {k: v.gather(1, top).tolist() for k, v in scores.items()}
    for i, (f, ids) in enumerate(zip(features, top.tolist())):
        row = {k: v[i] for k, v in values.items()}
        f['relatives'] += [{'sae': other, 'n_features': n_other, 'feature': j, **link_record(row, r)}
                           for r, j in enumerate(ids) if best[i][r] > 0]


def link_sweep(sweep_dir: str, members: list[SweepMember], transformer, split: str, n_contexts: int,
               batch_size: int, link: str, threshold: float, min_density: float, seed: int) -> dict:
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
        linked.append(link_family(fam, [unit_decoder(s.sae) for s in loaded], sums, link, threshold, min_density))
    return {'link': link, 'threshold': threshold, 'min_density': min_density, 'n_tokens': contexts.n_tokens,
            'split': split, 'dataset': transformer.data_dir, 'transformer': os.path.abspath(transformer.ckpt_path),
            'family_contexts': n_contexts, 'context_length': contexts.length, 'seed': seed,
            'context_starts': contexts.starts.tolist(), 'built': time.strftime('%Y-%m-%d %H:%M:%S'),
            'families': linked}


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


def read_families(sweep_dir: str, members: list[SweepMember], link: str, threshold: float, min_density: float,
                  n_contexts: int, split: str, seed: int) -> dict | None:
    """families.json when it is newer than every SAE of the sweep, names the families the sweep has now and was
    linked with these settings (link_sweep's), else None (build_interface.py computes it anew)."""
    path = os.path.join(sweep_dir, FAMILIES_FILE)
    if not os.path.isfile(path):
        return None
    newest = max(os.path.getmtime(os.path.join(m.dir, 'sae_weights.safetensors')) for m in members)
    if os.path.getmtime(path) < newest:
        return None
    data = read_json(path)
    settings = ('link', 'threshold', 'min_density', 'family_contexts', 'split', 'seed')
    if tuple(data.get(k) for k in settings) != (link, threshold, min_density, n_contexts, split, seed):
        return None
    have = [(f['name'], f['members'], f['sizes']) for f in data.get('families', [])]
    want = [(f.name, f.members, f.sizes) for f in find_families(members)]
    return data if have == want else None


def family_of(data: dict, member: str) -> dict | None:
    """The family entry of families.json that holds member, or None."""
    return next((f for f in data['families'] if member in f['members']), None)

