"""
Build the static feature browser of a trained SAE: <out_dir>/interface/index.html (opens from file://).

    python build_interface.py config/demo/interface.py            # CPU demo (out/demo), ~1-2 min on 2 cores
    python build_interface.py config/interface.py                 # the seed's scale (out/owt)
    python build_interface.py config/demo/interface.py --n_contexts=256 --ablation=none   # quicker look

Inputs: <out_dir>/transformer/ckpt.pt, <out_dir>/sae/ (SAELens layout: sae_weights.safetensors + cfg.json)
and the dataset's <split>.bin + meta.json (+ tokenizer file). Output: <out_dir>/interface/ with index.html
(all features: sortable/searchable table, density histogram), feature.html?f=ID (one feature, all panels) and
examples.html (activations on example texts), the repo's interface/ assets, and the data as .js files loaded
with <script src> (no server, no fetch()). The data files and every key in them: interface/README.md.
Built in a temp folder that replaces the old one at the end, so a half-built site is never taken for a
complete one. An SAE or transformer with NaN/inf weights is refused (one line naming the tensor).

With analyze.py's report (<out_dir>/analysis/report.json, found when analysis='auto', or --analysis=<report>) the
pages also show each feature's offline explanation, its held-out F1 and its best match in the other run:
    python build_interface.py config/demo/interface.py --out_dir=out/demo/run_b --analysis=out/demo/analysis/report.json

A sweep (train_sae.py's `sweep`: many SAEs of one stream in <out_dir>/sweep/<name>/) as one site:
    python build_interface.py config/demo/interface.py --sweep_dir=out/demo/sweep
writes <sweep_dir>/interface/: <name>/ for every SAE (its site as above, each feature record with its
`relatives` in the other sizes of its family), index.html (every SAE, the families, the Pareto plot) and
family.html?family=NAME (how the smallest dictionary's features split in the larger ones). The families and
their links come from <sweep_dir>/families.json (families.py), computed first when absent or older than an SAE.

All statistics are computed for all features at once, in streaming passes over n_contexts contexts
(RAM does not grow with n_contexts; nothing of size n_tokens x n_features is kept):
  pass 1  density, max/mean activation, top_k contexts per feature (one example per context), the tokens each
          feature fires on, co-activation counts (first coact_tokens tokens), the final residual's scale
  pass 2  activation histograms and the n_intervals equal-width intervals of (0, max]: their share of the
          activations and interval_samples random examples each (one per context)
  pass 3  only the shown windows (±window tokens): per-token activations and the ablation effect: the change
          of the log-prob of each actual next token when the feature's contribution f_i·W_dec[i] is removed
          from the site. Exact and cheap for a site in the last layer (the MLP output reaches only the logits
          of its own position); other sites rerun the model per window (ablation='rerun').
  then    logit weights (decoder direction -> c_proj -> final LayerNorm linearised: centred, times ln_f.weight,
          times E[1/σ] of the final residual -> unembedding), decoder-cosine and co-activation neighbours,
          example texts, and the site.
"""
import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from autoencoder import SparseAutoencoder, load_saelens
from common import (UserError, atomic_write_json, autocast, data_dir_of, exit_on_user_error, get_device,
                    load_checkpoint, load_data_meta, print0, progress, read_json, resolve_dtype, token_memmap,
                    token_windows)
from configurator import config_keys, configure
from model import GPT, load_gpt, parse_site, site_name
from neuronpedia import export_site as export_neuronpedia

# -----------------------------------------------------------------------------
out_dir = 'out'
transformer_ckpt = ''  # '' = <out_dir>/transformer/ckpt.pt
sae_dir = ''  # '' = <out_dir>/sae (sae_weights.safetensors + cfg.json, SAELens layout)
sweep_dir = ''  # '' = one SAE; else a sweep (<out_dir>/sweep): one site of all its SAEs in <sweep_dir>/interface/
dataset = ''  # '' = the dataset the transformer was trained on (a name under data/ or a path)
split = 'val'
n_contexts = 2048  # contexts (non-overlapping chunks of the split, picked at random) the statistics cover
context_length = 0  # tokens per context; 0 = the model's block_size
batch_size = 32  # contexts per forward pass
top_k = 20  # top-activating examples per feature (at most one per context)
window = 8  # tokens shown either side of an example's token
n_intervals = 12  # equal-width activation intervals of (0, max] ...
interval_samples = 5  # ... and random examples shown from each
n_example_texts = 25  # texts on examples.html
example_length = 128  # tokens per example text
coact_tokens = 65536  # tokens over which co-activation is counted (0 = all)
dense_stats_mb = 256  # (F, V) token counts, (F, F) co-activation counts, (F, V) logit effects: each dense if it
# fits in this many MB, else exact sparse counts / logit rows computed a block of this size at a time
ablation = 'auto'  # 'auto' (exact local formula where valid, else 'rerun'), 'rerun' (model per window), 'none'
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (for the transformer and SAE forward passes)
analysis = 'auto'  # analyze.py's report shown: 'auto' (<out_dir>/analysis/report.json if it is of this SAE), '', a path
neuronpedia = False  # also write the site's data in Neuronpedia's upload format: <site>/neuronpedia/ (neuronpedia.py)
# -----------------------------------------------------------------------------
CONFIG_KEYS = config_keys(globals())  # the keys above are the config; the constants below are not

N_NEIGHBOURS = 10  # decoder-cosine and co-activation neighbours per feature
N_LOGITS = 10  # top and bottom logit weights shown
N_TOP_TOKENS = 10  # tokens a feature fires on most
HIST_BINS = 40  # bins of the activation and logit-weight histograms
ULTRALOW = 1e-5  # alive features below this density are "ultralow" (the paper's and DESIGN.md's threshold)
EXAMPLE_MAX_FEATURES = 64  # most active features kept per token of an example text
FEATURES_PER_FILE = 64  # features/NNNN.js holds features NNNN*64 ... NNNN*64+63 (few files: fast to replace)
ROWS_PER_CHUNK = 256  # features per step of the logit-weight and neighbour computations
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'interface')  # html, js, css copied to the site
SWEEP_PAGES = ('sweep.html', 'family.html', 'page_sweep.js', 'page_family.js')  # a sweep site's root only
SWEEP_SHARED = ('common.js', 'errors.js', 'style.css')  # also in a sweep site's root


def main() -> None:
    exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2
    settings = {k: globals()[k] for k in CONFIG_KEYS}
    config = configure(settings)  # config files and --key=value overrides from the command line (configurator.py)
    globals().update(settings)  # the config globals above now hold the values in effect
    del config['analysis']  # a shown report is in INDEX.meta.analysis; without one, meta.json is as before the key
    check_config()
    run_device = get_device(device)
    torch.manual_seed(seed)
    transformer = load_transformer(out_dir, transformer_ckpt, dataset, context_length, run_device,
                                   resolve_dtype(dtype, run_device))
    if sweep_dir and analysis not in ('', 'auto'):
        print0(f"note: a sweep site shows no analysis (analysis={analysis} is not used)")
    if sweep_dir:  # every SAE of the sweep, linked across sizes, in one site
        site_dir = build_sweep_site(sweep_dir, transformer, config)
    else:
        inputs = load_inputs(transformer, sae_dir or os.path.join(out_dir, 'sae'))
        shown = find_analysis(analysis, out_dir, inputs.sae_path, len(inputs.W_dec))
        tmp_dir = temp_dir_for(os.path.join(out_dir, 'interface'))
        build_site(inputs, tmp_dir, {k: v for k, v in config.items() if k != 'sweep_dir'}, analysis=shown)
        site_dir = swap_in(tmp_dir, os.path.join(out_dir, 'interface'))
    print0(f"open {os.path.abspath(os.path.join(site_dir, 'index.html'))}")


class SiteSummary(NamedTuple):
    """What a sweep site's pages need of one SAE's statistics."""
    density: np.ndarray  # (F,) share of the tokens each feature fires on
    max_act: np.ndarray  # (F,) its largest activation
    top_tokens: list[list[int]]  # per feature, the token ids it fires on most (most first)
    n_dead: int
    seconds: float


def build_site(inputs: 'Inputs', site_dir: str, config: dict, sweep: dict | None = None,
               relatives: list[list[dict]] | None = None, vocab: list | None = None,
               verbose: bool = True, analysis: 'SiteAnalysis | None' = None) -> SiteSummary:
    """One SAE's site written into site_dir (a new folder): the three passes, the weights' panels, the pages.
    In a sweep site: sweep (INDEX.meta.sweep) and relatives (per feature, its record's `relatives`) are set.
    analysis (find_analysis): INDEX.meta.analysis, INDEX's f1/explain/match and each record's `analysis`."""
    t_start, seconds = time.time(), {}
    token_file = TokenFile(inputs.data_dir, split, inputs.data_meta['dtype'], inputs.device)
    contexts = pick_contexts(token_file, inputs.context_length, n_contexts, batch_size, np.random.default_rng(seed),
                             quiet=not verbose)
    mode = ablation_mode(ablation, inputs)
    n_feat = len(inputs.W_dec)
    if verbose:
        print0(f"{n_feat} features of {inputs.site} ({inputs.architecture}), {contexts.n} contexts x "
               f"{contexts.length} tokens = {contexts.n_tokens:,} tokens of {inputs.data_dir}/{split}.bin; "
               f"ablation: {mode}; device {inputs.device} ({inputs.dtype})")
    panels = feature_panels(inputs, contexts, mode, seconds)
    examples = example_texts(inputs, token_file, n_example_texts, min(example_length, contexts.length), batch_size,
                             np.random.default_rng(seed + 1))

    # the site: data files (their format: interface/README.md)
    t_write = time.time()
    vocab = vocab if vocab is not None else load_vocab(inputs.data_dir, inputs.data_meta,
                                                       inputs.model.config.vocab_size)
    stats = panels.stats
    run = {'n_features': n_feat, 'n_tokens': contexts.n_tokens, 'n_contexts': contexts.n,
           'context_length': contexts.length, 'site': inputs.site, 'architecture': inputs.architecture,
           'dataset': inputs.data_dir, 'split': split, 'transformer': os.path.abspath(inputs.ckpt_path),
           'sae': os.path.abspath(inputs.sae_path), 'ultralow': ULTRALOW, 'top_k': top_k, 'window': window,
           'n_intervals': n_intervals, 'interval_samples': interval_samples, 'hist_bins': HIST_BINS,
           'features_per_file': FEATURES_PER_FILE, 'ablation': mode, 'coact_tokens': stats.coact_tokens,
           'built': time.strftime('%Y-%m-%d %H:%M:%S'), **({'sweep': sweep} if sweep is not None else {}),
           **({'analysis': analysis.meta} if analysis is not None else {})}
    index = index_data(run, stats, panels.fired_on, panels.logits)
    if analysis is not None:
        index.update(analysis.index)
    features = feature_records(stats, panels.intervals, panels.windows, panels.shown, panels.logits,
                               panels.neighbours, panels.fired_on, contexts.n_tokens)
    if relatives is not None:
        features = ({**record, 'relatives': relatives[record['id']]} for record in features)
    if analysis is not None:
        features = ({**record, 'analysis': analysis.records[record['id']]} for record in features)
    meta = {**run, 'config': config, 'context_starts': contexts.starts.tolist(), 'example_starts': examples.starts,
            'example_length': examples.length, 'ln_scale': stats.ln_scale}
    write_site(site_dir, vocab, index, examples.texts, features, meta, seconds, t_start, t_write, quiet=not verbose)
    if neuronpedia:  # the same data in Neuronpedia's upload format, read back from the site (neuronpedia.py)
        export_neuronpedia(site_dir, inputs.model.config.n_layer, inputs.model.config.n_embd, quiet=not verbose)

    n_fire, density, act_max, _ = feature_summary(stats, contexts.n_tokens)
    dead = int((n_fire == 0).sum())
    if verbose:
        ultralow = int(((n_fire > 0) & (n_fire.double() / contexts.n_tokens < ULTRALOW)).sum())
        print0(f"{n_feat} features ({dead} dead, {ultralow} ultralow) from {contexts.n_tokens:,} tokens in "
               f"{time.time() - t_start:.0f}s (passes {seconds['pass1']:.0f}s + {seconds['pass2']:.0f}s + "
               f"{seconds['pass3']:.0f}s, weights {seconds['weights']:.0f}s, pages {time.time() - t_write:.0f}s)")
    fired_on = [[t for t, c in zip(ts, cs) if c > 0] for ts, cs in zip(panels.fired_on.ids.tolist(),
                                                                        panels.fired_on.counts.tolist())]
    return SiteSummary(density, act_max.numpy(), fired_on, dead, time.time() - t_start)


class Panels(NamedTuple):
    """Every feature's numbers: the three passes' and the weights'."""
    stats: 'Pass1'
    intervals: 'Pass2'
    windows: 'Windows'
    shown: 'ShownWindows'
    logits: 'LogitWeights'
    neighbours: 'Neighbours'
    fired_on: 'TopTokens'


def feature_panels(inputs: 'Inputs', contexts: 'Contexts', mode: str, seconds: dict) -> Panels:
    """Three streaming passes over the contexts, then the shown windows' numbers; then from the weights (and
    pass 1's counts): logit weights, neighbours, the tokens each feature fires on most."""
    with timed(seconds, 'pass1'):
        stats = pass1_statistics(inputs, contexts, top_k, coact_tokens, dense_stats_mb)
    with timed(seconds, 'pass2'):
        intervals = pass2_intervals(inputs, contexts, stats.act_max, n_intervals, interval_samples, seed)
    head = logit_head(inputs.model)
    directions = feature_logit_directions(head, resid_direction(inputs.model, inputs.layer, inputs.site_kind,
                                                                 inputs.W_dec), dense_stats_mb)
    windows = select_windows(stats, intervals, window, contexts.length)
    with timed(seconds, 'pass3'):
        shown = pass3_windows(inputs, contexts, windows, mode, head, directions, batch_size)
    with timed(seconds, 'weights'):
        logits = logit_weights(directions, stats.ln_scale)
        neighbours = feature_neighbours(inputs.W_dec, stats.coact)
        fired_on = top_tokens(stats.token_counts)
    return Panels(stats, intervals, windows, shown, logits, neighbours, fired_on)


def check_config() -> None:
    """The config globals in range (UserError naming the key otherwise)."""
    for name, val, lo in (('n_contexts', n_contexts, 1), ('batch_size', batch_size, 1), ('top_k', top_k, 1),
                          ('window', window, 0), ('n_intervals', n_intervals, 1),
                          ('interval_samples', interval_samples, 0), ('n_example_texts', n_example_texts, 0),
                          ('example_length', example_length, 2)):
        if val < lo:
            raise UserError(f"{name}={val} must be >= {lo}")
    if ablation not in ('auto', 'rerun', 'none'):
        raise UserError(f"ablation='{ablation}' is not 'auto', 'rerun' or 'none'")


@contextmanager
def timed(seconds: dict, name: str):
    """Adds the wall time of the block to seconds[name]."""
    t0 = time.time()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.time() - t0


# ----------------------------------------------------------------------------- inputs

class Transformer(NamedTuple):
    """The transformer every SAE of a run (or sweep) reads, its dataset and the forward passes' settings."""
    model: GPT
    ckpt_path: str
    data_dir: str
    data_meta: dict  # the dataset's meta.json
    context_length: int  # tokens per context (T)
    device: str
    dtype: str
    autocast: object  # the autocast context of every forward pass


class Inputs(NamedTuple):
    model: GPT
    sae: SparseAutoencoder
    W_dec: torch.Tensor  # (F, d_in) float32: the decoder rows, the SAE's own
    site: str  # the hook the SAE reads, e.g. 'blocks.0.mlp_hidden'
    layer: int
    site_kind: str  # 'mlp_hidden', 'mlp_out', 'resid_post', ...
    final_site: str  # the last block's resid_post (ln_f and the unembedding turn it into logits)
    architecture: str  # SAELens cfg.json's 'architecture'
    ckpt_path: str
    sae_path: str
    data_dir: str
    data_meta: dict  # the dataset's meta.json
    context_length: int  # tokens per context (T)
    autocast: object  # the autocast context of every forward pass
    device: str
    dtype: str


def load_transformer(out_dir: str, transformer_ckpt: str, dataset: str, context_length: int, device: str,
                     dtype: str) -> Transformer:
    """The transformer (<out_dir>/transformer/ckpt.pt unless transformer_ckpt) and its dataset, checked."""
    ckpt_path = transformer_ckpt or os.path.join(out_dir, 'transformer', 'ckpt.pt')
    checkpoint = load_checkpoint(ckpt_path, 'cpu',
                                 hint="train one with train_transformer.py (or set --transformer_ckpt)")
    refuse_nonfinite(checkpoint.get('model', {}), ckpt_path,
                     "retrain it with train_transformer.py or set --transformer_ckpt")
    model = load_gpt(checkpoint, device)
    for p in model.parameters():
        p.requires_grad_(False)
    data_dir = data_dir_of(dataset or checkpoint.get('data', {}).get('dataset') or '')
    if not data_dir:
        raise UserError(f"{ckpt_path} names no dataset: set --dataset")
    data_meta = load_data_meta(data_dir)
    T = context_length or model.config.block_size
    if T > model.config.block_size:
        raise UserError(f"context_length={T} exceeds the model's block_size {model.config.block_size}")
    return Transformer(model, ckpt_path, data_dir, data_meta, T, device, dtype, autocast(device, dtype))


class LoadedSAE(NamedTuple):
    sae: SparseAutoencoder
    cfg: dict  # its cfg.json
    site: str  # the hook it reads
    layer: int
    site_kind: str


def load_sae(sae_path: str, transformer: Transformer) -> LoadedSAE:
    """An SAE export (autoencoder.load_saelens) that reads a site of the transformer; UserError if unusable."""
    sae_cfg = read_json(os.path.join(sae_path, 'cfg.json'), "train an SAE with train_sae.py (or set --sae_dir)")
    weights_path = os.path.join(sae_path, 'sae_weights.safetensors')
    if not os.path.isfile(weights_path):
        raise UserError(f"{weights_path} not found: train an SAE with train_sae.py first")
    site = sae_cfg.get('hook_name', '')
    try:
        layer, site_kind = parse_site(site)
    except ValueError as e:
        raise UserError(f"{sae_path}/cfg.json: {e}") from None
    n_layer = transformer.model.config.n_layer
    if layer >= n_layer:
        raise UserError(f"the SAE reads {site} but {transformer.ckpt_path} has {n_layer} layer(s)")
    try:
        sae = load_saelens(sae_path, device=transformer.device, cfg=sae_cfg).eval()  # cfg.json read once, above
    except ValueError as e:
        raise UserError(str(e)) from None
    sae_params = dict(sae.named_parameters())
    refuse_nonfinite(sae_params, weights_path,
                     "the SAE diverged: retrain it with train_sae.py (e.g. a lower lr) or set --sae_dir")
    for p in sae.parameters():
        p.requires_grad_(False)
    return LoadedSAE(sae, sae_cfg, site, layer, site_kind)


def load_inputs(transformer: Transformer, sae_path: str) -> Inputs:
    """The transformer and the SAE the browser shows (load_sae); UserError if unusable."""
    sae, sae_cfg, site, layer, site_kind = load_sae(sae_path, transformer)
    if sae.cfg.normalize != 'none':  # x̂ = (W_dec f + b_dec)·std + mean: a feature's contribution scales per token
        raise UserError(f"{sae_path}: the feature browser does not support SAEs trained with normalize="
                        f"'{sae.cfg.normalize}' yet (its ablation and logit panels assume x̂ = W_dec f + b_dec): "
                        f"train one with --normalize=none to browse it")
    n_layer = transformer.model.config.n_layer
    return Inputs(transformer.model, sae, sae.W_dec.detach().float().T.contiguous(), site, layer, site_kind,
                  site_name(n_layer - 1, 'resid_post'), sae_cfg.get('architecture', 'standard'),
                  transformer.ckpt_path, sae_path, transformer.data_dir, transformer.data_meta,
                  transformer.context_length, transformer.autocast, transformer.device, transformer.dtype)


def refuse_nonfinite(tensors: dict[str, torch.Tensor], path: str, fix: str) -> None:
    """One line naming the first tensor with NaN/inf entries (a diverged run): its statistics would be noise."""
    for name, t in tensors.items():
        n_bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if n_bad:
            raise UserError(f"{path}: {name} has {n_bad:,} non-finite (NaN/inf) entries of {t.numel():,}: {fix}")


def ablation_mode(requested: str, inputs: Inputs) -> str:
    """'local' (exact formula: a site in the last layer reaches only its own position's logits), 'rerun', 'none'."""
    local_ok = (inputs.layer == inputs.model.config.n_layer - 1
                and inputs.site_kind in ('mlp_hidden', 'mlp_out', 'resid_post'))
    return 'none' if requested == 'none' else 'local' if (requested == 'auto' and local_ok) else 'rerun'


@dataclass(frozen=True)
class TokenFile:
    data_dir: str
    split: str
    dtype: str  # meta.json's token dtype
    device: str

    def __len__(self) -> int:
        return len(token_memmap(self.data_dir, self.split, self.dtype))

    def read(self, starts: np.ndarray, length: int) -> torch.Tensor:
        """(B, length+1) int64 tokens on device: each chunk plus the token after it (the last position's target)."""
        return token_windows(token_memmap(self.data_dir, self.split, self.dtype), starts, length + 1).to(self.device)


def pick_chunks(n_tokens: int, length: int, n: int, rng: np.random.Generator, where: str) -> np.ndarray:
    """Start offsets of n random non-overlapping chunks of length+1 tokens (sorted)."""
    n_chunks = (n_tokens - 1) // length
    if n_chunks < 1:
        raise UserError(f"{where} has {n_tokens} tokens, fewer than context_length+1 = {length + 1}")
    return np.sort(rng.choice(n_chunks, size=min(n, n_chunks), replace=False)) * length


class Contexts(NamedTuple):
    file: TokenFile
    starts: np.ndarray  # (n,) sorted token offsets of the contexts in <split>.bin
    length: int  # T tokens per context
    batches: list[tuple[int, int]]  # context ranges [b0, b1) of the forward passes
    quiet: bool = False  # no progress bars (a member of a sweep site: one line per SAE)

    @property
    def n(self) -> int:
        return len(self.starts)

    @property
    def n_tokens(self) -> int:
        return len(self.starts) * self.length

    def read(self, b0: int, b1: int) -> torch.Tensor:
        """Contexts b0 .. b1-1 as (b1-b0, T+1) tokens."""
        return self.file.read(self.starts[b0:b1], self.length)

    def bar(self, desc: str):
        """The batches, with a progress bar unless quiet."""
        return progress(self.batches, desc=desc, disable=self.quiet)


def pick_contexts(file: TokenFile, length: int, n: int, batch_size: int, rng: np.random.Generator,
                  quiet: bool = False) -> Contexts:
    """n random non-overlapping contexts of `length` tokens (fewer if the split is short), in batches; quiet: no
    progress bars over them."""
    starts = pick_chunks(len(file), length, n, rng, f"{file.split}.bin in {file.data_dir}")
    if len(starts) < n:
        print0(f"note: {file.split}.bin holds only {len(starts)} contexts of {length} tokens (asked for {n})")
    batches = [(b0, min(b0 + batch_size, len(starts))) for b0 in range(0, len(starts), batch_size)]
    return Contexts(file, starts, length, batches, quiet)


@torch.no_grad()
def encode_contexts(inputs: Inputs, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, T+1) -> features f (B*T, F) of the contexts tokens[:, :T], final residual r (B, T, C)."""
    with inputs.autocast:
        _, _, acts = inputs.model.run(tokens[:, :-1], capture=[inputs.site, inputs.final_site], need_logits=False)
        f = inputs.sae.encode(acts[inputs.site].reshape(-1, inputs.W_dec.size(1)))
    return f.float(), acts[inputs.final_site].float()


# ----------------------------------------------------------------------------- pass 1: density, max, top-k, tokens

class Pass1(NamedTuple):
    n_fire: torch.Tensor  # (F,) int64 tokens the feature fires on (f > 0)
    act_sum: torch.Tensor  # (F,) float64 sum of its activations
    act_max: torch.Tensor  # (F,) float32
    top_act: torch.Tensor  # (top_k, F) the best per-context maxima, descending (0 = no example)
    top_ctx: torch.Tensor  # (top_k, F) their context (-1 = none)
    top_pos: torch.Tensor  # (top_k, F) their position in the context
    token_counts: 'TokenCounts'  # firings per (feature, token id); .rows(sl) -> (n, V) int32
    coact: 'CoactCounts'  # co-firing counts over the first coact_tokens tokens; .rows(sl) -> (n, F) int32
    coact_tokens: int  # tokens counted in coact
    ln_scale: float  # E[1/σ] of the final residual (σ: its LayerNorm's standard deviation per token)


def pass1_statistics(inputs: Inputs, contexts: Contexts, top_k: int, coact_tokens: int,
                     dense_mb: float = 256) -> Pass1:
    """Pass 1 over the contexts, one forward pass per batch; the running top-k keeps one example per context.
    The (F, V) token and (F, F) co-firing counts are dense matrices when each fits in dense_mb MB, else sparse."""
    n_feat, V, T = len(inputs.W_dec), inputs.model.config.vocab_size, contexts.length
    dev = inputs.W_dec.device
    n_fire = torch.zeros(n_feat, dtype=torch.long, device=dev)
    act_sum = torch.zeros(n_feat, dtype=torch.float64, device=dev)
    act_max = torch.zeros(n_feat, device=dev)
    top_act = torch.zeros(top_k, n_feat, device=dev)
    top_ctx = torch.full((top_k, n_feat), -1, dtype=torch.long, device=dev)
    top_pos = torch.zeros(top_k, n_feat, dtype=torch.long, device=dev)
    token_counts = TokenCounts(n_feat, V, dev, dense=n_feat * V * 4 <= dense_mb * 2 ** 20)
    coact = CoactCounts(n_feat, dev, dense=n_feat * n_feat * 4 <= dense_mb * 2 ** 20)
    coact_limit = contexts.n_tokens if coact_tokens <= 0 else min(coact_tokens, contexts.n_tokens)
    coact_seen, inv_sigma_sum = 0, 0.0
    for b0, b1 in contexts.bar('pass 1/3: density, top-k'):
        tokens = contexts.read(b0, b1)
        B = b1 - b0
        f, r = encode_contexts(inputs, tokens)
        fire = f > 0  # (N, F)
        t_idx, feat = fire.nonzero().unbind(1)
        n_fire += torch.bincount(feat, minlength=n_feat)
        act_sum += f.sum(0).double()
        torch.maximum(act_max, f.amax(0), out=act_max)
        # top-k over contexts: each context's best token per feature, merged with the best so far
        ctx_max = f.view(B, T, n_feat).amax(1)  # (B, F)
        top_act, i = torch.cat([top_act, ctx_max]).topk(top_k, dim=0)
        top_ctx = torch.cat([top_ctx, torch.arange(b0, b1, device=dev)[:, None].expand(B, n_feat)]).gather(0, i)
        top_pos = torch.cat([top_pos, torch.zeros_like(ctx_max, dtype=torch.long)]).gather(0, i)
        rank, fk = (i >= top_k).nonzero().unbind(1)  # entries new from this batch: find their token
        top_pos[rank, fk] = f.view(B, T, n_feat)[i[rank, fk] - top_k, :, fk].argmax(1)
        token_counts.add_(feat, tokens[:, :-1].reshape(-1)[t_idx])
        if coact_seen < coact_limit:
            take = min(coact_limit - coact_seen, len(fire))
            coact.add_(fire[:take], t_idx, feat, coact_seen)
            coact_seen += take
        inv_sigma_sum += (r.var(-1, unbiased=False) + 1e-5).rsqrt().sum().item()
        del f, fire, t_idx, feat, ctx_max
    return Pass1(n_fire, act_sum, act_max, top_act, top_ctx, top_pos, token_counts, coact,
                 coact_seen, inv_sigma_sum / contexts.n_tokens)


def coact_counts(fire: torch.Tensor) -> torch.Tensor:
    """fire (N, F) bool -> (F, F) co-firing counts (int32): an exact int8 matmul on CPU, float elsewhere."""
    if fire.device.type == 'cpu':
        A = fire.to(torch.int8)
        try:
            return torch._int_mm(A.T.contiguous(), A)  # 4x a float32 matmul here; private API, so a fallback
        except (RuntimeError, AttributeError):
            pass
    A = fire.float()
    return (A.T @ A).round().int()


PAIRS_PER_STEP = 2 ** 24  # (feature, feature) pairs made at once by CoactCounts.rows (its memory: 8 bytes each)


class TokenCounts:
    """Firings per (feature, token id), exact: a dense (F, V) int32 matrix, or (dense=False) sparse counts whose
    memory grows with the distinct (feature, token) pairs seen: sorted int64 keys feature·V + token and their
    counts, each batch's keys counted (unique) and merged into them once the batches held reach their size."""

    def __init__(self, n_feat: int, V: int, device, dense: bool):
        self.shape, self.dense, self.device = (n_feat, V), dense, device
        self.counts = torch.zeros(n_feat * V if dense else 0, dtype=torch.int32 if dense else torch.long,
                                  device=device)  # dense: (F, V) flattened; sparse: per key
        self.keys = torch.zeros(0, dtype=torch.long, device=device)
        self.held: list[tuple[torch.Tensor, torch.Tensor]] = []  # batches' (keys, counts) not merged yet
        self.merge_at = 2 ** 20  # held keys merged once they are this many and as many as the merged ones

    def add_(self, feat: torch.Tensor, token: torch.Tensor) -> None:
        """One firing per entry of feat, token (E,) int64."""
        key = feat * self.shape[1] + token
        if self.dense:
            self.counts.index_add_(0, key, torch.ones(1, dtype=torch.int32, device=self.device).expand(len(key)))
            return
        self.held.append(torch.unique(key, return_counts=True))
        if sum(len(k) for k, _ in self.held) >= max(len(self.keys), self.merge_at):
            self.merge_()

    def merge_(self) -> None:
        keys = torch.cat([self.keys, *(k for k, _ in self.held)])
        counts = torch.cat([self.counts, *(c for _, c in self.held)])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros(len(self.keys), dtype=torch.long, device=self.device).index_add_(0, inverse, counts)
        self.held = []

    def rows(self, sl: slice) -> torch.Tensor:
        """(n, V) int32 counts of the features sl.start ... sl.stop-1."""
        n_feat, V = self.shape
        if self.dense:
            return self.counts.view(n_feat, V)[sl]
        if self.held:
            self.merge_()
        lo, hi = torch.searchsorted(self.keys, torch.tensor([sl.start * V, sl.stop * V], device=self.device)).tolist()
        block = torch.zeros((sl.stop - sl.start) * V, dtype=torch.int32, device=self.device)
        block[self.keys[lo:hi] - sl.start * V] = self.counts[lo:hi].int()
        return block.view(-1, V)


class CoactCounts:
    """Co-firing counts of feature pairs, exact: a dense (F, F) int32 matrix, or (dense=False) the firings
    themselves (token, feature) from which rows(sl) counts a block of rows: memory grows with the tokens' firings
    (coact_tokens x L0), not with F²."""

    def __init__(self, n_feat: int, device, dense: bool):
        self.n_feat, self.dense, self.device = n_feat, dense, device
        self.matrix = torch.zeros(n_feat, n_feat, dtype=torch.int32, device=device) if dense else None
        self.firings: list[tuple[torch.Tensor, torch.Tensor]] = []  # (token, feature) int32, token-major order
        self.csr = None

    def add_(self, fire: torch.Tensor, t_idx: torch.Tensor, feat: torch.Tensor, t0: int) -> None:
        """fire (n, F) bool, of tokens t0 ... t0+n-1; t_idx, feat (E,): fire's nonzero() (t_idx may go past n)."""
        if self.dense:
            self.matrix += coact_counts(fire)
            return
        e = int(torch.searchsorted(t_idx, len(fire)))
        self.firings.append(((t_idx[:e] + t0).int(), feat[:e].int()))

    def diagonal(self) -> torch.Tensor:
        """(F,) firings of each feature over the counted tokens."""
        if self.dense:
            return self.matrix.diagonal()
        return torch.bincount(self.index()[1], minlength=self.n_feat).int()

    def index(self) -> tuple:
        """The firings (made once): token (E,) int32 and feature (E,) int64 in token-major order, each token's first
        firing (n_tokens + 1,), the firings' order by feature (E,) and each feature's first in it (F + 1,)."""
        if self.csr is None:
            tok = torch.cat([torch.zeros(0, dtype=torch.int32, device=self.device), *(t for t, _ in self.firings)])
            feat = torch.cat([torch.zeros(0, dtype=torch.int32, device=self.device), *(f for _, f in self.firings)])
            tok_start = torch.searchsorted(tok, torch.arange(int(tok.max()) + 2 if len(tok) else 1,
                                                             dtype=torch.int32, device=self.device))
            by_feat = torch.argsort(feat, stable=True)
            feat_start = torch.searchsorted(feat[by_feat], torch.arange(self.n_feat + 1, dtype=torch.int32,
                                                                        device=self.device))
            self.csr, self.firings = (tok, feat.long(), tok_start, by_feat, feat_start), []
        return self.csr

    def rows(self, sl: slice) -> torch.Tensor:
        """(n, F) int32 co-firing counts of the features sl.start ... sl.stop-1 with every feature."""
        if self.dense:
            return self.matrix[sl]
        tok, feat, tok_start, by_feat, feat_start = self.index()
        n = sl.stop - sl.start
        block = torch.zeros(n * self.n_feat, dtype=torch.int32, device=self.device)
        mine = by_feat[feat_start[sl.start]:feat_start[sl.stop]]  # the block's firings
        t = tok[mine].long()
        first, width = tok_start[t], tok_start[t + 1] - tok_start[t]  # each one's token: its firings
        ends = width.cumsum(0)
        for a, b in pair_steps(ends, PAIRS_PER_STEP):  # at most PAIRS_PER_STEP pairs at a time
            w = width[a:b]
            row = torch.repeat_interleave(feat[mine[a:b]] - sl.start, w)
            offset = torch.arange(int(w.sum()), device=self.device) - torch.repeat_interleave(w.cumsum(0) - w, w)
            partner = feat[torch.repeat_interleave(first[a:b], w) + offset]
            block.index_add_(0, row * self.n_feat + partner,
                             torch.ones(1, dtype=torch.int32, device=self.device).expand(len(partner)))
        return block.view(n, self.n_feat)


def pair_steps(ends: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Consecutive ranges [a, b) of items with cumulative sizes `ends` (E,), each of total size <= budget (or
    one item)."""
    steps, a, done = [], 0, 0
    while a < len(ends):
        b = max(int(torch.searchsorted(ends, done + budget, right=True)), a + 1)
        steps.append((a, b))
        a, done = b, int(ends[b - 1])
    return steps


# ----------------------------------------------------------------------------- pass 2: histograms, interval samples

def smallest_per_group(group: torch.Tensor, key: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the (at most) k smallest keys (in [0, 1)) of each group, and their rank 0..k-1 in the group."""
    order = torch.argsort(group.double() + key)  # sorted by (group, key)
    g = group[order]
    rank = torch.arange(len(g), device=g.device) - torch.searchsorted(g, g)
    keep = rank < k
    return order[keep], rank[keep]


@dataclass
class IntervalSamples:
    """Up to S random examples per bucket (a feature's activation interval), all (n_buckets, S), slot by key.

    A uniform random sample without replacement is the S smallest of i.i.d. uniform keys (a bottom-k sketch),
    so a stream of batches can be sampled keeping only S keys per bucket. One example per context first: each
    context offers only its smallest-key token per bucket, so the sample is what walking all tokens in random
    order gives when a token whose context is already in the sample is skipped."""
    key: torch.Tensor  # float64 random keys, inf = empty slot
    ctx: torch.Tensor  # context index (meaningful where key is finite)
    pos: torch.Tensor  # position in the context
    act: torch.Tensor  # the activation

    @classmethod
    def empty(cls, n_buckets: int, S: int, device) -> 'IntervalSamples':
        shape = (n_buckets, max(S, 1))
        return cls(torch.full(shape, math.inf, dtype=torch.float64, device=device),
                   torch.full(shape, -1, dtype=torch.long, device=device),
                   torch.zeros(shape, dtype=torch.long, device=device), torch.zeros(shape, device=device))

    def offer_(self, bucket: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor, act: torch.Tensor,
               contexts: tuple[int, int], gen: torch.Generator) -> None:
        """Firings (n,) from contexts [c0, c1) (each context offered in one call only) compete for the slots."""
        S = self.key.size(1)
        key = torch.rand(len(act), generator=gen, dtype=torch.float64, device=act.device)
        live = (key < self.key[bucket, -1]).nonzero()[:, 0]  # a key above a full bucket's S-th smallest can't get in
        bucket, ctx, pos, key, act = bucket[live], ctx[live], pos[live], key[live], act[live]
        c0, c1 = contexts
        one, _ = smallest_per_group(bucket * (c1 - c0) + (ctx - c0), key, 1)
        old = torch.isfinite(self.key).view(-1).nonzero()[:, 0]
        c_bucket = torch.cat([old // S, bucket[one]])
        c_key = torch.cat([self.key.view(-1)[old], key[one]])
        c_ctx = torch.cat([self.ctx.view(-1)[old], ctx[one]])
        c_pos = torch.cat([self.pos.view(-1)[old], pos[one]])
        c_act = torch.cat([self.act.view(-1)[old], act[one]])
        keep, rank = smallest_per_group(c_bucket, c_key, S)
        slot = c_bucket[keep] * S + rank
        self.key.fill_(math.inf)
        self.key.view(-1)[slot], self.ctx.view(-1)[slot] = c_key[keep], c_ctx[keep]
        self.pos.view(-1)[slot], self.act.view(-1)[slot] = c_pos[keep], c_act[keep]


class Pass2(NamedTuple):
    hist: torch.Tensor  # (F, HIST_BINS) int64 activation histogram over (0, max]
    interval_count: torch.Tensor  # (F, n_intervals) int64 firings per equal-width interval of (0, max]
    samples: IntervalSamples | None  # bucket = feature * n_intervals + interval; None if interval_samples = 0


def pass2_intervals(inputs: Inputs, contexts: Contexts, act_max: torch.Tensor, n_intervals: int, S: int,
                    seed: int) -> Pass2:
    """Pass 2 (needs pass 1's max): histograms, interval counts and S interval samples per (feature, interval)."""
    n_feat, T, dev = len(act_max), contexts.length, act_max.device
    hist = torch.zeros(n_feat * HIST_BINS, dtype=torch.long, device=dev)
    interval_count = torch.zeros(n_feat * n_intervals, dtype=torch.long, device=dev)
    samples = IntervalSamples.empty(n_feat * n_intervals, S, dev)
    safe_max = act_max.clamp_min(1e-30)
    gen = torch.Generator(device=dev).manual_seed(seed)
    for b0, b1 in contexts.bar('pass 2/3: intervals'):
        f, _ = encode_contexts(inputs, contexts.read(b0, b1))
        t_idx, feat = (f > 0).nonzero().unbind(1)
        act = f[t_idx, feat]
        del f
        rel = act / safe_max[feat]  # in (0, 1]
        hist.index_add_(0, feat * HIST_BINS + (rel * HIST_BINS).long().clamp_(max=HIST_BINS - 1),
                        torch.ones(1, dtype=torch.long, device=dev).expand(len(act)))
        bucket = feat * n_intervals + (rel * n_intervals).long().clamp_(max=n_intervals - 1)  # interval j: [j, j+1)/n
        interval_count.index_add_(0, bucket, torch.ones(1, dtype=torch.long, device=dev).expand(len(act)))
        if S:
            samples.offer_(bucket, b0 + t_idx // T, t_idx % T, act, (b0, b1), gen)
    return Pass2(hist.view(n_feat, HIST_BINS), interval_count.view(n_feat, n_intervals), samples if S else None)


# ----------------------------------------------------------------------------- logit directions

class LogitHead(NamedTuple):
    """The final LayerNorm + unembedding written as logits = W_U(γ⊙x_c)/σ + W_U β (x_c: x centred)."""
    gamma: torch.Tensor  # (C,) ln_f.weight
    W_U: torch.Tensor  # (V, C)
    bias: torch.Tensor  # (V,) W_U β
    bias_max: torch.Tensor  # () max of bias
    exp_bias: torch.Tensor  # (V,) exp(bias - bias_max)
    lse_shift: bool  # the log-sum-exp needs a row max (logits may overflow exp())

    def logprob_rows_(self, z: torch.Tensor, inv_sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Rows z (n, V) = W_U(γ⊙x_c) and 1/σ (n,) -> log p(y) (n,) of the logits z/σ + W_U β. Overwrites z."""
        zy = z.gather(1, y[:, None])[:, 0] * inv_sigma + self.bias[y]
        z.mul_(inv_sigma[:, None])
        shift = z.max(1, keepdim=True).values if self.lse_shift else torch.zeros(len(z), 1, device=z.device)
        if self.lse_shift:
            z.sub_(shift)
        lse = torch.log(z.exp_() @ self.exp_bias) + shift[:, 0] + self.bias_max
        return zy - lse


def logit_head(model: GPT) -> LogitHead:
    """The model's ln_f and lm_head as a LogitHead (float32)."""
    gamma = model.transformer.ln_f.weight.float()
    W_U = model.lm_head.weight.float()  # (V, C)
    V = W_U.size(0)
    ln_f_bias = model.transformer.ln_f.bias
    bias = (W_U @ ln_f_bias.float()) if ln_f_bias is not None else torch.zeros(V, device=W_U.device)
    # |logit_v - (W_U β)_v| = |<γ⊙LN-normalised x, W_U[v]>| <= √C·max|γ|·max‖W_U[v]‖: below ~80 - ln V, exp() of
    # the unshifted logits can neither overflow nor underflow to a zero sum, so the log-sum-exp needs no row max
    lse_shift = (math.sqrt(W_U.size(1)) * gamma.abs().max() * W_U.norm(dim=1).max()).item() + math.log(V) > 80
    bias_max = bias.max()
    return LogitHead(gamma, W_U, bias, bias_max, (bias - bias_max).exp(), lse_shift)


class FeatureLogits(NamedTuple):
    centred: torch.Tensor  # (F, C) u_i - mean(u_i), u_i = feature i's direct effect on the final residual
    direct: torch.Tensor | None  # (F, V) Z_u = W_U(γ⊙centred): its effect on the logits before the LayerNorm's 1/σ;
    # None when it exceeds the memory budget: rows() then computes the rows asked for
    gamma: torch.Tensor  # (C,) ln_f.weight
    W_U: torch.Tensor  # (V, C)
    block_rows: int  # rows of Z_u that fit in the memory budget (pass 3 computes them a block at a time)

    def rows(self, idx, out: torch.Tensor | None = None) -> torch.Tensor:
        """Z_u of the features idx (a slice or an index tensor): (n, V), into out if given."""
        if self.direct is not None:
            return self.direct[idx] if out is None else torch.index_select(self.direct, 0, idx, out=out)
        return torch.matmul(self.centred[idx] * self.gamma, self.W_U.T, out=out)


def resid_direction(model: GPT, layer: int, site_kind: str, W: torch.Tensor) -> torch.Tensor:
    """Site directions (n, d_in) -> their direct effect on the residual stream (n, n_embd)."""
    if site_kind == 'mlp_hidden':
        return W @ model.transformer.h[layer].mlp.c_proj.weight.T  # (n, C)
    return W


@torch.no_grad()
def feature_logit_directions(head: LogitHead, U: torch.Tensor, dense_mb: float = float('inf')) -> FeatureLogits:
    """U (F, C) the features' residual directions -> FeatureLogits. Times E[1/σ] (the LayerNorm linearised)
    `direct` gives the logit weights; pass 3's exact ablation uses both. The (F, V) `direct` is kept only if it
    fits in dense_mb MB; else its rows are computed when asked for (FeatureLogits.rows)."""
    centred = U - U.mean(1, keepdim=True)  # LayerNorm removes the mean
    row_bytes = head.W_U.size(0) * 4
    if len(U) * row_bytes > dense_mb * 2 ** 20:
        return FeatureLogits(centred, None, head.gamma, head.W_U, max(64, int(dense_mb * 2 ** 20 // row_bytes)))
    direct = torch.cat([(centred[f0:f0 + 512] * head.gamma) @ head.W_U.T for f0 in range(0, len(U), 512)])
    return FeatureLogits(centred, direct, head.gamma, head.W_U, len(U))


# ----------------------------------------------------------------------------- pass 3: the shown windows

class Windows(NamedTuple):
    """Every shown window (W,), sorted by context: each feature's top examples, then its interval samples."""
    feat: torch.Tensor
    ctx: torch.Tensor
    pos: torch.Tensor  # the example token
    act: torch.Tensor  # its activation
    kind: torch.Tensor  # rank among the top examples (< top_k), or top_k + interval
    start: torch.Tensor  # first position shown
    end: torch.Tensor  # last position shown (inclusive); tokens are shown up to end + 1 (the last target)
    width: int  # 2·window + 1: positions a window can show


def select_windows(stats: Pass1, intervals: Pass2, window: int, T: int) -> Windows:
    """The top examples of pass 1 and the interval samples of pass 2, each with ±window tokens around it."""
    top_k, n_feat = stats.top_act.shape
    dev = stats.top_act.device
    found = stats.top_act > 0
    feat = [torch.arange(n_feat, device=dev).expand(top_k, n_feat)[found]]
    ctx, pos, act = [stats.top_ctx[found]], [stats.top_pos[found]], [stats.top_act[found]]
    kind = [torch.arange(top_k, device=dev)[:, None].expand(top_k, n_feat)[found]]
    s = intervals.samples
    if s is not None:
        n_buckets, S = s.key.shape
        n_int = n_buckets // n_feat
        filled = torch.isfinite(s.key)
        feat.append((torch.arange(n_buckets, device=dev) // n_int)[:, None].expand(n_buckets, S)[filled])
        ctx.append(s.ctx[filled])
        pos.append(s.pos[filled])
        act.append(s.act[filled])
        kind.append(top_k + (torch.arange(n_buckets, device=dev) % n_int)[:, None].expand(n_buckets, S)[filled])
    order = torch.argsort(torch.cat(ctx), stable=True)
    feat, ctx, pos, act, kind = (torch.cat(a)[order] for a in (feat, ctx, pos, act, kind))
    return Windows(feat, ctx, pos, act, kind, (pos - window).clamp(min=0), (pos + window).clamp(max=T - 1),
                   2 * window + 1)


class ShownWindows(NamedTuple):
    tokens: torch.Tensor  # (W, L+1) token ids from start to end + 1, -1 after
    acts: torch.Tensor  # (W, L) the feature's activation at start .. end, 0 after
    effects: torch.Tensor  # (W, L) log p(next token) clean - with the feature ablated, at start .. end


def pass3_windows(inputs: Inputs, contexts: Contexts, windows: Windows, mode: str, head: LogitHead,
                  directions: FeatureLogits, batch_size: int) -> ShownWindows:
    """Pass 3: the tokens, activations and ablation effects (mode 'local', 'rerun' or 'none') of every window."""
    n_win, L, T, dev = len(windows.ctx), windows.width, contexts.length, windows.ctx.device
    shown = ShownWindows(torch.full((n_win, L + 1), -1, dtype=torch.long, device=dev),
                         torch.zeros(n_win, L, device=dev), torch.zeros(n_win, L, device=dev))
    V = inputs.model.config.vocab_size
    pair_chunk = max(64, 2 ** 22 // V)  # (feature, position) pairs per ablation chunk: 16 MB per (pairs, V) buffer
    buffers = tuple(torch.empty(pair_chunk, V, device=dev) for _ in range(2)) if mode == 'local' else ()
    bounds = torch.searchsorted(windows.ctx, torch.tensor([b for b, _ in contexts.batches] + [contexts.n],
                                                          device=dev))
    for bi, (b0, b1) in enumerate(contexts.bar('pass 3/3: windows, ablation')):
        lo, hi = bounds[bi].item(), bounds[bi + 1].item()
        if lo == hi:
            continue
        tokens = contexts.read(b0, b1)
        f, r = encode_contexts(inputs, tokens)
        c, feat, start, end = windows.ctx[lo:hi] - b0, windows.feat[lo:hi], windows.start[lo:hi], windows.end[lo:hi]
        grid = start[:, None] + torch.arange(L + 1, device=dev)  # (W, L+1) positions
        shown.tokens[lo:hi] = torch.where(grid <= (end[:, None] + 1), tokens[c[:, None], grid.clamp(max=T)], -1)
        pos = grid[:, :L]
        a = f.view(-1, T, f.size(1))[c[:, None], pos.clamp(max=T - 1), feat[:, None]]
        a = torch.where(pos <= end[:, None], a, 0.0)
        shown.acts[lo:hi] = a
        if mode == 'none':
            continue
        wi, j = (a > 0).nonzero().unbind(1)  # firing positions: elsewhere the ablation changes nothing
        if mode == 'local':
            shown.effects[lo + wi, j] = local_ablation_effects(
                head, directions, r.reshape(-1, r.size(-1)), tokens[:, 1:].reshape(-1), feat[wi],
                c[wi] * T + pos[wi, j], a[wi, j], buffers)
        else:
            shown.effects[lo + wi, j] = rerun_ablation_effects(inputs, tokens, r, c, feat, end, wi, pos[wi, j],
                                                               batch_size)
    return shown


def local_ablation_effects(head: LogitHead, directions: FeatureLogits, resid: torch.Tensor, y_next: torch.Tensor,
                           feat: torch.Tensor, row: torch.Tensor, act: torch.Tensor,
                           buffers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Exact effect of removing act·u_feat from the final residual at one position, for M (feature, position) pairs.

    resid (N, C) final residual rows, y_next (N,) each row's next token; feat, row, act (M,) the pairs (row indexes
    resid). Returns (M,) log p(y_next) clean - ablated. Valid for a site in the last layer, where the removed
    contribution reaches only its own position's logits. buffers: two (chunk, V) float32 work buffers.
    """
    # LN(r - a·u) = γ⊙(r_c - a·u_c)/σ' + β, so its logits are (Z_r - a·Z_u)/σ' + W_U β with Z_r = W_U(γ⊙r_c)
    # per position and Z_u per feature: exact, without a (pairs x C x V) matmul. Chunks share positions.
    # a (feature, position) pair shown in two windows (e.g. a top example that is also an interval sample) is
    # computed once; pairs are sorted by position so that a chunk needs few Z_r rows. Without the whole Z_u
    # (past the memory budget) the pairs go by blocks of features whose Z_u rows are computed once for the batch
    n_rows, chunk = len(resid), len(buffers[0])
    pair, first = torch.unique(feat * n_rows + row, return_inverse=True)
    pair_feat, pair_row = pair // n_rows, pair % n_rows
    pair_act = torch.zeros(len(pair), device=resid.device).scatter_(0, first, act)
    effect = torch.empty(len(pair), device=resid.device)
    for in_block, Z_u, z_u_row in feature_blocks(directions, pair_feat):
        order = in_block[torch.argsort(pair_row[in_block], stable=True)]
        for m0 in range(0, len(order), chunk):
            o = order[m0:m0 + chunk]
            m, f_o, a_o = len(o), pair_feat[o], pair_act[o]
            rows, inv = torch.unique(pair_row[o], return_inverse=True)
            r_c = resid[rows] - resid[rows].mean(1, keepdim=True)  # (u, C) centred final residual
            z_clean = (r_c * head.gamma) @ head.W_U.T  # (u, V)
            r_abl = r_c[inv] - a_o[:, None] * directions.centred[f_o]  # (m, C) centred residual, feature removed
            z_abl = torch.index_select(z_clean, 0, inv, out=buffers[0][:m])
            z_u = (directions.rows(f_o, out=buffers[1][:m]) if Z_u is None
                   else torch.index_select(Z_u, 0, z_u_row[o], out=buffers[1][:m]))  # (m, V)
            z_abl.addcmul_(z_u, a_o[:, None], value=-1)  # Z_r - a·Z_u
            lp_abl = head.logprob_rows_(z_abl, (r_abl.pow(2).mean(1) + 1e-5).rsqrt(), y_next[pair_row[o]])
            lp_clean = head.logprob_rows_(z_clean, (r_c.pow(2).mean(1) + 1e-5).rsqrt(), y_next[rows])
            effect[o] = lp_clean[inv] - lp_abl
    return effect[first]


def feature_blocks(directions: FeatureLogits, feat: torch.Tensor) -> Iterator[tuple]:
    """The entries of feat (M,) by blocks of at most directions.block_rows distinct features, of even sizes: (their
    indices in feat, the block's Z_u rows (n, V), each entry's row in them (M,)). One block when Z_u is held whole;
    one block without rows (None, None: each entry's row computed with it) when features repeat less than twice
    on average, where rows made per block would cost as much and share fewer positions' Z_r.
    (Blocks of >= 64 rows: a GEMM of one row may round otherwise than the dense Z_u's.)"""
    every = torch.arange(len(feat), device=feat.device)
    if directions.direct is not None:
        yield every, directions.direct, feat
        return
    ids, row = torch.unique(feat, return_inverse=True)
    if len(feat) < 2 * len(ids):
        yield every, None, None
        return
    if not len(ids):
        return
    n_blocks = -(-len(ids) // directions.block_rows)
    for block in torch.arange(len(ids), device=feat.device).tensor_split(n_blocks):
        b0, b1 = int(block[0]), int(block[-1]) + 1
        yield ((row >= b0) & (row < b1)).nonzero()[:, 0], directions.rows(ids[b0:b1]), row - b0


@torch.no_grad()
def rerun_ablation_effects(inputs: Inputs, tokens: torch.Tensor, resid: torch.Tensor, win_ctx: torch.Tensor,
                           win_feat: torch.Tensor, win_end: torch.Tensor, wi: torch.Tensor, pos: torch.Tensor,
                           batch_size: int) -> torch.Tensor:
    """The model rerun per window with the site replaced by x - f_i·W_dec[i] (batch_size windows at a time).

    tokens (B, T+1), resid (B, T, C) their clean final residual; windows (W,): context in the batch, feature, last
    position; firings (M,): window wi at position pos. Returns (M,) log p(next token) clean - ablated."""
    model, site, final_site = inputs.model, inputs.site, inputs.final_site
    cw = win_ctx[wi]
    y = tokens[cw, pos + 1]
    effect = torch.empty(len(wi), device=tokens.device)
    for m0 in range(0, len(win_ctx), batch_size):
        rows = torch.arange(m0, min(m0 + batch_size, len(win_ctx)), device=tokens.device)
        feats = win_feat[rows]

        def ablate(xs: torch.Tensor, feats=feats) -> torch.Tensor:
            fi = inputs.sae.encode(xs.reshape(-1, xs.size(-1))).view(*xs.shape[:2], len(inputs.W_dec)).float()
            fi = fi.gather(2, feats[:, None, None].expand(-1, xs.size(1), 1))  # (W, T', 1)
            return xs - (fi * inputs.W_dec[feats][:, None, :]).to(xs.dtype)

        t_max = int(win_end[rows].max()) + 1
        with inputs.autocast:
            _, _, acts = model.run(tokens[win_ctx[rows], :t_max], capture=[final_site], replace={site: ablate},
                                   need_logits=False)
        r_abl = acts[final_site] if site != final_site else ablate(acts[final_site])  # capture is pre-replacement
        sel = ((wi >= m0) & (wi < m0 + len(rows))).nonzero()[:, 0]
        effect[sel] = (final_logprob(model, resid[cw[sel], pos[sel]], y[sel])
                       - final_logprob(model, r_abl[wi[sel] - m0, pos[sel]].float(), y[sel]))
    return effect


@torch.no_grad()
def final_logprob(model: GPT, resid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Final residual rows (M, C), next tokens (M,) -> log p(next token) (M,) through ln_f and the unembedding."""
    out = torch.empty(len(y), device=resid.device)
    for m0 in range(0, len(y), 1024):
        logits = model.lm_head(model.transformer.ln_f(resid[m0:m0 + 1024])).float()
        out[m0:m0 + 1024] = logits.gather(1, y[m0:m0 + 1024, None])[:, 0] - torch.logsumexp(logits, 1)
    return out


# ----------------------------------------------------------------------------- logit weights, neighbours, tokens

class LogitWeights(NamedTuple):
    top_ids: torch.Tensor  # (F, N_LOGITS) the tokens whose logits the feature raises most
    top: torch.Tensor  # (F, N_LOGITS) their weights
    bottom_ids: torch.Tensor  # (F, N_LOGITS) ... lowers most
    bottom: torch.Tensor
    hist: torch.Tensor  # (F, HIST_BINS) int64 histogram of all V weights over [lo, hi]
    lo: torch.Tensor  # (F,)
    hi: torch.Tensor  # (F,)


@torch.no_grad()
def logit_weights(directions: FeatureLogits, ln_scale: float) -> LogitWeights:
    """Z_u (F, V), by rows -> the logit weights Z_u·E[1/σ] (the LayerNorm's σ taken as the constant 1/E[1/σ])."""
    n_feat = len(directions.centred)
    w = LogitWeights(*(torch.zeros(n_feat, N_LOGITS, dtype=dt) for dt in (torch.long, None, torch.long, None)),
                     torch.zeros(n_feat, HIST_BINS, dtype=torch.long), torch.zeros(n_feat), torch.zeros(n_feat))
    for f0 in range(0, n_feat, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        lw = directions.rows(sl) * ln_scale  # (n, V)
        v, i = lw.topk(N_LOGITS, dim=1)
        w.top_ids[sl], w.top[sl] = i.cpu(), v.cpu()
        v, i = lw.topk(N_LOGITS, dim=1, largest=False)
        w.bottom_ids[sl], w.bottom[sl] = i.cpu(), v.cpu()
        lo, hi = lw.min(1).values, lw.max(1).values
        b = ((lw - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None] * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
        w.hist[sl] = torch.zeros(len(b), HIST_BINS, dtype=torch.long, device=lw.device).scatter_add_(
            1, b, torch.ones_like(b)).cpu()
        w.lo[sl], w.hi[sl] = lo.cpu(), hi.cpu()
    return w


class Neighbours(NamedTuple):
    cos_ids: torch.Tensor  # (F, k) nearest features by decoder cosine, k = min(N_NEIGHBOURS, F - 1)
    cos: torch.Tensor  # (F, k)
    coact_ids: torch.Tensor  # (F, k) most co-activating features (score -1: fewer co-fire)
    coact_score: torch.Tensor  # (F, k) Ochiai coefficient n(i and j) / sqrt(n(i)·n(j))
    coact_p: torch.Tensor  # (F, k) P(j fires | i fires)


@torch.no_grad()
def feature_neighbours(W_dec: torch.Tensor, coact: 'CoactCounts') -> Neighbours:
    """W_dec (F, d_in) decoder rows and coact (CoactCounts: (F, F) co-firing counts) -> each feature's neighbours."""
    n_feat, dev = len(W_dec), W_dec.device
    k = min(N_NEIGHBOURS, n_feat - 1)
    nb = Neighbours(*(torch.zeros(n_feat, k, dtype=dt) for dt in (torch.long, None, torch.long, None, None)))
    Wn = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n_coact = coact.diagonal().float()
    for f0 in range(0, n_feat if k > 0 else 0, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        rows = torch.arange(sl.start, sl.stop, device=dev)
        cs = Wn[sl] @ Wn.T  # (n, F) decoder cosines
        cs[rows - f0, rows] = -math.inf
        v, i = cs.topk(k, dim=1)
        nb.cos_ids[sl], nb.cos[sl] = i.cpu(), v.cpu()
        cc = coact.rows(sl).float()
        score = cc / (n_coact[sl, None] * n_coact[None, :]).sqrt().clamp_min(1e-12)
        score[rows - f0, rows] = -1
        score[cc == 0] = -1
        v, i = score.topk(k, dim=1)
        nb.coact_ids[sl], nb.coact_score[sl] = i.cpu(), v.cpu()
        nb.coact_p[sl] = (cc.gather(1, i) / n_coact[sl, None].clamp_min(1)).cpu()
    return nb


class TopTokens(NamedTuple):
    ids: torch.Tensor  # (F, n) the tokens each feature fires on most, n = min(N_TOP_TOKENS, V)
    counts: torch.Tensor  # (F, n) its firings on them (0: fewer distinct tokens)


def top_tokens(token_counts: 'TokenCounts') -> TopTokens:
    """token_counts (TokenCounts: (F, V) firings per token id) -> the tokens each feature fires on most."""
    n_feat, V = token_counts.shape
    top = TopTokens(torch.zeros(n_feat, min(N_TOP_TOKENS, V), dtype=torch.long),
                    torch.zeros(n_feat, min(N_TOP_TOKENS, V), dtype=torch.long))
    for f0 in range(0, n_feat, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        v, i = token_counts.rows(sl).topk(top.ids.size(1), dim=1)
        top.counts[sl], top.ids[sl] = v.long().cpu(), i.cpu()
    return top


# ----------------------------------------------------------------------------- example texts

class ExampleTexts(NamedTuple):
    starts: list[int]  # token offsets in <split>.bin
    length: int  # tokens per text
    texts: list[dict]  # data/examples.js (interface/README.md)


@torch.no_grad()
def example_texts(inputs: Inputs, file: TokenFile, n: int, length: int, batch_size: int,
                  rng: np.random.Generator) -> ExampleTexts:
    """n random texts of `length` tokens, each token with its active features (the strongest first)."""
    starts = pick_chunks(len(file), length, n, rng, f"{file.split}.bin in {file.data_dir}") if n else []
    n_feat, texts = len(inputs.W_dec), []
    for e0 in range(0, len(starts), batch_size):
        tokens = file.read(starts[e0:e0 + batch_size], length)
        with inputs.autocast:
            _, _, acts = inputs.model.run(tokens[:, :-1], capture=[inputs.site], need_logits=False)
            f = inputs.sae.encode(acts[inputs.site].reshape(-1, inputs.W_dec.size(1))).float()
        v, i = f.view(len(tokens), length, n_feat).topk(min(EXAMPLE_MAX_FEATURES, n_feat), dim=2)  # (B, T, k)
        for b, (vb, ib) in enumerate(zip(v.tolist(), i.tolist())):
            texts.append({'start': int(starts[e0 + b]), 'tokens': tokens[b, :-1].tolist(),
                          'features': [[fi for fv, fi in zip(vt, it) if fv > 0] for vt, it in zip(vb, ib)],
                          'acts': [[float(f'{fv:.4g}') for fv in vt if fv > 0] for vt in vb]})
    return ExampleTexts([int(s) for s in starts], length, texts)


# ----------------------------------------------------------------------------- the site

def load_vocab(data_dir: str, data_meta: dict, V: int) -> list:
    """Per token id: its text (valid UTF-8), or its bytes as a list of ints (partial UTF-8); '⟨id⟩' if unknown."""
    from tokenizer import load_tokenizer
    if data_meta.get('tokenizer') == 'bpe' and not data_meta.get('tokenizer_file'):
        print0(f"note: {data_dir}/meta.json names no tokenizer file; tokens are shown as ⟨id⟩")
        return [f'⟨{i}⟩' for i in range(V)]
    try:
        enc = load_tokenizer(data_dir)
    except UserError as e:  # e.g. gpt2's ranks not cached and no network: still a usable site
        print0(f"note: {e}; tokens are shown as ⟨id⟩")
        return [f'⟨{i}⟩' for i in range(V)]
    vocab = []
    for i in range(V):
        try:
            b = enc.decode_single_token_bytes(i)
        except (KeyError, ValueError):
            vocab.append(f'⟨{i}⟩')
            continue
        try:
            vocab.append(b.decode('utf-8'))
        except UnicodeDecodeError:
            vocab.append(list(b))
    return vocab


def sig(x: np.ndarray, digits: int) -> np.ndarray:
    return np.round(x.astype(np.float64), digits)


def js(obj) -> str:
    """Compact JSON (ASCII-only, so any token text is an escaped JS string literal)."""
    return json.dumps(obj, separators=(',', ':'), ensure_ascii=True, allow_nan=False)


def feature_summary(stats: Pass1, n_tokens: int) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """(F,) each: firings (CPU int64), density, max activation (CPU), mean activation where it fires."""
    n_fire = stats.n_fire.cpu()
    return (n_fire, (n_fire.double() / n_tokens).numpy(), stats.act_max.cpu(),
            (stats.act_sum.cpu() / n_fire.clamp_min(1)).numpy())


def index_data(meta: dict, stats: Pass1, fired_on: TopTokens, logits: LogitWeights) -> dict:
    """data/index.js: the run and a few numbers per feature (interface/README.md)."""
    n_fire, _, act_max, mean_act = feature_summary(stats, meta['n_tokens'])
    return {'meta': meta, 'n_fire': n_fire.tolist(), 'max': sig(act_max.numpy(), 4).tolist(),
            'mean': sig(mean_act, 4).tolist(),
            'top_tokens': [[t for t, n in zip(ts, ns) if n > 0][:3] for ts, ns in zip(fired_on.ids.tolist(),
                                                                                      fired_on.counts.tolist())],
            'top_logits': logits.top_ids[:, :3].tolist()}


def feature_records(stats: Pass1, intervals: Pass2, windows: Windows, shown: ShownWindows, logits: LogitWeights,
                    nb: Neighbours, fired_on: TopTokens, n_tokens: int) -> Iterator[dict]:
    """Each feature's record for features/NNNN.js (interface/README.md), in id order."""
    top_k, n_feat = stats.top_act.shape
    n_intervals = intervals.interval_count.size(1)
    n_fire, density, act_max, mean_act = feature_summary(stats, n_tokens)
    wf, wc, wp, wk, wa = (x.cpu().numpy() for x in (windows.feat, windows.ctx, windows.pos, windows.kind, windows.act))
    ws, we, wt = windows.start.cpu().numpy(), windows.end.cpu().numpy(), shown.tokens.cpu().numpy()
    w_acts, w_effects = sig(shown.acts.cpu().numpy(), 3), sig(shown.effects.cpu().numpy(), 4)
    order = np.lexsort((wk, wf))  # by feature, then top rank / interval
    first = np.searchsorted(wf[order], np.arange(n_feat + 1))
    hist, counts = intervals.hist.cpu().numpy(), intervals.interval_count.cpu().numpy()
    for fi in range(n_feat):
        top, samples = [], [[] for _ in range(n_intervals)]
        for w in order[first[fi]:first[fi + 1]]:
            s, n = int(ws[w]), int(we[w]) - int(ws[w]) + 1
            item = {'context': int(wc[w]), 'pos': int(wp[w]), 'act': float(wa[w]), 'start': s,
                    'tokens': wt[w, :n + 1].tolist(), 'acts': w_acts[w, :n].tolist(),
                    'effects': w_effects[w, :n].tolist()}
            (top if wk[w] < top_k else samples[wk[w] - top_k]).append(item)
        total, mx = max(int(n_fire[fi]), 1), float(act_max[fi])
        yield {
            'id': fi, 'n_fire': int(n_fire[fi]), 'density': float(density[fi]), 'max': round(mx, 4),
            'mean': round(float(mean_act[fi]), 4), 'hist': hist[fi].tolist(),
            'intervals': [{'lo': round(mx * j / n_intervals, 4), 'hi': round(mx * (j + 1) / n_intervals, 4),
                           'n': int(counts[fi, j]), 'share': round(int(counts[fi, j]) / total, 5),
                           'samples': samples[j]} for j in range(n_intervals)],
            'top': top,
            'top_tokens': [[t, n] for t, n in zip(fired_on.ids[fi].tolist(), fired_on.counts[fi].tolist()) if n > 0],
            'logits': {'pos': [[t, round(w, 4)] for t, w in zip(logits.top_ids[fi].tolist(), logits.top[fi].tolist())],
                       'neg': [[t, round(w, 4)] for t, w in zip(logits.bottom_ids[fi].tolist(),
                                                                logits.bottom[fi].tolist())],
                       'hist': logits.hist[fi].tolist(), 'lo': round(float(logits.lo[fi]), 4),
                       'hi': round(float(logits.hi[fi]), 4)},
            'cos': [[j, round(c, 4)] for j, c in zip(nb.cos_ids[fi].tolist(), nb.cos[fi].tolist())],
            'coact': [[j, round(c, 4), round(p, 4)] for j, c, p in zip(nb.coact_ids[fi].tolist(),
                                                                        nb.coact_score[fi].tolist(),
                                                                        nb.coact_p[fi].tolist()) if c > 0],
        }


def write_site(site_dir: str, vocab: list, index: dict, examples: list[dict], features: Iterator[dict],
               meta: dict, seconds: dict, t_start: float, t_write: float, quiet: bool = False) -> None:
    """One SAE's site (the assets but the sweep pages, and the data) written into the new folder site_dir."""
    shutil.copytree(ASSETS, site_dir, ignore=shutil.ignore_patterns('*.md', '__pycache__', *SWEEP_PAGES))
    os.makedirs(os.path.join(site_dir, 'data'), exist_ok=True)
    os.makedirs(os.path.join(site_dir, 'features'), exist_ok=True)

    def write_js(rel: str, text: str) -> None:
        with open(os.path.join(site_dir, rel), 'w', encoding='ascii') as fh:
            fh.write(text)

    write_js('data/vocab.js', f"window.VOCAB={js(vocab)};\n")
    write_js('data/index.js', f"window.INDEX={js(index)};\n")
    write_js('data/examples.js', f"window.EXAMPLES={js(examples)};\n")
    n_feat, shard = meta['n_features'], []
    for record in progress(features, total=n_feat, desc='writing feature data', disable=quiet):
        shard.append(js(record))
        if len(shard) == FEATURES_PER_FILE or record['id'] == n_feat - 1:
            write_js(os.path.join('features', f"{record['id'] // FEATURES_PER_FILE:04d}.js"),
                     f"loadFeatures([{','.join(shard)}]);\n")
            shard = []
    seconds = {**seconds, 'write': time.time() - t_write, 'total': time.time() - t_start}
    atomic_write_json(os.path.join(site_dir, 'meta.json'), {
        **meta, 'seconds': {k: round(v, 2) for k, v in seconds.items()}, 'complete': True})


def temp_dir_for(final_dir: str) -> str:
    """An empty-to-be temp folder next to final_dir, where its new contents are built (swap_in moves it)."""
    tmp_dir = f"{final_dir}.tmp{os.getpid()}"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return tmp_dir


def swap_in(tmp_dir: str, final_dir: str) -> str:
    """The finished folder replaces final_dir: readers see the old site or the new one, never a half-written one."""
    old_dir = f"{final_dir}.old{os.getpid()}"
    if os.path.exists(final_dir):
        os.replace(final_dir, old_dir)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old_dir, ignore_errors=True)
    return final_dir


# ----------------------------------------------------------------------------- analyze.py's report

N_EXPLAIN = 3  # patterns of each feature's explanation in INDEX.explain
ANALYSIS_KEYS = ('threshold', 'patterns', 'pattern_precision', 'pattern_fires', 'output', 'tp', 'fp', 'fn',
                 'precision', 'recall', 'f1', 'n_fire_explain', 'n_fire_score')  # of a unit, in a record's analysis


class SiteAnalysis(NamedTuple):
    """What a site shows of analyze.py's report on its SAE (interface/README.md)."""
    meta: dict  # INDEX.meta.analysis
    index: dict  # INDEX's per-feature arrays f1, explain, match
    records: list[dict]  # per feature, its record's `analysis`


def find_analysis(setting: str, out_dir: str, sae_path: str, n_features: int) -> SiteAnalysis | None:
    """The report the site shows. setting '': none; a path: that report, which must be a complete analysis of this
    SAE (UserError otherwise); 'auto': <out_dir>/analysis/report.json if it is complete, of this SAE and newer than
    its weights, else none (with one note when the file exists but does not apply)."""
    if setting and setting != 'auto':
        report, problem = check_report(setting, sae_path, n_features, check_age=False)
        if problem:
            raise UserError(f"--analysis={setting}: {problem}: pass the report.json of an analysis of this SAE "
                            f"(analyze.py), or --analysis='' for none")
        return site_analysis(report, setting, out_dir, report_side(report, sae_path))
    path = os.path.join(out_dir, 'analysis', 'report.json')
    if not setting or not os.path.isfile(path):
        return None
    report, problem = check_report(path, sae_path, n_features, check_age=True)
    if problem:
        print0(f"note: {path} is not shown: {problem} (rerun analyze.py, or set --analysis)")
        return None
    return site_analysis(report, path, out_dir, report_side(report, sae_path))


def report_side(report: dict, sae_path: str) -> str | None:
    """'a' or 'b': the run of the report whose SAE is the one at sae_path; None if neither."""
    here = os.path.realpath(sae_path)
    return next((side for side in ('a', 'b') if os.path.realpath(report['runs'][side]['sae']) == here), None)


def check_report(path: str, sae_path: str, n_features: int, check_age: bool) -> tuple[dict, str]:
    """(the report, '') if path holds a complete analyze.py report of the SAE at sae_path, with one unit per feature
    in id order (and, check_age, newer than the SAE's weights); else (its content, what is wrong in a few words)."""
    try:
        report = read_json(path)
        if report.get('complete') is not True:
            return report, "it is not complete (analyze.py did not finish)"
        side = report_side(report, sae_path)
        if side is None:
            runs = report['runs']
            return report, (f"it analyses the SAEs {runs['a']['sae']} and {runs['b']['sae']}, not "
                            f"{os.path.abspath(sae_path)}")
        key = 'features' if side == 'a' else 'features_b'
        units, best = report['interpretability'][key]['units'], report['universality'][key]['best']
        if [u['id'] for u in units] != list(range(n_features)) or len(best) != n_features:
            return report, f"its run {side} has {len(units)} features, the SAE has {n_features}"
    except UserError as e:
        return {}, str(e)
    except (KeyError, TypeError, AttributeError) as e:
        return {}, f"it is not an analyze.py report ({type(e).__name__}: {e})"
    weights = os.path.join(sae_path, 'sae_weights.safetensors')
    if check_age and os.path.getmtime(path) < os.path.getmtime(weights):
        return report, f"it is older than {weights}"
    return report, ''


def site_analysis(report: dict, path: str, out_dir: str, side: str) -> SiteAnalysis:
    """The site's view of a checked report: side 'a' shows interpretability.features and universality.features
    (best matches in run b), side 'b' features_b (best matches in run a); neurons are run A's. O(F)."""
    key, other = ('features', 'b') if side == 'a' else ('features_b', 'a')
    interp, univ = report['interpretability'], report['universality']
    units, best = interp[key]['units'], univ[key]['best']
    site_dir, folder = os.path.abspath(os.path.join(out_dir, 'interface')), os.path.dirname(os.path.abspath(path))
    other_site = os.path.relpath(os.path.join(os.path.abspath(report['runs'][other]['out_dir']), 'interface'),
                                 site_dir)
    plots = {name: os.path.relpath(os.path.join(folder, f'{name}.png'), site_dir).replace(os.sep, '/')
             if os.path.isfile(os.path.join(folder, f'{name}.png')) else None
             for name in ('interpretability', 'universality')}
    corr = {unit: {k: univ[part][k] for k in ('median_max_corr', 'mean_max_corr')}
            for unit, part in (('features', key), ('neurons', 'neurons'))}
    meta = {'report': os.path.abspath(path), 'side': side, 'other_site': other_site.replace(os.sep, '/') + '/',
            'rule': report['rule'],
            'tokens': {k: report['tokens'][k] for k in ('n_explain_tokens', 'n_score_tokens', 'n_tokens')},
            'summary': {'features': interp[key]['summary'], 'neurons': interp['neurons']['summary']},
            'universality': corr, 'plots': plots}
    index = {'f1': [u['f1'] for u in units], 'explain': [u['patterns'][:N_EXPLAIN] for u in units],
             'match': [[j, r] for j, r in best]}
    records = [{**{k: u[k] for k in ANALYSIS_KEYS}, 'match': {'feature': j, 'corr': r}}
               for u, (j, r) in zip(units, best)]
    return SiteAnalysis(meta, index, records)


# ----------------------------------------------------------------------------- a sweep's site

def build_sweep_site(sweep_dir: str, transformer: Transformer, config: dict) -> str:
    """<sweep_dir>/interface/: every SAE's site in <name>/ (build_site, with its relatives and INDEX.meta.sweep),
    the sweep page and the family pages, built in one temp folder swapped in when complete; returns its path."""
    import families as fam  # here, not at the top: families.py imports this module
    members = fam.sweep_members(sweep_dir)
    links = sweep_families(sweep_dir, members, transformer)
    final_dir = os.path.join(sweep_dir, 'interface')
    tmp_dir = temp_dir_for(final_dir)
    os.makedirs(tmp_dir)
    vocab = load_vocab(transformer.data_dir, transformer.data_meta, transformer.model.config.vocab_size)
    n_fam = len(links['families'])
    print0(f"{len(members)} SAEs of {sweep_dir} ({n_fam} famil{'y' if n_fam == 1 else 'ies'}), {n_contexts} contexts "
           f"each, device {transformer.device} ({transformer.dtype})")
    summaries = {}
    for i, m in enumerate(members):
        family = fam.family_of(links, m.name)
        relatives = ([f['relatives'] for f in family['features'][m.name]] if family else
                     [[] for _ in range(m.n_features)])
        sweep = {'member': m.name, 'family': family['name'] if family else None, 'root': '../'}
        summary = build_site(load_inputs(transformer, m.dir), os.path.join(tmp_dir, m.name), config, sweep,
                             relatives, vocab, verbose=False)
        summaries[m.name] = summary
        print0(f"[{i + 1}/{len(members)}] {m.name}: {m.n_features} features ({summary.n_dead} dead) "
               f"in {summary.seconds:.0f}s")
    write_sweep_root(tmp_dir, sweep_dir, members, links, summaries, vocab)
    return swap_in(tmp_dir, final_dir)


def sweep_families(sweep_dir: str, members: list, transformer: Transformer) -> dict:
    """<sweep_dir>/families.json (families.py), computed and written first when absent or stale (families.py's
    defaults; the sweep's SAEs of no family have no relatives: families [] when there is none)."""
    import families as fam
    data = fam.read_families(sweep_dir, members)
    if data is not None:
        return data
    if not fam.find_families(members):
        return {'families': []}
    print0(f"linking the features of the families of {sweep_dir} ({fam.FAMILIES_FILE} is absent or older than an "
           f"SAE; python families.py --sweep_dir={sweep_dir} sets its options)")
    data = fam.link_sweep(sweep_dir, members, transformer, split, fam.family_contexts, batch_size, fam.family_link,
                          seed)
    fam.write_families(sweep_dir, data)
    return data


def sweep_records(sweep_dir: str, members: list) -> list[dict]:
    """data/sweep.js's members: pareto.json's records (sweep.py) in its order, then the SAEs it lacks (their
    numbers null), each with the link to its site."""
    from sweep import PARETO_FIELDS
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
    """data/family_<NAME>.js's nodes: per member, per feature its parent and children (families.json) and the
    numbers its card shows (from its site's statistics)."""
    nodes = {}
    for li, member in enumerate(family['members']):
        feats, summary = family['features'][member], summaries[member]
        children = [[] for _ in feats]
        if li + 1 < len(family['members']):
            for j, f in enumerate(family['features'][family['members'][li + 1]]):
                children[f['parent']].append(j)
        nodes[member] = [{'parent': f['parent'], 'cos': f['parent_cos'], 'corr': f['parent_corr'],
                          'children': children[i], 'density': float(f'{summary.density[i]:.4g}'),
                          'max_act': round(float(summary.max_act[i]), 4),
                          'top_tokens': [vocab[t] for t in summary.top_tokens[i][:5]]} for i, f in enumerate(feats)]
    return nodes


def write_sweep_root(site_dir: str, sweep_dir: str, members: list, links: dict, summaries: dict[str, SiteSummary],
                     vocab: list) -> None:
    """The sweep site's own files: its pages (interface/sweep.html as index.html), pareto.png, data/sweep.js and
    data/family_<NAME>.js (interface/README.md)."""
    for name in SWEEP_PAGES + SWEEP_SHARED:
        if not os.path.isfile(os.path.join(ASSETS, name)):
            raise UserError(f"{os.path.join(ASSETS, name)} is missing: the repo's interface/ folder is incomplete")
        shutil.copyfile(os.path.join(ASSETS, name), os.path.join(site_dir, 'index.html' if name == 'sweep.html'
                                                                  else name))
    png = os.path.join(sweep_dir, 'pareto.png')
    if os.path.isfile(png):
        shutil.copyfile(png, os.path.join(site_dir, 'pareto.png'))
    os.makedirs(os.path.join(site_dir, 'data'))
    heads = [{k: f[k] for k in ('name', 'kind', 'members', 'sizes', 'link', 'n_tokens')} for f in links['families']]
    sweep = {'members': sweep_records(sweep_dir, members), 'families': heads,
             'pareto_png': 'pareto.png' if os.path.isfile(png) else None}
    with open(os.path.join(site_dir, 'data', 'sweep.js'), 'w', encoding='ascii') as fh:
        fh.write(f"window.SWEEP={js(sweep)};\n")
    for family, head in zip(links['families'], heads):
        with open(os.path.join(site_dir, 'data', f"family_{family['name']}.js"), 'w', encoding='ascii') as fh:
            fh.write(f"window.FAMILY={js({**head, 'nodes': family_nodes(family, summaries, vocab)})};\n")


if __name__ == '__main__':
    main()
