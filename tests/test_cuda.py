"""The tiny pipeline on a CUDA GPU, as its users run it there; skipped (with the reason) where torch sees no GPU.

The rest of the suite runs on CPU. Here: train_transformer.py (bf16/fp16 autocast and fp32), generate_activations.py,
train_sae.py from the store (fp32 and bf16 autocast) and on the fly, build_interface.py, each run as a subprocess
with --device=cuda and the repo's config files; the fused SAE step against autograd and against the CPU; torchrun
with nccl on 2 GPUs. To check this file's logic on a machine without a GPU, run a copy with DEVICE = 'cpu'.
"""
import copy
import json
import math
import os
import shutil
import sys

import pytest
import torch

from autoencoder import SAEConfig, SparseAutoencoder, load_saelens, make_adam, sae_step_
from conftest import TINY_MODEL, make_token_dataset, run_script

DEVICE = 'cuda'  # 'cpu' runs every test here on the CPU (to check the tests themselves)
ON_GPU = DEVICE.startswith('cuda')
NO_GPU = ON_GPU and not torch.cuda.is_available()
NO_GPU_REASON = (f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build: "
                 f"{torch.version.cuda or 'no, a CPU wheel'}); these tests run the pipeline with --device=cuda")
pytestmark = pytest.mark.skipif(NO_GPU, reason=NO_GPU_REASON)
BF16 = not ON_GPU or (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
AMP = 'bfloat16' if BF16 else 'float16'  # what --dtype=auto picks for the transformer on this GPU
N_GPUS = torch.cuda.device_count() if ON_GPU else 0


def needs(ok: bool, reason: str) -> pytest.MarkDecorator:
    """Skip unless ok; without a GPU the module's reason is the one reported."""
    return pytest.mark.skipif(NO_GPU or not ok, reason=NO_GPU_REASON if NO_GPU else reason)


TORCHRUN = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')

MODEL = [a for a in TINY_MODEL if not a.startswith(('--device=', '--dtype='))] + [f'--device={DEVICE}']
TRANSFORMER = ['train_transformer.py', 'config/transformer.py', *MODEL, '--eval_iters=4', '--warmup_iters=2',
               '--learning_rate=1e-2', '--wandb_log=False']
N_FEATURES, BATCH, STEPS = 128, 256, 60
SAE = ['train_sae.py', 'config/sae.py', f'--n_features={N_FEATURES}', f'--batch_size={BATCH}',
       '--resample_steps=(20, 40)', '--resample_rows=2000', '--geometric_median_rows=1000', '--eval_interval=30',
       '--eval_contexts=8', '--final_eval_contexts=32', '--log_interval=10', '--shuffle_buffer=2048',
       '--ckpt_interval=1000', '--lr=1e-3', f'--device={DEVICE}', '--wandb_log=False']
INTERFACE = ['build_interface.py', 'config/interface.py', '--n_contexts=64', '--context_length=32', '--batch_size=8',
             '--top_k=4', '--window=3', '--n_intervals=6', '--interval_samples=3', '--n_example_texts=4',
             '--example_length=24', '--coact_tokens=1000', f'--device={DEVICE}']


# ----------------------------------------------------------------------------- end to end, as subprocesses

@pytest.fixture(scope='module')
def run(tmp_path_factory) -> dict:
    """A tiny transformer trained with the GPU's autocast dtype, and its activation store."""
    root = tmp_path_factory.mktemp('cuda_run')
    data = make_token_dataset(str(root / 'data'))
    out = str(root / 'run')
    p = run_script(*TRANSFORMER, f'--dataset={data}', f'--out_dir={out}', f'--dtype={AMP}', '--max_iters=60',
                   '--eval_interval=60', '--lr_decay_iters=60')
    h = run_script('generate_activations.py', 'config/activations.py', f'--out_dir={out}', '--n_contexts=400',
                   '--tokens_per_context=16', '--rows_per_shard=2000', '--batch_size=32', f'--device={DEVICE}')
    return {'root': root, 'data': data, 'out': out, 'train_stdout': p.stdout, 'harvest_stdout': h.stdout}


def copy_run(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def check_transformer(out: str, stdout: str, dtype: str, iters: int) -> None:
    assert f'on {DEVICE} ({dtype}, 1 rank(s))' in stdout, stdout[-2000:]
    ck = torch.load(os.path.join(out, 'transformer', 'ckpt.pt'), weights_only=True)
    assert ck['iter_num'] == iters and math.isfinite(ck['best_val_loss'])
    assert ck['best_val_loss'] < 0.6 * math.log(64)  # the loss at init is ln(vocab)
    assert all(torch.isfinite(v).all() for v in ck['model'].values())
    assert all(v.device.type == 'cpu' for v in ck['model'].values())  # loadable on a machine without a GPU


def test_transformer_trains_with_autocast(run):
    check_transformer(run['out'], run['train_stdout'], AMP, 60)


def test_transformer_trains_fp32(run, tmp_path):
    out = str(tmp_path / 'fp32')
    p = run_script(*TRANSFORMER, f"--dataset={run['data']}", f'--out_dir={out}', '--dtype=float32',
                   '--max_iters=30', '--eval_interval=30', '--lr_decay_iters=30')
    check_transformer(out, p.stdout, 'float32', 30)


def test_harvest_store(run):
    meta = json.load(open(os.path.join(run['out'], 'activations', 'meta.json')))
    assert meta['complete'] and meta['n_rows'] == 400 * 16 and meta['d'] == 64 and meta['dtype'] == 'float16'
    assert 'next: python train_sae.py' in run['harvest_stdout']
    from monosemanticity.store import ActivationStore
    rows = ActivationStore(os.path.join(run['out'], 'activations')).sample(512, seed=0).float()
    assert torch.isfinite(rows).all() and rows.std() > 0


def check_sae(out: str, stdout: str, autocast_dtype: str, steps: int = STEPS) -> dict:
    """The run's metrics are finite and say the SAE learned something; its exports load."""
    assert f'steps, {DEVICE} {autocast_dtype}' in stdout, stdout[-2000:]
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    for k, v in m.items():
        if isinstance(v, float):
            assert math.isfinite(v), (k, v)
    assert m['tokens_seen'] == steps * BATCH and m['steps'] == steps and len(m['density']) == N_FEATURES
    assert 0 <= m['fvu'] < 1 and m['mse'] > 0
    assert 0 < m['l0'] < N_FEATURES and 0 <= m['dead_frac'] < 1
    assert m['ce_clean'] < m['ce_spliced'] + 1e-3 and m['ce_spliced'] < m['ce_zero_ablation']
    assert 0 < m['loss_recovered'] <= 1.05 and m['kl_spliced'] >= 0
    assert m['config']['autocast_dtype'] == autocast_dtype and m['config']['device'] == DEVICE
    ck = torch.load(os.path.join(out, 'sae', 'ckpt.pt'), weights_only=True)
    assert ck['step'] == steps and ck['complete']
    assert all(torch.isfinite(v).all() for v in ck['sae'].values() if v.is_floating_point())
    sae = load_saelens(os.path.join(out, 'sae'))
    x = torch.randn(8, 64)
    assert torch.isfinite(sae(x)[0]).all()
    return m


@pytest.fixture(scope='module')
def sae_fp32(run, tmp_path_factory) -> str:
    """The run with an fp32 SAE trained on it from the store (the default recipe, config/sae.py)."""
    out = copy_run(run['out'], tmp_path_factory.mktemp('sae_fp32') / 'run')
    p = run_script(*SAE, f'--out_dir={out}', f'--max_steps={STEPS}', '--autocast_dtype=float32')
    assert 'resampled' in p.stdout and 'next: python build_interface.py' in p.stdout
    check_sae(out, p.stdout, 'float32')
    return out


def test_sae_from_store_fp32(sae_fp32):
    m = json.load(open(os.path.join(sae_fp32, 'sae', 'metrics.json')))
    assert m['kind'] == 'anthropic2023' and m['config']['source'] == 'store'


@needs(BF16, 'this GPU has no bfloat16')
def test_sae_from_store_bf16_autocast(sae_fp32, run, tmp_path):
    out = copy_run(run['out'], tmp_path / 'run')
    p = run_script(*SAE, f'--out_dir={out}', f'--max_steps={STEPS}', '--autocast_dtype=bfloat16')
    m = check_sae(out, p.stdout, 'bfloat16')
    ref = json.load(open(os.path.join(sae_fp32, 'sae', 'metrics.json')))
    assert abs(m['fvu'] - ref['fvu']) < 0.1, (m['fvu'], ref['fvu'])  # same seed and data: bf16 stays close


def test_sae_on_the_fly(run, tmp_path):
    out = copy_run(run['out'], tmp_path / 'run')
    shutil.rmtree(os.path.join(out, 'activations'))  # the transformer makes the rows as training goes
    p = run_script(*SAE, f'--out_dir={out}', '--source=onthefly', '--max_steps=30', '--resample_steps=(20,)',
                   f"--autocast_dtype={'bfloat16' if BF16 else 'float32'}")
    assert 'on the fly' in p.stdout
    m = check_sae(out, p.stdout, 'bfloat16' if BF16 else 'float32', steps=30)
    assert m['config']['source'] == 'onthefly'


def test_build_interface(sae_fp32):
    p = run_script(*INTERFACE, f'--out_dir={sae_fp32}')
    site = os.path.join(sae_fp32, 'interface')
    assert p.stdout.strip().splitlines()[-1] == f"open {os.path.abspath(os.path.join(site, 'index.html'))}"
    for name in ('index.html', 'feature.html', 'examples.html', 'meta.json', 'data/index.js', 'data/examples.js',
                 'data/vocab.js', 'features/0000.js', 'features/0001.js'):
        assert os.path.getsize(os.path.join(site, name)) > 0, name
    meta = json.load(open(os.path.join(site, 'meta.json')))
    assert meta['complete'] and meta['config']['device'] == DEVICE
    text = open(os.path.join(site, 'features', '0000.js')).read()
    assert 'NaN' not in text and 'Infinity' not in text


@needs(N_GPUS >= 2, f'torchrun with nccl needs 2 CUDA GPUs ({N_GPUS} visible)')
def test_torchrun_two_gpus(run, tmp_path):
    p = run_script(TORCHRUN, '--standalone', '--nproc_per_node=2', *TRANSFORMER, f"--dataset={run['data']}",
                   f"--out_dir={tmp_path / 'ddp'}", f'--dtype={AMP}', '--gradient_accumulation_steps=2',
                   '--max_iters=4', '--eval_interval=4', '--eval_iters=2')
    assert '2 rank(s)' in p.stdout and 'max |parameter difference| vs rank 0 = 0' in p.stdout
    out = copy_run(run['out'], tmp_path / 'run')  # the trained transformer and its store
    p = run_script(TORCHRUN, '--standalone', '--nproc_per_node=2', *SAE, f'--out_dir={out}', '--max_steps=30')
    assert '2 rank(s)' in p.stdout and 'resampled' in p.stdout
    assert 'ranks in sync: max |parameter difference| vs rank 0 = 0' in p.stdout
    m = json.load(open(os.path.join(out, 'sae', 'metrics.json')))
    assert m['tokens_seen'] == 30 * BATCH * 2 and 0 <= m['fvu'] < 1


# ----------------------------------------------------------------------------- the fused SAE step, in-process

@pytest.fixture
def exact_fp32():
    """fp32 matmuls in full precision (no TF32) for the tight comparisons; restored afterwards."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def make_sae(kind: str, device: str = DEVICE, d: int = 24, n: int = 208) -> tuple[SparseAutoencoder, torch.Tensor]:
    """An SAE with non-trivial biases (and scale), made on the CPU and moved, and a batch that fires it.

    d + 1 = 25 columns: the augmented scratch buffers are padded. n is a multiple of 16, as the recipes' sizes are:
    with other n the fp32 fused step hands fused Adam a strided W_dec.grad (a view of a padded buffer).
    """
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=d, n_features=n, kind=kind))
    x = torch.randn(96, d, generator=g) * 2 + 0.5
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d, generator=g) * 0.3)
        sae.b_enc.copy_(torch.randn(n, generator=g) * 0.1)
        sae.scale.fill_(1.7 if kind == 'april2024' else 1.0)
    return sae.to(device), x.to(device)


def steps(sae: SparseAutoencoder, x: torch.Tensor, n: int = 3, **kw) -> list[dict]:
    """n sae_step_ calls on x (lr 1e-3, L1 3e-2); per step the stats and the final gradients (cloned, on CPU)."""
    opt = make_adam(sae, 1e-3)
    out = []
    for _ in range(n):
        s = sae_step_(sae, opt, x, 3e-2, want_l0=True, **kw)
        s = {k: v.float().cpu() for k, v in s.items()}
        s['grads'] = {name: p.grad.detach().float().cpu().clone() for name, p in sae.named_parameters()}
        out.append(s)
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm().clamp_min(1e-30)).item()


def assert_same_run(a: SparseAutoencoder, sa: list[dict], b: SparseAutoencoder, sb: list[dict], tol: float,
                    fired: bool = True) -> None:
    """Two runs of steps() agree to relative error tol: stats, gradients, parameters, fire counters."""
    for i, (u, v) in enumerate(zip(sa, sb)):
        for key in ('loss', 'recon', 'l1', 'mse', 'l0'):
            assert abs(u[key] - v[key]) <= tol * abs(v[key]) + 1e-7, (i, key, u[key].item(), v[key].item())
        if fired:
            assert torch.equal(u['fired'], v['fired']), i
        else:  # borderline features may fire in one dtype and not the other
            assert (u['fired'] != v['fired']).float().mean() < 0.05, i
        for name, g in v['grads'].items():
            assert rel_err(u['grads'][name], g) < tol, (i, name, rel_err(u['grads'][name], g))
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        # Adam's first steps move each weight by about ±lr whatever |grad|: a gradient at rounding-noise level can
        # flip one; 1e-3 of the norm allows a few such flips, while a wrong update (e.g. a misread gradient) is ~5e-2
        assert torch.isfinite(p).all(), name
        assert rel_err(p, q) < max(tol, 1e-3), (name, rel_err(p, q))
    if fired:
        assert torch.equal(a.tokens_since_fired.cpu(), b.tokens_since_fired.cpu())


@pytest.mark.parametrize('kind', ['anthropic2023', 'april2024'])
def test_fused_step_equals_autograd_fp32(kind, exact_fp32):
    a, x = make_sae(kind)
    b = copy.deepcopy(a)
    sa, sb = steps(a, x, fused=True), steps(b, x, fused=False)
    assert a.W_enc.device.type == DEVICE.split(':')[0]
    assert 0 < sa[0]['l0'] < a.cfg.n_features  # some features fire, some do not
    assert_same_run(a, sa, b, sb, tol=1e-4)


@needs(BF16, 'this GPU has no bfloat16')
@pytest.mark.parametrize('kind', ['anthropic2023', 'april2024'])
def test_fused_step_equals_autograd_bf16_autocast(kind):
    a, x = make_sae(kind)
    b = copy.deepcopy(a)
    c = copy.deepcopy(a)
    sa = steps(a, x, autocast_dtype=torch.bfloat16, fused=True)
    sb = steps(b, x, autocast_dtype=torch.bfloat16, fused=False)
    assert_same_run(a, sa, b, sb, tol=3e-2, fired=False)
    assert all(v.dtype == torch.float32 for v in a.state_dict().values() if v.is_floating_point())
    sc = steps(c, x)  # fp32: bf16 matmuls move the loss by well under 2%
    assert abs(sa[0]['loss'] - sc[0]['loss']) < 2e-2 * sc[0]['loss']


@pytest.mark.parametrize('kind', ['anthropic2023', 'april2024'])
def test_device_step_equals_cpu_step(kind, exact_fp32):
    a, x = make_sae(kind, device='cpu')
    b = copy.deepcopy(a).to(DEVICE)
    sa, sb = steps(a, x), steps(b, x.to(DEVICE))
    assert b.W_enc.device.type == DEVICE.split(':')[0]
    assert_same_run(b, sb, a, sa, tol=1e-4)
