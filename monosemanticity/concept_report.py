"""
The ground-truth concept report (issue 23, item 2; analyze.py is the story): for every concept of a labelled dataset
(label_concepts.py, docs/concepts.md), the best single SAE feature and the best single neuron at detecting it on the
analysis's contexts. A unit detects a concept where its activation > a threshold; per (unit, concept) the threshold
is the one of the grid THRESHOLD_FRACS x the unit's max over the EXPLAIN tokens that maximises F1 on the EXPLAIN
tokens; per concept the best unit is the one of highest EXPLAIN F1; its precision, recall and F1 are scored on the
held-out SCORE tokens. Counts are streamed (ConceptCounts.add_, called in findings.pass2_firings' batches): per
threshold an (tokens x units) indicator block times the (tokens x concepts) labels. The spread (features only):
the features a concept needs, greedily ORed until F1 SPREAD_F1 (pass3_spread_firings records where each concept's
SPREAD_POOL candidates fire, greedy_spread chooses on the EXPLAIN tokens and scores on the SCORE tokens).
report.json's 'concepts': docs/formats.md.
"""
import json
import os
from typing import Callable, NamedTuple

import numpy as np
import torch

from monosemanticity.common import UserError, file_sha256, save_png
from monosemanticity.findings import Halves, Run, unit_activations
from monosemanticity.runs import Contexts

UNIT_SETS = ('features', 'neurons')  # run A's SAE features and the neurons of their site
THRESHOLD_FRACS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # x a unit's max over the EXPLAIN tokens
PARTS = ('explain', 'score')
SPREAD_POOL = 32  # spread: per concept its candidate features, those of highest EXPLAIN F1 (each at its threshold)
SPREAD_MAX = 20  # spread: features added at most
SPREAD_F1 = 0.9  # spread: the F1 the OR of a concept's features must reach on the EXPLAIN tokens
DENSE_FIRING_SHARE = 0.6  # firing_counts: dense indicator blocks when more of a set's (token, unit) pairs fire
DETECT_F1 = 0.5  # by_feature: a feature detects a concept where its held-out F1 (at its EXPLAIN threshold) >= this


class ConceptLabels(NamedTuple):
    names: list[str]  # (C,) in column order
    kinds: list[str]  # (C,) 'lexical', 'structural' or 'folder' (label_concepts.py)
    packed: np.ndarray  # (n_tokens, row_bytes) uint8 memmap: np.packbits rows of <split>.bin's tokens
    json_path: str


def load_concept_labels(data_dir: str, split: str, n_split_tokens: int) -> ConceptLabels | None:
    """The labels of <data_dir>/<split>.bin (concepts.json, concepts_<split>.bin), or None when the dataset has no
    concepts.json; UserError when they are of other tokens (their count, or the split's tokens_sha256)."""
    json_path = os.path.join(data_dir, 'concepts.json')
    if not os.path.isfile(json_path):
        return None
    with open(json_path) as f:
        meta = json.load(f)
    info = meta['splits'][split]
    relabel = f"relabel with `python label_concepts.py --data_dir={data_dir}`"
    if info['tokens'] != n_split_tokens:
        raise UserError(f"{json_path} labels {info['tokens']} {split} tokens but {split}.bin holds {n_split_tokens}: "
                        f"{relabel}")
    if 'tokens_sha256' in info and info['tokens_sha256'] != file_sha256(os.path.join(data_dir, f'{split}.bin')):
        raise UserError(f"{json_path} labels other tokens than {split}.bin's (tokens_sha256 differs): {relabel}")
    packed = np.memmap(os.path.join(data_dir, info['file']), dtype=np.uint8, mode='r',
                       shape=(info['tokens'], info['row_bytes']))
    return ConceptLabels([c['name'] for c in meta['concepts']], [c['kind'] for c in meta['concepts']], packed,
                         json_path)


def context_labels(labels: ConceptLabels, starts: np.ndarray, T: int) -> torch.Tensor:
    """(len(starts)*T, C) float32: the labels of the first T tokens of the contexts at starts, row by row."""
    rows = (starts[:, None] + np.arange(T)).reshape(-1)  # (B*T,)
    bits = np.unpackbits(labels.packed[rows], axis=1, count=len(labels.names))  # (B*T, C) uint8
    return torch.from_numpy(bits.astype(np.float32))


class ConceptCounts:
    """Per unit set, per part ('explain', 'score'): tp (G, U, C) tokens where the unit fires above threshold g and
    the concept holds, fires (G, U), positives (C,), tokens; float64 sums of exact float32 batch counts."""

    def __init__(self, labels: ConceptLabels, explain_max: dict[str, torch.Tensor], halves_is_explain: np.ndarray,
                 T: int):
        """explain_max: per unit set to count (e.g. 'features', 'neurons') its (U,) max over the EXPLAIN tokens."""
        self.labels, self.T, self.is_explain = labels, T, halves_is_explain
        fracs = torch.tensor(THRESHOLD_FRACS, dtype=torch.float32)
        self.thresholds = {name: torch.where(m.cpu() > 0, fracs[:, None] * m.cpu(),
                                             torch.full((len(fracs), len(m)), torch.inf))
                           for name, m in explain_max.items()}  # (G, U): inf where the unit never fires on EXPLAIN
        G, C = len(fracs), len(labels.names)
        self.tp = {(n, p): torch.zeros(G, t.size(1), C, dtype=torch.float64)
                   for n, t in self.thresholds.items() for p in PARTS}
        self.fires = {(n, p): torch.zeros(G, t.size(1), dtype=torch.float64)
                      for n, t in self.thresholds.items() for p in PARTS}
        self.positives = {p: torch.zeros(C, dtype=torch.float64) for p in PARTS}
        self.tokens = {p: 0 for p in PARTS}

    def add_(self, starts: np.ndarray, context_ids: np.ndarray, units: dict[str, torch.Tensor]) -> None:
        """One batch: contexts context_ids (B,) at starts (B,), units[name] (B*T, U) the activations of every unit
        set counted. Both parts in one count per set: the labels of each part, then each part's indicator (its
        fires), as columns."""
        y = context_labels(self.labels, starts, self.T)  # (B*T, C)
        explain = torch.from_numpy(np.repeat(self.is_explain[context_ids], self.T))  # (B*T,)
        e = explain.float()[:, None]  # (B*T, 1)
        columns = torch.cat([y * e, y * (1 - e), e, 1 - e], 1)  # (B*T, 2C+2) in PARTS order
        C = y.size(1)
        sums = columns.sum(0).double()
        for i, part in enumerate(PARTS):
            self.positives[part] += sums[i * C:(i + 1) * C]
            self.tokens[part] += int(sums[2 * C + i])
        for name, thr in self.thresholds.items():
            tp = firing_counts(units[name].cpu(), columns, thr)  # (G, U, 2C+2)
            for i, part in enumerate(PARTS):
                self.tp[name, part] += tp[:, :, i * C:(i + 1) * C]
                self.fires[name, part] += tp[:, :, 2 * C + i]


def firing_counts(a: torch.Tensor, y: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """a (N, U) activations, y (N, K) 0/1 columns (labels; a column of ones counts the firings), thr (G, U)
    thresholds increasing along G -> (G, U, K) float64: per threshold, unit and column the tokens where a > thr[g]
    and the column holds (exact float32 counts, N < 2**24). Sparse units (an SAE's features: few above the lowest
    threshold) by the level of each firing (how many thresholds it passes: passing thr[g] passes the lower ones),
    dense ones by an indicator block per threshold."""
    G, U = thr.shape
    entries = (a > thr[0]).nonzero()  # (E, 2) token, unit
    if len(entries) > DENSE_FIRING_SHARE * a.numel():
        return torch.stack([(a > t).float().T @ y for t in thr]).double()  # (G, U, K)
    i, u = entries.unbind(1)
    level = (a[i, u][:, None] > thr[:, u].T).sum(1)  # (E,) thresholds passed, >= 1
    row = (level - 1) * U + u  # (E,) the entry's (highest threshold passed, unit)
    once = torch.sparse_coo_tensor(torch.stack([row, i]), torch.ones(len(i)), (G * U, len(a)), check_invariants=False)
    hist = torch.sparse.mm(once, y).view(G, U, -1)  # (G, U, K) per highest threshold passed
    return hist.flip(0).cumsum(0).flip(0).double()  # passed thr[g]: highest passed >= g


def prf(tp: torch.Tensor, fires: torch.Tensor, positives: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Precision, recall, F1 (broadcast shapes); NaN where undefined (no firing, no positive, neither)."""
    nan = torch.tensor(float('nan'), dtype=torch.float64)
    p = torch.where(fires > 0, tp / fires.clamp(min=1), nan)
    r = torch.where(positives > 0, tp / positives.clamp(min=1), nan)
    den = fires + positives
    f1 = torch.where(den > 0, 2 * tp / den.clamp(min=1), nan)
    return p, r, f1


class BestDetectors(NamedTuple):
    unit: torch.Tensor  # (C,) int64 the unit of highest EXPLAIN F1 (its best threshold)
    grid: torch.Tensor  # (C,) int64 that threshold's index in THRESHOLD_FRACS
    f1_explain: torch.Tensor  # (C,) its F1 on the EXPLAIN tokens
    precision: torch.Tensor  # (C,) on the SCORE tokens (NaN: undefined)
    recall: torch.Tensor
    f1: torch.Tensor


def best_detectors(counts: ConceptCounts, name: str) -> BestDetectors:
    """Per concept its best unit of the set `name` and threshold, both chosen on the EXPLAIN tokens, scored on the
    SCORE tokens."""
    tp_e, fires_e = counts.tp[name, 'explain'], counts.fires[name, 'explain']  # (G, U, C), (G, U)
    _, _, f1_e = prf(tp_e, fires_e[:, :, None], counts.positives['explain'])
    f1_e = torch.nan_to_num(f1_e, nan=-1.0)  # (G, U, C)
    best_f1_per_unit, g_per_unit = f1_e.max(0)  # (U, C) each: the threshold chosen per (unit, concept)
    f1_explain, unit = best_f1_per_unit.max(0)  # (C,)
    C = len(unit)
    grid = g_per_unit[unit, torch.arange(C)]  # (C,)
    tp_s = counts.tp[name, 'score'][grid, unit, torch.arange(C)]  # (C,)
    fires_s = counts.fires[name, 'score'][grid, unit]  # (C,)
    p, r, f1 = prf(tp_s, fires_s, counts.positives['score'])
    return BestDetectors(unit, grid, f1_explain, p, r, f1)


class PairScores(NamedTuple):
    f1_explain: torch.Tensor  # (U, C) per (unit, concept) its best EXPLAIN F1 over the grid (-1: undefined)
    grid: torch.Tensor  # (U, C) int64 that threshold's index in THRESHOLD_FRACS
    precision: torch.Tensor  # (U, C) at that threshold on the SCORE tokens (NaN: undefined)
    recall: torch.Tensor
    f1: torch.Tensor


def pair_scores(counts: ConceptCounts, name: str) -> PairScores:
    """Per (unit of the set `name`, concept) the threshold of the grid of highest EXPLAIN F1 and its SCORE scores:
    best_detectors' rule without the choice of a best unit. O(G U C)."""
    _, _, f1_e = prf(counts.tp[name, 'explain'], counts.fires[name, 'explain'][:, :, None],
                     counts.positives['explain'])
    best_f1, g = torch.nan_to_num(f1_e, nan=-1.0).max(0)  # (U, C) each
    tp = counts.tp[name, 'score'].gather(0, g[None]).squeeze(0)  # (U, C) on the SCORE tokens at it
    fires = counts.fires[name, 'score'].T.gather(1, g)  # (U, C)
    return PairScores(best_f1, g, *prf(tp, fires, counts.positives['score']))


def concepts_by_feature(counts: ConceptCounts, min_f1: float = DETECT_F1) -> dict:
    """The section's 'by_feature' (docs/formats.md): per SAE feature the concepts it detects (pair_scores): its
    SCORE F1 >= min_f1. Only features detecting one; per feature [concept, f1, precision, recall] rows, best F1
    first."""
    pairs = pair_scores(counts, 'features')
    f1, p, r = pairs.f1, pairs.precision, pairs.recall
    hits = torch.nonzero(f1 >= min_f1).tolist()  # NaN (no firing, no positive) is no hit
    hits.sort(key=lambda uc: (uc[0], -float(f1[uc[0], uc[1]]), uc[1]))
    out: dict[str, list] = {}
    for u, c in hits:
        out.setdefault(str(u), []).append([c, *(round(float(x[u, c]), 4) for x in (f1, p, r))])
    return {'min_f1': min_f1, 'row': ['concept', 'f1', 'precision', 'recall'], 'features': out}


class Candidates(NamedTuple):
    unit: torch.Tensor  # (C, K) per concept the units of highest EXPLAIN F1 (each at its threshold), best first
    threshold: torch.Tensor  # (C, K) float32 each one's threshold (chosen on the EXPLAIN tokens)
    precision: torch.Tensor  # (C, K) at that threshold on the SCORE tokens (NaN: undefined)
    recall: torch.Tensor
    f1: torch.Tensor


def top_candidates(counts: ConceptCounts, name: str, k: int) -> Candidates:
    """Per concept the k units of the set `name` of highest EXPLAIN F1, each at its best threshold, and their scores
    on the SCORE tokens (pair_scores)."""
    pairs = pair_scores(counts, name)
    unit = pairs.f1_explain.T.topk(min(k, pairs.f1_explain.size(0)), dim=1).indices  # (C, K)
    grid = pairs.grid.T.gather(1, unit)  # (C, K)
    p, r, f1 = (x.T.gather(1, unit) for x in (pairs.precision, pairs.recall, pairs.f1))
    return Candidates(unit, counts.thresholds[name][grid, unit], p, r, f1)


def spread_candidates(counts: ConceptCounts) -> Candidates:
    """Per concept the SPREAD_POOL features of highest EXPLAIN F1, each at its best threshold."""
    return top_candidates(counts, 'features', SPREAD_POOL)


def best_f1_summary(f1: torch.Tensor, positives: torch.Tensor) -> dict:
    """f1 (C,) each concept's best unit's SCORE F1 (NaN: undefined), positives (C,) its SCORE tokens -> the median
    and the share >= 0.5 over the concepts with a positive SCORE token."""
    f1s = np.array([float(f) for f, n in zip(f1, positives) if n > 0 and not np.isnan(float(f))])
    return {'n_concepts_scored': len(f1s),
            'median_best_f1': round(float(np.median(f1s)), 4) if len(f1s) else None,
            'share_best_f1_at_least_0.5': round(float(np.mean(f1s >= 0.5)), 4) if len(f1s) else None}


class SpreadFirings:
    """Per part ('explain', 'score'): for every token, whether each concept's candidates fire (bits packed along
    the candidates, (N, C, ceil(K/8)) uint8 per batch) and its labels ((N, C) bool): C x K bits a token, not
    n_units."""

    def __init__(self, candidates: Candidates, labels: ConceptLabels, halves_is_explain: np.ndarray, T: int):
        self.candidates, self.labels, self.is_explain, self.T = candidates, labels, halves_is_explain, T
        self.fire = {p: [] for p in PARTS}
        self.y = {p: [] for p in PARTS}

    def add_(self, starts: np.ndarray, context_ids: np.ndarray, features: torch.Tensor) -> None:
        """One batch: contexts context_ids (B,) at starts (B,), features (B*T, U) their SAE feature activations."""
        y = context_labels(self.labels, starts, self.T).bool().numpy()  # (B*T, C)
        fire = (features.cpu()[:, self.candidates.unit] > self.candidates.threshold).numpy()  # (B*T, C, K)
        packed = np.packbits(fire, axis=2)  # (B*T, C, ceil(K/8))
        explain = np.repeat(self.is_explain[context_ids], self.T)  # (B*T,)
        for part, keep in (('explain', explain), ('score', ~explain)):
            self.fire[part].append(packed[keep])
            self.y[part].append(y[keep])

    def concept(self, part: str, c: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) bool: where concept c's candidates fire on the part's tokens; (N,) bool: its labels there."""
        K = self.candidates.unit.size(1)
        fire = np.unpackbits(np.concatenate([f[:, c] for f in self.fire[part]]), axis=1, count=K).astype(bool)
        return fire, np.concatenate([y[:, c] for y in self.y[part]])


def pass3_spread_firings(runs: tuple[Run, Run], contexts: Contexts, halves: Halves, candidates: Candidates,
                         labels: ConceptLabels,
                         on_batch: Callable[[int, int, dict[str, torch.Tensor]], None] | None = None) -> SpreadFirings:
    """Pass 3 (with concept labels only): one forward of run A per batch, where each concept's candidates fire.
    on_batch(b0, b1, units): also given each batch's 'features' and 'neurons' (the sparse probes' activations,
    monosemanticity/concept_probe.py)."""
    spread = SpreadFirings(candidates, labels, halves.is_explain, contexts.length)
    for b0, b1 in contexts.bar('pass 3/3 (concept spread)'):
        units = unit_activations(runs[:1], contexts.read(b0, b1))  # run A only: 'neurons', 'features'
        spread.add_(contexts.starts[b0:b1], np.arange(b0, b1), units['features'])
        if on_batch is not None:
            on_batch(b0, b1, units)
    return spread


def f1_of_or(cover: np.ndarray, y: np.ndarray) -> float:
    """F1 of 'fires where cover' against labels y ((N,) bools each); 0 when neither holds anywhere."""
    den = cover.sum() + y.sum()
    return float(2 * (cover & y).sum() / den) if den else 0.0


def greedy_spread(fire_e: np.ndarray, y_e: np.ndarray, fire_s: np.ndarray, y_s: np.ndarray) -> dict:
    """Greedy on the EXPLAIN tokens (fire_e (N_e, K), y_e (N_e,)): add the candidate whose OR with those chosen
    most raises F1, until F1 >= SPREAD_F1, SPREAD_MAX candidates, or no raise; the chosen set's OR scored on the
    SCORE tokens (fire_s, y_s). Returns candidate indices, F1 after each step, the count or None (not reached)."""
    chosen, f1_steps = [], []
    cover = np.zeros(len(y_e), dtype=bool)
    n_pos = int(y_e.sum())
    while len(chosen) < SPREAD_MAX and (not f1_steps or f1_steps[-1] < SPREAD_F1):
        union = cover[:, None] | fire_e  # (N_e, K)
        den = union.sum(0) + n_pos  # (K,)
        f1 = np.where(den > 0, 2 * (union & y_e[:, None]).sum(0) / np.maximum(den, 1), 0.0)  # (K,)
        f1[chosen] = -1.0
        k = int(f1.argmax())
        if f1[k] <= (f1_steps[-1] if f1_steps else 0.0):
            break
        chosen.append(k)
        f1_steps.append(float(f1[k]))
        cover = union[:, k]
    reached = bool(f1_steps) and f1_steps[-1] >= SPREAD_F1
    return {'chosen': chosen, 'f1_explain': f1_steps, 'n_features': len(chosen) if reached else None,
            'f1': f1_of_or(fire_s[:, chosen].any(1), y_s)}


def concept_spread(spread: SpreadFirings, c: int) -> dict:
    """A concept's entry 'features_spread' (docs/formats.md)."""
    g = greedy_spread(*spread.concept('explain', c), *spread.concept('score', c))
    ids = spread.candidates.unit[c].tolist()
    return {'n_features': g['n_features'], 'features': [ids[k] for k in g['chosen']],
            'f1_explain': [round(f, 4) for f in g['f1_explain']], 'f1': round(g['f1'], 4)}


def concepts_section(counts: ConceptCounts, spread: SpreadFirings | None = None, probe: dict | None = None) -> dict:
    """report.json's 'concepts' (docs/formats.md); spread: pass 3's candidate firings, for 'features_spread'; probe:
    the sparse probes (concept_probe.probe_results), for the keys 'probe'."""
    def r4(x: float):
        return None if np.isnan(x) else round(float(x), 4)
    best = {name: best_detectors(counts, name) for name in UNIT_SETS}
    n_score = counts.tokens['score']
    rows = []
    for c, (concept, kind) in enumerate(zip(counts.labels.names, counts.labels.kinds)):
        row = {'name': concept, 'kind': kind, 'n_positive_score': int(counts.positives['score'][c]),
               'base_rate_score': r4(float(counts.positives['score'][c]) / max(n_score, 1))}
        for name in UNIT_SETS:
            b = best[name]
            u, g = int(b.unit[c]), int(b.grid[c])
            row[name] = {'id': u, 'threshold_frac': THRESHOLD_FRACS[g],
                         'threshold': float(f"{float(counts.thresholds[name][g, u]):.6g}"),
                         'f1_explain': r4(max(float(b.f1_explain[c]), 0.0)), 'precision': r4(float(b.precision[c])),
                         'recall': r4(float(b.recall[c])), 'f1': r4(float(b.f1[c]))}
        if spread is not None:
            row['features_spread'] = concept_spread(spread, c)
        if probe is not None:
            row['probe'] = probe['concepts'][c]
        rows.append(row)
    summary = {name: best_f1_summary(best[name].f1, counts.positives['score']) for name in UNIT_SETS}
    if spread is not None:
        scored = [row['features_spread'] for row in rows if row['n_positive_score'] > 0]
        counts_n = [sp['n_features'] for sp in scored]
        summary['features_spread'] = {'n_one': sum(n == 1 for n in counts_n),
                                      'n_reached': sum(n is not None for n in counts_n),
                                      'n_not_reached': sum(n is None for n in counts_n),
                                      'median_f1': r4(float(np.median([sp['f1'] for sp in scored]))) if scored
                                      else None}
    if probe is not None:
        summary['probe'] = probe['summary']
    rule = (f"a unit detects a concept where its activation > a threshold; per (unit, concept) the threshold is the "
            f"one of {list(THRESHOLD_FRACS)} x the unit's max over the EXPLAIN tokens of highest F1 on the EXPLAIN "
            f"tokens, and per concept the best unit is the one of highest EXPLAIN F1; precision, recall and F1 are "
            f"scored on the SCORE tokens; the summaries count the concepts with a positive SCORE token. Spread: of the "
            f"{SPREAD_POOL} features of highest EXPLAIN F1 (each at its threshold), greedily the one whose OR with "
            f"those chosen most raises the EXPLAIN F1, until it reaches {SPREAD_F1} (n_features; null: not within "
            f"{SPREAD_MAX} features or no raise); the chosen set's OR scored on the SCORE tokens")
    return {'labels': os.path.abspath(counts.labels.json_path), 'rule': rule, 'threshold_fracs': list(THRESHOLD_FRACS),
            'spread': {'pool': SPREAD_POOL, 'max_features': SPREAD_MAX, 'target_f1': SPREAD_F1},
            'n_explain_tokens': counts.tokens['explain'], 'n_score_tokens': n_score, 'summary': summary,
            'concepts': rows, 'by_feature': concepts_by_feature(counts),
            **({} if probe is None else {'probe': probe['settings']})}


def concepts_summary_line(section: dict) -> str:
    """The printed line: median best F1 and share >= 0.5, features vs neurons."""
    s = section['summary']
    parts = [f"{name} median {s[name]['median_best_f1']}, {s[name]['share_best_f1_at_least_0.5']:.0%} >= 0.5"
             for name in UNIT_SETS if s[name]['median_best_f1'] is not None]
    line = (f"concepts ({s['features']['n_concepts_scored']} scored), best single unit's held-out F1: "
            f"{'; '.join(parts)}")
    if 'features_spread' in s:
        sp = s['features_spread']
        line += (f"; F1 {SPREAD_F1} reached (EXPLAIN tokens) by 1 feature for {sp['n_one']} concepts, by <= "
                 f"{SPREAD_MAX} for {sp['n_reached']}, not for {sp['n_not_reached']}; the greedy sets' median "
                 f"held-out F1 {sp['median_f1']}")
    return line


def plot_concepts(section: dict, path: str) -> None:
    """concepts.png: per concept (sorted by best-feature F1) its best feature's and best neuron's SCORE F1."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = sorted(section['concepts'], key=lambda r: -(r['features']['f1'] or 0))
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.5, 0.22 * len(rows)), 4.5))
    for name, dx, color in (('features', -0.2, 'tab:blue'), ('neurons', 0.2, 'tab:orange')):
        med = section['summary'][name]['median_best_f1']
        ax.bar(x + dx, [r[name]['f1'] or 0 for r in rows], width=0.4, color=color,
               label=f"best {name[:-1]} (median {med if med is None else format(med, '.2f')})")
    ax.set_xticks(x, [r['name'] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel('F1 on held-out tokens')
    ax.set_ylim(0, 1)
    ax.set_title('Ground-truth concepts: the best single SAE feature vs the best single neuron', fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis='y', alpha=0.3)
    save_png(fig, path)
