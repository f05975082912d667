"""
The concept axis of trained SAEs (issue 23, item 3): for each SAE of a run or sweep, at train_sae.py's final
evaluation, its best single feature per ground-truth concept (label_concepts.py, docs/concepts.md) by the rule of
analyze.py's concept report (concept_report.py: a threshold of the grid and the unit chosen on the EXPLAIN tokens,
precision / recall / F1 on the SCORE tokens), and the median of those F1s over the concepts: one number per SAE that
sweep.py's Pareto report draws against L0; for a size family, the descendants of the smallest SAE's best feature
that detect parts of the concept in the larger ones (concept_splits, shown on the sweep site's family page).
The contexts: n val contexts spread evenly over val.bin (the final evaluation's way), the even ones EXPLAIN and the
odd ones SCORE. The site's neurons are scored alike, once. Two streaming passes (the maxima over the EXPLAIN tokens,
then the counts); per SAE its 'concepts' in metrics.json (docs/formats.md).
"""
import os

import numpy as np
import torch

from monosemanticity.common import atomic_write_json, progress, read_json, token_windows
from monosemanticity.concept_report import (BestDetectors, ConceptCounts, ConceptLabels, best_detectors,
                                            best_f1_summary, top_candidates)

N_CANDIDATES = 8  # per concept, the features of highest EXPLAIN F1 kept with their SCORE scores (splits across sizes)
PART_PRECISION = 0.5  # a descendant of a concept's best feature detects a part of it at this SCORE precision or more


@torch.no_grad()
def concept_axis(saes: dict[str, torch.nn.Module], gpt: torch.nn.Module, site: str, val: np.ndarray,
                 labels: ConceptLabels, starts: np.ndarray, T: int, batch_size: int, device: str,
                 show: bool = True) -> dict[str, dict]:
    """Per SAE name its metrics.json 'concepts': its features (and the site's neurons) scored on the concepts of
    val's tokens (labels) over the contexts of T tokens at starts (every SAE reads the same forwards)."""
    is_explain = np.arange(len(starts)) % 2 == 0  # even contexts EXPLAIN, odd SCORE
    was_training = {name: sae.training for name, sae in saes.items()}
    for sae in saes.values():
        sae.eval()  # inference's encoder (BatchTopK: its threshold, not the batch's top k)

    def units(at: np.ndarray) -> dict[str, torch.Tensor]:
        """The contexts at `at` (B,) -> per unit set its (B*T, U) activations: 'neurons' and each SAE's name."""
        x = gpt.run(token_windows(val, at, T).to(device), capture=[site], need_logits=False)[2][site]
        x = x.reshape(-1, x.size(-1)).float()  # (B*T, d)
        return {'neurons': x, **{name: sae.encode(x).float() for name, sae in saes.items()}}

    def batches(n: int, desc: str):
        return progress(range(0, n, batch_size), desc=desc, unit='batch', disable=not show)

    explain_starts = starts[is_explain]
    explain_max: dict[str, torch.Tensor] = {}
    for b0 in batches(len(explain_starts), 'concepts 1/2'):  # pass 1: each unit's max over the EXPLAIN tokens
        for name, a in units(explain_starts[b0:b0 + batch_size]).items():
            m = a.max(0).values.cpu()
            explain_max[name] = torch.maximum(explain_max[name], m) if name in explain_max else m
    counts = ConceptCounts(labels, explain_max, is_explain, T)
    for b0 in batches(len(starts), 'concepts 2/2'):  # pass 2: the counts above each threshold of the grid
        ids = np.arange(b0, min(b0 + batch_size, len(starts)))
        counts.add_(starts[ids], ids, units(starts[ids]))
    for name, sae in saes.items():
        sae.train(was_training[name])
    neurons = best_detectors(counts, 'neurons')
    return {name: sae_concepts(counts, name, neurons) for name in saes}


def r4(x) -> float | None:
    return None if np.isnan(float(x)) else round(float(x), 4)


def unit_entry(counts: ConceptCounts, name: str, best: BestDetectors, c: int) -> list:
    """[unit, threshold, precision, recall, F1] of concept c's best unit of the set `name` (scores: SCORE tokens)."""
    u = int(best.unit[c])
    threshold = float(f"{float(counts.thresholds[name][best.grid[c], u]):.6g}")
    return [u, threshold, r4(best.precision[c]), r4(best.recall[c]), r4(best.f1[c])]


def sae_concepts(counts: ConceptCounts, name: str, neurons: BestDetectors) -> dict:
    """One SAE's metrics.json 'concepts' from the counts of its features ('name') and the site's neurons."""
    best = best_detectors(counts, name)
    cand = top_candidates(counts, name, N_CANDIDATES)
    positives = counts.positives['score']
    rows = {concept: {'n_positive_score': int(positives[c]), 'feature': unit_entry(counts, name, best, c),
                      'neuron': unit_entry(counts, 'neurons', neurons, c),
                      'candidates': [[int(u), float(f"{float(t):.6g}"), r4(p), r4(r), r4(f)] for u, t, p, r, f in
                                     zip(cand.unit[c], cand.threshold[c], cand.precision[c], cand.recall[c],
                                         cand.f1[c])]}
            for c, concept in enumerate(counts.labels.names)}
    return {'labels': os.path.abspath(counts.labels.json_path), 'n_contexts': len(counts.is_explain),
            'n_explain_tokens': counts.tokens['explain'], 'n_score_tokens': counts.tokens['score'],
            **best_f1_summary(best.f1, positives),
            'neurons': best_f1_summary(neurons.f1, positives),
            'concepts': rows}


def axis_line(c: dict) -> str:
    """An SAE's concept axis (its metrics.json 'concepts') in one line."""
    return (f"concepts ({c['n_concepts_scored']}, {c['n_score_tokens']:,} held-out tokens): best feature's F1 median "
            f"{c['median_best_f1']} ({c['share_best_f1_at_least_0.5']:.0%} >= 0.5), best neuron's "
            f"{c['neurons']['median_best_f1']}")


def add_axis(metrics_path: str, concepts: dict) -> None:
    """An SAE done before the dataset had labels: its metrics.json with 'concepts' added, nothing else changed."""
    atomic_write_json(metrics_path, {**read_json(metrics_path), 'concepts': concepts})


def descendants(family: dict, root: int) -> list[set[int]]:
    """Per member of a size family (families.json's, smallest first) the features descending from feature root of
    the smallest through any of their parents."""
    levels = [{root}]
    for member in family['members'][1:]:
        levels.append({j for j, f in enumerate(family['features'][member])
                       if any(p['feature'] in levels[-1] for p in f['parents'])})
    return levels


def concept_splits(family: dict, axes: dict[str, dict]) -> list[dict]:
    """Feature splitting seen through the ground-truth concepts: per concept, the smallest member's best feature (the
    root) and, in each larger member, the root's descendants (descendants) that are among the concept's
    N_CANDIDATES best detectors there with SCORE precision >= PART_PRECISION ('parts': each detects a part of the
    concept), beside that member's best feature. axes: each member's metrics.json 'concepts'. The root splits when
    the largest member has >= 2 parts. Rows as the family page's FAMILY.concepts (docs/browser.md)."""
    members = family['members']
    rows = []
    for concept, first in axes[members[0]]['concepts'].items():
        if not first['n_positive_score']:
            continue  # no positive SCORE token: not scored
        root = first['feature']
        levels = descendants(family, root[0])
        sizes = [{'member': m, 'best': axes[m]['concepts'][concept]['feature'],
                  'parts': [c for c in axes[m]['concepts'][concept]['candidates']
                            if c[0] in levels[i] and c[2] is not None and c[2] >= PART_PRECISION]}
                 for i, m in enumerate(members[1:], 1)]
        rows.append({'concept': concept, 'root': root, 'sizes': sizes, 'split': len(sizes[-1]['parts']) >= 2})
    return rows
