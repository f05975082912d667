"""
The paper's findings on two runs (analyze.py is the story): offline automated interpretability of run A's SAE
features against its neurons, and the universality of features and neurons across the two runs. The steps, each
taking its settings as an AnalysisSettings or as plain arguments: load_runs, pick_split (the EXPLAIN / SCORE split
of random contexts), pass1_maxima_and_correlations, firing_thresholds, pass2_firings, explain_all (token patterns,
monosemanticity/explanations.py), best_matches, then analysis_report / report_json (report.json: docs/formats.md),
summary_table and the plots.
"""
import json
import os
import time
from dataclasses import dataclass, fields
from typing import Callable, NamedTuple

import numpy as np
import torch

from monosemanticity import explanations
from monosemanticity.common import UserError, next_command, resolve_dtype, save_png
from monosemanticity.families import CorrelationSums
from monosemanticity.logit_effects import feature_logit_directions, logit_head, resid_direction
from monosemanticity.runs import (Contexts, LoadedSAE, TokenFile, Transformer, load_sae, load_transformer, load_vocab,
                                  pick_contexts)

ANALYSIS_DIR = 'analysis'
SCORED = ('features', 'neurons', 'features_b')  # the unit sets explained and scored
LABELS = {'features': 'features (run A)', 'neurons': 'neurons (run A)', 'features_b': 'features (run B)'}
HIST_EDGES = [round(0.05 * i, 2) for i in range(21)]  # F1 and max-correlation histograms: 20 bins over [0, 1]


@dataclass(frozen=True)
class AnalysisSettings:
    """How the findings are measured: analyze.py's config keys of that name (their comments there). No defaults
    here (analyze.py's config block is the one place they are set). Checked when made: a value out of range raises
    UserError naming the key."""
    out_dir: str
    run_b: str
    sae_dir: str
    dataset: str
    split: str
    n_contexts: int
    explain_frac: float
    context_length: int
    batch_size: int
    fire_frac: float
    min_precision: float
    min_pattern_fires: int
    max_patterns: int
    n_output_tokens: int
    seed: int
    dtype: str

    @classmethod
    def from_config(cls, config: dict) -> 'AnalysisSettings':
        """The settings among a script's config keys (the others, e.g. device, are ignored)."""
        return cls(**{f.name: config[f.name] for f in fields(cls)})

    def __post_init__(self) -> None:
        for name, lo in (('n_contexts', 2), ('batch_size', 1), ('min_pattern_fires', 1), ('max_patterns', 1),
                         ('n_output_tokens', 0), ('context_length', 0)):
            if getattr(self, name) < lo:
                raise UserError(f"{name}={getattr(self, name)} must be >= {lo}")
        for name in ('explain_frac', 'fire_frac'):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"{name}={getattr(self, name)} must be in (0, 1)")
        if not 0 <= self.min_precision <= 1:
            raise UserError(f"min_precision={self.min_precision} must be in [0, 1]")
        if os.path.isabs(self.sae_dir):
            raise UserError(f"sae_dir='{self.sae_dir}' is a folder inside each run (e.g. sae or sweep/topk_k20), "
                            f"not an absolute path")


def analysis_dir(out_dir: str) -> str:
    """<out_dir>/analysis: where a run's findings go. (A script imports this, not ANALYSIS_DIR: an imported str
    would be taken for one of its config keys.)"""
    return os.path.join(out_dir, ANALYSIS_DIR)


# ----------------------------------------------------------------------------- the two runs

class Run(NamedTuple):
    name: str  # 'A' or 'B'
    out_dir: str
    transformer: Transformer
    sae: LoadedSAE
    sae_dir: str


def load_runs(s: AnalysisSettings, run_device: str) -> tuple[Run, Run]:
    """Run A (s.out_dir) and run B (s.run_b): each one's transformer and SAE, checked to be comparable."""
    b_dir = s.run_b or os.path.join(s.out_dir, 'run_b')
    require_run(s.out_dir, s.sae_dir, "train run A first (make demo, or the pipeline's stages with this --out_dir)")
    require_run(b_dir, s.sae_dir, f"make run B with `make analysis`, or "
                       f"`{next_command('train_transformer.py', 'transformer', b_dir)} --seed=1338`, "
                       f"`{next_command('generate_activations.py', 'activations', b_dir)}`, "
                       f"`{next_command('train_sae.py', 'sae', b_dir)}` (or set --run_b)")
    run_dtype = resolve_dtype(s.dtype, run_device)
    runs = []
    for name, run_dir in (('A', s.out_dir), ('B', b_dir)):
        transformer = load_transformer(run_dir, '', s.dataset, s.context_length, run_device, run_dtype)
        path = os.path.join(run_dir, s.sae_dir or 'sae')
        runs.append(Run(name, run_dir, transformer, load_sae(path, transformer), path))
    check_comparable(*runs)
    return runs[0], runs[1]


def require_run(run_dir: str, sae_dir: str, how: str) -> None:
    """UserError saying how to make the run when its transformer or SAE (<run_dir>/<sae_dir or sae>) is missing."""
    missing = [p for p in (os.path.join(run_dir, 'transformer', 'ckpt.pt'),
                           os.path.join(run_dir, sae_dir or 'sae', 'sae_weights.safetensors')) if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{' and '.join(missing)} not found: {how}")


def check_comparable(a: Run, b: Run) -> None:
    """Both SAEs read the same site of transformers of the same dataset and context length, else UserError."""
    if a.sae.site != b.sae.site:
        raise UserError(f"run A's SAE reads {a.sae.site} but run B's ({b.sae_dir}) reads {b.sae.site}: train run B's "
                        f"SAE on {a.sae.site} (train_sae.py with run A's config and --out_dir={b.out_dir})")
    data_a, data_b = (os.path.realpath(r.transformer.data_dir) for r in (a, b))
    if data_a != data_b:
        raise UserError(f"run A's transformer was trained on {data_a} but run B's on {data_b}: train run B on the "
                        f"same dataset (or set --dataset to compare both on one)")
    if a.transformer.context_length != b.transformer.context_length:
        raise UserError(f"run A's contexts are {a.transformer.context_length} tokens but run B's "
                        f"{b.transformer.context_length} (block sizes differ): set --context_length")


# ----------------------------------------------------------------------------- the contexts and their split

class Halves(NamedTuple):
    """The EXPLAIN / SCORE split of the contexts (indices into the picked contexts)."""
    explain: np.ndarray  # (n_explain,) sorted context indices: row r of tokens_explain is context explain[r]
    score: np.ndarray  # (n_score,) sorted, the rest
    is_explain: np.ndarray  # (n,) bool per context
    row: np.ndarray  # (n,) int64: a context's row in its split's tokens (tokens_explain or tokens_score)


def pick_split(transformer: Transformer, s: AnalysisSettings) -> tuple[Contexts, Halves]:
    """s.n_contexts random contexts of s.split (runs.pick_contexts with rng(s.seed)), then a random permutation of
    the same rng puts round(s.explain_frac·n) of them in the EXPLAIN split, the others in the SCORE split."""
    rng = np.random.default_rng(s.seed)
    file = TokenFile(transformer.data_dir, s.split, transformer.data_meta['dtype'], transformer.device)
    contexts = pick_contexts(file, transformer.context_length, s.n_contexts, s.batch_size, rng)
    n_explain = round(s.explain_frac * contexts.n)
    if not 1 <= n_explain < contexts.n:
        raise UserError(f"explain_frac={s.explain_frac} of {contexts.n} contexts leaves a split empty: set "
                        f"--explain_frac nearer 0.5 or more --n_contexts")
    perm = rng.permutation(contexts.n)
    explain, score = np.sort(perm[:n_explain]), np.sort(perm[n_explain:])
    is_explain = np.zeros(contexts.n, dtype=bool)
    is_explain[explain] = True
    row = np.empty(contexts.n, dtype=np.int64)
    row[explain], row[score] = np.arange(len(explain)), np.arange(len(score))
    return contexts, Halves(explain, score, is_explain, row)


def split_tokens(contexts: Contexts, which: np.ndarray) -> np.ndarray:
    """(len(which), T) int64: the tokens of the contexts `which` (sorted), row by row, read in batches."""
    parts = [contexts.file.read(contexts.starts[which[i:i + 1024]], contexts.length)[:, :-1].cpu().numpy()
             for i in range(0, len(which), 1024)]
    return np.concatenate(parts).astype(np.int64)


# ----------------------------------------------------------------------------- the streaming passes

@torch.no_grad()
def unit_activations(runs: tuple[Run, Run], tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """tokens (B, T+1) -> per unit set its activations (B*T, n_units) float32 at the first T tokens: 'features',
    'neurons' (run A's SAE features and site), 'features_b', 'neurons_b' (run B's)."""
    units = {}
    for run, suffix in zip(runs, ('', '_b')):
        site = run.sae.site
        with run.transformer.autocast:
            _, _, acts = run.transformer.model.run(tokens[:, :-1], capture=[site], need_logits=False)
            x = acts[site].reshape(-1, acts[site].size(-1))  # (B*T, d_in)
            f = run.sae.sae.encode(x)
        units['neurons' + suffix], units['features' + suffix] = x.float(), f.float()
    return units


def refuse_nonfinite_units(runs: tuple[Run, Run], feature_sums: CorrelationSums, neuron_sums: CorrelationSums,
                           split: str) -> None:
    """One line naming the run and site whose activations so far hold NaN/inf (their float64 sums are not finite);
    split: the tokens' split, named in the line."""
    for i, run in enumerate(runs):
        for what, sums in (('neuron', neuron_sums), ('SAE feature', feature_sums)):
            if not bool(torch.isfinite(sums.sum[i]).all()):
                raise UserError(f"run {run.name} ({run.out_dir}): non-finite (NaN/inf) {what} activations at "
                                f"{run.sae.site} (SAE {run.sae_dir}) on {split} tokens: try --dtype=float32, or "
                                f"retrain that run")


class MaximaAndCorrelations(NamedTuple):
    """Pass 1's result."""
    explain_max: dict[str, torch.Tensor]  # per scored unit set (n_units,) its max over the EXPLAIN tokens
    feature_sums: CorrelationSums  # run A's features x run B's features, over all tokens
    neuron_sums: CorrelationSums  # run A's neurons x run B's neurons (dense cross products)


def pass1_maxima_and_correlations(runs: tuple[Run, Run], contexts: Contexts, halves: Halves) -> MaximaAndCorrelations:
    """Pass 1: each unit's max over the EXPLAIN tokens, and the universality correlation sums over all tokens."""
    dev, T = runs[0].transformer.device, contexts.length
    sae_a, sae_b = runs[0].sae.sae.cfg, runs[1].sae.sae.cfg
    feature_sums = CorrelationSums([sae_a.n_features, sae_b.n_features], dev)
    neuron_sums = CorrelationSums([sae_a.d_in, sae_b.d_in], dev, dense=True)
    explain_max: dict[str, torch.Tensor] = {}
    is_explain = torch.from_numpy(halves.is_explain).to(dev)
    for b0, b1 in contexts.bar('pass 1/2 (maxima, correlations)'):
        units = unit_activations(runs, contexts.read(b0, b1))
        explain = is_explain[b0:b1]  # (B,) the batch's EXPLAIN contexts
        for name in SCORED:
            context_max = units[name].reshape(b1 - b0, T, -1).amax(1)  # (B, n_units)
            m = context_max[explain].amax(0) if explain.any() else torch.full_like(context_max[0], -torch.inf)
            explain_max[name] = torch.maximum(explain_max[name], m) if name in explain_max else m
        feature_sums.add_([units['features'], units['features_b']])
        neuron_sums.add_([units['neurons'], units['neurons_b']])
        refuse_nonfinite_units(runs, feature_sums, neuron_sums, contexts.file.split)  # pass 2 sees the same activations
    return MaximaAndCorrelations(explain_max, feature_sums, neuron_sums)


def firing_thresholds(explain_max: torch.Tensor, frac: float) -> torch.Tensor:
    """(n_units,) frac x the max over the EXPLAIN tokens; inf (never fires, not scored) where that max is <= 0."""
    return torch.where(explain_max > 0, explain_max * frac, torch.full_like(explain_max, torch.inf))


class Firings(NamedTuple):
    explain: list[np.ndarray]  # per unit: int64 sorted flat positions into tokens_explain.reshape(-1) where it fires
    score: list[np.ndarray]  # likewise into tokens_score.reshape(-1)


def pass2_firings(runs: tuple[Run, Run], contexts: Contexts, halves: Halves, thresholds: dict[str, torch.Tensor],
                  on_batch: Callable[[int, int, dict[str, torch.Tensor]], None] | None = None) -> dict[str, Firings]:
    """Pass 2: where each unit fires (activation > its threshold), as positions in its split's tokens: context
    c, position t -> halves.row[c]·T + t in tokens_explain or tokens_score. on_batch(b0, b1, units): also given each
    batch's unit activations (the concept counts, monosemanticity/concept_report.py)."""
    T = contexts.length
    found = {(name, part): ([], []) for name in SCORED for part in ('explain', 'score')}  # unit ids, positions
    for b0, b1 in contexts.bar('pass 2/2 (firings)'):
        units = unit_activations(runs, contexts.read(b0, b1))
        if on_batch is not None:
            on_batch(b0, b1, units)
        for name in SCORED:
            token, unit = (units[name] > thresholds[name]).nonzero().cpu().numpy().T  # (n_firings,) each
            ctx = b0 + token // T
            pos = halves.row[ctx] * T + token % T
            explain = halves.is_explain[ctx]
            for part, keep in (('explain', explain), ('score', ~explain)):
                found[name, part][0].append(unit[keep])
                found[name, part][1].append(pos[keep])
    return {name: Firings(*(by_unit(*found[name, part], len(thresholds[name])) for part in ('explain', 'score')))
            for name in SCORED}


def by_unit(units: list[np.ndarray], positions: list[np.ndarray], n_units: int) -> list[np.ndarray]:
    """Firings (unit, position) -> per unit its sorted positions (int64)."""
    u = np.concatenate(units) if units else np.zeros(0, dtype=np.int64)
    p = np.concatenate(positions).astype(np.int64) if positions else np.zeros(0, dtype=np.int64)
    order = np.lexsort((p, u))
    u, p = u[order], p[order]
    bounds = np.searchsorted(u, np.arange(n_units + 1))
    return [p[bounds[i]:bounds[i + 1]] for i in range(n_units)]


# ----------------------------------------------------------------------------- explanations, output descriptions

@torch.no_grad()
def output_tokens(run: Run, unit_set: str, n_output_tokens: int) -> list[list[int]]:
    """Per unit the n_output_tokens tokens whose logits its direction raises most: the feature browser's logit lens
    (direction -> c_proj -> ln_f linearised -> unembedding); a feature's direction is its decoder row, a neuron's
    the unit vector of the site."""
    model, sae = run.transformer.model, run.sae.sae
    W = (sae.W_dec.detach().float().T if unit_set.startswith('features')
         else torch.eye(sae.cfg.d_in, device=sae.W_dec.device))  # (n_units, d_in)
    directions = feature_logit_directions(logit_head(model), resid_direction(model, run.sae.layer, run.sae.site_kind,
                                                                             W), dense_mb=0)  # Z_u by rows
    V = directions.W_U.size(0)
    return torch.cat([directions.rows(slice(u0, u0 + 256)).topk(min(n_output_tokens, V), dim=1).indices
                      for u0 in range(0, len(W), 256)]).tolist()


def explain_all(runs: tuple[Run, Run], contexts: Contexts, halves: Halves, thresholds: dict[str, torch.Tensor],
                firings: dict[str, Firings], s: AnalysisSettings) -> dict:
    """report.json's 'interpretability': per unit set its summary and per unit its explanation (s.min_precision,
    s.min_pattern_fires, s.max_patterns), scores and s.n_output_tokens output tokens."""
    transformer = runs[0].transformer
    V = transformer.model.config.vocab_size
    vocab = load_vocab(transformer.data_dir, transformer.data_meta, V)
    tokens_explain, tokens_score = split_tokens(contexts, halves.explain), split_tokens(contexts, halves.score)
    out = {}
    for name in SCORED:
        results = explanations.explain_and_score(firings[name].explain, firings[name].score, tokens_explain,
                                                 tokens_score, V, s.min_precision, s.min_pattern_fires,
                                                 s.max_patterns)
        outputs = output_tokens(runs[name.endswith('_b')], name, s.n_output_tokens)
        units = [unit_record(i, float(thresholds[name][i]), r, explanations.explanation_text(r['patterns'], vocab),
                             outputs[i]) for i, r in enumerate(results)]
        out[name] = {'summary': explanations.summarize(results), 'units': units}
    return out


def unit_record(unit: int, threshold: float, result: dict, text: str, output: list[int]) -> dict:
    """One unit's entry of report.json's 'interpretability' (docs/formats.md): explanations.explain_and_score's
    result, floats rounded."""
    def r4(x):
        return None if x is None else round(float(x), 4)
    return {'id': unit, 'threshold': float(f'{threshold:.6g}') if np.isfinite(threshold) else None,
            'n_fire_explain': int(result['n_fire_explain']), 'n_fire_score': int(result['n_fire_score']),
            'patterns': [[int(t) for t in p] for p in result['patterns']],
            'pattern_precision': [r4(x) for x in result['pattern_precision']],
            'pattern_fires': [int(x) for x in result['pattern_fires']], 'text': text, 'output': output,
            'tp': int(result['tp']), 'fp': int(result['fp']), 'fn': int(result['fn']),
            'precision': r4(result['precision']), 'recall': r4(result['recall']), 'f1': r4(result['f1'])}


# ----------------------------------------------------------------------------- universality

def best_matches(corr: torch.Tensor, n_tokens: int) -> dict:
    """corr (n_a, n_b) Pearson correlations -> per row its best column and that max correlation, their median,
    mean and histogram (clipped to [0, 1]). Bricken et al. 2023, "Universality": a feature's max activation
    correlation with any feature of the other run over the same tokens."""
    r, j = corr.double().cpu().max(1)
    r_np = r.numpy()
    counts, _ = np.histogram(np.clip(r_np, 0, 1), bins=HIST_EDGES)
    return {'n_tokens': int(n_tokens), 'median_max_corr': round(float(np.median(r_np)), 4),
            'mean_max_corr': round(float(r_np.mean()), 4), 'hist': {'edges': HIST_EDGES, 'counts': counts.tolist()},
            'best': [[jj, round(rr, 4)] for jj, rr in zip(j.tolist(), r.tolist())]}


# ----------------------------------------------------------------------------- the report

def analysis_report(config: dict, s: AnalysisSettings, runs: tuple[Run, Run], contexts: Contexts, halves: Halves,
                    interpretability: dict, universality: dict, seconds: dict) -> dict:
    """report.json's content (its format: docs/formats.md); config: the script's whole config, kept as is."""
    T = contexts.length
    rule = {'fire_frac': s.fire_frac, 'min_precision': s.min_precision, 'min_pattern_fires': s.min_pattern_fires,
            'max_patterns': s.max_patterns, 'no_score_firing': 'f1_0',
            'text': f"a unit fires on a token when its activation > {s.fire_frac:g} x its max over the EXPLAIN "
                    f"tokens; its explanation is up to {s.max_patterns} token patterns (1-3 tokens) chosen on the "
                    f"EXPLAIN contexts (precision >= {s.min_precision:g}, >= {s.min_pattern_fires} firings each) and "
                    f"scored by precision, recall and F1 of 'fires where a pattern matches' on the held-out SCORE "
                    f"contexts; {explanations.SCORED_RULE}"}
    return {'complete': True, 'built': time.strftime('%Y-%m-%d %H:%M:%S'), 'config': config,
            'runs': {r.name.lower(): {'out_dir': os.path.abspath(r.out_dir),
                                      'transformer': os.path.abspath(r.transformer.ckpt_path),
                                      'sae': os.path.abspath(r.sae_dir), 'site': r.sae.site} for r in runs},
            'tokens': {'dataset': runs[0].transformer.data_dir, 'split': s.split, 'context_length': T,
                       'context_starts': contexts.starts.tolist(), 'explain': halves.explain.tolist(),
                       'score': halves.score.tolist(), 'n_explain_tokens': len(halves.explain) * T,
                       'n_score_tokens': len(halves.score) * T, 'n_tokens': contexts.n_tokens},
            'rule': rule, 'interpretability': interpretability, 'universality': universality,
            'seconds': {k: round(v, 2) for k, v in seconds.items()}}


def report_json(obj, indent: int = 0) -> str:
    """JSON for a reader: nested objects one key per line, each unit (a list of objects) on its own line, other
    lists on one line."""
    pad = ' ' * indent
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        return '[\n' + ',\n'.join(pad + ' ' + report_json(v, indent + 1) for v in obj) + '\n' + pad + ']'
    if isinstance(obj, dict) and any(isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
                                     for v in obj.values()):
        items = [f"{pad} {json.dumps(k)}: {report_json(v, indent + 1)}" for k, v in obj.items()]
        return '{\n' + ',\n'.join(items) + '\n' + pad + '}'
    return json.dumps(obj, separators=(', ', ': '), allow_nan=False)


def summary_table(interpretability: dict, universality: dict) -> str:
    """The printed table: per unit set its units, those dead on the EXPLAIN tokens (left out), those scored and of
    them those with no SCORE firing (F1 0), median F1 and share above 0.5 of the scored units, the median F1 without
    the units of no SCORE firing (and how many it counts), the median max correlation; then a line stating the rule."""
    def fmt(x, spec: str) -> str:
        return 'n/a' if x is None else format(x, spec)
    lines = [f"{'':18} {'units':>6} {'dead':>5} {'scored':>6} {'no SCORE firing':>15} {'median F1':>9} "
             f"{'F1 > 0.5':>8} {'without them':>13} {'median max corr':>15}"]
    for name in SCORED:
        s, u = interpretability[name]['summary'], universality[name]
        w = s['with_score_firings']
        without = f"{fmt(w['median_f1'], '.3f')} ({w['n_scored']})"
        lines.append(f"{LABELS[name]:18} {s['n_units']:>6} {s['n_dead_explain']:>5} {s['n_scored']:>6} "
                     f"{s['n_no_score_firings']:>15} {fmt(s['median_f1'], '.3f'):>9} "
                     f"{fmt(s['share_f1_above_0.5'], '.1%'):>8} {without:>13} {u['median_max_corr']:>15.3f}")
    lines.append("dead: never fire on the EXPLAIN tokens (no explanation, left out); scored: the others, each with an "
                 "F1; no SCORE firing: scored units that never fire on the SCORE tokens, counted F1 0; without them: "
                 "the median F1 of the other scored units (their number)")
    return '\n'.join(lines)


def plot_distributions(series: list[tuple[str, list[float]]], xlabel: str, title: str, path: str,
                       notes: list[tuple[str, float | None]] | None = None) -> None:
    """Density-normalised histograms (HIST_EDGES) of each (label, values), medians marked; PNG at path. notes: per
    series a text added to its legend entry and a second median (dotted; None: none)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    notes = notes or [('', None)] * len(series)
    for (label, values), (note, other_median), color in zip(series, notes, ('tab:blue', 'tab:orange', 'tab:green')):
        if not len(values):
            continue
        med = float(np.median(values))
        clipped = np.clip(values, 0, 1)
        ax.hist(clipped, bins=HIST_EDGES, density=True, alpha=0.3, color=color)
        ax.hist(clipped, bins=HIST_EDGES, density=True, histtype='step', linewidth=1.5, color=color,
                label=f"{label}: median {med:.2f} (n={len(values)}){note}")
        ax.axvline(med, color=color, linestyle='--')
        if other_median is not None:
            ax.axvline(other_median, color=color, linestyle=':')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('density')
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    save_png(fig, path)


def plot_interpretability(interpretability: dict, path: str) -> None:
    """interpretability.png: held-out F1 of the explanations, features vs neurons: every scored unit (F1 0 for one
    that never fires on the SCORE tokens), the median without those dotted."""
    series, notes = [], []
    for name in ('features', 'neurons'):
        s = interpretability[name]['summary']
        series.append((LABELS[name], [u['f1'] for u in interpretability[name]['units'] if u['f1'] is not None]))
        w = s['with_score_firings']
        notes.append((f";\n{s['n_no_score_firings']} with no SCORE firing at F1 0; without them "
                      f"{'n/a' if w['median_f1'] is None else format(w['median_f1'], '.2f')} (dotted)",
                      w['median_f1']))
    plot_distributions(series, 'F1 of the explanation on held-out tokens',
                       'Offline explanations: features vs neurons (a unit with no SCORE firing scores F1 0)', path,
                       notes)


def plot_universality(universality: dict, path: str) -> None:
    """universality.png: per unit of run A its max activation correlation with any unit of run B."""
    series = [(LABELS[name], [r for _, r in universality[name]['best']]) for name in ('features', 'neurons')]
    plot_distributions(series, 'max activation correlation with any unit of run B',
                       'Universality across seeds: features vs neurons', path)
