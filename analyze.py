"""
The paper's findings measured on a run: offline automated interpretability of the SAE's features against the
model's neurons, and the universality of features (and of neurons) across two transformers trained from
different seeds. No LLM: explanations are token patterns (interpret.py), scored on held-out tokens.

    python analyze.py config/demo/analysis.py       # after make demo and run B (make analysis), ~1-2 min on 2 cores

Run A is out_dir, run B is run_b (<out_dir>/run_b): the same pipeline with another seed, e.g. for the demo
    python train_transformer.py config/demo/transformer.py --out_dir=out/demo/run_b --seed=1338
    python generate_activations.py config/demo/activations.py --out_dir=out/demo/run_b
    python train_sae.py config/demo/sae.py --out_dir=out/demo/run_b
Both SAEs must read the same site of transformers trained on the same dataset.

The method (also stated in report.json's 'rule'):
  tokens    n_contexts random val contexts; a random permutation puts round(explain_frac·n) of them in the EXPLAIN
            split and the rest in the SCORE split. Explanations come from EXPLAIN tokens only, scores from SCORE
            tokens only; universality uses all contexts.
  units     run A's SAE features ('features'), the neurons of their site in run A ('neurons'), run B's SAE
            features ('features_b').
  firing    a unit fires on a token when its activation > fire_frac × its max over the EXPLAIN tokens (features
            and neurons alike); a unit whose max is <= 0 has no threshold and is not scored.
  explain   token patterns (1-3 tokens, N2G-like) that account for its EXPLAIN firings (interpret.py); precision,
            recall and F1 of "fires where a pattern matches" on the SCORE tokens. Output description: the
            n_output_tokens tokens whose logits its direction raises most (the feature browser's logit lens).
  universal per unit of run A its best-correlated unit of run B (Pearson over all the contexts' tokens), features
            with features and neurons with neurons; and run B's features against run A's.
Streaming passes over the contexts (nothing of size n_tokens x n_units is kept):
  pass 1  per unit its max over the EXPLAIN tokens; the correlation sums (families.CorrelationSums)
  pass 2  per unit the positions where it fires, in the EXPLAIN and in the SCORE tokens
Writes <out_dir>/analysis/: report.json (its format: DESIGN.md), interpretability.png (F1 of features vs
neurons), universality.png (max correlations), built in a temp folder swapped in when complete.
"""
import json
import os
import time
from typing import NamedTuple

import numpy as np
import torch

from monosemanticity.logit_effects import feature_logit_directions, logit_head, resid_direction
from monosemanticity.runs import (LoadedSAE, TokenFile, Transformer, load_sae, load_transformer, load_vocab,
                                  pick_contexts)
from monosemanticity.site import swap_in, temp_dir_for, timed
from monosemanticity.common import (UserError, atomic_file, exit_on_user_error, get_device, next_command, print0,
                                    resolve_dtype)
from configurator import config_keys, configure
from monosemanticity.families import CorrelationSums

# -----------------------------------------------------------------------------
out_dir = 'out'  # run A (transformer/, sae/); the analysis goes to <out_dir>/analysis/
run_b = ''  # run B, the same pipeline from another seed; '' = <out_dir>/run_b
sae_dir = ''  # the SAE's folder inside each run; '' = sae (<out_dir>/sae and <run_b>/sae), e.g. sweep/topk_k20
dataset = ''  # '' = the dataset the transformers were trained on (a name under data/ or a path)
split = 'val'
n_contexts = 1024  # random contexts of the split (non-overlapping), shared by both runs
explain_frac = 0.5  # share of the contexts whose tokens explanations are built from; the rest score them
context_length = 0  # tokens per context; 0 = the model's block_size
batch_size = 32  # contexts per forward pass
fire_frac = 0.5  # a unit fires where its activation > fire_frac x its max over the EXPLAIN tokens
min_precision = 0.5  # a pattern is kept if it predicts firing with at least this precision on EXPLAIN tokens ...
min_pattern_fires = 2  # ... and covers at least this many firings
max_patterns = 10  # patterns per explanation
n_output_tokens = 5  # output description: the tokens whose logits a unit raises most
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (the forward passes)
# -----------------------------------------------------------------------------
CONFIG_KEYS = config_keys(globals())

ANALYSIS_DIR = 'analysis'
SCORED = ('features', 'neurons', 'features_b')  # the unit sets explained and scored
LABELS = {'features': 'features (run A)', 'neurons': 'neurons (run A)', 'features_b': 'features (run B)'}
HIST_EDGES = [round(0.05 * i, 2) for i in range(21)]  # F1 and max-correlation histograms: 20 bins over [0, 1]


def main() -> None:
    exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2
    settings = {k: globals()[k] for k in CONFIG_KEYS}
    config = configure(settings)  # config files and --key=value overrides from the command line (configurator.py)
    globals().update(settings)  # the config globals above now hold the values in effect
    check_config()
    t_start, seconds = time.time(), {}
    torch.manual_seed(seed)
    runs = load_runs(get_device(device))
    contexts, halves = pick_split(runs[0].transformer)
    print0(f"{contexts.n} contexts x {contexts.length} tokens of {runs[0].transformer.data_dir}/{split}.bin "
           f"({len(halves.explain)} explain, {len(halves.score)} score); units: "
           f"{runs[0].sae.sae.cfg.n_features} + {runs[1].sae.sae.cfg.n_features} features, "
           f"{runs[0].sae.sae.cfg.d_in} neurons of {runs[0].sae.site}; device {runs[0].transformer.device}")
    with timed(seconds, 'passes'):
        stats = pass1_maxima_and_correlations(runs, contexts, halves)
        thresholds = {name: firing_thresholds(m, fire_frac) for name, m in stats.explain_max.items()}
        firings = pass2_firings(runs, contexts, halves, thresholds)
    with timed(seconds, 'explain'):
        interpretability = explain_all(runs, contexts, halves, thresholds, firings)
    with timed(seconds, 'universality'):
        universality = {'features': best_matches(stats.feature_sums.corr(0, 1), stats.feature_sums.n),
                        'neurons': best_matches(stats.neuron_sums.corr(0, 1), stats.neuron_sums.n),
                        'features_b': best_matches(stats.feature_sums.corr(0, 1).T, stats.feature_sums.n)}
    final_dir = os.path.join(out_dir, ANALYSIS_DIR)
    tmp_dir = temp_dir_for(final_dir)
    os.makedirs(tmp_dir)
    with timed(seconds, 'plots'):
        plot_interpretability(interpretability, os.path.join(tmp_dir, 'interpretability.png'))
        plot_universality(universality, os.path.join(tmp_dir, 'universality.png'))
    seconds['total'] = time.time() - t_start
    report = analysis_report(config, runs, contexts, halves, interpretability, universality, seconds)
    with atomic_file(os.path.join(tmp_dir, 'report.json'), 'w', encoding='ascii') as f:
        f.write(report_json(report) + '\n')
    swap_in(tmp_dir, final_dir)
    print0(summary_table(interpretability, universality))
    print0(f"wrote {os.path.abspath(os.path.join(final_dir, 'report.json'))} (+ interpretability.png, "
           f"universality.png) in {seconds['total']:.0f}s")
    site_b = next_command('build_interface.py', 'interface', runs[1].out_dir)
    print0(f"next: {next_command('build_interface.py', 'interface', out_dir)}; "
           f"{site_b} --analysis={os.path.join(final_dir, 'report.json')}")


def check_config() -> None:
    """The config globals in range (UserError naming the key otherwise)."""
    for name, val, lo in (('n_contexts', n_contexts, 2), ('batch_size', batch_size, 1),
                          ('min_pattern_fires', min_pattern_fires, 1), ('max_patterns', max_patterns, 1),
                          ('n_output_tokens', n_output_tokens, 0), ('context_length', context_length, 0)):
        if val < lo:
            raise UserError(f"{name}={val} must be >= {lo}")
    for name, val in (('explain_frac', explain_frac), ('fire_frac', fire_frac)):
        if not 0 < val < 1:
            raise UserError(f"{name}={val} must be in (0, 1)")
    if not 0 <= min_precision <= 1:
        raise UserError(f"min_precision={min_precision} must be in [0, 1]")
    if os.path.isabs(sae_dir):
        raise UserError(f"sae_dir='{sae_dir}' is a folder inside each run (e.g. sae or sweep/topk_k20), "
                        f"not an absolute path")


# ----------------------------------------------------------------------------- the two runs

class Run(NamedTuple):
    name: str  # 'A' or 'B'
    out_dir: str
    transformer: Transformer
    sae: LoadedSAE
    sae_dir: str


def load_runs(run_device: str) -> tuple[Run, Run]:
    """Run A (out_dir) and run B (run_b): each one's transformer and SAE, checked to be comparable."""
    b_dir = run_b or os.path.join(out_dir, 'run_b')
    require_run(out_dir, "train run A first (make demo, or the pipeline's stages with this --out_dir)")
    require_run(b_dir, f"make run B with `make analysis`, or "
                       f"`{next_command('train_transformer.py', 'transformer', b_dir)} --seed=1338`, "
                       f"`{next_command('generate_activations.py', 'activations', b_dir)}`, "
                       f"`{next_command('train_sae.py', 'sae', b_dir)}` (or set --run_b)")
    run_dtype = resolve_dtype(dtype, run_device)
    runs = []
    for name, run_dir in (('A', out_dir), ('B', b_dir)):
        transformer = load_transformer(run_dir, '', dataset, context_length, run_device, run_dtype)
        path = os.path.join(run_dir, sae_dir or 'sae')
        runs.append(Run(name, run_dir, transformer, load_sae(path, transformer), path))
    check_comparable(*runs)
    return runs[0], runs[1]


def require_run(run_dir: str, how: str) -> None:
    """UserError saying how to make the run when its transformer or SAE is missing."""
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


def pick_split(transformer: Transformer):
    """n_contexts random contexts (build_interface.pick_contexts with rng(seed)), then a random permutation of the
    same rng puts round(explain_frac·n) of them in the EXPLAIN split, the others in the SCORE split."""
    rng = np.random.default_rng(seed)
    file = TokenFile(transformer.data_dir, split, transformer.data_meta['dtype'], transformer.device)
    contexts = pick_contexts(file, transformer.context_length, n_contexts, batch_size, rng)
    n_explain = round(explain_frac * contexts.n)
    if not 1 <= n_explain < contexts.n:
        raise UserError(f"explain_frac={explain_frac} of {contexts.n} contexts leaves a split empty: set "
                        f"--explain_frac nearer 0.5 or more --n_contexts")
    perm = rng.permutation(contexts.n)
    explain, score = np.sort(perm[:n_explain]), np.sort(perm[n_explain:])
    is_explain = np.zeros(contexts.n, dtype=bool)
    is_explain[explain] = True
    row = np.empty(contexts.n, dtype=np.int64)
    row[explain], row[score] = np.arange(len(explain)), np.arange(len(score))
    return contexts, Halves(explain, score, is_explain, row)


def split_tokens(contexts, which: np.ndarray) -> np.ndarray:
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


def refuse_nonfinite_units(runs: tuple[Run, Run], feature_sums: CorrelationSums, neuron_sums: CorrelationSums) -> None:
    """One line naming the run and site whose activations so far hold NaN/inf (their float64 sums are not finite)."""
    for i, run in enumerate(runs):
        for what, sums in (('neuron', neuron_sums), ('SAE feature', feature_sums)):
            if not bool(torch.isfinite(sums.sum[i]).all()):
                raise UserError(f"run {run.name} ({run.out_dir}): non-finite (NaN/inf) {what} activations at "
                                f"{run.sae.site} (SAE {run.sae_dir}) on {split} tokens: try --dtype=float32, or "
                                f"retrain that run")


class Pass1(NamedTuple):
    explain_max: dict[str, torch.Tensor]  # per scored unit set (n_units,) its max over the EXPLAIN tokens
    feature_sums: CorrelationSums  # run A's features x run B's features, over all tokens
    neuron_sums: CorrelationSums  # run A's neurons x run B's neurons (dense cross products)


def pass1_maxima_and_correlations(runs: tuple[Run, Run], contexts, halves: Halves) -> Pass1:
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
        refuse_nonfinite_units(runs, feature_sums, neuron_sums)  # pass 2 sees the same activations
    return Pass1(explain_max, feature_sums, neuron_sums)


def firing_thresholds(explain_max: torch.Tensor, frac: float) -> torch.Tensor:
    """(n_units,) frac x the max over the EXPLAIN tokens; inf (never fires, not scored) where that max is <= 0."""
    return torch.where(explain_max > 0, explain_max * frac, torch.full_like(explain_max, torch.inf))


class Firings(NamedTuple):
    explain: list[np.ndarray]  # per unit: int64 sorted flat positions into tokens_explain.reshape(-1) where it fires
    score: list[np.ndarray]  # likewise into tokens_score.reshape(-1)


def pass2_firings(runs: tuple[Run, Run], contexts, halves: Halves,
                  thresholds: dict[str, torch.Tensor]) -> dict[str, Firings]:
    """Pass 2: where each unit fires (activation > its threshold), as positions in its split's tokens: context
    c, position t -> halves.row[c]·T + t in tokens_explain or tokens_score."""
    T = contexts.length
    found = {(name, part): ([], []) for name in SCORED for part in ('explain', 'score')}  # unit ids, positions
    for b0, b1 in contexts.bar('pass 2/2 (firings)'):
        units = unit_activations(runs, contexts.read(b0, b1))
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
def output_tokens(run: Run, unit_set: str) -> list[list[int]]:
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


def explain_all(runs: tuple[Run, Run], contexts, halves: Halves, thresholds: dict[str, torch.Tensor],
                firings: dict[str, Firings]) -> dict:
    """report.json's 'interpretability': per unit set its summary and per unit its explanation and scores."""
    from monosemanticity import explanations as interpret
    transformer = runs[0].transformer
    V = transformer.model.config.vocab_size
    vocab = load_vocab(transformer.data_dir, transformer.data_meta, V)
    tokens_explain, tokens_score = split_tokens(contexts, halves.explain), split_tokens(contexts, halves.score)
    out = {}
    for name in SCORED:
        results = interpret.explain_and_score(firings[name].explain, firings[name].score, tokens_explain,
                                              tokens_score, V, min_precision, min_pattern_fires, max_patterns)
        outputs = output_tokens(runs[name.endswith('_b')], name)
        units = [unit_record(i, float(thresholds[name][i]), r, interpret.explanation_text(r['patterns'], vocab),
                             outputs[i]) for i, r in enumerate(results)]
        out[name] = {'summary': interpret.summarize(results), 'units': units}
    return out


def unit_record(unit: int, threshold: float, result: dict, text: str, output: list[int]) -> dict:
    """One unit's entry of report.json (U in DESIGN.md): interpret.explain_and_score's result, floats rounded."""
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

def analysis_report(config: dict, runs: tuple[Run, Run], contexts, halves: Halves, interpretability: dict,
                    universality: dict, seconds: dict) -> dict:
    """report.json's content (its format: DESIGN.md)."""
    T = contexts.length
    rule = {'fire_frac': fire_frac, 'min_precision': min_precision, 'min_pattern_fires': min_pattern_fires,
            'max_patterns': max_patterns,
            'text': f"a unit fires on a token when its activation > {fire_frac:g} x its max over the EXPLAIN tokens; "
                    f"its explanation is up to {max_patterns} token patterns (1-3 tokens) chosen on the EXPLAIN "
                    f"contexts (precision >= {min_precision:g}, >= {min_pattern_fires} firings each) and scored by "
                    f"precision, recall and F1 of 'fires where a pattern matches' on the held-out SCORE contexts"}
    return {'complete': True, 'built': time.strftime('%Y-%m-%d %H:%M:%S'), 'config': config,
            'runs': {r.name.lower(): {'out_dir': os.path.abspath(r.out_dir),
                                      'transformer': os.path.abspath(r.transformer.ckpt_path),
                                      'sae': os.path.abspath(r.sae_dir), 'site': r.sae.site} for r in runs},
            'tokens': {'dataset': runs[0].transformer.data_dir, 'split': split, 'context_length': T,
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
    """The printed table: per unit set its scored units, median F1, share above 0.5 and median max correlation."""
    lines = [f"{'':18} {'units':>6} {'scored':>6} {'median F1':>9} {'F1 > 0.5':>8} {'median max corr':>15}"]
    for name in SCORED:
        s, u = interpretability[name]['summary'], universality[name]
        f1 = 'n/a' if s['median_f1'] is None else f"{s['median_f1']:.3f}"
        share = 'n/a' if s['share_f1_above_0.5'] is None else f"{s['share_f1_above_0.5']:.1%}"
        lines.append(f"{LABELS[name]:18} {s['n_units']:>6} {s['n_scored']:>6} {f1:>9} {share:>8} "
                     f"{u['median_max_corr']:>15.3f}")
    return '\n'.join(lines)


def plot_distributions(series: list[tuple[str, list[float]]], xlabel: str, title: str, path: str) -> None:
    """Density-normalised histograms (HIST_EDGES) of each (label, values), medians marked; PNG at path."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (label, values), color in zip(series, ('tab:blue', 'tab:orange', 'tab:green')):
        if not len(values):
            continue
        med = float(np.median(values))
        clipped = np.clip(values, 0, 1)
        ax.hist(clipped, bins=HIST_EDGES, density=True, alpha=0.3, color=color)
        ax.hist(clipped, bins=HIST_EDGES, density=True, histtype='step', linewidth=1.5, color=color,
                label=f"{label}: median {med:.2f} (n={len(values)})")
        ax.axvline(med, color=color, linestyle='--')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('density')
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=120)
    plt.close(fig)


def plot_interpretability(interpretability: dict, path: str) -> None:
    """interpretability.png: held-out F1 of the explanations, features vs neurons (scored units)."""
    series = [(LABELS[name], [u['f1'] for u in interpretability[name]['units'] if u['f1'] is not None])
              for name in ('features', 'neurons')]
    plot_distributions(series, 'F1 of the explanation on held-out tokens',
                       'Offline explanations: features vs neurons', path)


def plot_universality(universality: dict, path: str) -> None:
    """universality.png: per unit of run A its max activation correlation with any unit of run B."""
    series = [(LABELS[name], [r for _, r in universality[name]['best']]) for name in ('features', 'neurons')]
    plot_distributions(series, 'max activation correlation with any unit of run B',
                       'Universality across seeds: features vs neurons', path)


if __name__ == '__main__':
    main()
