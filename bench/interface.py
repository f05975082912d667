"""
Time and peak RAM of build_interface.py for 4096 features on CPU, at two numbers of contexts.

    python -m bench.interface                                   # 4096 features, n_contexts 256 and 1024
    python -m bench.interface --n_contexts=128,512 --threads=2  # any two (or more) sizes
    python -m bench.interface --n_features=4096,16384,131072 --vocab=50257 --n_contexts=64
                                                                # dictionary sizes: seconds and peak RSS per F
    git worktree add /tmp/before HEAD && python -m bench.interface --baseline=/tmp/before --n_contexts=256 --repeats=3
                                                                # A/B: this checkout against another, same inputs

Setup (made in a temp folder, no training, no network): a random-init demo-size GPT (1 layer, d_model 128,
4 heads, vocab 4096, block 256), an SAE 512 -> 4096 with random weights whose encoder biases make each
feature fire on 1-5% of tokens (x 4096/F past 4096 features: L0 ~ 120 at any F), synthetic val tokens, and a
small tiktoken Encoding built in-process. With several n_features (each run at the first n_contexts; batch_size
scaled by 4096/F so that the (tokens, F) codes of a batch keep their size) it prints seconds and peak RSS per F:
the token and co-activation counts are sparse past dense_stats_mb, so RSS should grow sublinearly in F past the
SAE weights.
build_interface.py runs as a subprocess (as a user runs it); its peak RSS comes from os.wait4. RAM should
not depend on n_contexts (nothing of size n_tokens x n_features is held); time grows with it. With --baseline, the
two checkouts run alternately on the same inputs (A B A B ...), so a loaded machine slows both alike, and the
ratios this/baseline of the best times of each phase are printed.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import tiktoken
import torch
from safetensors.torch import save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from monosemanticity.common import die  # noqa: E402
from configurator import configure  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from monosemanticity.tokenizer import save_tokenizer  # noqa: E402

n_contexts = '256,1024'  # comma-separated sizes to run
n_features = '4096'  # comma-separated dictionary sizes (several: one run each, a table of seconds and RSS per F)
vocab = 4096  # the synthetic tokenizer's vocabulary (50257: GPT-2's)
context_length = 256
batch_size = 32
threads = 2  # OMP threads of the subprocess (the target machine has 2 cores)
ablation = 'auto'
keep = False  # keep the temp folder (prints its path)
baseline = ''  # another checkout of the repo to compare with ('' = none)
repeats = 1  # runs per size (per checkout); the best time of each phase counts
build_args = ''  # more build_interface.py overrides, space-separated (e.g. '--dense_stats_mb=1024')
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

D_MODEL = 128


def make_inputs(root: str, n_tokens: int, n_features: int, n_vocab: int) -> None:
    """Random model, SAE, tokens and tokenizer under root/ in the layouts the pipeline writes."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    data = os.path.join(root, 'data')
    os.makedirs(data, exist_ok=True)
    ranks = {bytes([i]): i for i in range(256)}
    while len(ranks) < n_vocab - 1:  # byte strings of 2-6 letters/punctuation/UTF-8 pieces as the other tokens
        b = bytes(rng.choice(list(b' etaoinshrdlu\n().,:=_<>"\xc3\xa9'), rng.integers(2, 7)).tolist())
        ranks.setdefault(b, len(ranks))
    enc = tiktoken.Encoding('bench', pat_str=r"""\S+|\s+""", mergeable_ranks=ranks,
                            special_tokens={'<|endoftext|>': n_vocab - 1})
    save_tokenizer(enc, os.path.join(data, 'tokenizer.json'))
    zipf = np.minimum(rng.zipf(1.2, n_tokens), n_vocab - 1) - 1  # a skewed token distribution
    zipf.astype(np.uint16).tofile(os.path.join(data, 'val.bin'))
    zipf[:10000].astype(np.uint16).tofile(os.path.join(data, 'train.bin'))
    with open(os.path.join(data, 'meta.json'), 'w') as f:
        json.dump(dict(vocab_size=n_vocab, dtype='uint16', eot_token=n_vocab - 1, tokenizer='bpe',
                       tokenizer_file='tokenizer.json', corpus='synthetic (bench)', train_tokens=10000,
                       val_tokens=n_tokens), f)
    args = dict(n_layer=1, n_head=4, n_embd=D_MODEL, block_size=256, bias=True, vocab_size=n_vocab, dropout=0.0,
                activation='gelu')
    model = GPT(GPTConfig(**args)).eval()
    os.makedirs(os.path.join(root, 'transformer'))
    torch.save({'model': model.state_dict(), 'model_args': args, 'config': {},
                'data': {'dataset': data, 'tokenizer': 'bpe', 'vocab_size': n_vocab}},
               os.path.join(root, 'transformer', 'ckpt.pt'))
    # SAE: random unit decoder rows; encoder biases at each feature's (1 - p) quantile, p ~ U(1%, 5%)
    d_in = 4 * D_MODEL
    idx = torch.from_numpy(zipf[:256 * 16].astype(np.int64)).view(16, 256)
    with torch.no_grad():
        _, _, acts = model.run(idx, capture=['blocks.0.mlp_hidden'], need_logits=False)
    x = acts['blocks.0.mlp_hidden'].reshape(-1, d_in)
    W_dec = torch.randn(n_features, d_in)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.contiguous() / x.std()
    b_dec = x.mean(0)
    pre = (x - b_dec) @ W_enc
    p = torch.empty(n_features).uniform_(0.01, 0.05) * min(1.0, 4096 / n_features)
    b_enc = torch.cat([-column_quantiles(pre[:, i:i + 4096], 1 - p[i:i + 4096]) for i in range(0, n_features, 4096)])
    os.makedirs(os.path.join(root, 'sae'))
    save_file({'W_enc': W_enc, 'W_dec': W_dec, 'b_enc': b_enc.contiguous(), 'b_dec': b_dec.contiguous()},
              os.path.join(root, 'sae', 'sae_weights.safetensors'))
    with open(os.path.join(root, 'sae', 'cfg.json'), 'w') as f:
        json.dump({'architecture': 'standard', 'd_in': d_in, 'd_sae': n_features, 'hook_name': 'blocks.0.mlp_hidden',
                   'apply_b_dec_to_input': True}, f)


def column_quantiles(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """x (n, m), q (m,) -> (m,) the q[j] quantile of column j (linear interpolation, as torch.quantile)."""
    s = x.sort(dim=0).values
    pos = q * (len(x) - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(len(x) - 1)
    cols = torch.arange(x.size(1))
    return torch.lerp(s[lo, cols], s[hi, cols], pos - lo)


def run(root: str, n: int, repo: str = REPO, batch: int = 0) -> dict:
    """build_interface.py of `repo` on n contexts; wall seconds, peak RSS (MB) and the script's phase timings."""
    cmd = [sys.executable, os.path.join(repo, 'build_interface.py'), f'--out_dir={root}', f'--n_contexts={n}',
           f'--context_length={context_length}', f'--batch_size={batch or batch_size}', '--device=cpu',
           f'--ablation={ablation}', *str(build_args).split()]
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads)}
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - t0
    if status != 0:
        die(f"{cmd[1]} failed:\n{out[-3000:]}")
    with open(os.path.join(root, 'interface', 'meta.json')) as f:
        meta = json.load(f)
    return {'n_contexts': n, 'tokens': meta['n_tokens'], 'wall': wall, 'rss_mb': usage.ru_maxrss / 1024,
            'seconds': meta['seconds'], 'n_features': meta['n_features']}


def report(label: str, r: dict) -> None:
    s = r['seconds']
    print(f"{label}n_contexts {r['n_contexts']:5d} ({r['tokens']:,} tokens): {r['wall']:6.1f}s total, "
          f"{1000 * r['wall'] / r['n_features']:.1f} ms/feature, peak RSS {r['rss_mb']:.0f} MB  "
          f"[pass1 {s['pass1']}s, pass2 {s['pass2']}s, pass3 {s['pass3']}s, weights {s['weights']}s, "
          f"pages {s['write']}s]", flush=True)


def compare(root: str, n: int) -> None:
    """This checkout (A) and the baseline (B) alternately, `repeats` times each: best-time ratios A/B per phase."""
    best: dict[str, dict[str, float]] = {'A': {}, 'B': {}}
    for _ in range(repeats):
        for label, repo in (('A', REPO), ('B', os.path.abspath(baseline))):
            r = run(root, n, repo)
            report(f"{label} ", r)
            for k, v in {**r['seconds'], 'wall': r['wall'], 'rss_mb': r['rss_mb']}.items():
                best[label][k] = min(best[label].get(k, math.inf), v)
    print(f"this / baseline (best of {repeats}): " + ', '.join(
        f"{k} {best['A'][k] / max(best['B'][k], 1e-9):.2f}" for k in best['A'] if k in best['B']))


def feature_sizes(sizes: list[int], features: list[int]) -> None:
    """One run per dictionary size at sizes[0] contexts: seconds and peak RSS per F, and the SAE weights' MB."""
    rows = []
    for F in features:
        root = tempfile.mkdtemp(prefix=f'bench_interface_{F}_')
        make_inputs(root, sizes[0] * (context_length + 1) + 1000, F, vocab)
        batch = max(1, batch_size * 4096 // F)
        r = run(root, sizes[0], batch=batch)
        report(f"F {F:6d} (batch {batch:2d}) ", r)
        rows.append((F, r['wall'], r['rss_mb'], 2 * 4 * D_MODEL * 4 * F / 2 ** 20))
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'F':>7} {'seconds':>8} {'peak RSS MB':>12} {'SAE weights MB':>15} {'RSS - weights MB':>17} "
          f"{'x F':>6} {'x (RSS - weights)':>18}  (vocab {vocab}, {sizes[0]} contexts)")
    F0, _, rss0, w0 = rows[0]
    for F, wall, rss, weights in rows:  # sublinear: the last column grows slower than 'x F'
        print(f"{F:7d} {wall:8.1f} {rss:12.0f} {weights:15.0f} {rss - weights:17.0f} {F / F0:6.1f} "
              f"{(rss - weights) / (rss0 - w0):18.2f}")
    print(f"peak RSS at F {rows[-1][0]}: {rows[-1][2] / 1024:.1f} GB")


def main() -> None:
    sizes = [int(s) for s in str(n_contexts).split(',')]
    features = [int(s) for s in str(n_features).split(',')]
    if len(features) > 1:
        return feature_sizes(sizes, features)
    F = features[0]
    root = tempfile.mkdtemp(prefix='bench_interface_')
    make_inputs(root, max(sizes) * (context_length + 1) + 1000, F, vocab)
    print(f"{F} features, SAE 512 -> {F} (random, 1-5% firing), 1-layer d_model {D_MODEL} vocab "
          f"{vocab}; {threads} threads; {root}")
    if baseline:
        for n in sizes:
            compare(root, n)
        sizes = []
    rows = []
    for n in sizes:
        rows.append(run(root, n))
        report('', rows[-1])
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"RSS ratio {b['rss_mb'] / a['rss_mb']:.2f} for {b['n_contexts'] / a['n_contexts']:.0f}x the contexts; "
              f"time ratio {b['wall'] / a['wall']:.2f}")
    if keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
