"""
Train a sparse autoencoder (SAE) on transformer activations: Anthropic's 2023 recipe (with neuron
resampling), its April 2024 update, or TopK with AuxK, selected by `kind`.

CPU demo (after the demo transformer and harvest):
    python train_sae.py config/demo/sae.py
The seed's run (4096 features, batch 8192, lr 3e-4, λ 1e-3, resampling 4x), one GPU or several:
    python train_sae.py config/sae.py
    torchrun --standalone --nproc_per_node=8 train_sae.py config/sae.py
No activation store on disk: --source=onthefly computes activations with the transformer as training goes.
Resume after a crash: --init_from=resume. --help lists every key.

Writes <out_dir>/sae/ckpt.pt (resumable), metrics.json (every metric, config, tokens seen), and a
SAELens-loadable export (sae_weights.safetensors + cfg.json).
"""
import os
import time

import numpy as np
import torch

from activations import ActivationStore, NonFiniteRows, OnTheFlySource
from autoencoder import (RECIPES, Recipe, SAEConfig, SparseAutoencoder, config_dict, init_from_data_, make_adam,
                         resample_dead_, saelens_cfg, save_saelens, silent_latents, train_step_)
from common import (PTDTYPE, atomic_write_json, data_dir_of, ddp_cleanup, ddp_setup, die, exit_on_user_error,
                    get_device, load_checkpoint, load_data_meta, max_rank_divergence, next_command, print0, progress,
                    rng_state, save_checkpoint, set_rng_state, token_memmap, token_windows)
from model import load_gpt, parse_site, site_name
from sae_eval import evaluate_sae
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
kind = 'anthropic2023'  # 'anthropic2023' (the paper, the seed), 'april2024', 'topk'
n_features = 4096  # dictionary size
k = 32  # topk: latents kept per token
auxk_dead_tokens = 10_000_000  # topk: a latent silent for this many tokens is dead and trained by the AuxK loss
normalize = 'none'  # 'layer_norm': per-token normalised inputs (openai/sparse_autoencoder's LN), any kind
# optimisation: None = the kind's published value (autoencoder.RECIPES; --help shows the values in effect)
l1_coeff = None  # λ of the sparsity penalty; anthropic2023: λ_paper / d (its MSE is averaged over d), seed 1e-3
lr = None  # Adam learning rate (anthropic2023 3e-4, april2024 5e-5, topk 1e-4)
warmup_frac = None  # lr linear warm-up over this first fraction of max_steps (0 for every kind)
decay_frac = None  # lr linear decay to 0 over this last fraction of max_steps (april2024: 0.2)
l1_warmup_frac = None  # λ linear warm-up from 0 over this first fraction of max_steps (april2024: 0.05)
grad_clip = None  # clip the gradient norm at this value, 0 = off (april2024: 1.0)
adam_betas = None  # Adam (β1, β2): (0.9, 0.999) for every kind
adam_eps = None  # Adam ε (topk: 6.25e-10 as openai/sparse_autoencoder; others 1e-8)
batch_size = 8192  # activation rows per step (per rank)
max_steps = 500000
autocast_dtype = 'float32'  # 'bfloat16' runs the SAE's matmuls in bf16 (parameters and Adam stay fp32)
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
eval_batch_size = 16  # contexts per transformer forward in evaluation
ckpt_interval = 2000  # save ckpt.pt every this many steps
# logging
log_interval = 100
wandb_log = False  # works offline with WANDB_MODE=offline
wandb_project = 'monosemanticity'
wandb_run_name = 'sae'
# system
device = 'auto'
seed = 0


def _config_defaults(g: dict) -> tuple[str, dict]:
    """The published recipe of the configured kind fills the optimisation keys left at None (configurator.py)."""
    return f"kind={g['kind']!r} default", dict(RECIPES.get(g['kind'], RECIPES['anthropic2023']))


# -----------------------------------------------------------------------------
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

device = get_device(device)
ddp, ddp_rank, ddp_local_rank, world_size, device = ddp_setup(device)
master = ddp_rank == 0
if autocast_dtype not in ('float32', 'bfloat16', 'float16'):
    die(f"autocast_dtype '{autocast_dtype}' is not float32, bfloat16 or float16")
sae_dir = os.path.join(out_dir, 'sae')
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


def rows_sample(n: int, salt: int) -> torch.Tensor:
    """n random activation rows (fp32, on device) for initialisation and resampling."""
    return data.sample(n, seed=seed * 7919 + salt).to(device, torch.float32)


# ----------------------------------------------------------------------------- the SAE and its optimizer
sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_features=n_features, kind=kind, k=k, dead_tokens=auxk_dead_tokens,
                                  normalize=normalize), device=device)
recipe = Recipe(lr=lr, l1_coeff=l1_coeff, max_steps=max_steps, warmup_frac=warmup_frac, decay_frac=decay_frac,
                l1_warmup_frac=l1_warmup_frac, grad_clip=grad_clip, adam_betas=tuple(adam_betas), adam_eps=adam_eps)
opt = make_adam(sae, recipe.lr, recipe.adam_betas, recipe.adam_eps)
step, data_pos, resample_gen = 0, 0, torch.Generator().manual_seed(seed + 1)
if init_from == 'resume':
    ck = load_checkpoint(os.path.join(sae_dir, 'ckpt.pt'), device, hint='nothing to resume: use --init_from=scratch')
    if ck['sae_config'] != config_dict(sae):
        die(f"{sae_dir}/ckpt.pt holds a {ck['sae_config']} SAE, not the configured one: "
            f"use the same kind/n_features/k or another out_dir")
    sae.load_state_dict(ck['sae'])
    opt.load_state_dict(ck['optimizer'])
    step, data_pos, data_mean = ck['step'], ck['data_pos'][ddp_rank], ck['data_mean'].to(device)
    resample_gen.set_state(ck['resample_rng'])
    resampled = ck.get('resampled', [])
    set_rng_state(ck['rng'])
    print0(f"resuming from {sae_dir}/ckpt.pt at step {step}")
elif init_from == 'scratch':
    init_rows = rows_sample(geometric_median_rows, salt=0)
    if not torch.isfinite(init_rows).all():
        die(f"the activation rows hold non-finite values ({int((~torch.isfinite(init_rows)).any(1).sum())} of "
            f"{len(init_rows)} sampled rows): harvest again with generate_activations.py (--dtype=float32 if "
            f"float16 overflowed)")
    data_mean = init_rows.mean(0)  # the dataset mean, for mean-ablation CE
    init_from_data_(sae, init_rows)  # the kind's input scale, MSE normaliser, b_dec at the geometric median
    del init_rows
    resampled = []  # one record per resampling: {step, n_dead, window_tokens}
    if ddp:  # rank 0's initialisation everywhere
        for t in [*sae.parameters(), *sae.buffers(), data_mean]:
            torch.distributed.broadcast(t.data, 0)
else:
    die(f"init_from '{init_from}' is not 'scratch' or 'resume'")
batches = data.batches(batch_size, seed=seed + 1000 * ddp_rank, start=data_pos, shuffle_buffer=shuffle_buffer)
cdt = None if autocast_dtype == 'float32' else PTDTYPE[autocast_dtype]


def resample_windows() -> dict[int, int]:
    """resample step -> the dead window in tokens: half the interval since the previous resampling."""
    windows, prev = {}, 0
    for s in sorted(resample_steps):
        if 0 < s < max_steps:
            windows[s] = (s - prev) // 2 * batch_size * world_size
        prev = s
    return windows


window_tokens = resample_windows() if sae.kind.resamples else {}


# ----------------------------------------------------------------------------- evaluation
def evaluate(n_contexts: int) -> dict:
    """evaluate_sae on n_contexts val contexts spread evenly over val.bin (the same ones at every eval)."""
    val = token_memmap(data_dir, 'val', data_meta['dtype'])
    T = min(context_length, len(val) - 1)
    n_contexts = max(1, min(n_contexts, (len(val) - 1) // T))
    starts = np.arange(n_contexts) * ((len(val) - 1 - T) // max(n_contexts - 1, 1))

    def batches():
        for i in progress(range(0, n_contexts, eval_batch_size), desc='eval', unit='batch', leave=False,
                          disable=not master):
            idx = token_windows(val, starts[i:i + eval_batch_size], T + 1).to(device)  # (B, T+1)
            yield idx[:, :-1], idx[:, 1:]

    return {**evaluate_sae(sae, gpt, site, batches(), data_mean), 'eval_contexts': n_contexts}


def check_finite_weights(where: str) -> None:
    """Stop with one line if any SAE tensor holds NaN/inf (nothing is saved from such a model)."""
    for name, t in [*sae.named_parameters(), *sae.named_buffers()]:
        if t.is_floating_point() and not torch.isfinite(t).all():
            die(f"{where}: the SAE's {name} holds {int((~torch.isfinite(t)).sum())} non-finite values; nothing "
                f"was saved (lower --lr, or check the activations)")


def save(final: bool = False) -> None:
    check_finite_weights(f"step {step}")
    positions = [data_pos]
    if ddp:
        positions = [0] * world_size
        torch.distributed.all_gather_object(positions, data_pos)
    if master:
        save_checkpoint({'sae': sae.state_dict(), 'sae_config': config_dict(sae), 'optimizer': opt.state_dict(),
                         'step': step, 'data_pos': positions, 'data_mean': data_mean.cpu(), 'rng': rng_state(),
                         'resample_rng': resample_gen.get_state(), 'resampled': resampled, 'config': config,
                         'site': site,
                         'transformer_ckpt': transformer_ckpt, 'complete': final},
                        os.path.join(sae_dir, 'ckpt.pt'))


def summary(m: dict) -> str:
    return (f"mse {m['mse']:.4g}, fvu {m['fvu']:.3f}, L0 {m['l0']:.1f}, alive {m['alive_frac']:.1%}, "
            f"loss recovered {m['loss_recovered']:.3f} (mean-abl {m['loss_recovered_mean_abl']:.3f}), "
            f"CE clean/spliced/zero {m['ce_clean']:.3f}/{m['ce_spliced']:.3f}/{m['ce_zero_ablation']:.3f}")


# ----------------------------------------------------------------------------- the steps of the loop
def resample(step: int) -> None:
    """Resample the latents silent over this step's window (Kind.resamples) and record it."""
    dead = silent_latents(sae, window_tokens[step])
    n_dead = int(dead.sum())
    if n_dead:
        resample_dead_(sae, opt, dead, rows_sample(resample_rows, salt=step), generator=resample_gen)
        if ddp:  # every rank resampled the same neurons; take rank 0's rows
            for t in (sae.W_enc, sae.b_enc, sae.W_dec):
                torch.distributed.broadcast(t.data, 0)
    resampled.append({'step': step, 'n_dead': n_dead, 'window_tokens': window_tokens[step]})
    bar.write(f"step {step}: resampled {n_dead} dead neurons ({n_dead / n_features:.1%})") if master else None


def next_batch() -> torch.Tensor:
    """The next (batch_size, d) activation rows on device."""
    try:
        return next(batches).to(device, non_blocking=True)
    except NonFiniteRows as e:  # source='onthefly': the transformer produced NaN/inf
        die(f"step {step}: {e}")


def stop_if_not_finite(stats: dict, x: torch.Tensor) -> None:
    """Stop with one line at a non-finite loss (one scalar to check: < 1% of a step, bench.sae_step)."""
    if not torch.isfinite(stats['loss']):
        what = 'batch holds non-finite activations' if not torch.isfinite(x).all() else 'loss is non-finite'
        bar.leave = False  # erase the bar: the error is the one line left on the screen
        bar.close()
        die(f"step {step}: the {what} ({stats['loss'].item()}); stopped without writing metrics.json or the export "
            f"(ckpt.pt keeps the last good checkpoint): check the activations (harvest again, with --dtype=float32 "
            f"if float16 overflowed) or lower --lr")


def log_train(stats: dict) -> None:
    tok_s = (step - step_start) * batch_size * world_size / (time.time() - t_start)
    bar.set_postfix(mse=f"{stats['mse'].item():.3g}", l0=f"{stats['l0'].item():.1f}",
                    dead=f"{silent_latents(sae, 20 * batch_size).float().mean().item():.0%}",
                    tok_s=f'{tok_s:,.0f}', refresh=False)
    if wandb_log:
        wandb.log({'step': step, 'train/mse': stats['mse'].item(), 'train/l0': stats['l0'].item(),
                   'train/l1': stats['l1'].item(), 'train/aux': stats['aux'].item(),
                   'train/loss': stats['loss'].item(), 'lr': stats['lr'], 'l1_coeff': stats['l1_coeff'],
                   'tokens_per_s': tok_s})


def log_eval(m: dict) -> None:
    bar.write(f"step {step}: {summary(m)}") if master else None
    if wandb_log and master:
        hist = np.repeat(m['density_hist']['edges'][:-1], m['density_hist']['counts'])
        wandb.log({'step': step, **{f'eval/{k_}': v for k_, v in m.items() if isinstance(v, (int, float))},
                   'eval/log10_density': wandb.Histogram(hist) if len(hist) else None})



# ----------------------------------------------------------------------------- the training loop
if master:
    os.makedirs(sae_dir, exist_ok=True)
    for name in ('metrics.json', 'sae_weights.safetensors', 'cfg.json'):  # outputs of an earlier run: stale now
        if os.path.exists(os.path.join(sae_dir, name)):
            os.remove(os.path.join(sae_dir, name))
if wandb_log and master:
    import wandb
    wandb.init(project=wandb_project, name=wandb_run_name, config=config)
print0(f"SAE {kind}: {d_in} -> {n_features} features on {site} ({source}: "
       f"{data.n_rows if source == 'store' else 'on the fly'} rows), batch {batch_size} x {world_size} rank(s), "
       f"{max_steps} steps, {device} {autocast_dtype}")
print0(f"recipe: lr {recipe.lr:g} (warm-up {recipe.warmup_frac:g}, decay {recipe.decay_frac:g} of the run), "
       f"l1_coeff {recipe.l1_coeff:g} (warm-up {recipe.l1_warmup_frac:g}), grad_clip {recipe.grad_clip:g}, "
       f"Adam betas {recipe.adam_betas} eps {recipe.adam_eps:g}, normalize {normalize}")
if sae.kind.resamples:
    if window_tokens:
        print0(f"resampling dead neurons at steps {', '.join(str(s_) for s_ in sorted(window_tokens))}")
    else:
        print0(f"note: no resampling will happen: no resample_steps in (0, max_steps={max_steps}) "
               f"(resample_steps={tuple(resample_steps)})")
bar = progress(total=max_steps, initial=step, desc='sae', unit='step', disable=not master)
t_start, step_start = time.time(), step
while step < max_steps:
    if step in window_tokens:
        resample(step)
    x = next_batch()
    data_pos += 1
    stats = train_step_(sae, opt, x, step, recipe, cdt, want_l0=(step + 1) % log_interval == 0)
    stop_if_not_finite(stats, x)
    step += 1
    bar.update(1)
    if step % log_interval == 0 and master:
        log_train(stats)
    if step % ckpt_interval == 0 and step < max_steps:
        save()
    if step % eval_interval == 0 and step < max_steps:
        log_eval(evaluate(eval_contexts))
bar.close()

# ----------------------------------------------------------------------------- final evaluation and outputs
elapsed = time.time() - t_start
check_finite_weights('after training')
m = evaluate(final_eval_contexts)
bad = [k_ for k_ in ('mse', 'fvu', 'l0', 'ce_clean', 'ce_spliced', 'kl_spliced') if not np.isfinite(m[k_])]
if bad:
    die(f"the final evaluation gave non-finite {', '.join(bad)}: nothing written (check the transformer)")
save(final=True)
if master:
    tokens_seen = step * batch_size * world_size
    metrics = {k_: v for k_, v in m.items() if k_ != 'density'}
    metrics.update(kind=kind, site=site, d_in=d_in, n_features=n_features, steps=step, tokens_seen=tokens_seen,
                   train_seconds_this_run=round(elapsed, 1),
                   tokens_per_s_this_run=round((step - step_start) * batch_size * world_size / max(elapsed, 1e-9)),
                   density_window_tokens=m['eval_tokens'], resampled=resampled, config=config)
    metrics['density'] = [round(v, 8) for v in m['density'].tolist()]
    cfg = saelens_cfg(sae, site, model_name=os.path.abspath(transformer_ckpt), hook_layer=layer,
                      context_size=context_length)
    save_saelens(sae, sae_dir, cfg)
    atomic_write_json(os.path.join(sae_dir, 'metrics.json'), metrics)
    print(f"final ({m['eval_tokens']:,} val tokens): {summary(m)}; ultralow {m['ultralow_frac_of_alive']:.1%} "
          f"of alive, KL {m['kl_spliced']:.4f}")
    print(f"trained {step} steps ({tokens_seen:,} tokens) in {elapsed:.0f}s; wrote {sae_dir}/ckpt.pt, "
          f"metrics.json, sae_weights.safetensors + cfg.json")
    print(f"next: {next_command('build_interface.py', 'interface', out_dir)}")
if ddp:  # gradients were all-reduced and resampling broadcast: every rank must hold the same SAE
    print0(f"ranks in sync: max |parameter difference| vs rank 0 = {max_rank_divergence(sae):g}")
if wandb_log and master:
    wandb.finish()
ddp_cleanup(ddp)
