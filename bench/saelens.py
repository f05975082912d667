"""
Our SAEs side by side with SAELens's: the same TopK / BatchTopK / JumpReLU points trained on the same activation
store (the same rows in the same order, batch size, token budget, lr, Adam betas, dead-latent window), SAELens's
with its own trainer (sae_lens SAETrainer) in its own venv, each exported with its library's own save, and all
evaluated by the same monosemanticity.metrics.evaluate_sae on the same val contexts as train_sae.py's final evaluation.

SAELens is optional and never installed into this project's venv: give the python of a venv that has it,
    python -m venv ~/saelens-venv && ~/saelens-venv/bin/pip install sae-lens
    SAELENS_PYTHON=~/saelens-venv/bin/python python -m bench.saelens            # or --saelens_python=...
    SAELENS_PYTHON=... python -m bench.saelens --out_dir=/tmp/b --max_steps=600   # a shorter budget
Without one it prints why and exits 0 (tests/test_saelens.py skips likewise).

Reads <out_dir>/activations/ and <out_dir>/transformer/ckpt.pt (make demo). Writes, per point <name>:
    <out_dir>/sweep/saelens/<name>/  SAELens's export (sae_weights.safetensors + cfg.json) and metrics.json
    (evaluate_sae's metrics, source 'saelens'), and adds the points to <out_dir>/sweep/pareto.json + pareto.png.
Ours: trained here by train_sae.py (its defaults: sparse_topk 'auto', the sparse TopK step at these sizes), one
point per run as SAELens trains them, with the same keys, into <out_dir>/sweep/saelens/ours/sweep/<name>/. A point
done at this budget (a metrics.json with the same steps and keys, ours or SAELens's) is not trained again: a crashed
bench resumes.
Prints one table and writes it as <out_dir>/sweep/saelens/side_by_side.json (what `make readme` shows): per point
ours vs SAELens: L0, FVU, loss recovered, dead %, seconds per training step (the time of the steps alone, data
reading excluded), SAELens's over ours, and the machine's load average (1 min) when each training began and ended.

What differs by design (each library's own choices for its kind): SAELens clips the gradient norm at 1 and uses
Adam eps 1e-8 always; its TopK / BatchTopK start b_dec at 0 with decoder norms 0.1, do not keep the decoder at
unit norm (they rescale pre-activations by the decoder norms instead), and weigh AuxK 1 on an unnormalised
squared error; its JumpReLU trains the threshold directly, not its log. Ours follow autoencoder.py's kinds.
JumpReLU's λ, initial threshold and bandwidth are ours converted to SAELens's raw input units (ours train on
inputs scaled to E‖x‖² = 1): λ·E‖x‖², θ·√E‖x‖², ε·√E‖x‖², so that both minimise the same loss.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the points: the demo SAE's size (config/demo/sae.py: 2048 features) at three k, and BatchTopK; --points=[...] takes
# any dicts of train_sae.py SAE keys with a name (kind topk, batchtopk, matryoshka_batchtopk or jumprelu)
POINTS = [dict(name='topk_2048_k10', kind='topk', n_features=2048, k=10),
          dict(name='topk_2048_k20', kind='topk', n_features=2048, k=20),
          dict(name='topk_2048_k40', kind='topk', n_features=2048, k=40),
          dict(name='batchtopk_2048_k20', kind='batchtopk', n_features=2048, k=20)]
QUICK = dict(max_steps=200, final_eval_contexts=64)  # --quick=True: a smoke run of every point in a few minutes


# ----------------------------------------------------------------------------- finding SAELens

def saelens_python(explicit: str = '') -> str:
    """The python of a venv with SAELens: `explicit` (--saelens_python), else $SAELENS_PYTHON; '' if neither."""
    return explicit or os.environ.get('SAELENS_PYTHON', '')


def saelens_missing(python: str) -> str | None:
    """None if `python` runs and imports sae_lens; else one line saying why not and what to do."""
    if not python:
        return ("no SAELens python: set SAELENS_PYTHON (or --saelens_python) to the python of a venv with sae-lens "
                "installed (python -m venv v && v/bin/pip install sae-lens)")
    try:
        p = subprocess.run([python, '-c', 'import sae_lens; print(sae_lens.__version__)'], capture_output=True,
                           text=True, timeout=300)
    except OSError as e:
        return f"SAELens python {python} cannot run: {e}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ['?'])[-1]
        return f"{python} cannot import sae_lens ({last}): pip install sae-lens into that venv"
    return None


def run_child(python: str, task: str, spec: dict, threads: int = 2) -> dict:
    """Run child_<task>(spec) of this file under `python` (the SAELens venv); returns its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = os.path.join(tmp, 'spec.json'), os.path.join(tmp, 'result.json')
        with open(spec_path, 'w') as f:
            json.dump(spec, f)
        env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'WANDB_MODE': 'disabled', 'PYTHONWARNINGS': 'ignore'}
        p = subprocess.run([python, os.path.abspath(__file__), '--child', task, spec_path, out_path], cwd=REPO,
                           env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"SAELens child '{task}' failed ({p.returncode}):\n{p.stderr[-4000:]}")
        with open(out_path) as f:
            return json.load(f)


# ----------------------------------------------------------------------------- the child (in the SAELens venv)
# These functions import only the standard library, torch, sae_lens and (child_train) our monosemanticity/store.py.

def child_random_saes(made: list[dict]) -> None:
    """SAELens training SAEs of the kinds made[i]['kind'] with random weights (decoder norms not 1, biases and
    thresholds not 0), each saved by SAELens's save_inference_model to made[i]['dir'] (as its trainer saves; with
    made[i]['training_save'], by save_model: a checkpoint, topk's decoder norms not folded)."""
    import torch
    from sae_lens import TrainingSAE
    for i, m in enumerate(made):
        torch.manual_seed(i)
        sae = TrainingSAE.from_dict(saelens_training_cfg({**m, 'topk_threshold_lr': 0.01, 'l1_coeff': 1.0,
                                                          'l1_warmup_steps': 0, 'jumprelu_init_threshold': 0.1,
                                                          'jumprelu_bandwidth': 0.05}, 1.0).to_dict())
        with torch.no_grad():
            sae.W_dec.mul_(torch.rand(sae.W_dec.shape[0], 1) * 2 + 0.5)
            sae.W_enc.normal_(0, 0.3)
            sae.b_enc.normal_(0, 0.1)
            sae.b_dec.normal_(0, 0.1)
            if hasattr(sae, 'topk_threshold'):
                sae.topk_threshold.fill_(0.2)
            elif hasattr(sae, 'threshold'):
                sae.threshold.uniform_(0.05, 0.4)
        sae.save_model(m['dir']) if m.get('training_save') else sae.save_inference_model(m['dir'])


def child_encode(spec: dict) -> dict:
    """SAE.load_from_disk of each spec['dirs'] (SAELens's own loader), then its encode and decode of the rows
    spec['x'] (a safetensors file holding x (N, d)); writes f_<i> (N, F) and x_hat_<i> (N, d) to spec['out'].
    spec['make'] (optional): random SAELens SAEs to save first (child_random_saes), e.g. into some of the dirs."""
    from safetensors.torch import load_file, save_file
    from sae_lens import SAE
    child_random_saes(spec.get('make', []))
    x = load_file(spec['x'])['x']
    out, info = {}, []
    with __import__('torch').no_grad():
        for i, path in enumerate(spec['dirs']):
            sae = SAE.load_from_disk(path, device='cpu')
            f = sae.encode(x)
            out[f'f_{i}'], out[f'x_hat_{i}'] = f.contiguous(), sae.decode(f).contiguous()
            info.append({'class': type(sae).__name__, 'architecture': sae.cfg.architecture(),
                         'apply_b_dec_to_input': sae.cfg.apply_b_dec_to_input,
                         'normalize_activations': sae.cfg.normalize_activations, 'k': getattr(sae.cfg, 'k', None)})
    save_file(out, spec['out'])
    return {'saes': info}


def saelens_training_cfg(spec: dict, rms: float):
    """SAELens's training config of the point spec (kind, d_in, n_features, k / l1_coeff); rms = √E‖x‖² of the
    raw rows (JumpReLU's λ, θ and ε in raw units, see the module docstring)."""
    from sae_lens import (BatchTopKTrainingSAEConfig, JumpReLUTrainingSAEConfig,
                          MatryoshkaBatchTopKTrainingSAEConfig, TopKTrainingSAEConfig)
    common = dict(d_in=spec['d_in'], d_sae=spec['n_features'], dtype='float32', device='cpu')
    if spec['kind'] == 'topk':
        return TopKTrainingSAEConfig(k=spec['k'], **common)
    if spec['kind'] == 'batchtopk':
        return BatchTopKTrainingSAEConfig(k=spec['k'], topk_threshold_lr=spec['topk_threshold_lr'], **common)
    if spec['kind'] == 'matryoshka_batchtopk':
        return MatryoshkaBatchTopKTrainingSAEConfig(k=spec['k'], topk_threshold_lr=spec['topk_threshold_lr'],
                                                    matryoshka_widths=list(spec['matryoshka_widths']), **common)
    if spec['kind'] == 'jumprelu':
        return JumpReLUTrainingSAEConfig(
            l0_coefficient=spec['l1_coeff'] * rms ** 2, l0_warm_up_steps=spec['l1_warmup_steps'],
            jumprelu_init_threshold=spec['jumprelu_init_threshold'] * rms,
            jumprelu_bandwidth=spec['jumprelu_bandwidth'] * rms, apply_b_dec_to_input=False, **common)
    raise ValueError(f"no SAELens counterpart for kind {spec['kind']}")


def child_train(spec: dict) -> dict:
    """Train one point with SAELens's SAETrainer on our store's batches (store.batches(batch_size, seed,
    shuffle_buffer), as train_sae.py reads them), save it with SAELens's save_inference_model to spec['out_dir'];
    returns the seconds of its training steps (data reading excluded) and its step count."""
    import torch
    sys.path.insert(0, REPO)
    from monosemanticity.store import ActivationStore
    from sae_lens import LoggingConfig, SAETrainer, TrainingSAE
    from sae_lens.config import SAETrainerConfig
    store = ActivationStore(spec['activations_dir'])
    rows = store.sample(spec['init_rows'], seed=spec['init_seed'])  # the rows ours is initialised from
    rms = float(rows.double().pow(2).sum(1).mean().sqrt())
    torch.manual_seed(spec['seed'])
    sae = TrainingSAE.from_dict(saelens_training_cfg(spec, rms).to_dict())
    stream = store.batches(spec['batch_size'], seed=spec['seed'], shuffle_buffer=spec['shuffle_buffer'])
    data_seconds = [0.0]

    first = []  # the first batch's checksum (tests: the rows train_sae.py reads first)

    def provider():
        while True:
            t0 = time.perf_counter()
            x = next(stream)
            data_seconds[0] += time.perf_counter() - t0
            first.append(float(x.double().sum())) if not first else None
            yield x
    steps = spec['max_steps']
    b1, b2 = spec['adam_betas']
    cfg = SAETrainerConfig(total_training_samples=steps * spec['batch_size'],
                           train_batch_size_samples=spec['batch_size'], lr=spec['lr'], lr_end=spec['lr'],
                           lr_warm_up_steps=spec['lr_warmup_steps'], adam_beta1=b1, adam_beta2=b2, device='cpu',
                           autocast=spec['autocast'], dead_feature_window=spec['dead_feature_window'],
                           feature_sampling_window=10 * steps, logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=provider())
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0 - data_seconds[0]
    trainer.sae.save_inference_model(spec['out_dir'])
    import sae_lens
    return {'steps': trainer.n_training_steps, 'train_seconds': seconds, 'rms': rms,
            'dead_in_training': int(trainer.dead_neurons.sum()), 'first_batch_sum': first[0],
            'saelens_version': sae_lens.__version__}


def child_main(task: str, spec_path: str, out_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    result = {'encode': child_encode, 'train': child_train}[task](spec)
    with open(out_path, 'w') as f:
        json.dump(result, f)


# ----------------------------------------------------------------------------- the bench (this project's venv)

def parse_config(argv: list[str]) -> dict:
    """The bench's keys (defaults: config/demo/sweep.py's stream and recipe), then config files / --key=value."""
    from configurator import configure
    g = dict(out_dir='out/demo',  # reads <out_dir>/activations, transformer; writes <out_dir>/sweep/saelens/
             saelens_python='',  # '' = $SAELENS_PYTHON
             points=POINTS,  # dicts of train_sae.py SAE keys with a name each (kind topk, batchtopk or jumprelu)
             quick=False,  # True: QUICK's short budget (a smoke run)
             max_steps=2600, batch_size=1024, lr=1e-3, auxk_dead_tokens=100_000, autocast_dtype='bfloat16',
             geometric_median_rows=16384, shuffle_buffer=262144, final_eval_contexts=1024, eval_batch_size=16,
             seed=0, threads=2)  # threads: OMP_NUM_THREADS of every training child (ours and SAELens's)
    config = configure(g, argv, 'bench/saelens.py')
    return {**config, **(QUICK if config['quick'] else {})}


def point_recipe(c: dict, point: dict) -> dict:
    """The recipe a point trains with in both libraries: its kind's published one with the bench's lr (as a sweep
    entry of that kind gets it, sweep.plan_sweep), and its k / λ."""
    from autoencoder import RECIPES, SAEConfig
    r = {**RECIPES[point['kind']], 'lr': c['lr'], **{k: v for k, v in point.items() if k in RECIPES[point['kind']]}}
    defaults = SAEConfig(d_in=1, n_features=1)
    return {**r, 'k': point.get('k', defaults.k), 'jumprelu_bandwidth': defaults.jumprelu_bandwidth,
            'jumprelu_init_threshold': defaults.jumprelu_init_threshold,
            'topk_threshold_lr': defaults.topk_threshold_lr}


def saelens_spec(c: dict, point: dict, d_in: int, out_dir: str) -> dict:
    """What child_train needs to train `point` as train_sae.py would feed it (rows, order, budget, recipe)."""
    r = point_recipe(c, point)
    return {**r, 'kind': point['kind'], 'd_in': d_in, 'n_features': point['n_features'],
            'lr_warmup_steps': int(r['warmup_frac'] * c['max_steps']),
            'l1_warmup_steps': int(r['l1_warmup_frac'] * c['max_steps']),
            'max_steps': c['max_steps'], 'batch_size': c['batch_size'], 'seed': c['seed'],
            'shuffle_buffer': c['shuffle_buffer'], 'activations_dir': os.path.join(c['out_dir'], 'activations'),
            'init_rows': c['geometric_median_rows'], 'init_seed': c['seed'] * 7919,  # train_sae.py's rows_sample
            'dead_feature_window': c['auxk_dead_tokens'] // c['batch_size'],  # SAELens counts it in steps
            'autocast': c['autocast_dtype'] == 'bfloat16', 'out_dir': out_dir}


def same_budget(m: dict, c: dict) -> bool:
    """A metrics.json of an SAE trained and evaluated as this bench would (steps and the stream's keys)."""
    keys = ('batch_size', 'lr', 'auxk_dead_tokens', 'autocast_dtype', 'shuffle_buffer', 'final_eval_contexts', 'seed')
    return m['steps'] == c['max_steps'] and all(m['config'].get(k) == c[k] for k in keys)


def read_metrics(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def train_ours(c: dict, points: list[dict], root: str) -> None:
    """Train `points` with train_sae.py (one sweep run: the stream read once) into <root>/sweep/<name>/, with the
    bench's keys; a rerun continues and skips the SAEs already done (--init_from=resume)."""
    keys = ('max_steps', 'batch_size', 'lr', 'auxk_dead_tokens', 'autocast_dtype', 'geometric_median_rows',
            'shuffle_buffer', 'final_eval_contexts', 'eval_batch_size', 'seed')
    args = [f'--out_dir={root}', f"--activations_dir={os.path.join(c['out_dir'], 'activations')}",
            f"--transformer_ckpt={os.path.join(c['out_dir'], 'transformer', 'ckpt.pt')}", '--source=store',
            *(f'--{k}={c[k]}' for k in keys), '--eval_interval=1000000000', '--ckpt_interval=1000000000',
            '--log_interval=50', '--device=cpu', '--init_from=resume', f'--sweep={points!r}']
    env = {**os.environ, 'OMP_NUM_THREADS': str(c['threads']), 'WANDB_MODE': 'disabled'}
    print(f"ours: training {', '.join(p['name'] for p in points)} with train_sae.py ({c['max_steps']} steps)")
    p = subprocess.run([sys.executable, 'train_sae.py', *args], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:  # its progress bar and error went to our stderr
        sys.exit(f"bench/saelens.py: train_sae.py failed ({p.returncode}), see above")


class Evaluation:
    """train_sae.py's final evaluation, rebuilt here: the transformer, its val contexts (final_eval_contexts spread
    evenly over val.bin, eval_batch_size per forward), the data mean of its init rows, the ablation CEs cached."""

    def __init__(self, c: dict):
        import torch
        from monosemanticity.store import ActivationStore
        from monosemanticity.common import data_dir_of, load_checkpoint, load_data_meta
        from model import load_gpt
        tckpt = load_checkpoint(os.path.join(c['out_dir'], 'transformer', 'ckpt.pt'), 'cpu',
                                hint='run make demo first (or set out_dir)')
        self.gpt = load_gpt(tckpt, 'cpu')
        for p in self.gpt.parameters():
            p.requires_grad_(False)
        self.data_dir = data_dir_of(tckpt.get('data', {}).get('dataset') or tckpt['config']['dataset'])
        self.data_meta = load_data_meta(self.data_dir)
        self.store = ActivationStore(os.path.join(c['out_dir'], 'activations'))
        self.site, self.context_length = self.store.meta['site'], self.store.meta['context_length']
        rows = self.store.sample(c['geometric_median_rows'], seed=c['seed'] * 7919).to(torch.float32)
        self.data_mean = rows.mean(0)  # train_sae.py: the mean of its shared init rows (mean-ablation CE)
        self.n_contexts, self.batch_size, self.ablation_ce = c['final_eval_contexts'], c['eval_batch_size'], {}

    def batches(self):
        """(x, y) (B, T) token batches of the val contexts, as train_sae.py's evaluate()."""
        import numpy as np
        from monosemanticity.common import token_memmap, token_windows
        val = token_memmap(self.data_dir, 'val', self.data_meta['dtype'])
        T = min(self.context_length, len(val) - 1)
        n = max(1, min(self.n_contexts, (len(val) - 1) // T))
        starts = np.arange(n) * ((len(val) - 1 - T) // max(n - 1, 1))
        for i in range(0, n, self.batch_size):
            idx = token_windows(val, starts[i:i + self.batch_size], T + 1)  # (B, T+1)
            yield idx[:, :-1], idx[:, 1:]

    def __call__(self, sae) -> dict:
        """evaluate_sae's metrics of sae on these contexts."""
        from monosemanticity.metrics import evaluate_sae
        return evaluate_sae(sae, self.gpt, self.site, self.batches(), self.data_mean, self.ablation_ce)


def run_saelens_point(c: dict, python: str, point: dict, evaluation: Evaluation, sweep_dir: str) -> dict:
    """Train `point` with SAELens (unless its metrics.json is there for this budget), load SAELens's export with
    our load_saelens, evaluate it; writes and returns <sweep_dir>/saelens/<name>/metrics.json."""
    from autoencoder import load_saelens
    from monosemanticity.common import atomic_write_json
    out = os.path.join(sweep_dir, 'saelens', point['name'])
    done = read_metrics(os.path.join(out, 'metrics.json'))
    if done is not None and same_budget(done, c):
        return done
    spec = saelens_spec(c, point, evaluation.store.d, out)
    print(f"SAELens: training {point['name']} ({c['max_steps']} steps)")
    load = os.getloadavg()[0]
    t = run_child(python, 'train', spec, c['threads'])
    load = [round(load, 2), round(os.getloadavg()[0], 2)]
    r = evaluation(load_saelens(out))
    steps = t['steps']
    m = {k: v for k, v in r.items() if k != 'density'}
    m.update(kind=point['kind'], site=evaluation.site, d_in=spec['d_in'], n_features=point['n_features'],
             steps=steps, tokens_seen=steps * c['batch_size'], train_seconds_this_run=round(t['train_seconds'], 1),
             eval_contexts=c['final_eval_contexts'], source='saelens', saelens_version=t['saelens_version'],
             config={**c, **point_recipe(c, point), 'points': None, 'name': point['name'],
                     'n_features': point['n_features'], 'kind': point['kind']},
             saelens_training={k: v for k, v in t.items() if k != 'saelens_version'},
             load_avg=load,
             density=[round(v, 8) for v in r['density'].tolist()])
    atomic_write_json(os.path.join(out, 'metrics.json'), m)
    return m


def ours_metrics(c: dict, sweep_dir: str) -> dict[str, dict]:
    """name -> our metrics.json of each point, trained now by train_sae.py (one run per point) unless done at this
    budget in <sweep_dir>/saelens/ours/."""
    root, found = os.path.join(sweep_dir, 'saelens', 'ours'), {}
    for point in c['points']:
        path = os.path.join(root, 'sweep', point['name'], 'metrics.json')
        if not same_budget(read_metrics(path) or {'steps': -1, 'config': {}}, c):
            load = os.getloadavg()[0]
            train_ours(c, [point], root)
            add_load_(path, load)
        found[point['name']] = read_metrics(path)
    return found


def add_load_(path: str, load_before: float) -> None:
    """Record in the metrics.json at path the machine's 1-minute load average when its training began and now."""
    from monosemanticity.common import atomic_write_json
    m = read_metrics(path)
    m['load_avg'] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    atomic_write_json(path, m)


def seconds_per_step(m: dict) -> float:
    return m['train_seconds_this_run'] / max(m['steps'], 1)


def side_by_side_record(c: dict, ours: dict, theirs: dict) -> dict:
    """What side_by_side.json holds: the budget, the machine, and per point both sides' numbers."""
    import platform
    import torch
    keys = ('l0', 'fvu', 'loss_recovered', 'loss_recovered_mean_abl', 'alive_frac', 'train_seconds_this_run',
            'steps', 'load_avg')
    points = []
    for p in c['points']:
        a, b = ours[p['name']], theirs[p['name']]
        points.append({**p, 'ours': {k: a.get(k) for k in keys} | {'s_per_step': seconds_per_step(a)},
                       'saelens': {k: b.get(k) for k in keys} | {'s_per_step': seconds_per_step(b)},
                       'saelens_over_ours': seconds_per_step(b) / max(seconds_per_step(a), 1e-12)})
    return {'max_steps': c['max_steps'], 'batch_size': c['batch_size'], 'autocast_dtype': c['autocast_dtype'],
            'lr': c['lr'], 'auxk_dead_tokens': c['auxk_dead_tokens'], 'threads': c['threads'],
            'eval_tokens': ours[c['points'][0]['name']]['eval_tokens'], 'cpus': os.cpu_count(),
            'machine': platform.processor() or platform.machine(), 'torch': torch.__version__,
            'saelens_version': theirs[c['points'][0]['name']].get('saelens_version'),
            'date': time.strftime('%Y-%m-%d'), 'points': points}


def side_by_side(record: dict) -> str:
    """side_by_side.json as a Markdown table (bench/saelens.py prints it, make readme puts it in the README)."""
    lines = ['| point | L0 ours / SAELens | FVU ours / SAELens | loss recovered ours / SAELens | dead ours / SAELens '
             '| s/step ours / SAELens | SAELens / ours | load (1 min) ours; SAELens |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    for p in record['points']:
        a, b = p['ours'], p['saelens']
        load = '; '.join('→'.join(f"{v:.1f}" for v in m['load_avg']) if m.get('load_avg') else '?' for m in (a, b))
        lines.append(f"| {p['name']} | {a['l0']:.1f} / {b['l0']:.1f} | {a['fvu']:.4f} / {b['fvu']:.4f} | "
                     f"{a['loss_recovered']:.4f} / {b['loss_recovered']:.4f} | {1 - a['alive_frac']:.1%} / "
                     f"{1 - b['alive_frac']:.1%} | {a['s_per_step']:.4f} / {b['s_per_step']:.4f} | "
                     f"{p['saelens_over_ours']:.2f}x | {load} |")
    return '\n'.join(lines)


def main(argv: list[str]) -> None:
    """Config, SAELens found (else skip), ours, SAELens's, the Pareto report, the table."""
    sys.path.insert(0, REPO)
    from autoencoder import RECIPES
    from monosemanticity.common import atomic_write_json, exit_on_user_error
    from monosemanticity.sweep import pareto_record, pareto_table, saelens_records, write_pareto
    exit_on_user_error()
    c = parse_config(argv)
    python = saelens_python(c['saelens_python'])
    reason = saelens_missing(python)
    if reason:
        print(f"bench/saelens.py skipped: {reason}")
        return
    sweep_dir = os.path.join(c['out_dir'], 'sweep')
    ours = ours_metrics(c, sweep_dir)
    evaluation = Evaluation(c)
    theirs = {p['name']: run_saelens_point(c, python, p, evaluation, sweep_dir) for p in c['points']}
    extra = [pareto_record(name, m, RECIPES) for name, m in ours.items()]
    records = write_pareto(sweep_dir, RECIPES, extra=extra + saelens_records(sweep_dir, RECIPES))
    print(pareto_table(records))
    record = side_by_side_record(c, ours, theirs)
    atomic_write_json(os.path.join(sweep_dir, 'saelens', 'side_by_side.json'), record)
    print(f"wrote {sweep_dir}/pareto.json and pareto.png, SAELens's SAEs and side_by_side.json in {sweep_dir}/saelens/")
    print(side_by_side(record))

if __name__ == '__main__':
    if sys.argv[1:2] == ['--child']:
        child_main(*sys.argv[2:5])
    else:
        main(sys.argv[1:])
