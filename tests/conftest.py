"""Shared fixtures: tiny token datasets and models made in-process (no network, no corpus download)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from autoencoder import SAEConfig, SparseAutoencoder  # noqa: E402 (the repo on the path first)


def run_script(*args: str, cwd: str = REPO, check: bool = True, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a repo script (or module command) as a user would, return the completed process."""
    cmd = [sys.executable, *args] if args[0].endswith('.py') else list(args)
    full_env = {**os.environ, 'WANDB_MODE': 'disabled', 'OMP_NUM_THREADS': '1', **(env or {})}
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    if 'still referenced after destroy_process_group' in p.stderr:
        # common.ddp_cleanup's fallback ran: something kept the process group (and gloo's worker threads) alive
        raise AssertionError(f"{' '.join(cmd)} leaked its process group:\n{p.stderr[-3000:]}")
    return p


PROGRESS_LINE = re.compile(r'^[^:|]{1,80}:\s+\d+%[| ]')  # a progress line: "sae:  40% 2/5 [...]" (common.progress)


def run_failing(*argv: str) -> tuple[int, list[str], str]:
    """Run a script expected to fail: (exit code, its stderr lines other than progress lines, stderr). Bytes, not
    text mode, so that '\r' survives: a progress bar erased with it (leave=False) is not a line on the screen."""
    p = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', 'WANDB_MODE': 'disabled'})
    err = p.stderr.decode()
    lines = [t for line in err.split('\n') if (t := line.split('\r')[-1].strip())]
    return p.returncode, [t for t in lines if not PROGRESS_LINE.match(t)], err


def make_token_dataset(path: str, vocab_size: int = 64, n_train: int = 20000, n_val: int = 4000,
                       seed: int = 0) -> str:
    """A learnable token stream (noisy counting mod vocab-1, eot = vocab-1) as train.bin/val.bin/meta.json."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (('train', n_train), ('val', n_val)):
        a = (np.arange(n) * 3 + rng.integers(0, 2, n)) % (vocab_size - 1)
        a[rng.random(n) < 0.01] = vocab_size - 1
        a.astype(np.uint16).tofile(os.path.join(path, f'{split}.bin'))
    meta = dict(vocab_size=vocab_size, dtype='uint16', eot_token=vocab_size - 1, tokenizer='bpe',
                tokenizer_file=None, corpus='synthetic test stream', train_tokens=n_train, val_tokens=n_val)
    with open(os.path.join(path, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    return path


def write_token_data(data: str, enc, arr: np.ndarray, corpus: str) -> None:
    """A prepared dataset in data/: arr (uint16 ids) as both splits, enc's tokenizer.json and meta.json."""
    from monosemanticity.tokenizer import save_tokenizer
    arr.tofile(os.path.join(data, 'val.bin'))
    arr.tofile(os.path.join(data, 'train.bin'))
    save_tokenizer(enc, os.path.join(data, 'tokenizer.json'))
    with open(os.path.join(data, 'meta.json'), 'w') as f:
        json.dump(dict(vocab_size=enc.n_vocab, dtype='uint16', eot_token=enc.eot_token, tokenizer='bpe',
                       tokenizer_file='tokenizer.json', corpus=corpus, train_tokens=len(arr),
                       val_tokens=len(arr)), f)


def write_concept_labels(data: str, names: list[str], y: np.ndarray) -> None:
    """Concept labels of a dataset's val split as label_concepts.py writes them: y (n_val, C) bools packed into
    concepts_val.bin, concepts.json naming the (lexical) concepts."""
    np.packbits(y, axis=1).tofile(os.path.join(data, 'concepts_val.bin'))
    meta = {'concepts': [{'name': n, 'kind': 'lexical'} for n in names],
            'splits': {'val': {'file': 'concepts_val.bin', 'tokens': len(y), 'row_bytes': (len(names) + 7) // 8}}}
    with open(os.path.join(data, 'concepts.json'), 'w') as f:
        json.dump(meta, f)


def save_transformer(out: str, model, args: dict, data: str, vocab_size: int) -> None:
    """<out>/transformer/ckpt.pt as train_transformer.py writes it (the parts later stages read)."""
    os.makedirs(os.path.join(out, 'transformer'), exist_ok=True)
    torch.save({'model': model.state_dict(), 'model_args': args, 'config': {},
                'data': {'dataset': data, 'tokenizer': 'bpe', 'vocab_size': vocab_size}},
               os.path.join(out, 'transformer', 'ckpt.pt'))


@pytest.fixture
def tiny_data(tmp_path) -> str:
    return make_token_dataset(str(tmp_path / 'data'))


TINY_MODEL = ['--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=32', '--batch_size=8',
              '--gradient_accumulation_steps=1', '--device=cpu', '--dtype=float32', '--compile=False']


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    yield


def harvested_run(root, max_iters: int, n_contexts: int, *model_args: str) -> str:
    """<root>/run: a tiny transformer trained on a made-up token stream (<root>/data) for max_iters, and a harvest
    of n_contexts x 16 of its blocks.0.mlp_hidden rows. Returns the run folder."""
    data = make_token_dataset(str(root / 'data'))
    out = str(root / 'run')
    run_script('train_transformer.py', f'--dataset={data}', f'--out_dir={out}', *TINY_MODEL, *model_args,
               f'--max_iters={max_iters}', f'--eval_interval={max_iters}', '--eval_iters=2', '--learning_rate=1e-2')
    run_script('generate_activations.py', f'--out_dir={out}', f'--n_contexts={n_contexts}', '--tokens_per_context=16',
               '--rows_per_shard=2000', '--device=cpu')
    return out


def planted(d: int = 32, n_true: int = 64, p_active: float = 3 / 64, seed: int = 0):
    """Known unit directions D (n_true, d) and a sampler of x = Σ sparse coefficients × directions."""
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n_true, d, generator=g)
    D /= D.norm(dim=1, keepdim=True)

    def batch(B: int) -> torch.Tensor:
        coef = torch.rand(B, n_true, generator=g) * (torch.rand(B, n_true, generator=g) < p_active)
        return coef @ D  # (B, d)
    return D, batch


def skewed_rows(n: int, d: int, seed: int) -> torch.Tensor:
    """(n, d) skewed, non-centred rows (like MLP activations): relu(z)·2 + 0.3."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, d, generator=g)) * 2 + 0.3


def sae_with_biases(kind: str, d: int, n_features: int, seed: int = 0, **kw):
    """An SAE of the kind (autoencoder.SparseAutoencoder, SAEConfig keys in kw) with non-trivial biases."""
    torch.manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(d_in=d, n_features=n_features, kind=kind, **kw))
    with torch.no_grad():
        sae.b_dec.copy_(skewed_rows(1, d, 9)[0] * 0.5)
        sae.b_enc.normal_(0, 0.1)
    return sae


def jumprelu_theta_grad(pre: torch.Tensor, theta: torch.Tensor, err: torch.Tensor, W_dec: torch.Tensor, lam: float,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """By hand, for loss = ‖x̂ - x‖² (sum over d, mean over the B rows) + λ·mean_b Σ_i H(pre - θ): (the gradient of
    log θ (F,), dL/df (B, F), the rectangle window K (B, F)); ∂f/∂θ = -(θ/ε)·K, ∂H/∂θ = -(1/ε)·K, K = 1{|u| < 1/2},
    u = (pre - θ)/ε; err = x̂ - x (B, d)."""
    B = pre.shape[0]
    u = (pre - theta) / eps
    K = ((u > -0.5) & (u < 0.5)).float()
    dL_df = 2.0 / B * err @ W_dec  # (B, F)
    dL_dtheta = (dL_df * -(theta / eps) * K).sum(0) + lam / B * (-(1.0 / eps) * K).sum(0)
    return dL_dtheta * theta, dL_df, K
