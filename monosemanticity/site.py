"""
The feature browsers of SAEs of one transformer (build_sites: a sweep's, or build_site: one SAE's): the passes
(feature_stats, logit_effects) over random contexts of a split, each batch of contexts through the transformer once
and fed to every SAE's passes (feed), then site by site its data files (their format: docs/browser.md) and the repo's
interface/ assets, written into a new folder. The builds take their settings as a SiteSettings (build_interface.py
makes it from its config).
"""
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Iterator, NamedTuple

import numpy as np
import torch

from monosemanticity.families import LINKS
from monosemanticity.common import REPO_ROOT, UserError, atomic_write_json, print0, progress
from monosemanticity.feature_stats import (HIST_BINS, ExampleFeatures, ExampleTexts, Neighbours, Pass1, Pass1Counts,
                                           Pass2, Pass2Counts, TopTokens, Windows, example_contexts, example_texts,
                                           feature_neighbours, select_windows, top_tokens)
from monosemanticity.logit_effects import (FeatureLogits, LogitHead, LogitWeights, Pass3Windows, ShownWindows,
                                           ablation_buffers, feature_logit_directions, logit_head, logit_weights,
                                           resid_direction)
from monosemanticity.neuronpedia import export_site as export_neuronpedia
from monosemanticity.runs import Contexts, Inputs, TokenFile, encode_batch, load_vocab, pick_contexts, run_batches
from monosemanticity.site_analysis import SiteAnalysis

ULTRALOW = 1e-5  # alive features below this density are "ultralow" (the paper's threshold)
FEATURES_PER_FILE = 64  # features/NNNN.js holds features NNNN*64 ... NNNN*64+63 (few files: fast to replace)
ASSETS = os.path.join(REPO_ROOT, 'interface')  # html, js, css copied to the site
SWEEP_PAGES = ('sweep.html', 'family.html', 'page_sweep.js', 'page_family.js')  # a sweep site's root only
SWEEP_SHARED = ('common.js', 'errors.js', 'style.css')  # also in a sweep site's root


@dataclass(frozen=True)
class SiteSettings:
    """How a site is built: build_interface.py's config keys of that name (their comments there). Checked when made:
    a value out of range raises UserError naming the key."""
    split: str = 'val'
    n_contexts: int = 2048
    batch_size: int = 32
    top_k: int = 20
    window: int = 8
    n_intervals: int = 12
    interval_samples: int = 5
    n_example_texts: int = 25
    example_length: int = 128
    coact_tokens: int = 65536
    dense_stats_mb: float = 256
    ablation: str = 'auto'
    seed: int = 1337
    neuronpedia: bool = False
    family_contexts: int = 64
    family_link: str = 'masked'
    family_threshold: float = 0.4
    family_min_density: float = 1e-5

    @classmethod
    def from_config(cls, config: dict) -> 'SiteSettings':
        """The settings among a script's config keys (the others are ignored)."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})

    def __post_init__(self) -> None:
        for name, lo in (('n_contexts', 1), ('batch_size', 1), ('top_k', 1), ('window', 0), ('n_intervals', 1),
                         ('interval_samples', 0), ('n_example_texts', 0), ('example_length', 2),
                         ('family_contexts', 1)):
            if getattr(self, name) < lo:
                raise UserError(f"{name}={getattr(self, name)} must be >= {lo}")
        if self.ablation not in ('auto', 'rerun', 'none'):
            raise UserError(f"ablation='{self.ablation}' is not 'auto', 'rerun' or 'none'")
        if self.family_link not in LINKS:
            raise UserError(f"family_link='{self.family_link}' is not one of {', '.join(LINKS)}")
        if not -1 <= self.family_threshold <= 1:
            raise UserError(f"family_threshold={self.family_threshold} must be in [-1, 1] (a cosine or a correlation)")
        if not 0 <= self.family_min_density <= 1:
            raise UserError(f"family_min_density={self.family_min_density} must be in [0, 1] (a share of the tokens)")


class SiteSummary(NamedTuple):
    """What a sweep site's pages need of one SAE's statistics."""
    density: np.ndarray  # (F,) share of the tokens each feature fires on
    max_act: np.ndarray  # (F,) its largest activation
    top_tokens: list[list[int]]  # per feature, the token ids it fires on most (most first)
    n_dead: int
    seconds: float  # its own passes, weights and pages (the forward passes it shares apart)


class SiteJob(NamedTuple):
    """One SAE's site to build: its inputs and new folder; in a sweep site its sweep (INDEX.meta.sweep) and relatives
    (per feature, its record's `relatives`); analysis (site_analysis.find_analysis): INDEX.meta.analysis, INDEX's
    f1/explain/match and each record's `analysis`."""
    inputs: Inputs
    site_dir: str
    sweep: dict | None = None
    relatives: list[list[dict]] | None = None
    analysis: SiteAnalysis | None = None


def build_site(inputs: Inputs, site_dir: str, settings: SiteSettings, config: dict, verbose: bool = True,
               analysis: SiteAnalysis | None = None) -> SiteSummary:
    """One SAE's site written into site_dir (a new folder): build_sites of one. config: the build's config, kept in
    meta.json."""
    return build_sites([SiteJob(inputs, site_dir, analysis=analysis)], settings, config, verbose=verbose)[0]


def build_sites(jobs: list[SiteJob], settings: SiteSettings, config: dict, vocab: list | None = None,
                verbose: bool = True) -> list[SiteSummary]:
    """The sites of SAEs of one transformer (a sweep's, or one SAE's), each written into its new folder: the passes
    over the same random contexts and the example texts, each batch of them through the transformer once for every
    SAE, the weights' panels, then site by site the pages. config: the build's config, kept in each meta.json."""
    t_start, s, first = time.time(), settings, jobs[0].inputs
    if any((j.inputs.model, j.inputs.context_length) != (first.model, first.context_length) for j in jobs):
        raise ValueError('the SAEs of one build read one transformer, with one context length')
    token_file = TokenFile(first.data_dir, s.split, first.data_meta['dtype'], first.device)
    contexts = pick_contexts(token_file, first.context_length, s.n_contexts, s.batch_size,
                             np.random.default_rng(s.seed), quiet=not verbose)
    modes = [ablation_mode(s.ablation, j.inputs) for j in jobs]
    if verbose and len(jobs) == 1:
        print0(f"{len(first.W_dec)} features of {first.site} ({first.architecture}), {contexts.n} contexts x "
               f"{contexts.length} tokens = {contexts.n_tokens:,} tokens of {first.data_dir}/{s.split}.bin; "
               f"ablation: {modes[0]}; device {first.device} ({first.dtype})")
    shared, seconds = {}, [{} for _ in jobs]  # the forward passes' seconds, shared; each site's own
    members = [j.inputs for j in jobs]
    panels = feature_panels(members, contexts, modes, s, seconds, shared)
    examples = example_panels(members, token_file, s, contexts.length, seconds, shared)
    vocab = vocab if vocab is not None else load_vocab(first.data_dir, first.data_meta, first.model.config.vocab_size)
    vocab_js = f"window.VOCAB={js(vocab)};\n"  # data/vocab.js: the same in every site
    summaries = []
    for i, job in enumerate(jobs):
        summaries.append(write_member(job, panels[i], examples[i], contexts, modes[i], s, config, vocab_js,
                                      seconds[i], shared, quiet=not verbose or len(jobs) > 1))  # a sweep: 1 line
        panels[i] = examples[i] = None  # its memory back before the next site's pages
        if verbose and len(jobs) > 1:
            print0(f"[{i + 1}/{len(jobs)}] {os.path.basename(job.site_dir)}: {len(job.inputs.W_dec)} features "
                   f"({summaries[-1].n_dead} dead) in {summaries[-1].seconds:.1f}s of its own")
    if verbose:
        print0(build_line(jobs, summaries, contexts, seconds, shared, time.time() - t_start))
    return summaries


def build_line(jobs: list[SiteJob], summaries: list[SiteSummary], contexts: Contexts, seconds: list[dict],
               shared: dict, wall: float) -> str:
    """The build's last line: what it made and where the time went."""
    part = {k: sum(sec.get(k, 0.0) for sec in seconds) for k in ('pass1', 'pass2', 'pass3', 'examples', 'weights',
                                                                  'write')}
    times = (f"transformer {shared.get('transformer', 0.0):.1f}s, passes {part['pass1']:.1f} + {part['pass2']:.1f} + "
             f"{part['pass3']:.1f}s, examples {part['examples']:.1f}s, weights {part['weights']:.1f}s, "
             f"pages {part['write']:.1f}s")
    if len(jobs) > 1:
        return f"{len(jobs)} SAEs' sites from {contexts.n_tokens:,} tokens in {wall:.0f}s ({times})"
    density = summaries[0].density
    ultralow = int(((density > 0) & (density < ULTRALOW)).sum())
    return (f"{len(density)} features ({summaries[0].n_dead} dead, {ultralow} ultralow) from {contexts.n_tokens:,} "
            f"tokens in {wall:.0f}s ({times})")


def write_member(job: SiteJob, panels: 'Panels', examples: ExampleTexts, contexts: Contexts, mode: str,
                 s: SiteSettings, config: dict, vocab_js: str, seconds: dict, shared: dict,
                 quiet: bool) -> SiteSummary:
    """One SAE's site: its data files (their format: docs/browser.md) and the assets, in its new folder. seconds:
    its own (the pages' added), shared: the forward passes' (both in meta.json)."""
    t_write, inputs, stats = time.time(), job.inputs, panels.stats
    n_feat = len(inputs.W_dec)
    run = {'n_features': n_feat, 'n_tokens': contexts.n_tokens, 'n_contexts': contexts.n,
           'context_length': contexts.length, 'site': inputs.site, 'architecture': inputs.architecture,
           'dataset': inputs.data_dir, 'split': s.split, 'transformer': os.path.abspath(inputs.ckpt_path),
           'sae': os.path.abspath(inputs.sae_path), 'ultralow': ULTRALOW, 'top_k': s.top_k, 'window': s.window,
           'n_intervals': s.n_intervals, 'interval_samples': s.interval_samples, 'hist_bins': HIST_BINS,
           'features_per_file': FEATURES_PER_FILE, 'ablation': mode, 'coact_tokens': stats.coact_tokens,
           'built': time.strftime('%Y-%m-%d %H:%M:%S'), **({'sweep': job.sweep} if job.sweep is not None else {}),
           **({'analysis': job.analysis.meta} if job.analysis is not None else {})}
    index = index_data(run, stats, panels.fired_on, panels.logits)
    if job.analysis is not None:
        index.update(job.analysis.index)
    features = feature_records(stats, panels.intervals, panels.windows, panels.shown, panels.logits,
                               panels.neighbours, panels.fired_on, contexts.n_tokens)
    if job.relatives is not None:
        features = ({**record, 'relatives': job.relatives[record['id']]} for record in features)
    if job.analysis is not None:
        features = ({**record, 'analysis': job.analysis.records[record['id']]} for record in features)
    meta = {**run, 'config': config, 'context_starts': contexts.starts.tolist(), 'example_starts': examples.starts,
            'example_length': examples.length, 'ln_scale': stats.ln_scale}
    write_site(job.site_dir, vocab_js, index, examples.texts, features, meta, {**shared, **seconds}, t_write, quiet)
    if s.neuronpedia:  # the same data in Neuronpedia's upload format, read back from the site
        export_neuronpedia(job.site_dir, inputs.model.config.n_layer, inputs.model.config.n_embd, quiet=quiet)
    seconds['write'] = time.time() - t_write
    n_fire, density, act_max, _ = feature_summary(stats, contexts.n_tokens)
    fired_on = [[t for t, c in zip(ts, cs) if c > 0] for ts, cs in zip(panels.fired_on.ids.tolist(),
                                                                        panels.fired_on.counts.tolist())]
    return SiteSummary(density, act_max.numpy(), fired_on, int((n_fire == 0).sum()), sum(seconds.values()))


class Panels(NamedTuple):
    """Every feature's numbers: the three passes' and the weights'."""
    stats: Pass1  # without its token and co-activation counts (read into fired_on and neighbours)
    intervals: Pass2
    windows: Windows
    shown: ShownWindows
    logits: LogitWeights
    neighbours: Neighbours
    fired_on: TopTokens


class WeightPanels(NamedTuple):
    """What one SAE's pass 1 and its weights give before passes 2 and 3."""
    stats: Pass1  # without its token and co-activation counts
    logits: LogitWeights
    neighbours: Neighbours
    fired_on: TopTokens
    directions: FeatureLogits | None  # for pass 3's local ablation; None in other modes


def feature_panels(members: list[Inputs], contexts: Contexts, modes: list[str], s: SiteSettings,
                   seconds: list[dict], shared: dict) -> list[Panels]:
    """Every SAE's panels: three passes over the contexts, each batch through the transformer once for all of them
    (feed); between passes 1 and 2, from the weights and pass 1's counts, the logit weights, neighbours and the
    tokens each feature fires on most (the counts, the passes' largest matrices, are then dropped)."""
    model, final, dev = members[0].model, members[0].final_site, members[0].W_dec.device
    sites = sorted({m.site for m in members})
    counts = [Pass1Counts(m, contexts, s.top_k, s.coact_tokens, s.dense_stats_mb) for m in members]
    feed(members, counts, contexts, sites + [final], 'pass 1/3: density, top-k', 'pass1', seconds, shared)
    head = logit_head(model)  # the transformer's: the same for every SAE
    weights = []
    for m, mode, sec in zip(members, modes, seconds):
        with timed(sec, 'weights'):
            weights.append(weight_panels(m, counts.pop(0).result(), head, mode, s.dense_stats_mb))
    intervals = [Pass2Counts(w.stats.act_max, contexts.length, s.n_intervals, s.interval_samples, s.seed)
                 for w in weights]
    feed(members, intervals, contexts, sites, 'pass 2/3: intervals', 'pass2', seconds, shared)
    buffers = ablation_buffers(model.config.vocab_size, dev) if 'local' in modes else ()
    windows = [select_windows(w.stats, i.result(), s.window, contexts.length) for w, i in zip(weights, intervals)]
    shown = [Pass3Windows(m, contexts, win, mode, head, w.directions, s.batch_size, buffers)
             for m, win, mode, w in zip(members, windows, modes, weights)]
    feed(members, shown, contexts, sites + [final], 'pass 3/3: windows, ablation', 'pass3', seconds, shared)
    return [Panels(w.stats, i.result(), win, sh.shown, w.logits, w.neighbours, w.fired_on)
            for w, i, win, sh in zip(weights, intervals, windows, shown)]


def weight_panels(inputs: Inputs, stats: Pass1, head: LogitHead, mode: str, dense_mb: float) -> WeightPanels:
    """From the weights and pass 1: the tokens each feature fires on most and its neighbours (then pass 1's counts
    are dropped), the logit directions and weights."""
    fired_on = top_tokens(stats.token_counts)
    neighbours = feature_neighbours(inputs.W_dec, stats.coact)
    stats = stats._replace(token_counts=None, coact=None)
    directions = feature_logit_directions(head, resid_direction(inputs.model, inputs.layer, inputs.site_kind,
                                                                inputs.W_dec), dense_mb)
    logits = logit_weights(directions, stats.ln_scale)
    return WeightPanels(stats, logits, neighbours, fired_on, directions if mode == 'local' else None)


def example_panels(members: list[Inputs], file: TokenFile, s: SiteSettings, T: int, seconds: list[dict],
                   shared: dict) -> list[ExampleTexts]:
    """Every SAE's example texts: the same random texts (their tokens read once), each batch of them through the
    transformer once for all the SAEs."""
    texts = example_contexts(file, s.n_example_texts, min(s.example_length, T), s.batch_size,
                             np.random.default_rng(s.seed + 1), quiet=True)
    tokens = texts.read(0, texts.n)[:, :-1].tolist() if texts.n else []
    feats = [ExampleFeatures(texts.length) for _ in members]
    feed(members, feats, texts, sorted({m.site for m in members}), 'example texts', 'examples', seconds, shared)
    return [example_texts(texts, tokens, f) for f in feats]


def feed(members: list[Inputs], passes: list, contexts: Contexts, capture: list[str], desc: str, part: str,
         seconds: list[dict], shared: dict) -> None:
    """One pass over the contexts for every SAE: each batch that an SAE's pass wants (passes[i].wants(b0, b1))
    through the transformer once (runs.run_batches; its seconds in shared['transformer']), the features each SAE's
    encoder makes of it fed to that SAE's pass (passes[i].add_(batch, f); its seconds in seconds[i][part])."""
    batches = run_batches(members[0].model, members[0].autocast, contexts, capture, desc,
                          wanted=lambda b0, b1: any(p.wants(b0, b1) for p in passes))
    while True:
        with timed(shared, 'transformer'):
            batch = next(batches, None)
        if batch is None:
            return
        for inputs, one, sec in zip(members, passes, seconds):
            if one.wants(batch.b0, batch.b1):
                with timed(sec, part):
                    one.add_(batch, encode_batch(inputs, batch))


@contextmanager
def timed(seconds: dict, name: str):
    """Adds the wall time of the block to seconds[name]."""
    t0 = time.time()
    yield
    seconds[name] = seconds.get(name, 0.0) + time.time() - t0


def ablation_mode(requested: str, inputs: Inputs) -> str:
    """'local' (exact formula: a site in the last layer reaches only its own position's logits), 'rerun', 'none'."""
    local_ok = (inputs.layer == inputs.model.config.n_layer - 1
                and inputs.site_kind in ('mlp_hidden', 'mlp_out', 'resid_post'))
    return 'none' if requested == 'none' else 'local' if (requested == 'auto' and local_ok) else 'rerun'


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
    """data/index.js: the run and a few numbers per feature (docs/browser.md)."""
    n_fire, _, act_max, mean_act = feature_summary(stats, meta['n_tokens'])
    return {'meta': meta, 'n_fire': n_fire.tolist(), 'max': sig(act_max.numpy(), 4).tolist(),
            'mean': sig(mean_act, 4).tolist(),
            'top_tokens': [[t for t, n in zip(ts, ns) if n > 0][:3] for ts, ns in zip(fired_on.ids.tolist(),
                                                                                      fired_on.counts.tolist())],
            'top_logits': logits.top_ids[:, :3].tolist()}


def feature_records(stats: Pass1, intervals: Pass2, windows: Windows, shown: ShownWindows, logits: LogitWeights,
                    nb: Neighbours, fired_on: TopTokens, n_tokens: int) -> Iterator[dict]:
    """Each feature's record for features/NNNN.js (docs/browser.md), in id order."""
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


def write_site(site_dir: str, vocab_js: str, index: dict, examples: list[dict], features: Iterator[dict],
               meta: dict, seconds: dict, t_write: float, quiet: bool = False) -> None:
    """One SAE's site (the assets but the sweep pages, and the data) written into the new folder site_dir; vocab_js:
    data/vocab.js's text. meta.json's seconds: seconds, the pages' (since t_write) and their total."""
    shutil.copytree(ASSETS, site_dir, ignore=shutil.ignore_patterns('*.md', '__pycache__', *SWEEP_PAGES))
    os.makedirs(os.path.join(site_dir, 'data'), exist_ok=True)
    os.makedirs(os.path.join(site_dir, 'features'), exist_ok=True)

    def write_js(rel: str, text: str) -> None:
        with open(os.path.join(site_dir, rel), 'w', encoding='ascii') as fh:
            fh.write(text)

    write_js('data/vocab.js', vocab_js)
    write_js('data/index.js', f"window.INDEX={js(index)};\n")
    write_js('data/examples.js', f"window.EXAMPLES={js(examples)};\n")
    n_feat, shard = meta['n_features'], []
    for record in progress(features, total=n_feat, desc='writing feature data', disable=quiet):
        shard.append(js(record))
        if len(shard) == FEATURES_PER_FILE or record['id'] == n_feat - 1:
            write_js(os.path.join('features', f"{record['id'] // FEATURES_PER_FILE:04d}.js"),
                     f"loadFeatures([{','.join(shard)}]);\n")
            shard = []
    seconds = {**seconds, 'write': time.time() - t_write}
    atomic_write_json(os.path.join(site_dir, 'meta.json'), {
        **meta, 'seconds': {k: round(v, 2) for k, v in {**seconds, 'total': sum(seconds.values())}.items()},
        'complete': True})


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
