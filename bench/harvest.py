"""
Harvest speed against the bare forward pass, and peak RAM against the number of rows, measured in one run.

    python -m bench.harvest                          # demo-size model (1 layer, d 128, vocab 4096, block 256)
    python -m bench.harvest --n_rows=50000 --threads=2

Needs no prepared data: a random-init demo-size GPT and a synthetic token file are written to a temp dir.
1. In this process, alternating rounds (this machine's speed drifts; medians are compared): the bare forward
   up to the site (model.run(need_logits=False)) on preloaded batches; `fill_rows_` on the same contexts (read
   windows from the memmap, forward, gather the kept positions, fp16, scatter into the shuffled shard buffer);
   the harvest as generate_activations.py does it: fill_rows_ + `ShardWriter.save` for a few shards to new
   files (copy to a temp file, fsync, rename, crc32, in a background thread while the next shard is computed,
   rows held back while the copy runs), up to the last shard on disk; and the same with each shard saved in
   line (no thread: what the writer thread buys). Target: harvest / forward >= 0.8.
2. generate_activations.py end to end in child processes for n_rows and 10*n_rows: peak RSS (the child's
   VmHWM; target: flat) and its own rows/s (startup excluded; not interleaved, so it drifts with the machine).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from monosemanticity.store import ShardWriter, drop_from_page_cache, file_crc32, fill_rows_, shard_plan  # noqa: E402
from monosemanticity.common import atomic_file  # noqa: E402
from configurator import configure  # noqa: E402
from model import GPT, GPTConfig, site_name  # noqa: E402

n_rows = 100_000  # rows of the small end-to-end run (the large one harvests 10x as many)
tokens_per_context = 200  # positions kept per context
batch_size = 32  # contexts per forward
rows_per_shard = 2 ** 16  # shard size of the end-to-end runs (RAM holds one shard)
rounds = 3  # alternating forward / fill / harvest / in-line rounds in process
contexts_per_round = 256  # contexts per shard in process (51,200 rows, 52 MB)
shards_per_round = 4  # shards per round (a harvest round ends when the last one is on disk)
threads = 1  # torch threads here and in the children (1 = robust on a shared machine)
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

SITE = site_name(0, 'mlp_hidden')
ARGS = dict(n_layer=1, n_head=4, n_embd=128, block_size=256, bias=True, vocab_size=4096, dropout=0.0,
            activation='gelu')

CHILD = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path('generate_activations.py', run_name='__main__')
finally:
    print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].strip(), flush=True)
"""


def setup(tmp: str) -> tuple[str, str]:
    """A synthetic token dataset and a random-init demo-size checkpoint in tmp."""
    data = os.path.join(tmp, 'data')
    os.makedirs(data)
    rng = np.random.default_rng(0)
    for split, n in (('train', 4_000_000), ('val', 100_000)):
        rng.integers(0, ARGS['vocab_size'], n, dtype=np.uint16).tofile(os.path.join(data, f'{split}.bin'))
    meta = dict(vocab_size=ARGS['vocab_size'], dtype='uint16', eot_token=ARGS['vocab_size'] - 1, tokenizer='bpe',
                tokenizer_file=None, corpus='synthetic (bench)', train_tokens=4_000_000, val_tokens=100_000)
    with open(os.path.join(data, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**ARGS))
    ckpt = os.path.join(tmp, 'ckpt.pt')
    torch.save({'model': model.state_dict(), 'model_args': ARGS, 'config': {}, 'data': {'dataset': data}}, ckpt)
    return data, ckpt


def in_process(tmp: str, data: str) -> tuple[float, float, float, float]:
    """Median rows/s of the bare forward, of fill_rows_ alone, of whole shards saved as the script does, and of
    whole shards saved in line."""
    model = GPT(GPTConfig(**ARGS)).eval()
    T = ARGS['block_size']
    plans = [shard_plan(0, g, 10 ** 9, contexts_per_round, 4_000_000, T, tokens_per_context)
             for g in range(shards_per_round)]
    tokens = np.memmap(os.path.join(data, 'train.bin'), dtype=np.uint16, mode='r')
    xs = [torch.from_numpy(np.stack([tokens[s:s + T] for s in p.starts[i:i + batch_size]]).astype(np.int64))
          for p in plans for i in range(0, contexts_per_round, batch_size)]
    out = np.empty((plans[0].rows, 4 * ARGS['n_embd']), dtype=np.float16)
    rows = sum(p.rows for p in plans)

    @torch.no_grad()
    def forward():
        for x in xs:
            model.run(x, capture=[SITE], need_logits=False)

    def fill():
        for p in plans:
            fill_rows_(model, SITE, data, 'train', 'uint16', p, out, batch_size, 'cpu')

    paths = [os.path.join(tmp, f'shard_{g:05d}.bin') for g in range(len(plans))]

    def harvest():  # as the script: shard g is copied out, fsynced and renamed while shard g+1 is computed
        writer = ShardWriter()
        for p, path in zip(plans, paths):
            fill_rows_(model, SITE, data, 'train', 'uint16', p, out, batch_size, 'cpu', out_copied=writer.copied)
            writer.save(path, out, {})
        writer.close()
        for path in paths:
            os.remove(path)

    def in_line():  # the same steps as ShardWriter's, with no thread
        for p, path in zip(plans, paths):
            fill_rows_(model, SITE, data, 'train', 'uint16', p, out, batch_size, 'cpu')
            with atomic_file(path) as f:
                f.write(memoryview(out).cast('B'))
            file_crc32(path)
            drop_from_page_cache(path)
        for path in paths:
            os.remove(path)

    times: dict = {forward: [], fill: [], harvest: [], in_line: []}
    forward(), harvest()  # warm-up
    for _ in range(rounds):
        for fn, acc in times.items():
            t0 = time.perf_counter()
            fn()
            acc.append(rows / (time.perf_counter() - t0))
    return tuple(statistics.median(v) for v in times.values())


def end_to_end(tmp: str, data: str, ckpt: str, rows: int) -> tuple[float, int, int]:
    """(rows/s, bytes on disk, peak RSS in bytes) of generate_activations.py harvesting `rows` rows."""
    out = os.path.join(tmp, f'run{rows}')
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
    cmd = [sys.executable, '-c', CHILD, 'generate_activations.py', f'--out_dir={out}', f'--transformer_ckpt={ckpt}',
           f'--dataset={data}', f'--n_contexts={rows // tokens_per_context}',
           f'--tokens_per_context={tokens_per_context}', f'--rows_per_shard={rows_per_shard}',
           f'--batch_size={batch_size}', '--device=cpu']
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"generate_activations.py failed:\n{p.stderr[-2000:]}")
    done = next(line for line in p.stdout.splitlines() if line.startswith('done:'))
    rate = float(done.split(' = ')[1].split(' rows/s')[0].replace(',', ''))
    hwm = int(p.stdout.strip().splitlines()[-1].split()[1]) * 1024
    store = os.path.join(out, 'activations')
    size = sum(os.path.getsize(os.path.join(store, f)) for f in os.listdir(store))
    shutil.rmtree(out)
    return rate, size, hwm


def main() -> None:
    torch.set_num_threads(threads)
    tmp = tempfile.mkdtemp(prefix='bench_harvest_')
    try:
        data, ckpt = setup(tmp)
        fwd, fill, hv, inline = in_process(tmp, data)
        small = end_to_end(tmp, data, ckpt, n_rows)
        big = end_to_end(tmp, data, ckpt, 10 * n_rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    d = 4 * ARGS['n_embd']
    print(f"demo-size GPT (1 layer, d_model 128, block 256, vocab 4096), site {SITE} (d={d}), fp16 store, "
          f"{tokens_per_context} rows/context, batch {batch_size} contexts, {threads} thread(s)")
    print(f"{'':40s} {'rows/s':>9s} {'/forward':>8s} {'peak RSS':>9s} {'bytes/row':>9s}")
    print(f"{'bare forward to the site':40s} {fwd:9,.0f} {1:8.2f}")
    print(f"{'fill_rows_ (same contexts)':40s} {fill:9,.0f} {fill / fwd:8.2f}")
    print(f"{'harvest: fill_rows_ + ShardWriter':40s} {hv:9,.0f} {hv / fwd:8.2f}")
    print(f"{'the same, shards saved in line':40s} {inline:9,.0f} {inline / fwd:8.2f}")
    for name, (rate, size, hwm), rows in (('script, N', small, n_rows), ('script, 10N', big, 10 * n_rows)):
        print(f"{name + f' = {rows:,} rows (separate run)':40s} {rate:9,.0f} {'':8s} {hwm / 2 ** 20:7.0f}MB "
              f"{size / rows:9.0f}")
    print(f"harvest / forward = {hv / fwd:.2f} (target >= 0.8); peak RSS 10N / N = {big[2] / small[2]:.2f} "
          f"(target: flat)")


if __name__ == '__main__':
    main()
