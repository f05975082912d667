"""
Harvest a trained transformer's activations at one hook site into the on-disk store train_sae.py reads.

CPU demo (after `python train_transformer.py config/demo/transformer.py`), ~1 min on 2 cores:
    python generate_activations.py config/demo/activations.py
Seed reproduction (20M contexts of 1024 tokens x 200 positions = 4B rows of blocks.0.mlp_hidden), a GPU or 8:
    python generate_activations.py config/activations.py
    torchrun --standalone --nproc_per_node=8 generate_activations.py config/activations.py
Killed? Run the same command again: it resumes after the last complete shard, and the finished store is
byte-identical to an uninterrupted run (shard g's contexts, positions and row order depend only on seed and g,
so the rank count does not matter either). Any key can be overridden: --n_contexts=1000; --help lists them.

Rows are checked before they are written: NaN/inf from the transformer, or values beyond float16's range
(then --dtype=float32), stop the harvest with one line naming the shard and context; that shard is not written.

Writes <out_dir>/activations/: shard_XXXXX.bin (raw row-major [rows, d] arrays, rows shuffled across contexts,
each written to a temp name, fsynced and renamed) and meta.json (rewritten atomically after every shard).
Under torchrun every rank writes its own shards (g = rank, rank + world, ...; multi-node needs a shared disk)
and rank 0 writes meta.json.
"""
import hashlib
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist

from monosemanticity.store import (NonFiniteRows, ShardWriter, fill_rows_, read_store_meta, resolve_site,
                                   shard_contexts, shard_file_error, shard_plan)
from monosemanticity.common import (atomic_write_json, data_dir_of, ddp_cleanup, ddp_setup, die, exit_on_user_error,
                                    get_device, load_checkpoint, load_data_meta, next_command, print0, progress,
                                    token_memmap)
from configurator import configure
from model import load_gpt, parse_site

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out'  # the run folder; the store goes to <out_dir>/activations/
transformer_ckpt = ''  # the transformer checkpoint; '' = <out_dir>/transformer/ckpt.pt
# what to harvest
dataset = ''  # a folder under data/ or a path; '' = the dataset the transformer was trained on
split = 'train'  # 'train' or 'val'
layer = -1  # block index; -1 = the last block
site = 'mlp_hidden'  # resid_pre, attn_out, resid_mid, mlp_hidden (the paper's), mlp_out, resid_post
n_contexts = 10000  # random windows of the token stream to run the model on
tokens_per_context = 200  # distinct positions kept per context (the seed: 200 of 1024)
context_length = 0  # tokens per window; 0 = the model's block_size
# store
dtype = 'float16'  # row dtype on disk: 'float16' (half the bytes) or 'float32'
rows_per_shard = 2 ** 20  # rows per shard file (rounded down to whole contexts); RAM holds one shard
# system
batch_size = 32  # contexts per forward pass
seed = 1337  # contexts, positions and row order of shard g are drawn from (seed, g)
device = 'auto'  # 'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
# -----------------------------------------------------------------------------
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

# fields that must match for an existing store to be continued
SAME = ('site', 'd', 'dtype', 'tokens_per_context', 'context_length', 'n_contexts', 'contexts_per_shard', 'split',
        'n_tokens', 'transformer_sha256', 'seed')


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(2 ** 24):
            h.update(block)
    return h.hexdigest()


def new_store_meta() -> dict:
    """meta.json of this run's store before any shard is written (the layout: monosemanticity/store.py's docstring)."""
    return dict(d=d, dtype=dtype, n_rows=0, shards=[], complete=False, site=hook, layer=layer,
                tokens_per_context=tokens_per_context, context_length=T, n_contexts=n_contexts,
                contexts_per_shard=cps, n_shards=n_shards, dataset=data_dir, split=split, n_tokens=n_tokens,
                transformer_ckpt=ckpt_path, transformer_sha256=sha256_of(ckpt_path), seed=seed,
                world_size=world_size)


def continue_store(new: dict) -> tuple[str | None, dict]:
    """Rank 0: the store this run writes. (None, new) if there is none yet (or it lists no shards); (None, its meta
    with only its intact shards) if it was written with this run's settings (a missing or truncated shard is
    harvested again, the same bytes); (the one line why not, new) if it was written with other settings."""
    if not os.path.exists(meta_path):
        return None, new
    old = read_store_meta(store_dir)
    diff = [k for k in SAME if old.get(k) != new[k]]
    if diff and old['shards'] == []:  # nothing kept yet: nothing to lose
        print(f"note: {meta_path} lists no shards yet: starting the store again with this run's settings")
        return None, new
    if diff:
        was = ', '.join(f"{k}={old.get(k)!r}" for k in diff)
        now = ', '.join(f"{k}={new[k]!r}" for k in diff)
        return (f"{meta_path} was written with {was}, but this run has {now}: use another out_dir or delete "
                f"{store_dir}"), new
    intact = []
    for s in old['shards']:
        if shard_file_error(os.path.join(store_dir, s['file']), s['rows'], d, np.dtype(dtype), meta_path):
            print(f"note: {os.path.join(store_dir, s['file'])} is missing or truncated: harvesting it again")
        else:
            intact.append(s)
    if old['complete'] and len(intact) == len(old['shards']):
        return None, old
    return None, {**new, 'shards': intact, 'n_rows': sum(s['rows'] for s in intact)}


def open_store() -> dict:
    """The store's meta.json, decided by rank 0 and sent to every rank; an incomplete store's folder is ready to
    take shards (no temp files of a killed run left) and its meta.json is written."""
    problem, meta = None, None
    if master:
        problem, meta = continue_store(new_store_meta())
        if problem is None and not meta['complete']:
            os.makedirs(store_dir, exist_ok=True)
            for f in os.listdir(store_dir):  # temp files of a killed run
                if f.startswith(('shard_', 'meta.json')) and '.tmp' in f:
                    os.remove(os.path.join(store_dir, f))
            atomic_write_json(meta_path, meta)
    if ddp:
        box = [(problem, meta)]
        dist.broadcast_object_list(box, src=0)
        problem, meta = box[0]
    if problem is not None and master:
        die(problem)
    if problem is not None:
        sys.exit(2)  # the other ranks: rank 0 said why
    return meta


def refusal(e: NonFiniteRows, g: int, listed: bool) -> str:
    """The one line for shard g's non-finite rows; listed: meta.json already lists shards of this run."""
    where = (f"context {shard_contexts(g, n_contexts, cps)[0] + e.context} "
             f"(tokens {e.start}..{e.start + T - 1} of {split}.bin)")
    head = f"refusing to write {os.path.join(store_dir, f'shard_{g:05d}.bin')}"
    if e.what == 'overflow':
        after = f" after deleting {store_dir} (it holds float16 shards)" if listed else ''
        return (f"{head}: {hook} rows of {where} overflow float16 (max |x| = {e.max_abs:.4g} > 65504): "
                f"rerun with --dtype=float32{after}")
    after = f", then delete {store_dir}" if listed else ''
    return (f"{head}: the transformer {ckpt_path} produced {e.what} at {hook} in {where}: retrain it "
            f"(e.g. with a lower learning_rate) or pass another --transformer_ckpt{after}")


def harvest_shard(g: int, buf: np.ndarray, writer: ShardWriter, bar, listed: bool) -> dict:
    """Compute shard g's rows into buf and hand them to the writer, which first finishes the previous shard
    (rows are held back while it still copies buf out). Returns the shard's meta.json entry (crc32 is added once
    it is saved). A non-finite row ends the run with `refusal`'s line, before any byte of the shard is written."""
    plan = shard_plan(seed, g, n_contexts, cps, n_tokens, T, tokens_per_context)
    rows = buf[:plan.rows]
    name = f'shard_{g:05d}.bin'
    try:
        fill_rows_(model, hook, data_dir, split, data_meta['dtype'], plan, rows, batch_size, device, bar.update,
                   writer.copied)
    except NonFiniteRows as e:
        bar.leave = False
        bar.close()  # erase the progress line: the error is the one line left on the terminal
        die(refusal(e, g, listed))
    entry = dict(file=name, rows=plan.rows, contexts=list(shard_contexts(g, n_contexts, cps)), rank=rank)
    writer.save(os.path.join(store_dir, name), rows, entry)
    return entry


def publish(meta: dict, entry: dict | None, bar) -> None:
    """Record the shards of a round that are now under their final names (entry: this rank's, or None); rank 0
    rewrites meta.json."""
    entries = [entry]
    if ddp:
        entries = [None] * world_size
        dist.all_gather_object(entries, entry)
    if master:
        meta['shards'] = sorted(meta['shards'] + [e for e in entries if e], key=lambda e: e['contexts'][0])
        meta['n_rows'] = sum(e['rows'] for e in meta['shards'])
        meta['world_size'] = world_size
        meta['complete'] = meta['n_rows'] == total_rows
        atomic_write_json(meta_path, meta)
        bar.set_postfix(shards=f"{len(meta['shards'])}/{n_shards}", refresh=False)


def harvest(meta: dict) -> int:
    """Write the shards meta.json does not list yet: in rounds of one shard per rank (g = rank, rank + world, ...
    of them), each saved in the background while the next one is computed and listed in meta.json once it is
    in place. Returns the rows this rank wrote."""
    done = {s['contexts'][0] // cps for s in meta['shards']}  # shard g holds contexts [g*cps, (g+1)*cps)
    todo = [g for g in range(n_shards) if g not in done]
    mine = todo[rank::world_size]
    print0(f"harvesting {hook} (d={d}) of {ckpt_path} on {data_dir} [{split}, {n_tokens:,} tokens]: "
           f"{n_contexts:,} contexts x {tokens_per_context} of {T} positions = {total_rows:,} rows "
           f"({total_rows * row_bytes / 1e9:.2f} GB {dtype}) in {n_shards} shard(s) of "
           f"{cps * tokens_per_context:,} rows, on {device} x {world_size} rank(s)")
    if done:
        print0(f"resuming {store_dir}: {len(done)} of {n_shards} shards already written ({meta['n_rows']:,} rows)")
    buf = np.empty((cps * tokens_per_context, d), dtype=dtype)  # one shard (+ <= 1/4 held back while it is saved)
    my_rows = sum(np.diff(shard_contexts(g, n_contexts, cps))[0] * tokens_per_context for g in mine)
    bar = progress(total=my_rows, desc=f'harvest{" rank 0" if ddp else ""}', unit='row', unit_scale=True,
                   disable=not master)
    writer = ShardWriter()
    current = None  # the meta.json entry of this rank's shard of the round (None: no shard this round)
    for r in range(math.ceil(len(todo) / world_size)):
        previous, current = current, None
        if r < len(mine):  # the writer takes this shard once `previous` is in place
            current = harvest_shard(mine[r], buf, writer, bar, listed=bool(done) or r >= 2)
        else:
            writer.wait()  # `previous` is in place
        if r > 0:
            publish(meta, previous, bar)  # a round late: a shard is listed once it is on disk
    writer.close()
    publish(meta, current, bar)
    bar.close()
    return int(my_rows)


# ----------------------------------------------------------------------------- the transformer and the data
device = get_device(device)
ddp, rank, local_rank, world_size, device = ddp_setup(device)
master = rank == 0
if dtype not in ('float16', 'float32'):
    die(f"dtype='{dtype}' is not 'float16' or 'float32'")
for key in ('n_contexts', 'tokens_per_context', 'rows_per_shard', 'batch_size'):
    if globals()[key] <= 0:
        die(f"{key}={globals()[key]} must be positive")
store_dir = os.path.join(out_dir, 'activations')
meta_path = os.path.join(store_dir, 'meta.json')
ckpt_path = transformer_ckpt or os.path.join(out_dir, 'transformer', 'ckpt.pt')
ckpt = load_checkpoint(ckpt_path, hint="train one first: python train_transformer.py config/demo/transformer.py")
model = load_gpt(ckpt, device)
hook, d = resolve_site(model, site, layer)
layer, _ = parse_site(hook)
if not dataset:
    dataset = ckpt.get('data', {}).get('dataset') or ckpt.get('config', {}).get('dataset', '')
    if not dataset:
        die(f"{ckpt_path} does not say which dataset it was trained on: pass --dataset=...")
data_dir = data_dir_of(dataset)
data_meta = load_data_meta(data_dir)
if data_meta['vocab_size'] > model.config.vocab_size:
    die(f"{data_dir} has vocab {data_meta['vocab_size']}, more than the model's {model.config.vocab_size}: "
        f"the transformer was trained on another dataset")
ckpt = None  # free it
T = context_length or model.config.block_size
if T > model.config.block_size:
    die(f"context_length={T} is longer than the model's block_size {model.config.block_size}")
if tokens_per_context > T:
    die(f"tokens_per_context={tokens_per_context} is more than the {T} positions of a context")
n_tokens = len(token_memmap(data_dir, split, data_meta['dtype']))
if n_tokens < T:
    die(f"{os.path.join(data_dir, split + '.bin')} has {n_tokens} tokens, fewer than context_length={T}")
cps = max(1, rows_per_shard // tokens_per_context)  # contexts per shard
n_shards = math.ceil(n_contexts / cps)
row_bytes = d * np.dtype(dtype).itemsize
total_rows = n_contexts * tokens_per_context

# ----------------------------------------------------------------------------- the store: new, resumed or complete
meta = open_store()
if meta['complete']:
    print0(f"{store_dir} is already complete ({meta['n_rows']:,} rows of {meta['site']}, d={meta['d']}): "
           f"nothing to do (delete it or pick another out_dir to harvest again)")
else:
    t0 = time.time()
    written = harvest(meta)
    elapsed = time.time() - t0
    if ddp:
        total = torch.tensor(written)
        dist.all_reduce(total)
        written = int(total.item())
    rate = written / max(elapsed, 1e-9)
    print0(f"done: wrote {written:,} rows ({written * row_bytes / 1e9:.3f} GB, {row_bytes} bytes/row) in "
           f"{elapsed:.1f}s = {rate:,.0f} rows/s ({world_size} rank(s))")
    print0(f"store: {store_dir} ({meta['n_rows']:,} rows x d={d} {dtype} in {len(meta['shards'])} shards, "
           f"complete={meta['complete']})")
    print0(f"next: {next_command('train_sae.py', 'sae', out_dir)}")
ddp_cleanup(ddp)
