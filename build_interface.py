"""
Build the static feature browser of a trained SAE: <out_dir>/interface/index.html (opens from file://).

    python build_interface.py config/demo/interface.py            # CPU demo (out/demo), ~1-2 min on 2 cores
    python build_interface.py config/interface.py                 # the seed's scale (out/owt)
    python build_interface.py config/demo/interface.py --n_contexts=256 --ablation=none   # quicker look

Inputs: <out_dir>/transformer/ckpt.pt, <out_dir>/sae/ (SAELens layout: sae_weights.safetensors + cfg.json)
and the dataset's <split>.bin + meta.json (+ tokenizer file). Output: <out_dir>/interface/ with index.html
(all features: sortable/searchable table, density histogram), feature.html?f=ID (one feature, all panels),
examples.html (activations on example texts); shared assets copied from the repo's interface/ folder; data as
.js files loaded with <script src> (no server, no fetch()): data/{vocab,index,examples}.js and features/NNNN.js
(features 64*NNNN ... 64*NNNN+63). Every token reaches the page as a JSON string set with textContent; partial
UTF-8 tokens are stored as byte lists and merged for display in the browser. Built in a temp folder that
replaces the old one at the end, so a half-built site is never taken for a complete one; meta.json records
the config, the contexts used and the timings.

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
          example texts.
The SAE is read with autoencoder.load_saelens; W_dec is read from the safetensors file. An SAE or transformer
with NaN/inf weights is refused (one line naming the tensor) before anything is written. The tokenizer comes
from tokenizer.load_tokenizer(dataset folder).
"""
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from autoencoder import load_saelens
from common import (atomic_write_json, autocast, data_dir_of, die, exit_on_user_error, get_device, load_checkpoint,
                    load_data_meta, print0, read_json, resolve_dtype, token_memmap)
from model import load_gpt, parse_site
from configurator import configure

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
out_dir = 'out'
transformer_ckpt = ''  # '' = <out_dir>/transformer/ckpt.pt
sae_dir = ''  # '' = <out_dir>/sae (sae_weights.safetensors + cfg.json, SAELens layout)
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
ablation = 'auto'  # 'auto' (exact local formula where valid, else 'rerun'), 'rerun' (model per window), 'none'
seed = 1337
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (for the transformer and SAE forward passes)
# -----------------------------------------------------------------------------
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

N_NEIGHBOURS = 10  # decoder-cosine and co-activation neighbours per feature
N_LOGITS = 10  # top and bottom logit weights shown
N_TOP_TOKENS = 10  # tokens a feature fires on most
HIST_BINS = 40  # bins of the activation and logit-weight histograms
ULTRALOW = 1e-5  # alive features below this density are "ultralow" (the paper's and DESIGN.md's threshold)
EXAMPLE_MAX_FEATURES = 64  # most active features kept per token of an example text
FEATURES_PER_FILE = 64  # features/NNNN.js holds features NNNN*64 ... NNNN*64+63 (few files: fast to replace)
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'interface')  # html, js, css copied to the site

t_start = time.time()
device = get_device(device)
dtype = resolve_dtype(dtype, device)
ctx = autocast(device, dtype)
torch.manual_seed(seed)
for name, val, lo in (('n_contexts', n_contexts, 1), ('batch_size', batch_size, 1), ('top_k', top_k, 1),
                      ('window', window, 0), ('n_intervals', n_intervals, 1), ('interval_samples', interval_samples, 0),
                      ('n_example_texts', n_example_texts, 0), ('example_length', example_length, 2)):
    if val < lo:
        die(f"{name}={val} must be >= {lo}")
if ablation not in ('auto', 'rerun', 'none'):
    die(f"ablation='{ablation}' is not 'auto', 'rerun' or 'none'")


def refuse_nonfinite(tensors: dict[str, torch.Tensor], path: str, fix: str) -> None:
    """One line naming the first tensor with NaN/inf entries (a diverged run): its statistics would be noise."""
    for name, t in tensors.items():
        n_bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if n_bad:
            die(f"{path}: {name} has {n_bad:,} non-finite (NaN/inf) entries of {t.numel():,}: {fix}")


# ----------------------------------------------------------------------------- inputs

ckpt_path = transformer_ckpt or os.path.join(out_dir, 'transformer', 'ckpt.pt')
checkpoint = load_checkpoint(ckpt_path, 'cpu', hint="train one with train_transformer.py (or set --transformer_ckpt)")
refuse_nonfinite(checkpoint.get('model', {}), ckpt_path,
                 "retrain it with train_transformer.py or set --transformer_ckpt")
model = load_gpt(checkpoint, device)
mcfg = model.config
sae_path = sae_dir or os.path.join(out_dir, 'sae')
sae_cfg = read_json(os.path.join(sae_path, 'cfg.json'), "train an SAE with train_sae.py (or set --sae_dir)")
if not os.path.isfile(os.path.join(sae_path, 'sae_weights.safetensors')):
    die(f"{os.path.join(sae_path, 'sae_weights.safetensors')} not found: train an SAE with train_sae.py first")
site = sae_cfg.get('hook_name', '')
try:
    layer, site_kind = parse_site(site)
except ValueError as e:
    die(f"{sae_path}/cfg.json: {e}")
if layer >= mcfg.n_layer:
    die(f"the SAE reads {site} but {ckpt_path} has {mcfg.n_layer} layer(s)")
data_dir = data_dir_of(dataset or checkpoint.get('data', {}).get('dataset') or '')
if not data_dir:
    die(f"{ckpt_path} names no dataset: set --dataset")
meta = load_data_meta(data_dir)
T = context_length or mcfg.block_size
if T > mcfg.block_size:
    die(f"context_length={T} exceeds the model's block_size {mcfg.block_size}")
V = mcfg.vocab_size
final_site = f'blocks.{mcfg.n_layer - 1}.resid_post'


sae_sd = load_file(os.path.join(sae_path, 'sae_weights.safetensors'))
refuse_nonfinite(sae_sd, os.path.join(sae_path, 'sae_weights.safetensors'),
                 "the SAE diverged: retrain it with train_sae.py (e.g. a lower lr) or set --sae_dir")
W_dec = sae_sd['W_dec'].float().to(device)  # (F, d_in)
n_feat, d_in = W_dec.shape
sae = load_saelens(sae_path, device=device).eval()
if sae.cfg.normalize != 'none':  # x̂ = (W_dec f + b_dec)·std + mean: a feature's contribution scales per token
    die(f"{sae_path}: the feature browser does not support SAEs trained with normalize='{sae.cfg.normalize}' yet "
        f"(its ablation and logit panels assume x̂ = W_dec f + b_dec): train one with --normalize=none to browse it")
for p in list(model.parameters()) + list(getattr(sae, 'parameters', lambda: [])()):
    p.requires_grad_(False)


def resid_direction(W: torch.Tensor) -> torch.Tensor:
    """Site directions (n, d_in) -> their direct effect on the residual stream (n, n_embd)."""
    if site_kind == 'mlp_hidden':
        return W @ model.transformer.h[layer].mlp.c_proj.weight.T  # (n, C)
    return W


U = resid_direction(W_dec)  # (F, C): what removing a unit of feature i does to the final residual (last layer)
local_ablation = layer == mcfg.n_layer - 1 and site_kind in ('mlp_hidden', 'mlp_out', 'resid_post')
ablation_mode = 'none' if ablation == 'none' else 'local' if (ablation == 'auto' and local_ablation) else 'rerun'


def load_vocab() -> list:
    """Per token id: its text (valid UTF-8), or its bytes as a list of ints (partial UTF-8); '⟨id⟩' if unknown."""
    from tokenizer import load_tokenizer
    if meta.get('tokenizer') == 'bpe' and not meta.get('tokenizer_file'):
        print0(f"note: {data_dir}/meta.json names no tokenizer file; tokens are shown as ⟨id⟩")
        return [f'⟨{i}⟩' for i in range(V)]
    try:
        enc = load_tokenizer(data_dir)
    except SystemExit as e:  # e.g. gpt2's ranks not cached and no network: still a usable site
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


def pick_chunks(n_tokens: int, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Start offsets of n random non-overlapping chunks of length+1 tokens (sorted)."""
    n_chunks = (n_tokens - 1) // length
    if n_chunks < 1:
        die(f"{split}.bin in {data_dir} has {n_tokens} tokens, fewer than context_length+1 = {length + 1}")
    return np.sort(rng.choice(n_chunks, size=min(n, n_chunks), replace=False)) * length


def read_tokens(starts: np.ndarray, length: int) -> torch.Tensor:
    """(B, length+1) int64 tokens: each context plus the token after it (the last position's target)."""
    data = token_memmap(data_dir, split, meta['dtype'])
    return torch.from_numpy(np.stack([data[s:s + length + 1].astype(np.int64) for s in starts])).to(device)


@torch.no_grad()
def run_batch(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, T+1) -> features f (B*T, F) of the contexts tokens[:, :T], final residual r (B, T, C)."""
    with ctx:
        _, _, acts = model.run(tokens[:, :-1], capture=[site, final_site], need_logits=False)
        f = sae.encode(acts[site].reshape(-1, d_in))
    return f.float(), acts[final_site].float()


def smallest_per_group(group: torch.Tensor, key: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the (at most) k smallest keys (in [0, 1)) of each group, and their rank 0..k-1 in the group."""
    order = torch.argsort(group.double() + key)  # sorted by (group, key)
    g = group[order]
    rank = torch.arange(len(g), device=g.device) - torch.searchsorted(g, g)
    keep = rank < k
    return order[keep], rank[keep]


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


@torch.no_grad()
def final_logprob(resid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Final residual rows (M, C), next tokens (M,) -> log p(next token) (M,) through ln_f and the unembedding."""
    out = torch.empty(len(y), device=resid.device)
    for m0 in range(0, len(y), 1024):
        logits = model.lm_head(model.transformer.ln_f(resid[m0:m0 + 1024])).float()
        out[m0:m0 + 1024] = logits.gather(1, y[m0:m0 + 1024, None])[:, 0] - torch.logsumexp(logits, 1)
    return out


def sig(x: np.ndarray, digits: int) -> np.ndarray:
    return np.round(x.astype(np.float64), digits)


def js(obj) -> str:
    """Compact JSON (ASCII-only, so any token text is an escaped JS string literal)."""
    return json.dumps(obj, separators=(',', ':'), ensure_ascii=True, allow_nan=False)


# ----------------------------------------------------------------------------- contexts

rng = np.random.default_rng(seed)
n_split = len(token_memmap(data_dir, split, meta['dtype']))
starts = pick_chunks(n_split, T, n_contexts, rng)
if len(starts) < n_contexts:
    print0(f"note: {split}.bin holds only {len(starts)} contexts of {T} tokens (asked for {n_contexts})")
n_ctx = len(starts)
n_tokens = n_ctx * T
batches = [(b0, min(b0 + batch_size, n_ctx)) for b0 in range(0, n_ctx, batch_size)]
coact_limit = n_tokens if coact_tokens <= 0 else min(coact_tokens, n_tokens)
print0(f"{n_feat} features of {site} ({sae_cfg.get('architecture', 'standard')}), {n_ctx} contexts x {T} tokens "
       f"= {n_tokens:,} tokens of {data_dir}/{split}.bin; ablation: {ablation_mode}; device {device} ({dtype})")

# ----------------------------------------------------------------------------- pass 1: density, max, top-k, tokens

n_fire = torch.zeros(n_feat, dtype=torch.long, device=device)
act_sum = torch.zeros(n_feat, dtype=torch.float64, device=device)
act_max = torch.zeros(n_feat, device=device)
top_val = torch.zeros(top_k, n_feat, device=device)  # (k, F) best per-context maxima
top_ctx = torch.full((top_k, n_feat), -1, dtype=torch.long, device=device)
top_pos = torch.zeros(top_k, n_feat, dtype=torch.long, device=device)
tok_count = torch.zeros(n_feat * V, dtype=torch.int32, device=device)  # (F, V) firings per token id, flattened
coact = torch.zeros(n_feat, n_feat, dtype=torch.int32, device=device)  # (F, F) co-firing counts
coact_seen, inv_sigma_sum = 0, 0.0
t0 = time.time()
for b0, b1 in tqdm(batches, desc='pass 1/3: density, top-k', dynamic_ncols=True):
    tokens = read_tokens(starts[b0:b1], T)
    B = b1 - b0
    f, r = run_batch(tokens)
    fire = f > 0  # (N, F)
    t_idx, feat = fire.nonzero().unbind(1)
    n_fire += torch.bincount(feat, minlength=n_feat)
    act_sum += f.sum(0).double()
    torch.maximum(act_max, f.amax(0), out=act_max)
    # top-k over contexts: each context's best token per feature, merged with the best so far
    cmax = f.view(B, T, n_feat).amax(1)  # (B, F)
    top_val, i = torch.cat([top_val, cmax]).topk(top_k, dim=0)
    top_ctx = torch.cat([top_ctx, torch.arange(b0, b1, device=device)[:, None].expand(B, n_feat)]).gather(0, i)
    top_pos = torch.cat([top_pos, torch.zeros_like(cmax, dtype=torch.long)]).gather(0, i)
    rk, fk = (i >= top_k).nonzero().unbind(1)  # entries new from this batch: find their token
    top_pos[rk, fk] = f.view(B, T, n_feat)[i[rk, fk] - top_k, :, fk].argmax(1)
    tok_count.index_add_(0, feat * V + tokens[:, :-1].reshape(-1)[t_idx],
                         torch.ones(1, dtype=torch.int32, device=device).expand(len(feat)))
    if coact_seen < coact_limit:
        take = min(coact_limit - coact_seen, len(fire))
        coact += coact_counts(fire[:take])
        coact_seen += take
    inv_sigma_sum += (r.var(-1, unbiased=False) + 1e-5).rsqrt().sum().item()
    del f, fire, t_idx, feat, cmax
t_pass1 = time.time() - t0

# ----------------------------------------------------------------------------- pass 2: histograms, interval samples

n_bucket, S = n_feat * n_intervals, interval_samples
hist = torch.zeros(n_feat * HIST_BINS, dtype=torch.long, device=device)
icount = torch.zeros(n_bucket, dtype=torch.long, device=device)
s_key = torch.full((n_bucket, max(S, 1)), math.inf, dtype=torch.float64, device=device)  # bottom-S random keys
s_ctx = torch.full((n_bucket, max(S, 1)), -1, dtype=torch.long, device=device)
s_pos = torch.zeros((n_bucket, max(S, 1)), dtype=torch.long, device=device)
s_val = torch.zeros((n_bucket, max(S, 1)), device=device)
safe_max = act_max.clamp_min(1e-30)
gen = torch.Generator(device=device).manual_seed(seed)
t0 = time.time()
for b0, b1 in tqdm(batches, desc='pass 2/3: intervals', dynamic_ncols=True):
    tokens = read_tokens(starts[b0:b1], T)
    f, _ = run_batch(tokens)
    t_idx, feat = (f > 0).nonzero().unbind(1)
    v = f[t_idx, feat]
    del f
    rel = v / safe_max[feat]  # in (0, 1]
    hist.index_add_(0, feat * HIST_BINS + (rel * HIST_BINS).long().clamp_(max=HIST_BINS - 1),
                    torch.ones(1, dtype=torch.long, device=device).expand(len(v)))
    bucket = feat * n_intervals + (rel * n_intervals).long().clamp_(max=n_intervals - 1)  # interval j: [j, j+1)/n
    icount.index_add_(0, bucket, torch.ones(1, dtype=torch.long, device=device).expand(len(v)))
    if S == 0:
        continue
    # a uniform random sample without replacement = the S smallest of i.i.d. uniform keys; one per context first
    key = torch.rand(len(v), generator=gen, dtype=torch.float64, device=device)
    live = (key < s_key[bucket, -1]).nonzero()[:, 0]  # a key above a full bucket's S-th smallest can't get in
    t_idx, bucket, key, v = t_idx[live], bucket[live], key[live], v[live]
    one, _ = smallest_per_group(bucket * (b1 - b0) + t_idx // T, key, 1)
    old = torch.isfinite(s_key).view(-1).nonzero()[:, 0]
    c_bucket = torch.cat([old // S, bucket[one]])
    c_key = torch.cat([s_key.view(-1)[old], key[one]])
    c_ctx = torch.cat([s_ctx.view(-1)[old], b0 + t_idx[one] // T])
    c_pos = torch.cat([s_pos.view(-1)[old], t_idx[one] % T])
    c_val = torch.cat([s_val.view(-1)[old], v[one]])
    keep, rank = smallest_per_group(c_bucket, c_key, S)
    slot = c_bucket[keep] * S + rank
    s_key.fill_(math.inf)
    s_key.view(-1)[slot], s_ctx.view(-1)[slot] = c_key[keep], c_ctx[keep]
    s_pos.view(-1)[slot], s_val.view(-1)[slot] = c_pos[keep], c_val[keep]
t_pass2 = time.time() - t0

# ----------------------------------------------------------------------------- logit directions

# Z_u = W_U (γ ⊙ centre(u_i)): feature i's direct effect on the logits before the LayerNorm's division by σ.
# Times E[1/σ] (the LayerNorm linearised) these are the logit weights; pass 3's exact ablation reuses them.
ln_scale = inv_sigma_sum / n_tokens  # E[1/σ] of the final residual
gamma = model.transformer.ln_f.weight.float()
W_U = model.lm_head.weight.float()  # (V, C)
ln_f_bias = model.transformer.ln_f.bias
logit_bias = (W_U @ ln_f_bias.float()) if ln_f_bias is not None else torch.zeros(V, device=device)
Uc = U - U.mean(1, keepdim=True)  # (F, C) LayerNorm removes the mean
with torch.no_grad():
    Zu = torch.cat([(Uc[f0:f0 + 512] * gamma) @ W_U.T for f0 in range(0, n_feat, 512)])  # (F, V)
pair_chunk = max(64, 2 ** 22 // V)  # (feature, position) pairs per ablation chunk: 16 MB per (pairs, V) buffer
buf_a, buf_b = (torch.empty(pair_chunk, V, device=device) for _ in range(2)) if ablation_mode == 'local' else (0, 0)
# |logit_v - (W_U β)_v| = |<γ⊙LN-normalised x, W_U[v]>| <= √C·max|γ|·max‖W_U[v]‖: below ~80 - ln V, exp() of the
# unshifted logits can neither overflow nor underflow to a zero sum, so the log-sum-exp needs no row max
lse_shift = (math.sqrt(W_U.size(1)) * gamma.abs().max() * W_U.norm(dim=1).max()).item() + math.log(V) > 80
logit_bias_max = logit_bias.max()
exp_bias = (logit_bias - logit_bias_max).exp()  # (V,)


def logprob_rows_(z: torch.Tensor, inv_sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows z (n, V) = W_U(γ⊙x_c) and 1/σ (n,) -> log p(y) (n,) of the logits z/σ + W_U β. Overwrites z."""
    zy = z.gather(1, y[:, None])[:, 0] * inv_sigma + logit_bias[y]
    z.mul_(inv_sigma[:, None])
    shift = z.max(1, keepdim=True).values if lse_shift else torch.zeros(len(z), 1, device=z.device)
    if lse_shift:
        z.sub_(shift)
    lse = torch.log(z.exp_() @ exp_bias) + shift[:, 0] + logit_bias_max
    return zy - lse


# ----------------------------------------------------------------------------- pass 3: the shown windows

# every window: (feature, context, position); the top_k examples first, then the interval samples
tk = top_val > 0
w_feat = [torch.arange(n_feat, device=device).expand(top_k, n_feat)[tk]]
w_ctx, w_pos, w_val = [top_ctx[tk]], [top_pos[tk]], [top_val[tk]]
w_kind = [torch.arange(top_k, device=device)[:, None].expand(top_k, n_feat)[tk]]  # top rank, or top_k + bucket slot
if S:
    sk = torch.isfinite(s_key)
    w_feat.append((torch.arange(n_bucket, device=device) // n_intervals)[:, None].expand(n_bucket, S)[sk])
    w_ctx.append(s_ctx[sk])
    w_pos.append(s_pos[sk])
    w_val.append(s_val[sk])
    w_kind.append(top_k + (torch.arange(n_bucket, device=device) % n_intervals)[:, None].expand(n_bucket, S)[sk])
order = torch.argsort(torch.cat(w_ctx), stable=True)
w_feat, w_ctx, w_pos, w_val, w_kind = (torch.cat(a)[order] for a in (w_feat, w_ctx, w_pos, w_val, w_kind))
n_win, L = len(w_ctx), 2 * window + 1
w_start = (w_pos - window).clamp(min=0)
w_end = (w_pos + window).clamp(max=T - 1)  # inclusive; tokens are shown up to w_end + 1 (the last target)
w_toks = torch.full((n_win, L + 1), -1, dtype=torch.long, device=device)
w_acts = torch.zeros(n_win, L, device=device)
w_eff = torch.zeros(n_win, L, device=device)  # log p(next token) clean - ablated: the feature's effect on it
bounds = torch.searchsorted(w_ctx, torch.tensor([b for b, _ in batches] + [n_ctx], device=device))
t0 = time.time()
for bi, (b0, b1) in enumerate(tqdm(batches, desc='pass 3/3: windows, ablation', dynamic_ncols=True)):
    lo, hi = bounds[bi].item(), bounds[bi + 1].item()
    if lo == hi:
        continue
    tokens = read_tokens(starts[b0:b1], T)
    f, r = run_batch(tokens)
    c = w_ctx[lo:hi] - b0
    grid = w_start[lo:hi, None] + torch.arange(L + 1, device=device)  # (W, L+1) positions
    ok_tok = grid <= (w_end[lo:hi, None] + 1)
    w_toks[lo:hi] = torch.where(ok_tok, tokens[c[:, None], grid.clamp(max=T)], -1)
    pos = grid[:, :L]
    ok = pos <= w_end[lo:hi, None]
    a = f.view(-1, T, n_feat)[c[:, None], pos.clamp(max=T - 1), w_feat[lo:hi, None]]
    a = torch.where(ok, a, 0.0)
    w_acts[lo:hi] = a
    if ablation_mode == 'none':
        continue
    wi, j = (a > 0).nonzero().unbind(1)  # firing positions: elsewhere the ablation changes nothing
    cw, pw, fw = c[wi], pos[wi, j], w_feat[lo:hi][wi]
    if ablation_mode == 'local':
        # LN(r - a·u) = γ⊙(r_c - a·u_c)/σ' + β, so its logits are (Z_r - a·Z_u)/σ' + W_U β with Z_r = W_U(γ⊙r_c)
        # per position and Z_u per feature: exact, without a (pairs x C x V) matmul. Chunks share positions.
        # a (feature, position) pair shown in two windows (e.g. a top example that is also an interval sample) is
        # computed once; pairs are sorted by position so that a chunk needs few Z_r rows
        flat = cw * T + pw
        n_pos = (b1 - b0) * T
        key, first = torch.unique(fw * n_pos + flat, return_inverse=True)
        pf, pflat = key // n_pos, key % n_pos
        pa = torch.zeros(len(key), device=device).scatter_(0, first, a[wi, j])
        order = torch.argsort(pflat, stable=True)
        y_next = tokens[:, 1:].reshape(-1)  # (B*T,) each position's next token
        r_flat = r.reshape(-1, r.size(-1))
        p_eff = torch.empty(len(key), device=device)
        for m0 in range(0, len(order), pair_chunk):
            o = order[m0:m0 + pair_chunk]
            m, fo, ao = len(o), pf[o], pa[o]
            up, inv = torch.unique(pflat[o], return_inverse=True)
            rc = r_flat[up] - r_flat[up].mean(1, keepdim=True)  # (u, C) centred final residual
            zr = (rc * gamma) @ W_U.T  # (u, V)
            d = rc[inv] - ao[:, None] * Uc[fo]  # (m, C) centred residual with the feature removed
            la = torch.index_select(zr, 0, inv, out=buf_a[:m])
            la.addcmul_(torch.index_select(Zu, 0, fo, out=buf_b[:m]), ao[:, None], value=-1)  # Z_r - a·Z_u
            lp_abl = logprob_rows_(la, (d.pow(2).mean(1) + 1e-5).rsqrt(), y_next[pflat[o]])
            lp_clean = logprob_rows_(zr, (rc.pow(2).mean(1) + 1e-5).rsqrt(), y_next[up])
            p_eff[o] = lp_clean[inv] - lp_abl
        w_eff[lo + wi, j] = p_eff[first]
        continue
    # rerun: the model per window with the site replaced by x - f_i W_dec[i] (batched over windows), then the
    # log-prob of each next token at the firing positions only
    y = tokens[cw, pw + 1]
    for m0 in range(0, hi - lo, batch_size):
        rows = torch.arange(m0, min(m0 + batch_size, hi - lo), device=device)
        feats = w_feat[lo:hi][rows]

        def ablate(xs: torch.Tensor, feats=feats) -> torch.Tensor:
            fi = sae.encode(xs.reshape(-1, xs.size(-1))).view(*xs.shape[:2], n_feat).float()
            fi = fi.gather(2, feats[:, None, None].expand(-1, xs.size(1), 1))  # (W, T', 1)
            return xs - (fi * W_dec[feats][:, None, :]).to(xs.dtype)

        t_max = int(w_end[lo:hi][rows].max()) + 1
        with torch.no_grad(), ctx:
            _, _, acts = model.run(tokens[c[rows], :t_max], capture=[final_site], replace={site: ablate},
                                   need_logits=False)
        r_abl = acts[final_site] if site != final_site else ablate(acts[final_site])  # capture is pre-replacement
        sel = ((wi >= m0) & (wi < m0 + len(rows))).nonzero()[:, 0]
        w_eff[lo + wi[sel], j[sel]] = (final_logprob(r[cw[sel], pw[sel]], y[sel])
                                       - final_logprob(r_abl[wi[sel] - m0, pw[sel]].float(), y[sel]))
t_pass3 = time.time() - t0

# ----------------------------------------------------------------------------- weights: logits, neighbours

t0 = time.time()
logit_pos = torch.zeros(n_feat, N_LOGITS, dtype=torch.long)
logit_neg = torch.zeros(n_feat, N_LOGITS, dtype=torch.long)
logit_pos_w, logit_neg_w = torch.zeros(n_feat, N_LOGITS), torch.zeros(n_feat, N_LOGITS)
logit_hist = torch.zeros(n_feat, HIST_BINS, dtype=torch.long)
logit_lo, logit_hi = torch.zeros(n_feat), torch.zeros(n_feat)
cos_idx, cos_val = torch.zeros(n_feat, N_NEIGHBOURS, dtype=torch.long), torch.zeros(n_feat, N_NEIGHBOURS)
co_idx, co_val = torch.zeros(n_feat, N_NEIGHBOURS, dtype=torch.long), torch.zeros(n_feat, N_NEIGHBOURS)
co_p = torch.zeros(n_feat, N_NEIGHBOURS)
Wn = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
n_coact = coact.diagonal().float()
n_top_tok = min(N_TOP_TOKENS, V)
top_tok_count, top_tok = torch.zeros(n_feat, n_top_tok, dtype=torch.long), torch.zeros(n_feat, n_top_tok,
                                                                                         dtype=torch.long)
k_nb = min(N_NEIGHBOURS, n_feat - 1)
with torch.no_grad():
    for f0 in range(0, n_feat, 256):
        sl = slice(f0, min(f0 + 256, n_feat))
        lw = Zu[sl] * ln_scale  # (n, V) logit weights: the LayerNorm's σ taken as the constant 1/E[1/σ]
        v, i = lw.topk(N_LOGITS, dim=1)
        logit_pos[sl], logit_pos_w[sl] = i.cpu(), v.cpu()
        v, i = lw.topk(N_LOGITS, dim=1, largest=False)
        logit_neg[sl], logit_neg_w[sl] = i.cpu(), v.cpu()
        lo_, hi_ = lw.min(1).values, lw.max(1).values
        b = ((lw - lo_[:, None]) / (hi_ - lo_).clamp_min(1e-12)[:, None] * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
        logit_hist[sl] = torch.zeros(len(b), HIST_BINS, dtype=torch.long, device=device).scatter_add_(
            1, b, torch.ones_like(b)).cpu()
        logit_lo[sl], logit_hi[sl] = lo_.cpu(), hi_.cpu()
        rows = torch.arange(sl.start, sl.stop, device=device)
        if k_nb > 0:
            cs = Wn[sl] @ Wn.T  # (n, F) decoder cosines
            cs[rows - f0, rows] = -math.inf
            v, i = cs.topk(k_nb, dim=1)
            cos_idx[sl, :k_nb], cos_val[sl, :k_nb] = i.cpu(), v.cpu()
            cc = coact[sl].float()  # co-firing counts -> Ochiai coefficient count_ij / sqrt(n_i n_j)
            score = cc / (n_coact[sl, None] * n_coact[None, :]).sqrt().clamp_min(1e-12)
            score[rows - f0, rows] = -1
            score[cc == 0] = -1
            v, i = score.topk(k_nb, dim=1)
            co_idx[sl, :k_nb], co_val[sl, :k_nb] = i.cpu(), v.cpu()
            co_p[sl, :k_nb] = (cc.gather(1, i) / n_coact[sl, None].clamp_min(1)).cpu()
        v, i = tok_count.view(n_feat, V)[sl].topk(n_top_tok, dim=1)
        top_tok_count[sl], top_tok[sl] = v.long().cpu(), i.cpu()
del coact, tok_count, Zu
t_weights = time.time() - t0

# ----------------------------------------------------------------------------- example texts

ex_len = min(example_length, T)
ex_starts = pick_chunks(n_split, ex_len, n_example_texts, np.random.default_rng(seed + 1)) if n_example_texts else []
examples = []
for e0 in range(0, len(ex_starts), batch_size):
    tokens = read_tokens(ex_starts[e0:e0 + batch_size], ex_len)
    with ctx:
        _, _, acts = model.run(tokens[:, :-1], capture=[site], need_logits=False)
        f = sae.encode(acts[site].reshape(-1, d_in)).float().view(len(tokens), ex_len, n_feat)
    v, i = f.topk(min(EXAMPLE_MAX_FEATURES, n_feat), dim=2)  # (B, T, k) the most active features per token
    for b, (vb, ib) in enumerate(zip(v.tolist(), i.tolist())):
        feats = [[x for fv, fi in zip(vt, it) if fv > 0 for x in (fi, float(f'{fv:.4g}'))] for vt, it in zip(vb, ib)]
        examples.append({'start': int(ex_starts[e0 + b]), 'toks': tokens[b, :-1].tolist(), 'feats': feats})

# ----------------------------------------------------------------------------- write the site

t0 = time.time()
final_dir = os.path.join(out_dir, 'interface')
tmp_dir = f"{final_dir}.tmp{os.getpid()}"
shutil.rmtree(tmp_dir, ignore_errors=True)
shutil.copytree(ASSETS, tmp_dir, ignore=shutil.ignore_patterns('*.md', '__pycache__'))
os.makedirs(os.path.join(tmp_dir, 'data'), exist_ok=True)
os.makedirs(os.path.join(tmp_dir, 'features'), exist_ok=True)


def write_js(rel: str, text: str) -> None:
    with open(os.path.join(tmp_dir, rel), 'w', encoding='ascii') as fh:
        fh.write(text)


vocab = load_vocab()
write_js('data/vocab.js', f"window.VOCAB={js(vocab)};\n")

n_fire_c, act_sum_c, act_max_c = n_fire.cpu(), act_sum.cpu(), act_max.cpu()
density = (n_fire_c.double() / n_tokens).numpy()
mean_act = (act_sum_c / n_fire_c.clamp_min(1)).numpy()
summary = {
    'meta': {'n_features': n_feat, 'n_tokens': n_tokens, 'n_contexts': n_ctx, 'context_length': T, 'site': site,
             'architecture': sae_cfg.get('architecture', 'standard'), 'dataset': data_dir, 'split': split,
             'transformer': os.path.abspath(ckpt_path), 'sae': os.path.abspath(sae_path), 'ultralow': ULTRALOW,
             'top_k': top_k, 'window': window, 'n_intervals': n_intervals, 'interval_samples': S,
             'hist_bins': HIST_BINS, 'features_per_file': FEATURES_PER_FILE, 'ablation': ablation_mode,
             'coact_tokens': coact_seen,
             'built': time.strftime('%Y-%m-%d %H:%M:%S')},
    'n_fire': n_fire_c.tolist(),
    'max': sig(act_max_c.numpy(), 4).tolist(),
    'mean': sig(mean_act, 4).tolist(),
    'top_tokens': [[t for t, n in zip(ts, ns) if n > 0][:3] for ts, ns in zip(top_tok.tolist(),
                                                                              top_tok_count.tolist())],
    'top_logits': logit_pos[:, :3].tolist(),
}
write_js('data/index.js', f"window.INDEX={js(summary)};\n")
write_js('data/examples.js', f"window.EXAMPLES={js(examples)};\n")

# windows grouped per feature (numpy on the CPU)
wf, wc, wp, wk, wv = (a.cpu().numpy() for a in (w_feat, w_ctx, w_pos, w_kind, w_val))
ws, we = w_start.cpu().numpy(), w_end.cpu().numpy()
wt, wa, wx = w_toks.cpu().numpy(), sig(w_acts.cpu().numpy(), 3), sig(w_eff.cpu().numpy(), 4)
worder = np.lexsort((wk, wf))  # by feature, then top rank / interval
wfirst = np.searchsorted(wf[worder], np.arange(n_feat + 1))
hist_c, icount_c = hist.view(n_feat, HIST_BINS).cpu().numpy(), icount.view(n_feat, n_intervals).cpu().numpy()
shard = []
for fi in tqdm(range(n_feat), desc='writing feature data', dynamic_ncols=True):
    top, intervals = [], [[] for _ in range(n_intervals)]
    for w in worder[wfirst[fi]:wfirst[fi + 1]]:
        s, e = int(ws[w]), int(we[w])
        n = e - s + 1
        kind = int(wk[w])
        item = {'c': int(wc[w]), 'p': int(wp[w]), 'a': float(wv[w]), 's': s, 't': wt[w, :n + 1].tolist(),
                'v': wa[w, :n].tolist(), 'e': wx[w, :n].tolist()}
        (top if kind < top_k else intervals[kind - top_k]).append(item)
    total = max(int(n_fire_c[fi]), 1)
    mx = float(act_max_c[fi])
    data = {
        'id': fi, 'n_fire': int(n_fire_c[fi]), 'density': float(density[fi]), 'max': round(mx, 4),
        'mean': round(float(mean_act[fi]), 4),
        'hist': hist_c[fi].tolist(),
        'intervals': [{'lo': round(mx * j / n_intervals, 4), 'hi': round(mx * (j + 1) / n_intervals, 4),
                       'n': int(icount_c[fi, j]), 'share': round(int(icount_c[fi, j]) / total, 5),
                       'samples': intervals[j]} for j in range(n_intervals)],
        'top': top,
        'top_tokens': [[t, n] for t, n in zip(top_tok[fi].tolist(), top_tok_count[fi].tolist()) if n > 0],
        'logits': {'pos': [[t, round(w, 4)] for t, w in zip(logit_pos[fi].tolist(), logit_pos_w[fi].tolist())],
                   'neg': [[t, round(w, 4)] for t, w in zip(logit_neg[fi].tolist(), logit_neg_w[fi].tolist())],
                   'hist': logit_hist[fi].tolist(), 'lo': round(float(logit_lo[fi]), 4),
                   'hi': round(float(logit_hi[fi]), 4)},
        'cos': [[j, round(c, 4)] for j, c in zip(cos_idx[fi, :k_nb].tolist(), cos_val[fi, :k_nb].tolist())],
        'coact': [[j, round(c, 4), round(p, 4)] for j, c, p in zip(co_idx[fi, :k_nb].tolist(),
                                                                    co_val[fi, :k_nb].tolist(),
                                                                    co_p[fi, :k_nb].tolist()) if c > 0],
    }
    shard.append(js(data))
    if len(shard) == FEATURES_PER_FILE or fi == n_feat - 1:
        write_js(os.path.join('features', f'{fi // FEATURES_PER_FILE:04d}.js'), f"loadFeatures([{','.join(shard)}]);\n")
        shard = []

atomic_write_json(os.path.join(tmp_dir, 'meta.json'), {
    **summary['meta'], 'config': config, 'context_starts': starts.tolist(),
    'example_starts': [int(s) for s in ex_starts], 'example_length': ex_len, 'ln_scale': ln_scale,
    'seconds': {'pass1': round(t_pass1, 2), 'pass2': round(t_pass2, 2), 'pass3': round(t_pass3, 2),
                'weights': round(t_weights, 2), 'write': round(time.time() - t0, 2),
                'total': round(time.time() - t_start, 2)},
    'complete': True})
# swap the finished folder in: readers see the old site or the new one, never a half-written one
old_dir = f"{final_dir}.old{os.getpid()}"
if os.path.exists(final_dir):
    os.replace(final_dir, old_dir)
os.replace(tmp_dir, final_dir)
shutil.rmtree(old_dir, ignore_errors=True)

dead = int((n_fire_c == 0).sum())
ultralow = int(((n_fire_c > 0) & (torch.from_numpy(density) < ULTRALOW)).sum())
print0(f"{n_feat} features ({dead} dead, {ultralow} ultralow) from {n_tokens:,} tokens in "
       f"{time.time() - t_start:.0f}s (passes {t_pass1:.0f}s + {t_pass2:.0f}s + {t_pass3:.0f}s, weights "
       f"{t_weights:.0f}s, pages {time.time() - t0:.0f}s)")
print0(f"open {os.path.abspath(os.path.join(final_dir, 'index.html'))}")
