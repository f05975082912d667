"""
Train a sparse autoencoder (SAE) on transformer activations: Anthropic's 2023 recipe (with neuron
resampling), its April 2024 update, or TopK with AuxK, selected by `kind`.

CPU demo (after the demo transformer and harvest):
    python train_sae.py config/demo/sae.py
The seed's run (4096 features, batch 8192, lr 3e-4, λ 1e-3, resampling 4x), one GPU or several:
    python train_sae.py config/sae.py
    torchrun --standalone --nproc_per_node=8 train_sae.py config/sae.py
No activation store on disk: --source=onthefly computes activations with the transformer as training goes.
Resume after a crash: --init_from=resume. --help lists every key; each SAE kind's own keys (k, auxk_dead_tokens,
jumprelu_bandwidth, ...) are declared, with their meaning, by the kind in autoencoder.py (its Params).
Many SAEs on the same batches (each batch read once and fed to every SAE: kinds, sizes, k, λ, lr), e.g. the demo's
families of sizes and sparsities (sweep.py describes the `sweep` key):
    python train_sae.py config/demo/sweep.py
    python train_sae.py config/demo/sweep.py --init_from=resume   # continues, skipping the SAEs already done

Writes <out_dir>/sae/ckpt.pt (resumable), metrics.json (every metric, config, tokens seen), and a
SAELens-loadable export (sae_weights.safetensors + cfg.json); a sweep writes the same files in
<out_dir>/sweep/<name>/ for each SAE, and the Pareto report <out_dir>/sweep/pareto.json + pareto.png.
"""
import os
import time

import numpy as np
import torch

from monosemanticity.store import ActivationStore, NonFiniteRows, OnTheFlySource
from autoencoder import (RECIPES, SAEConfig, SparseAutoencoder, config_dict, init_from_data_, kind_params,
                         load_saelens, make_adam, resample_dead_, saelens_cfg, save_saelens, silent_latents,
                         sparse_step_pays, train_step_)
from monosemanticity.common import (PTDTYPE, atomic_write_json, data_dir_of, ddp_cleanup, ddp_setup, die,
                                    exit_on_user_error, get_device, load_checkpoint, load_data_meta,
                                    max_rank_divergence, next_command, print0, progress, read_json, rng_state,
                                    save_checkpoint, set_rng_state, token_memmap, token_windows)
from model import load_gpt, parse_site, site_name
from monosemanticity.concept_axis import add_axis, axis_line, concept_axis
from monosemanticity.concept_report import load_concept_labels
from monosemanticity.metrics import evaluate_saes, summary_line, val_contexts
from monosemanticity.sweep import Member, make_recipe, pareto_table, plan_sweep, resample_windows, write_pareto
from configurator import configure

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out'  # the run folder: reads <out_dir>/activations/, writes <out_dir>/sae/
activations_dir = ''  # '' = <out_dir>/activations
source = 'store'  # 'store' (a harvested activation store) or 'onthefly' (run the transformer as training goes)
transformer_ckpt = ''  # '' = <out_dir>/transformer/ckpt.pt (needed for evaluation and for source='onthefly')
init_from = 'scratch'  # 'scratch' or 'resume' (from <out_dir>/sae/ckpt.pt)
# the autoencoder
kind = 'anthropic2023'  # 'anthropic2023' (the paper, the seed), 'april2024', 'topk', ... (autoencoder.KINDS)
n_features = 4096  # dictionary size
normalize = 'none'  # 'layer_norm': per-token normalised inputs (openai/sparse_autoencoder's LN), any kind
weight_init = 'paper'  # 'paper': each kind's published initialisation; 'tied': the 2024 tied start for any kind
k_aux = 0  # the TopK family's AuxK: dead latents it decodes; 0 = the kind's authors' (topk d_in/2, others 512)
aux_coeff = 1 / 32  # the TopK family's AuxK weight (Gao et al. 2024 and the BatchTopK authors: 1/32)
# each kind's own keys (topk: k, auxk_dead_tokens; batchtopk: topk_threshold_lr; jumprelu: jumprelu_bandwidth, ...):
# declared with their kind in autoencoder.py, its Params (default and meaning of each); --help lists them
globals().update(kind_params())
# optimisation: None = the kind's published value (autoencoder.RECIPES; --help shows the values in effect)
l1_coeff = None  # λ of the sparsity penalty; anthropic2023: the paper's λ (both average the MSE over d), seed 1e-3
lr = None  # Adam learning rate (anthropic2023 3e-4, april2024 5e-5, topk 1e-4)
warmup_frac = None  # lr warm-up over this first fraction of max_steps (0 for every kind)
warmup_steps = None  # lr warm-up over this many first steps instead (jumprelu: 1000, Gemma Scope)
warmup_shape = None  # lr warm-up 'linear' (from ~0) or 'cosine' (from warmup_start·lr; jumprelu)
warmup_start = None  # warmup_shape='cosine': the first step's lr as a fraction of lr (jumprelu: 0.1)
decay_frac = None  # lr linear decay to 0 over this last fraction of max_steps (april2024: 0.2)
l1_warmup_frac = None  # λ linear warm-up from 0 over this first fraction of max_steps (april2024: 0.05)
l1_warmup_steps = None  # λ linear warm-up from 0 over this many first steps instead (jumprelu: 10,000)
grad_clip = None  # clip the gradient norm at this value, 0 = off (april2024: 1.0)
adam_betas = None  # Adam (β1, β2): (0.9, 0.999) for every kind
adam_eps = None  # Adam ε (topk: 6.25e-10 as openai/sparse_autoencoder; others 1e-8)
batch_size = 8192  # activation rows per step (per rank)
max_steps = 500000
autocast_dtype = 'float32'  # 'bfloat16' runs the SAE's matmuls in bf16 (parameters and Adam stay fp32)
# topk, batchtopk, matryoshka_batchtopk: the sparse step (autoencoder.sparse_topk_loss: decoding and every gradient
# from the k kept codes, the encoder GEMM the only dense product; the dense step's loss and gradients to float
# rounding) or the dense one (autograd through (B, F)). 'auto': the sparse step where it is the faster,
# F >= 1024 and F >= 32·k (autoencoder.sparse_step_pays, measured by bench/sparse_step.py); True / False: always
sparse_topk = 'auto'
# neuron resampling (anthropic2023)
resample_steps = (25000, 50000, 75000, 100000)  # resample dead neurons at these steps; () = never
resample_rows = 819200  # rows whose loss decides where dead neurons go
geometric_median_rows = 65536  # rows for b_dec's geometric-median init (and the dataset mean)
# data stream
shuffle_buffer = 262144  # rows mixed in the reader's shuffle buffer
site = ''  # source='onthefly': the hook site ('' = the last block's mlp_hidden); a store knows its own
onthefly_contexts = 32  # source='onthefly': contexts per transformer forward
onthefly_tokens_per_context = 200  # source='onthefly': positions sampled per context (capped at block_size)
# evaluation
eval_interval = 5000  # evaluate every this many steps (and at the end)
eval_contexts = 64  # val contexts per periodic evaluation (all positions of each)
final_eval_contexts = 1024  # val contexts for the final metrics (density, dead, ultralow, CE losses)
concept_contexts = 256  # val contexts of the final concept axis: each SAE's best feature per ground-truth concept
# (monosemanticity/concept_axis.py), when the dataset has concept labels (label_concepts.py); 0 = none
eval_batch_size = 16  # contexts per transformer forward in evaluation
ckpt_interval = 2000  # save ckpt.pt every this many steps
# logging
log_interval = 100
wandb_log = False  # works offline with WANDB_MODE=offline
wandb_project = 'monosemanticity'
wandb_run_name = 'sae'
# many SAEs on one stream
sweep = []  # [] = one SAE in <out_dir>/sae/; else dicts of SAE keys with a name each (config/demo/sweep.py)
# system
device = 'auto'
seed = 0
_recipe_unset: list[str] = []  # recipe keys the run left at None: a sweep's SAE of another kind takes its kind's


def _config_defaults(g: dict) -> tuple[str, dict]:
    """The published recipe of the configured kind fills the optimisation keys left at None (configurator.py)."""
    _recipe_unset[:] = [k_ for k_ in RECIPES.get(g['kind'], RECIPES['anthropic2023']) if g.get(k_) is None]
    return f"kind={g['kind']!r} default", dict(RECIPES.get(g['kind'], RECIPES['anthropic2023']))


# -----------------------------------------------------------------------------
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

device = get_device(device)
ddp, ddp_rank, ddp_local_rank, world_size, device = ddp_setup(device)
master = ddp_rank == 0
if autocast_dtype not in ('float32', 'bfloat16', 'float16'):
    die(f"autocast_dtype '{autocast_dtype}' is not float32, bfloat16 or float16")
if init_from not in ('scratch', 'resume'):
    die(f"init_from '{init_from}' is not 'scratch' or 'resume'")
sparse_topk = str(sparse_topk).lower()
if sparse_topk not in ('auto', 'true', 'false'):
    die(f"sparse_topk '{sparse_topk}' is not auto, True or False")
sae_dir, sweep_dir = os.path.join(out_dir, 'sae'), os.path.join(out_dir, 'sweep')
activations_dir = activations_dir or os.path.join(out_dir, 'activations')
transformer_ckpt = transformer_ckpt or os.path.join(out_dir, 'transformer', 'ckpt.pt')
torch.manual_seed(seed)

# ----------------------------------------------------------------------------- the transformer and the data
tckpt = load_checkpoint(transformer_ckpt, device, hint='run train_transformer.py first (or set transformer_ckpt)')
gpt = load_gpt(tckpt, device)
for p in gpt.parameters():
    p.requires_grad_(False)
data_dir = data_dir_of(tckpt.get('data', {}).get('dataset') or tckpt['config']['dataset'])
data_meta = load_data_meta(data_dir)
val = token_memmap(data_dir, 'val', data_meta['dtype'])
concept_labels = load_concept_labels(data_dir, 'val', len(val)) if concept_contexts else None  # checked at the start
if concept_contexts and concept_labels is None:
    print0(f"note: no concept labels in {data_dir}: metrics.json gets no concept axis (for a Python or folder corpus: "
           f"`python label_concepts.py --data_dir={data_dir}` before training)")
if source == 'store':
    store = ActivationStore(activations_dir)
    if site and site != store.meta['site']:
        die(f"site='{site}' but the store in {activations_dir} holds {store.meta['site']}")
    site = store.meta['site']
    data: ActivationStore | OnTheFlySource = store
    context_length = store.meta['context_length']
    tokens_per_context = store.meta['tokens_per_context']
elif source == 'onthefly':
    site = site or site_name(gpt.config.n_layer - 1, 'mlp_hidden')
    context_length = gpt.config.block_size
    tokens_per_context = min(onthefly_tokens_per_context, context_length)
    data = OnTheFlySource(gpt, data_dir, 'train', site, context_length, tokens_per_context, onthefly_contexts,
                          seed + 1000 * ddp_rank, device, shuffle_buffer)
else:
    die(f"source '{source}' is not 'store' or 'onthefly'")
layer, _ = parse_site(site)
d_in = data.d


init_rng = torch.get_rng_state()  # every SAE starts from this state, as a run of it alone would


def rows_sample(n: int, salt: int) -> torch.Tensor:
    """n random activation rows (fp32, on device) for initialisation and resampling."""
    return data.sample(n, seed=seed * 7919 + salt).to(device, torch.float32)


_init_rows: list[torch.Tensor] = []


def shared_init_rows() -> torch.Tensor:
    """The geometric_median_rows rows every new SAE is initialised from (sampled once, checked finite)."""
    if not _init_rows:
        init_rows = rows_sample(geometric_median_rows, salt=0)
        if not torch.isfinite(init_rows).all():
            die(f"the activation rows hold non-finite values ({int((~torch.isfinite(init_rows)).any(1).sum())} of "
                f"{len(init_rows)} sampled rows): harvest again with generate_activations.py (--dtype=float32 if "
                f"float16 overflowed)")
        _init_rows.append(init_rows)
    return _init_rows[0]


def tag(m: Member) -> str:
    """The prefix of a sweep SAE's log lines ('' in a single run)."""
    return f"{m.name}: " if sweep else ''


# ----------------------------------------------------------------------------- the SAEs and their optimizers
def build(m: Member) -> torch.Tensor | None:
    """m's SAE, recipe and optimizer, resumed from m.dir/ckpt.pt (init_from='resume'; in a sweep, if it exists)
    or initialised from the data. Returns the data mean its checkpoint holds (None for a new SAE)."""
    c = m.conf
    torch.set_rng_state(init_rng)
    m.sae = sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_features=c['n_features'], kind=c['kind'],
                                              normalize=c['normalize'], weight_init=c['weight_init'],
                                              k_aux=c['k_aux'], aux_coeff=c['aux_coeff'],
                                              **{key: c[key] for key in kind_params()}),
                                    device=device)
    m.sparse = sparse_step_pays(sae.cfg) if sparse_topk == 'auto' else sparse_topk == 'true' and sae.kind.sparse
    m.recipe = make_recipe(c, max_steps)
    m.opt = make_adam(sae, m.recipe.lr, m.recipe.adam_betas, m.recipe.adam_eps)
    m.resample_gen = torch.Generator().manual_seed(seed + 1)
    m.window_tokens = resample_windows(c['resample_steps'], max_steps, batch_size * world_size) \
        if m.sae.kind.resamples else {}
    path = os.path.join(m.dir, 'ckpt.pt')
    if init_from == 'resume' and (not sweep or os.path.isfile(path)):
        ck = load_checkpoint(path, device, hint='nothing to resume: use --init_from=scratch')
        if SAEConfig(**ck['sae_config']) != m.sae.cfg:
            die(f"{path} holds a {ck['sae_config']} SAE, not the configured one: "
                f"use the same kind/n_features/k or another out_dir")
        m.sae.load_state_dict(ck['sae'])
        m.opt.load_state_dict(ck['optimizer'])
        m.step = m.first_step = ck['step']
        m.resample_gen.set_state(ck['resample_rng'])
        m.resampled = ck.get('resampled', [])
        set_rng_state(ck['rng'])
        print0(f"resuming from {path} at step {m.step}")
        return ck['data_mean'].to(device)
    init_rows = shared_init_rows()
    init_from_data_(sae, init_rows)  # the kind's input scale, MSE normaliser, b_dec at the geometric median
    if ddp:  # rank 0's initialisation everywhere
        for t in [*sae.parameters(), *sae.buffers()]:
            torch.distributed.broadcast(t.data, 0)
    return None


if sweep:
    plans = plan_sweep(sweep, config, _recipe_unset, RECIPES)
    members = [Member(c['name'], os.path.join(sweep_dir, c['name']), c) for c in plans]
    done = [m for m in members if init_from == 'resume' and os.path.isfile(os.path.join(m.dir, 'metrics.json'))]
    members = [m for m in members if m not in done]
    print0(f"sweep of {len(plans)} SAEs in {sweep_dir}" + (f"; done, skipped: {', '.join(m.name for m in done)}"
                                                            if done else ''))
else:
    members, done = [Member('sae', sae_dir, config)], []
# SAEs done before the dataset had concept labels: their concept axis is added at the end, nothing is retrained
unscored = [m for m in done if concept_labels is not None
            and 'concepts' not in read_json(os.path.join(m.dir, 'metrics.json'))]
data_means = [build(m) for m in members]
data_mean = next((mu for mu in data_means if mu is not None), None)
if data_mean is None and members:
    data_mean = shared_init_rows().mean(0)  # the dataset mean, for mean-ablation CE
    if ddp:
        torch.distributed.broadcast(data_mean, 0)
_init_rows.clear()
step = min((m.step for m in members), default=max_steps)  # an SAE ahead of it waits for the stream to catch up
batches = data.batches(batch_size, seed=seed + 1000 * ddp_rank, start=step, shuffle_buffer=shuffle_buffer)
cdt = None if autocast_dtype == 'float32' else PTDTYPE[autocast_dtype]


# ----------------------------------------------------------------------------- evaluation
ablation_ce: dict[int, dict] = {}  # n_contexts -> evaluate_saes' zero/mean-ablation CE sums per batch (SAE-free)


def evaluate(ms: list[Member], n_contexts: int) -> list[dict]:
    """The metrics of the SAEs of ms, evaluated together (evaluate_saes: each batch's clean and ablated passes once
    for all of them) on val_contexts(len(val), context_length, n_contexts)."""
    starts, T = val_contexts(len(val), context_length, n_contexts)
    n_contexts = len(starts)

    def batches():
        for i in progress(range(0, n_contexts, eval_batch_size), desc='eval', unit='batch', leave=False,
                          disable=not master):
            idx = token_windows(val, starts[i:i + eval_batch_size], T + 1).to(device)  # (B, T+1)
            yield idx[:, :-1], idx[:, 1:]

    cache = ablation_ce.setdefault(n_contexts, {})  # the same contexts at every eval: ablation CEs computed once
    results = evaluate_saes([m.sae for m in ms], gpt, site, batches(), data_mean, cache)
    return [{**r, 'eval_contexts': n_contexts} for r in results]


def nonfinite_weights(m: Member) -> dict[str, int]:
    """The SAE tensors of m holding NaN/inf: name -> how many such values."""
    return {name: int((~torch.isfinite(t)).sum()) for name, t in [*m.sae.named_parameters(), *m.sae.named_buffers()]
            if t.is_floating_point() and not torch.isfinite(t).all()}


def check_finite_weights(m: Member, where: str) -> None:
    """Stop with one line if any SAE tensor holds NaN/inf (nothing is saved from such a model)."""
    for name, n_bad in nonfinite_weights(m).items():
        die(f"{where}: {tag(m)}the SAE's {name} holds {n_bad} non-finite values; "
            f"nothing was saved (lower --lr, or check the activations)")


def save(m: Member, final: bool = False) -> None:
    """m.dir/ckpt.pt, atomically: everything an exact resume of this SAE needs (its stream position is its step)."""
    check_finite_weights(m, f"step {m.step}")
    positions = [m.step]
    if ddp:
        positions = [0] * world_size
        torch.distributed.all_gather_object(positions, m.step)
    if master:
        save_checkpoint({'sae': m.sae.state_dict(), 'sae_config': config_dict(m.sae), 'optimizer': m.opt.state_dict(),
                         'step': m.step, 'data_pos': positions, 'data_mean': data_mean.cpu(), 'rng': rng_state(),
                         'resample_rng': m.resample_gen.get_state(), 'resampled': m.resampled, 'config': m.conf,
                         'site': site, 'transformer_ckpt': transformer_ckpt, 'complete': final},
                        os.path.join(m.dir, 'ckpt.pt'))


# ----------------------------------------------------------------------------- the steps of the loop
def resample(m: Member, step: int) -> None:
    """Resample the latents silent over this step's window (Kind.resamples) and record it."""
    sae, opt, resample_gen, resample_rows = m.sae, m.opt, m.resample_gen, m.conf['resample_rows']
    dead = silent_latents(sae, m.window_tokens[step])
    n_dead = int(dead.sum())
    if n_dead:
        resample_dead_(sae, opt, dead, rows_sample(resample_rows, salt=step), generator=resample_gen)
        if ddp:  # every rank resampled the same neurons; take rank 0's rows
            for t in (sae.W_enc, sae.b_enc, sae.W_dec):
                torch.distributed.broadcast(t.data, 0)
    m.resampled.append({'step': step, 'n_dead': n_dead, 'window_tokens': m.window_tokens[step]})
    share = n_dead / m.conf['n_features']
    bar.write(f"{tag(m)}step {step}: resampled {n_dead} dead neurons ({share:.1%})") if master else None


def next_batch() -> torch.Tensor:
    """The next (batch_size, d) activation rows on device."""
    try:
        return next(batches).to(device, non_blocking=True)
    except NonFiniteRows as e:  # source='onthefly': the transformer produced NaN/inf
        die(f"step {step}: {e}")


def stop_if_not_finite(m: Member, stats: dict, x: torch.Tensor) -> None:
    """Stop with one line at a non-finite loss (one scalar to check: < 1% of a step, bench.sae_step)."""
    if not torch.isfinite(stats['loss']):
        what = 'batch holds non-finite activations' if not torch.isfinite(x).all() else 'loss is non-finite'
        bar.leave = False  # erase the bar: the error is the one line left on the screen
        bar.close()
        die(f"step {step}: {tag(m)}the {what} ({stats['loss'].item()}); stopped without writing metrics.json or "
            f"the export (ckpt.pt keeps the last good checkpoint): check the activations (harvest again, with "
            f"--dtype=float32 if float16 overflowed) or lower --lr")


def tokens_per_s() -> float:
    """Training throughput of this process so far (rows of the stream per second, every SAE fed)."""
    return (step - step_start) * batch_size * world_size / max(time.time() - t_start, 1e-9)


def log_train(m: Member, stats: dict) -> None:
    if not sweep:
        bar.set_postfix(mse=f"{stats['mse'].item():.3g}", l0=f"{stats['l0'].item():.1f}",
                        dead=f"{silent_latents(m.sae, 20 * batch_size).float().mean().item():.0%}",
                        tok_s=f'{tokens_per_s():,.0f}', refresh=False)
    if m.run is not None:
        m.run.log({'step': m.step, 'train/mse': stats['mse'].item(), 'train/l0': stats['l0'].item(),
                   'train/l1': stats['l1'].item(), 'train/aux': stats['aux'].item(),
                   'train/loss': stats['loss'].item(), 'lr': stats['lr'], 'l1_coeff': stats['l1_coeff'],
                   'tokens_per_s': tokens_per_s()})


def log_eval(m: Member, r: dict) -> None:
    bar.write(f"step {m.step}: {tag(m)}{summary_line(r)}") if master else None
    if m.run is not None:
        hist = np.repeat(r['density_hist']['edges'][:-1], r['density_hist']['counts'])
        m.run.log({'step': m.step, **{f'eval/{k_}': v for k_, v in r.items() if isinstance(v, (int, float))},
                   'eval/log10_density': wandb.Histogram(hist) if len(hist) else None})


def train_member_step(m: Member, x: torch.Tensor) -> None:
    """One step of m on the batch x (B, d), then its logging and checkpoint as their intervals say."""
    t0 = time.perf_counter()
    stats = train_step_(m.sae, m.opt, x, m.step, m.recipe, cdt, want_l0=(m.step + 1) % log_interval == 0,
                        sparse=m.sparse)
    stop_if_not_finite(m, stats, x)
    m.seconds += time.perf_counter() - t0
    m.step += 1
    if m.step % log_interval == 0 and master:
        log_train(m, stats)
    if m.step % ckpt_interval == 0 and m.step < max_steps:
        save(m)


def announce(m: Member) -> None:
    """The start-up lines of one SAE: its shape, data, recipe and resampling."""
    c, r = m.conf, m.recipe
    how = f", {'sparse' if m.sparse else 'dense'} step (sparse_topk {sparse_topk})" if m.sae.kind.sparse else ''
    print0(f"{tag(m)}SAE {c['kind']}: {d_in} -> {c['n_features']} features on {site} ({source}: "
           f"{data.n_rows if source == 'store' else 'on the fly'} rows), batch {batch_size} x {world_size} rank(s), "
           f"{max_steps} steps, {device} {autocast_dtype}{how}")
    warm = f"{r.warmup_steps} steps" if r.warmup_steps else f"{r.warmup_frac:g} of the run"
    l1_warm = f"{r.l1_warmup_steps} steps" if r.l1_warmup_steps else f"{r.l1_warmup_frac:g} of the run"
    print0(f"{tag(m)}recipe: lr {r.lr:g} ({r.warmup_shape} warm-up over {warm}, decay over {r.decay_frac:g} of the "
           f"run), l1_coeff {r.l1_coeff:g} (warm-up over {l1_warm}), grad_clip {r.grad_clip:g}, "
           f"Adam betas {r.adam_betas} eps {r.adam_eps:g}, normalize {c['normalize']}")
    if m.sae.kind.resamples:
        if m.window_tokens:
            print0(f"{tag(m)}resampling dead neurons at steps {', '.join(str(s_) for s_ in sorted(m.window_tokens))}")
        else:
            print0(f"{tag(m)}note: no resampling will happen: no resample_steps in (0, max_steps={max_steps}) "
                   f"(resample_steps={tuple(c['resample_steps'])})")


# ----------------------------------------------------------------------------- final evaluation and outputs
def finish(m: Member, r: dict | None, elapsed: float, concepts: dict | None) -> None:
    """After m's final evaluation r (None if its weights are not finite: the run stops here, naming it) and its
    concept axis (None: no labels), its complete checkpoint, SAELens export and metrics.json (written last)."""
    check_finite_weights(m, 'after training')
    bad = [k_ for k_ in ('mse', 'fvu', 'l0', 'ce_clean', 'ce_spliced', 'kl_spliced') if not np.isfinite(r[k_])]
    if bad:
        die(f"{tag(m)}the final evaluation gave non-finite {', '.join(bad)}: nothing written (check the transformer)")
    save(m, final=True)
    if not master:
        return
    seconds = elapsed if not sweep else m.seconds  # a sweep's SAE: the time of its own steps
    tokens_seen = m.step * batch_size * world_size
    metrics = {k_: v for k_, v in r.items() if k_ != 'density'}
    metrics.update(kind=m.conf['kind'], site=site, d_in=d_in, n_features=m.conf['n_features'], steps=m.step,
                   tokens_seen=tokens_seen, train_seconds_this_run=round(seconds, 1),
                   tokens_per_s_this_run=round((m.step - m.first_step) * batch_size * world_size / max(seconds, 1e-9)),
                   density_window_tokens=r['eval_tokens'], resampled=m.resampled, config=m.conf)
    metrics['density'] = [round(v, 8) for v in r['density'].tolist()]
    if concepts is not None:
        metrics['concepts'] = concepts
    cfg = saelens_cfg(m.sae, site, model_name=os.path.abspath(transformer_ckpt), hook_layer=layer,
                      context_size=context_length)
    save_saelens(m.sae, m.dir, cfg)
    atomic_write_json(os.path.join(m.dir, 'metrics.json'), metrics)
    print(f"{tag(m)}final ({r['eval_tokens']:,} val tokens): {summary_line(r)}; ultralow "
          f"{r['ultralow_frac_of_alive']:.1%} of alive, KL {r['kl_spliced']:.4f}")
    if concepts is not None:
        print(f"{tag(m)}{axis_line(concepts)}")
    print(f"{tag(m)}trained {m.step} steps ({tokens_seen:,} tokens) in {seconds:.0f}s; wrote {m.dir}/ckpt.pt, "
          f"metrics.json, sae_weights.safetensors + cfg.json")


# ----------------------------------------------------------------------------- the training loop
if master:
    for m in members:
        os.makedirs(m.dir, exist_ok=True)
        for name in ('metrics.json', 'sae_weights.safetensors', 'cfg.json'):  # outputs of an earlier run: stale now
            if os.path.exists(os.path.join(m.dir, name)):
                os.remove(os.path.join(m.dir, name))
if wandb_log and master:
    import wandb
    for m in members:  # a sweep: one run per SAE, grouped under wandb_run_name
        m.run = wandb.init(project=wandb_project, name=f"{wandb_run_name}/{m.name}" if sweep else wandb_run_name,
                           group=wandb_run_name if sweep else None, config=m.conf, reinit='create_new')
for m in members:
    announce(m)
bar = progress(total=max_steps, initial=step, desc='sweep' if sweep else 'sae', unit='step', disable=not master)
t_start, step_start = time.time(), step
while step < max_steps:
    active = [m for m in members if m.step == step]  # a resumed SAE ahead of the stream waits
    for m in active:
        if step in m.window_tokens:
            resample(m, step)
    x = next_batch()
    for m in active:
        train_member_step(m, x)
    step += 1
    if step % eval_interval == 0 and step < max_steps:  # the SAEs of this step evaluated together
        for m, r in zip(active, evaluate(active, eval_contexts)):
            log_eval(m, r)
    bar.update(1)
    if sweep and step % log_interval == 0 and master:
        bar.set_postfix(saes=len(active), tok_s=f'{tokens_per_s():,.0f}', refresh=False)
bar.close()
elapsed = time.time() - t_start
if sweep and members:
    print0(f"sweep: {len(members)} SAEs, {step - step_start} steps of the stream in {elapsed:.1f}s, "
           f"{sum(m.seconds for m in members):.1f}s of it in their training steps")
# one final evaluation for every SAE trained to the end (an SAE whose weights are not finite stops the run at its turn,
# after the SAEs before it are written, as a run of them one by one would)
finishing = [m for m in members if not nonfinite_weights(m)]
final = dict(zip((m.name for m in finishing), evaluate(finishing, final_eval_contexts)))
concepts = {}  # and their concept axis (on rank 0), when the dataset has concept labels, with the unscored SAEs'
if concept_labels is not None and (finishing or unscored) and master:
    saes = {m.name: m.sae for m in finishing} | {m.name: load_saelens(m.dir, device) for m in unscored}
    starts, T = val_contexts(len(val), context_length, concept_contexts)
    concepts = concept_axis(saes, gpt, site, val, concept_labels, starts, T, eval_batch_size, device)
for m in members:
    finish(m, final.get(m.name), elapsed, concepts.get(m.name))
    if ddp:  # gradients were all-reduced and resampling broadcast: every rank must hold the same SAE
        print0(f"{tag(m)}ranks in sync: max |parameter difference| vs rank 0 = {max_rank_divergence(m.sae):g}")
    if m.run is not None:
        m.run.finish()
for m in unscored if master else []:
    add_axis(os.path.join(m.dir, 'metrics.json'), concepts[m.name])
    print(f"{m.name}: added its concept axis to metrics.json: {axis_line(concepts[m.name])}")
if sweep and master and (members or unscored or not os.path.isfile(os.path.join(sweep_dir, 'pareto.json'))):
    print(pareto_table(write_pareto(sweep_dir, RECIPES, [c['name'] for c in plans])))
    print(f"wrote {sweep_dir}/pareto.json and pareto.png (delete pareto.json and run again to redraw them)")
    print(f"next: {next_command('build_interface.py', 'interface', out_dir)} --sweep_dir={sweep_dir} (one site)")
elif sweep and master:
    print(f"every SAE of the sweep is done: {sweep_dir}/pareto.json is unchanged")
elif master:
    print(f"next: {next_command('build_interface.py', 'interface', out_dir)}")
ddp_cleanup(ddp)
