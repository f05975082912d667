"""
Many SAEs on one activation stream (train_sae.py's `sweep` key) and their Pareto report.

A sweep is a list of dicts in a config file (config/demo/sweep.py), one per SAE: its `name` and the SAE keys of
train_sae.py it changes (kind, n_features, k, l1_coeff, lr, ...); every other key is the run's. Keys of the
stream (batch_size, max_steps, data, evaluation, seed: RUN_KEYS) are the same for every SAE. An SAE whose kind
differs from the run's takes its own kind's published recipe for every recipe key the run left unset.
train_sae.py reads each batch once and steps every SAE on it; each writes <out_dir>/sweep/<name>/ exactly as a
single run writes <out_dir>/sae/ (ckpt.pt, metrics.json, sae_weights.safetensors + cfg.json).

The report, written at the end of a sweep from the metrics.json files (when every SAE is done, delete pareto.json and
run `python train_sae.py config/demo/sweep.py --init_from=resume` to write it again: nothing is trained then):
<sweep_dir>/pareto.json (one record per SAE, PARETO_FIELDS) and pareto.png (L0 against loss recovered, against
FVU and, when the dataset has concept labels, against the concept axis (monosemanticity/concept_axis.py: the median
over the ground-truth concepts of the best single feature's held-out F1, the site's best neurons' as a line); one
line per kind, log-x).
SAEs trained by SAELens for bench/saelens.py (<sweep_dir>/saelens/) are in it too: source 'saelens', drawn dashed.
"""
import json
import os
import re
from dataclasses import dataclass, field

import torch

from autoencoder import RECIPES, Recipe
from monosemanticity.common import UserError, atomic_write_json, save_png
from configurator import closest_key_hint, coerce

# keys of the stream every SAE of a sweep shares; every other train_sae.py key may differ per SAE: its kind, shape,
# recipe, resampling and each kind's own keys (autoencoder.kind_params: a new kind's come with it)
RUN_KEYS = ('out_dir', 'activations_dir', 'source', 'transformer_ckpt', 'init_from', 'batch_size', 'max_steps',
            'autocast_dtype', 'geometric_median_rows', 'shuffle_buffer', 'site', 'onthefly_contexts',
            'onthefly_tokens_per_context', 'eval_interval', 'eval_contexts', 'final_eval_contexts',
            'eval_batch_size', 'ckpt_interval', 'log_interval', 'wandb_log', 'wandb_project', 'wandb_run_name',
            'device', 'seed', 'sweep', 'sparse_topk', 'concept_contexts')
NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,99}$')


@dataclass
class Member:
    """One SAE of a run and what its training needs (train_sae.py builds it; a single run is a sweep of one)."""

    name: str  # 'sae' for a single run, else the sweep entry's name
    dir: str  # <out_dir>/sae or <out_dir>/sweep/<name>
    conf: dict  # the run's config with this SAE's keys
    sae: torch.nn.Module = None
    opt: torch.optim.Optimizer = None
    recipe: object = None  # autoencoder.Recipe
    sparse: bool = False  # trains by the sparse TopK step (train_sae.py's sparse_topk)
    window_tokens: dict = field(default_factory=dict)  # resample step -> dead window in tokens
    resample_gen: torch.Generator = None
    resampled: list = field(default_factory=list)  # one record per resampling: {step, n_dead, window_tokens}
    step: int = 0  # steps this SAE has trained
    first_step: int = 0  # its step when this process started
    seconds: float = 0.0  # time in its own training steps in this process
    run: object = None  # its wandb run


def resample_windows(resample_steps, max_steps: int, rows_per_step: int) -> dict[int, int]:
    """resample step -> the dead window in tokens: half the interval since the previous resampling."""
    windows, prev = {}, 0
    for s in sorted(resample_steps):
        if 0 < s < max_steps:
            windows[s] = (s - prev) // 2 * rows_per_step
        prev = s
    return windows


def make_recipe(c: dict, max_steps: int) -> Recipe:
    """The optimisation recipe of one SAE from its config keys c (every Recipe field but max_steps)."""
    return Recipe(**{**{key: c[key] for key in RECIPES[c['kind']]}, 'adam_betas': tuple(c['adam_betas'])},
                  max_steps=max_steps)


def default_name(entry: dict) -> str:
    """'topk_k10' for {kind: 'topk', k: 10}: the overridden values, the kind's bare."""
    return '_'.join(str(v) if k == 'kind' else f"{k}{v}" for k, v in entry.items()).replace(' ', '')


def plan_sweep(entries: list, config: dict, recipe_unset: list[str], recipes: dict) -> list[dict]:
    """The config of each SAE of a sweep: the run's config, the entry's keys (type-checked), and for every key in
    recipe_unset (recipe keys the run did not set) the value of the entry kind's recipe. Each has its 'name'."""
    keys = [k for k in config if k not in RUN_KEYS]
    plans, names = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UserError(f"sweep entry {i} is a {type(entry).__name__}, not a dict of SAE keys")
        entry = dict(entry)
        name = str(entry.pop('name', '') or default_name(entry))
        for k, v in entry.items():
            if k in RUN_KEYS:
                raise UserError(f"sweep entry '{name}': {k} is shared by every SAE of a sweep (set it for the run)")
            if k not in keys:
                raise UserError(f"sweep entry '{name}': unknown key '{k}'{closest_key_hint(k, keys)}")
        kind = entry.get('kind', config['kind'])
        if kind not in recipes:
            raise UserError(f"sweep entry '{name}': kind '{kind}' is not one of {', '.join(recipes)}")
        c = {**config, **{k: recipes[kind][k] for k in recipe_unset}}
        for k, v in entry.items():
            c[k] = coerce(k, v, c[k], f"sweep entry '{name}'")
        if not NAME.match(name) or name in names:
            raise UserError(f"sweep entry {i}: name '{name}' is {'taken' if name in names else 'not a folder name'}"
                            f" (letters, digits, _ . = + -)")
        names.add(name)
        plans.append({**c, 'name': name})
    if not plans:
        raise UserError("sweep is empty: list at least one SAE (config/demo/sweep.py)")
    return plans


# ----------------------------------------------------------------------------- the Pareto report

PARETO_FIELDS = ('name', 'kind', 'n_features', 'k', 'l1_coeff', 'sparsity', 'l0', 'fvu', 'loss_recovered',
                 'loss_recovered_mean_abl', 'kl_spliced', 'alive_frac', 'ultralow_frac_of_alive', 'tokens_seen',
                 'train_seconds', 'concept_f1', 'concept_f1_neurons', 'source')
METRIC_FIELDS = PARETO_FIELDS[6:-4]  # copied from metrics.json as they are
SOURCES = ('ours', 'saelens')  # who trained an SAE: this repo's train_sae.py, or SAELens's trainer (bench/saelens.py)


def pareto_record(name: str, m: dict, recipes: dict, source: str = 'ours') -> dict:
    """One SAE's record from its metrics.json: sparsity is k for kinds without an L1 penalty, else λ; source: who
    trained it (SOURCES)."""
    c = m['config']
    concepts = m.get('concepts')  # the concept axis (monosemanticity/concept_axis.py): None without labels
    by_k = recipes.get(m['kind'], {}).get('l1_coeff', 1.0) == 0
    return {'name': name, 'kind': m['kind'], 'n_features': m['n_features'], 'k': c['k'] if by_k else None,
            'l1_coeff': None if by_k else c['l1_coeff'],
            'sparsity': f"k={c['k']}" if by_k else f"λ={c['l1_coeff']:g}",
            **{k: m[k] for k in METRIC_FIELDS}, 'train_seconds': m['train_seconds_this_run'],
            'concept_f1': concepts['median_best_f1'] if concepts else None,
            'concept_f1_neurons': concepts['neurons']['median_best_f1'] if concepts else None, 'source': source}


def pareto_records(sweep_dir: str, recipes: dict, names: list[str] | None = None, source: str = 'ours') -> list[dict]:
    """The records of the finished SAEs in sweep_dir (folders with a metrics.json; names: only these), by kind
    then L0; `source` says who trained them."""
    records = []
    for name in sorted(os.listdir(sweep_dir) if names is None else names):
        path = os.path.join(sweep_dir, name, 'metrics.json')
        if os.path.isfile(path):
            with open(path) as f:
                records.append(pareto_record(name, json.load(f), recipes, source))
    return sorted(records, key=lambda r: (r['kind'], r['l0'], r['n_features']))


def saelens_records(sweep_dir: str, recipes: dict) -> list[dict]:
    """The records of the SAEs SAELens trained for bench/saelens.py: <sweep_dir>/saelens/<name>/metrics.json."""
    root = os.path.join(sweep_dir, 'saelens')
    names = [n for n in sorted(os.listdir(root)) if n != 'ours'] if os.path.isdir(root) else []
    return pareto_records(root, recipes, names, source='saelens')


def plot_pareto(records: list[dict], path: str) -> None:
    """pareto.png: L0 against loss recovered and against FVU, and (when SAEs have the concept axis) against the median
    best-feature F1 over the ground-truth concepts with the neurons' as a line; one line per kind and source (by L0),
    log-x; SAELens's SAEs (source 'saelens') dashed, labelled 'SAELens <kind>'."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    panels = [('loss_recovered', 'loss recovered (zero ablation)'), ('fvu', 'FVU (fraction of variance unexplained)')]
    if any(r.get('concept_f1') is not None for r in records):
        panels.append(('concept_f1', 'concepts: median best-feature F1'))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2))
    for ax, (key, label) in zip(axes, panels):
        for source, kind in sorted({(r.get('source', 'ours'), r['kind']) for r in records}):
            rs = [r for r in records if r['kind'] == kind and r.get('source', 'ours') == source
                  and r.get(key) is not None]
            if not rs:
                continue
            theirs = source == 'saelens'
            ax.plot([r['l0'] for r in rs], [r[key] for r in rs], 's--' if theirs else 'o-', alpha=0.85,
                    label=f"SAELens {kind}" if theirs else kind)
            for r in rs:
                ax.annotate(f"{r['n_features']} {r['sparsity']}", (r['l0'], r[key]), fontsize=6,
                            textcoords='offset points', xytext=(3, 3))
        ax.set_xscale('log')
        l0s = [r['l0'] for r in records]  # ticks 5, 10, 20, 50, ... over the L0s drawn, rather than 2×10¹
        ticks = [t * 10 ** e for e in range(-1, 5) for t in (1, 2, 5)
                 if min(l0s) / 1.5 <= t * 10 ** e <= max(l0s) * 1.5]
        ax.set_xticks(ticks or [min(l0s)], [f"{t:g}" for t in ticks or [min(l0s)]])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel('L0 (features active per token)')
        ax.set_ylabel(label)
        ax.grid(True, which='both', alpha=0.3)
        neurons = [r['concept_f1_neurons'] for r in records if key == 'concept_f1' and r.get('concept_f1_neurons')]
        if neurons:  # the same for every SAE of one site: the best single neuron's
            line = ax.axhline(neurons[0], color='gray', ls=':', label=f"best single neurons' median ({neurons[0]:.2f})")
            ax.legend(handles=[line], fontsize=7, loc='lower right')
    axes[0].legend()
    fig.suptitle(f"{len(records)} SAEs trained on one activation stream")
    save_png(fig, path)


def write_pareto(sweep_dir: str, recipes: dict, names: list[str] | None = None,
                 extra: list[dict] | None = None) -> list[dict]:
    """Write sweep_dir/pareto.json and pareto.png from the metrics.json files (of `names` only if given) and the
    extra records (pareto_record's, e.g. bench/saelens.py's; None = saelens_records(sweep_dir): the SAELens points
    a bench run left there); returns the records."""
    extra = saelens_records(sweep_dir, recipes) if extra is None else extra
    records = sorted(pareto_records(sweep_dir, recipes, names) + list(extra),
                     key=lambda r: (r['source'] != 'ours', r['kind'], r['l0'], r['n_features']))
    atomic_write_json(os.path.join(sweep_dir, 'pareto.json'), records)
    plot_pareto(records, os.path.join(sweep_dir, 'pareto.png'))
    return records


def pareto_table(records: list[dict]) -> str:
    """The records as a Markdown table."""
    lines = ['| name | kind | F | sparsity | L0 | FVU | loss rec. (zero / mean abl.) | KL | alive | ultralow | '
             'concept F1 | s |', '| --- | --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |']
    for r in records:
        kind = f"SAELens {r['kind']}" if r.get('source') == 'saelens' else r['kind']
        lines.append(f"| {r['name']} | {kind} | {r['n_features']} | {r['sparsity']} | {r['l0']:.1f} | "
                     f"{r['fvu']:.3f} | {r['loss_recovered']:.3f} / {r['loss_recovered_mean_abl']:.3f} | "
                     f"{r['kl_spliced']:.3f} | {r['alive_frac']:.1%} | {r['ultralow_frac_of_alive']:.1%} | "
                     f"{'–' if r.get('concept_f1') is None else format(r['concept_f1'], '.3f')} | "
                     f"{r['train_seconds']:.0f} |")
    return '\n'.join(lines)

