"""
Sparse probing of the ground-truth concepts (issue 23, item 2c; analyze.py is the story): per concept, a logistic
regression on its top-k units, k in PROBE_KS, run A's SAE features vs the neurons of their site. The recipe of
SAEBench's sparse probing (Karvonen et al. 2025, get_top_k_mean_diff_mask; after Gurnee et al. 2023, "Finding
Neurons in a Haystack", k-sparse probing): the units ranked by |mean activation on the concept's tokens - mean on the
others| over the EXPLAIN tokens (MeanDifferences, summed in pass 2's batches), here divided by the unit's std there
(SAEBench's is not; ours ranks the units as the probe, whose inputs are standardised, sees them: a unit of large
scale does not outrank one that separates the classes better); per concept a seeded sample of up to
PROBE_PER_CLASS tokens where it holds and as many where it does not, of each split (probe_tokens); pass 3 gathers
the sampled tokens' activations of the concept's top max(PROBE_KS) units (ProbeActivations); per k a class-balanced,
L2-penalised logistic regression on the EXPLAIN sample (inputs standardised on it, fit_logistic), its balanced
accuracy on the SCORE sample (probe_results). report.json's 'concepts' keys 'probe': docs/formats.md.
"""
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import numpy as np
import torch

from monosemanticity.common import save_png
from monosemanticity.concept_report import UNIT_SETS, ConceptLabels, context_labels

PROBE_KS = (1, 2, 5, 20)  # units per probe: the top k of a concept's ranking
PROBE_PER_CLASS = 2048  # per concept and split: tokens where it holds sampled at most, and as many where it does not
PROBE_L2 = 1e-3  # the penalty l2/2·|w|² on the weights of standardised inputs (not the bias), beside the mean loss
NEWTON_STEPS = 100  # fit_logistic's Newton steps at most (it returns once converged)


class MeanDifferences:
    """Over the EXPLAIN tokens, per unit set: pos_sum (U, C) each unit's activations summed over each concept's
    tokens, total (U,) and total_sq (U,) their sums and sums of squares over all tokens; positives (C,), tokens.
    float64 sums of float32 batch products."""

    def __init__(self, labels: ConceptLabels, halves_is_explain: np.ndarray, T: int):
        self.labels, self.is_explain, self.T = labels, halves_is_explain, T
        self.pos_sum: dict[str, torch.Tensor] = {}
        self.total: dict[str, torch.Tensor] = {}
        self.total_sq: dict[str, torch.Tensor] = {}
        self.positives = torch.zeros(len(labels.names), dtype=torch.float64)
        self.tokens = 0

    def add_(self, starts: np.ndarray, context_ids: np.ndarray, units: dict[str, torch.Tensor]) -> None:
        """One batch: contexts context_ids (B,) at starts (B,), units[name] (B*T, U) their activations."""
        explain = torch.from_numpy(np.repeat(self.is_explain[context_ids], self.T))  # (B*T,)
        y = context_labels(self.labels, starts, self.T)[explain]  # (N, C)
        self.positives += y.sum(0).double()
        self.tokens += len(y)
        for name in UNIT_SETS:
            a = units[name].cpu()[explain]  # (N, U)
            self.pos_sum[name] = self.pos_sum.get(name, 0) + (a.T @ y).double()
            self.total[name] = self.total.get(name, 0) + a.sum(0).double()
            self.total_sq[name] = self.total_sq.get(name, 0) + a.square().sum(0).double()

    def differences(self, name: str) -> torch.Tensor:
        """(U, C) float64 |mean on the concept's EXPLAIN tokens - mean on the others| / the unit's std over the
        EXPLAIN tokens (a class without a token counts mean 0; a constant unit scores 0)."""
        n_pos = self.positives
        mean_pos = self.pos_sum[name] / n_pos.clamp(min=1)
        mean_neg = (self.total[name][:, None] - self.pos_sum[name]) / (self.tokens - n_pos).clamp(min=1)
        mean = self.total[name] / self.tokens
        std = (self.total_sq[name] / self.tokens - mean.square()).clamp(min=0).sqrt()  # (U,)
        return torch.where(std[:, None] > 0, (mean_pos - mean_neg).abs() / std[:, None], 0.0)

    def ranking(self, k: int) -> dict[str, torch.Tensor]:
        """Per unit set (C, min(k, U)) int64: per concept its units of largest difference, largest first."""
        return {name: self.differences(name).T.topk(min(k, len(self.total[name])), dim=1).indices
                for name in UNIT_SETS}


class ProbeTokens(NamedTuple):
    """The probes' tokens, sorted by token (a token is in one row per concept whose sample drew it)."""
    token: np.ndarray  # (M,) int64 flat index context·T + position into the picked contexts
    concept: np.ndarray  # (M,) int64 the concept whose probe it is in
    test: np.ndarray  # (M,) bool: of the SCORE split (the probe's test sample), else EXPLAIN (its training sample)
    label: np.ndarray  # (M,) bool: the concept holds there


def probe_tokens(labels: ConceptLabels, starts: np.ndarray, T: int, halves_is_explain: np.ndarray, seed: int,
                 per_class: int = PROBE_PER_CLASS) -> ProbeTokens:
    """Per concept and split (EXPLAIN: training, SCORE: test), up to per_class tokens where the concept holds and
    up to per_class where it does not (all of a class that has fewer), without replacement, drawn by
    np.random.default_rng(seed) concept by concept, EXPLAIN before SCORE, positives before negatives."""
    rng = np.random.default_rng(seed)
    y = context_labels(labels, starts, T).bool().numpy()  # (n*T, C)
    explain = np.repeat(halves_is_explain, T)  # (n*T,)
    picks, rows = [], []
    for c in range(y.shape[1]):
        for test, part in ((False, explain), (True, ~explain)):
            for label in (True, False):
                where = np.flatnonzero(part & (y[:, c] == label))
                picks.append(rng.choice(where, min(per_class, len(where)), replace=False))
                rows.append((c, test, label))
    n = [len(p) for p in picks]
    token = np.concatenate(picks).astype(np.int64)
    concept, test, label = (np.repeat(np.array(col), n) for col in zip(*rows))
    order = np.argsort(token, kind='stable')
    return ProbeTokens(token[order], concept[order].astype(np.int64), test[order], label[order])


class ProbeActivations:
    """Pass 3's record for the probes: per unit set values (M, K) float32, each sampled token's activations of its
    concept's ranked units (units[name] (C, K): MeanDifferences.ranking, largest first)."""

    def __init__(self, tokens: ProbeTokens, units: dict[str, torch.Tensor], T: int):
        self.tokens, self.units, self.T = tokens, units, T
        self.values = {name: np.zeros((len(tokens.token), units[name].size(1)), dtype=np.float32)
                       for name in UNIT_SETS}

    def add_(self, b0: int, b1: int, units: dict[str, torch.Tensor]) -> None:
        """One batch: contexts b0..b1-1, units[name] (B*T, U) their activations."""
        lo, hi = np.searchsorted(self.tokens.token, (b0 * self.T, b1 * self.T))
        row = torch.from_numpy(self.tokens.token[lo:hi] - b0 * self.T)  # (m,) the tokens' rows in the batch
        concept = torch.from_numpy(self.tokens.concept[lo:hi])  # (m,)
        for name in UNIT_SETS:
            self.values[name][lo:hi] = units[name].cpu()[row[:, None], self.units[name][concept]].numpy()  # (m, K)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = PROBE_L2) -> torch.Tensor:
    """x (N, k) float64, y (N,) bool with both classes -> (k+1,) the weights and the bias (last) minimising the
    class-balanced mean log loss (each class weighs 1/2, as sklearn's class_weight='balanced') + l2/2·|weights|²:
    Newton's method with backtracking (Armijo), from 0, to float64 precision."""
    X = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)  # (N, k+1)
    yf = y.double()
    n_pos = y.sum().double()
    weight = torch.where(y, 0.5 / n_pos, 0.5 / (len(y) - n_pos))  # (N,) float64: each class sums to 1/2
    reg = torch.full((X.size(1),), l2, dtype=x.dtype)
    reg[-1] = 0  # the bias is not penalised

    def objective(theta: torch.Tensor) -> torch.Tensor:
        z = X @ theta
        return (weight * (torch.nn.functional.softplus(z) - yf * z)).sum() + 0.5 * (reg * theta * theta).sum()

    theta = torch.zeros(X.size(1), dtype=x.dtype)
    for _ in range(NEWTON_STEPS):
        p = torch.sigmoid(X @ theta)
        grad = X.T @ (weight * (p - yf)) + reg * theta
        hess = X.T @ (X * (weight * p * (1 - p))[:, None]) + torch.diag(reg)
        step = torch.linalg.lstsq(hess, grad[:, None]).solution[:, 0]
        decrease = float(grad @ step)  # the Newton decrement squared: about twice the objective's excess
        if decrease < 1e-12:  # near the optimum (quadratic convergence): a last full step
            return theta - step
        t, f0 = 1.0, objective(theta)
        while objective(theta - t * step) > f0 - 0.25 * t * decrease and t > 1e-10:
            t /= 2
        theta = theta - t * step
    return theta


def balanced_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """The mean of the true-positive and true-negative rates of predictions pred against labels y ((N,) bool each,
    both classes in y)."""
    return 0.5 * (float(pred[y].double().mean()) + float((~pred[~y]).double().mean()))


def concept_probes(acts: ProbeActivations, c: int) -> dict | None:
    """Concept c's row 'probe' (docs/formats.md): per unit set its ranked units and per k the probe's balanced
    accuracy; None when a split's sample lacks a class."""
    t = acts.tokens
    train, test = (t.concept == c) & ~t.test, (t.concept == c) & t.test  # (M,) each
    n_train = [int(t.label[train].sum()), int((~t.label[train]).sum())]
    n_test = [int(t.label[test].sum()), int((~t.label[test]).sum())]
    if min(n_train + n_test) == 0:
        return None
    row = {'n_train': n_train, 'n_test': n_test}
    y_train, y_test = torch.from_numpy(t.label[train]), torch.from_numpy(t.label[test])
    for name in UNIT_SETS:
        x_train, x_test = (torch.from_numpy(acts.values[name][which]).double() for which in (train, test))
        row[name] = {'units': acts.units[name][c].tolist(),
                     'balanced_accuracy': probe_concept(x_train, y_train, x_test, y_test)}
    return row


def probe_concept(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor,
                  l2: float = PROBE_L2) -> dict[str, float]:
    """train (N, K), test (N', K) a concept's sampled tokens' activations of its ranked units, y_* (N,) bool their
    labels -> per k of PROBE_KS (<= K) the balanced accuracy on test of the probe fit on train's first k units
    (inputs standardised by train's mean and std, a constant unit by 1)."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    train, test = (train - mean) / std, (test - mean) / std
    out = {}
    for k in (k for k in PROBE_KS if k <= train.size(1)):
        top = slice(0, k)  # the top k units of the ranking
        theta = fit_logistic(train[:, top], y_train, l2)
        out[str(k)] = round(balanced_accuracy(test[:, top] @ theta[:-1] + theta[-1] > 0, y_test), 4)
    return out


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside: thousands of tiny fits run 30x faster than on two threads of 2 busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def probe_results(acts: ProbeActivations) -> dict:
    """The probes of every concept ('concepts': a row's 'probe', None when a split's sample lacks a class), their
    summary and settings with the rule ('settings'): report.json's 'concepts' keys 'probe' (docs/formats.md)."""
    with one_thread():
        rows = [concept_probes(acts, c) for c in range(len(acts.units['features']))]
    probed = [r for r in rows if r is not None]
    summary = {'n_concepts_probed': len(probed)}
    for name in UNIT_SETS:
        summary[name] = {}
        for k in PROBE_KS:
            acc = np.array([r[name]['balanced_accuracy'][str(k)] for r in probed
                            if str(k) in r[name]['balanced_accuracy']])
            if len(acc):
                q25, median, q75 = np.quantile(acc, (0.25, 0.5, 0.75))
                summary[name][str(k)] = {'median': round(float(median), 4), 'mean': round(float(acc.mean()), 4),
                                         'q25': round(float(q25), 4), 'q75': round(float(q75), 4)}
    rule = (f"sparse probing (SAEBench's): per concept the units of each set ranked by |mean activation on its "
            f"EXPLAIN tokens - mean on the other EXPLAIN tokens| / the unit's std over the EXPLAIN tokens; a sample "
            f"of up to {PROBE_PER_CLASS} tokens where the concept holds and up to {PROBE_PER_CLASS} where it does "
            f"not, of each split (seeded by the analysis seed); per k in {list(PROBE_KS)} a logistic regression on "
            f"the top k units, fit on the EXPLAIN sample (inputs standardised on it, each class weighing 1/2, L2 "
            f"{PROBE_L2} on the weights), scored by balanced accuracy (the mean of the true-positive and "
            f"true-negative rates) on the SCORE sample; the summaries count the concepts with both classes in both "
            f"samples")
    return {'settings': {'rule': rule, 'k': list(PROBE_KS), 'per_class': PROBE_PER_CLASS, 'l2': PROBE_L2},
            'summary': summary, 'concepts': rows}


def probe_summary_line(section: dict) -> str:
    """The printed line: per unit set the median held-out balanced accuracy of the probes, k by k."""
    s = section['summary']['probe']
    if not s['n_concepts_probed']:
        return "sparse probes: no concept has both classes in both samples (EXPLAIN and SCORE)"
    parts = [f"{name} " + ' / '.join(f"{s[name][str(k)]['median']:.3f}" for k in PROBE_KS if str(k) in s[name])
             for name in UNIT_SETS]
    ks = [k for k in PROBE_KS if str(k) in s['features']]
    return (f"sparse probes ({s['n_concepts_probed']} concepts), median held-out balanced accuracy at k = "
            f"{' / '.join(map(str, ks))} units: {'; '.join(parts)}")


def plot_probing(section: dict, path: str) -> None:
    """probing.png: per unit set the median held-out balanced accuracy of the probes against k, the interquartile
    range shaded."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    s = section['summary']['probe']
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, label, color in (('features', 'top-k SAE features', 'tab:blue'), ('neurons', 'top-k neurons',
                                                                                  'tab:orange')):
        ks = [k for k in PROBE_KS if str(k) in s[name]]
        q = {key: [s[name][str(k)][key] for k in ks] for key in ('median', 'q25', 'q75')}
        ax.plot(ks, q['median'], marker='o', color=color, label=label)
        ax.fill_between(ks, q['q25'], q['q75'], color=color, alpha=0.2)
    ax.set_xscale('log')
    ax.set_xlim(0.8 * PROBE_KS[0], 1.25 * PROBE_KS[-1])
    ax.set_xticks(list(PROBE_KS), [str(k) for k in PROBE_KS])
    ax.set_xlabel('k (units in the probe)')
    ax.set_ylabel('balanced accuracy on held-out tokens')
    ax.set_ylim(0.45, 1.01)
    ax.set_title(f"Sparse probes of {s['n_concepts_probed']} concepts: median, interquartile range shaded",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    save_png(fig, path)
