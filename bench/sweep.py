"""
A sweep's cost against its SAEs' steps alone, measured in one run: the wall time of train_sae.py's training loop
with N SAEs in `sweep` (each batch read once, fed to all; data, steps, logging, checkpoints) against the sum of
the same N SAEs' training steps timed alone (train_step_ on batches already in memory: no data reading at all).

    python -m bench.sweep                           # the demo store (make demo first), 4 SAEs x 200 steps, ~1 min
    python -m bench.sweep --max_steps=100 --threads=2

Target: sweep wall / sum(alone steps) <= 1.1: what the sweep adds to its SAEs' own steps (one read of the
stream, the loop) is under 10%. Also printed: each alone run's loop in its own train_sae.py (what N separate
runs cost, data read N times). In rounds of alone steps, the sweep, alone runs (this machine's speed drifts), so
compare ratios only.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import torch  # noqa: E402

from monosemanticity.store import ActivationStore  # noqa: E402
from autoencoder import (RECIPES, Recipe, SAEConfig, SparseAutoencoder, init_from_data_,  # noqa: E402
                         make_adam, train_step_)
from configurator import configure  # noqa: E402

out_dir = 'out/demo'  # its activations/ and transformer/ckpt.pt are read (nothing is written there)
max_steps = 200  # steps of each run (short runs are dominated by warm-up)
batch_size = 1024
threads = 2  # OMP_NUM_THREADS of the children
rounds = 1  # rounds of (alone steps, the sweep, the alone runs); the ratio is of the totals
# the SAEs: one line each, as in config/demo/sweep.py
saes = [dict(name='topk_1024_k20', kind='topk', n_features=1024, k=20),
        dict(name='topk_2048_k20', kind='topk', n_features=2048, k=20),
        dict(name='anthropic2023_1024', kind='anthropic2023', n_features=1024),
        dict(name='april2024_1024', kind='april2024', n_features=1024)]
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

COMMON = [f'--activations_dir={out_dir}/activations', f'--transformer_ckpt={out_dir}/transformer/ckpt.pt',
          f'--max_steps={max_steps}', f'--batch_size={batch_size}', '--lr=1e-3', '--autocast_dtype=bfloat16',
          '--auxk_dead_tokens=100000', '--resample_steps=()', '--geometric_median_rows=4096', '--final_eval_contexts=1',
          '--eval_interval=100000', '--ckpt_interval=100000', '--log_interval=10', '--device=cpu']


def train(*args: str) -> str:
    """Run train_sae.py in a child; its stdout."""
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'WANDB_MODE': 'disabled'}
    p = subprocess.run([sys.executable, 'train_sae.py', *COMMON, *args], cwd=REPO, env=env, capture_output=True,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"train_sae.py failed: {p.stderr.strip().splitlines()[-1]}")
    return p.stdout


def alone(tmp: str, sae: dict) -> float:
    """Loop seconds of one SAE trained in its own run."""
    out = os.path.join(tmp, 'alone_' + sae['name'])
    train(f'--out_dir={out}', *(f'--{k}={v}' for k, v in sae.items() if k != 'name'))
    with open(os.path.join(out, 'sae', 'metrics.json')) as f:
        return json.load(f)['train_seconds_this_run']


def alone_steps(sae: dict, batches: list[torch.Tensor], init_rows: torch.Tensor) -> float:
    """Seconds of one SAE's training steps alone, on batches already in memory (as train_sae.py steps it)."""
    kind = sae.get('kind', 'anthropic2023')
    model = SparseAutoencoder(SAEConfig(d_in=init_rows.shape[1], n_features=sae.get('n_features', 4096), kind=kind,
                                        k=sae.get('k', 32), auxk_dead_tokens=100_000))
    init_from_data_(model, init_rows)
    recipe = Recipe(**{**RECIPES[kind], 'lr': 1e-3}, max_steps=max_steps)
    opt = make_adam(model, recipe.lr, recipe.adam_betas, recipe.adam_eps)
    t0 = time.perf_counter()
    for step, x in enumerate(batches):
        train_step_(model, opt, x, step, recipe, torch.bfloat16, want_l0=(step + 1) % 10 == 0)
    return time.perf_counter() - t0


def one_round(tmp: str, conf: str, batches: list, init_rows: torch.Tensor) -> tuple[list, float, float, list]:
    """(each SAE's steps alone, the sweep's loop seconds, the part of it in the SAEs' own steps, each SAE's loop in
    its own train_sae.py run)."""
    steps = [alone_steps(s, batches, init_rows) for s in saes]
    out = train(conf, f'--out_dir={tmp}/sweep', '--init_from=scratch')
    runs = [alone(tmp, s) for s in saes]
    m = re.search(r"sweep: \d+ SAEs, \d+ steps of the stream in ([\d.]+)s, ([\d.]+)s of it in their training", out)
    return steps, float(m.group(1)), float(m.group(2)), runs


def main() -> None:
    torch.set_num_threads(threads)
    store = ActivationStore(os.path.join(out_dir, 'activations'))
    stream = store.batches(batch_size, seed=0)
    batches = [next(stream).float() for _ in range(max_steps)]  # (B, d) each, in memory
    init_rows = store.sample(4096, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, 'sweep_conf.py')
        with open(conf, 'w') as f:
            f.write(f"sweep = {saes!r}\n")
        results = [one_round(tmp, conf, batches, init_rows) for _ in range(rounds)]
    steps = [sum(r[0][i] for r in results) for i in range(len(saes))]
    runs = [sum(r[3][i] for r in results) for i in range(len(saes))]
    sweep_s, own_s = sum(r[1] for r in results), sum(r[2] for r in results)
    print(f"{len(saes)} SAEs x {max_steps} steps of {batch_size} rows, {threads} thread(s), {rounds} round(s) summed")
    print(f"  {'SAE':<24} {'steps alone':>12} {'own run loop':>13}")
    for s, t, r in zip(saes, steps, runs):
        print(f"  {s['name']:<24} {t:11.1f}s {r:12.1f}s")
    print(f"  {'sum':<24} {sum(steps):11.1f}s {sum(runs):12.1f}s")
    print(f"  sweep loop (one stream): {sweep_s:.1f}s, {own_s:.1f}s of it in the SAEs' own steps")
    print(f"ratio sweep wall / sum(steps alone) = {sweep_s / sum(steps):.3f} (target <= 1.1); "
          f"sweep / sum(own runs' loops) = {sweep_s / sum(runs):.3f}")


if __name__ == '__main__':
    main()
