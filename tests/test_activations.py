"""generate_activations.py and monosemanticity/store.py: the store's contract, resume after a kill, torchrun,
readers."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from monosemanticity.store import (ActivationStore, NonFiniteRows, OnTheFlySource, StoreError, fill_rows_,
                                   plan_contexts, shard_plan)
from monosemanticity.common import UserError
from conftest import REPO, run_failing, make_token_dataset, run_script
from model import GPT, GPTConfig, load_gpt

SITE = 'blocks.0.mlp_hidden'
N_CONTEXTS, K, T, CPS = 12000, 8, 32, 300  # 96,000 rows in 40 shards of 300 contexts (2,400 rows)
MODEL_ARGS = dict(n_layer=1, n_head=2, n_embd=16, block_size=T, bias=True, vocab_size=64, dropout=0.0,
                  activation='gelu')
TORCHRUN = shutil.which('torchrun') or os.path.join(os.path.dirname(sys.executable), 'torchrun')


@pytest.fixture(scope='module')
def env(tmp_path_factory) -> dict:
    """A tiny dataset and a random-init tiny GPT checkpoint with train_transformer.py's keys."""
    tmp = tmp_path_factory.mktemp('act')
    data = make_token_dataset(str(tmp / 'data'))
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MODEL_ARGS))
    ckpt = str(tmp / 'ckpt.pt')
    torch.save({'model': model.state_dict(), 'model_args': MODEL_ARGS, 'config': {'dataset': data},
                'data': {'dataset': data, 'vocab_size': 64}}, ckpt)
    return dict(tmp=tmp, data=data, ckpt=ckpt)


def args(env: dict, out: str, *extra: str) -> list[str]:
    return ['generate_activations.py', f'--out_dir={out}', f'--transformer_ckpt={env["ckpt"]}',
            f'--n_contexts={N_CONTEXTS}', f'--tokens_per_context={K}', f'--rows_per_shard={CPS * K}',
            '--batch_size=32', '--seed=7', '--device=cpu', *extra]


@pytest.fixture(scope='module')
def ref(env) -> str:
    """An uninterrupted single-process harvest; returns its store folder."""
    out = str(env['tmp'] / 'ref')
    p = run_script(*args(env, out))
    assert 'done: wrote 96,000 rows' in p.stdout and 'next: python train_sae.py' in p.stdout
    return os.path.join(out, 'activations')


def store_files(store: str) -> dict[str, bytes]:
    return {f: open(os.path.join(store, f), 'rb').read() for f in sorted(os.listdir(store))}


def recompute(env: dict, plan, ctx: slice) -> torch.Tensor:
    """The model's rows for the plan's contexts `ctx`, in context order (n*k, d)."""
    model = load_gpt(torch.load(env['ckpt'], weights_only=True))
    tokens = np.fromfile(os.path.join(env['data'], 'train.bin'), dtype=np.uint16)
    starts, pos = plan.starts[ctx], plan.positions[ctx]
    x = torch.from_numpy(np.stack([tokens[s:s + T] for s in starts]).astype(np.int64))
    with torch.no_grad():
        _, _, acts = model.run(x, capture=[SITE], need_logits=False)
    return acts[SITE][torch.arange(len(pos))[:, None], torch.from_numpy(pos)].reshape(-1, acts[SITE].shape[-1])


def test_meta_and_round_trip_fp16(env, ref):
    store = ActivationStore(ref)
    m = store.meta
    assert (m['d'], m['dtype'], m['n_rows'], m['complete'], m['site'], m['layer']) == (64, 'float16', 96000, True,
                                                                                      SITE, 0)
    assert (m['tokens_per_context'], m['context_length'], m['n_contexts'], m['seed'], m['split']) == \
        (K, T, N_CONTEXTS, 7, 'train')
    assert len(m['transformer_sha256']) == 64 and m['transformer_ckpt'] == env['ckpt']
    assert [s['file'] for s in m['shards']] == [f'shard_{g:05d}.bin' for g in range(40)]
    n_tokens = m['n_tokens']
    plan = shard_plan(7, 5, N_CONTEXTS, CPS, n_tokens, T, K)
    rows = torch.from_numpy(np.array(store.memmap(5)))  # (2400, 64) fp16
    want = recompute(env, plan, slice(0, 40))  # the first 40 contexts of shard 5
    got = rows[torch.from_numpy(plan.dest[:40 * K])].float()
    torch.testing.assert_close(got, want.half().float(), atol=2e-3, rtol=2e-3)


def test_round_trip_fp32_exact_and_layer_site(env, tmp_path):
    out = str(tmp_path / 'f32')
    run_script(*args(env, out, '--dtype=float32', '--n_contexts=64', '--site=mlp_hidden', '--layer=-1'))
    store = ActivationStore(os.path.join(out, 'activations'))
    assert store.dtype == np.float32 and store.n_rows == 64 * K and len(store.shards) == 1
    plan = shard_plan(7, 0, 64, CPS, store.meta['n_tokens'], T, K)
    got = torch.from_numpy(np.array(store.memmap(0)))[torch.from_numpy(plan.dest)]
    torch.testing.assert_close(got, recompute(env, plan, slice(0, 64)), atol=1e-5, rtol=1e-5)


def test_rows_are_shuffled_across_contexts(env, ref):
    store = ActivationStore(ref)
    plan = shard_plan(7, 0, N_CONTEXTS, CPS, store.meta['n_tokens'], T, K)
    ctx_of_row = np.empty(plan.rows, dtype=np.int64)
    ctx_of_row[plan.dest] = np.arange(plan.rows) // K  # which context each stored row came from
    same_adjacent = np.mean(ctx_of_row[1:] == ctx_of_row[:-1])
    assert same_adjacent < 0.01  # unshuffled: (K-1)/K = 0.875; a random order: (K-1)/(rows-1) = 0.003
    spans = [np.ptp(np.flatnonzero(ctx_of_row == c)) for c in range(20)]
    assert np.median(spans) > plan.rows / 2  # one context's rows are spread over the whole shard
    # and the stored bytes follow that order (rows of context 0 are where dest says)
    got = torch.from_numpy(np.array(store.memmap(0)))[torch.from_numpy(plan.dest[:K])].float()
    torch.testing.assert_close(got, recompute(env, plan, slice(0, 1)).half().float(), atol=2e-3, rtol=2e-3)


def test_kill_then_resume_is_byte_identical(env, ref, tmp_path):
    out = str(tmp_path / 'killed')
    store = os.path.join(out, 'activations')
    cmd = [sys.executable, *args(env, out)]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    t0 = time.time()
    while not os.path.exists(os.path.join(store, 'shard_00002.bin')) and time.time() - t0 < 60:  # 0 is in meta.json
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    meta = json.load(open(os.path.join(store, 'meta.json')))
    assert not meta['complete'] and len(meta['shards']) < 40  # killed mid-run
    with pytest.raises(StoreError, match='incomplete'):
        ActivationStore(store)
    part = ActivationStore(store, allow_incomplete=True)
    assert part.n_rows == sum(s['rows'] for s in meta['shards'])
    r = run_script(*args(env, out))
    assert 'resuming' in r.stdout
    assert store_files(store) == store_files(ref)  # every shard and meta.json, byte for byte; no temp files left


def test_rerun_complete_and_mismatch(env, ref):
    out = os.path.dirname(ref)
    p = run_script(*args(env, out))
    assert 'already complete' in p.stdout and 'done:' not in p.stdout
    p = run_script(*args(env, out, '--site=resid_post'), check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and 'Traceback' not in p.stderr
    assert 'site=' in lines[0] and 'use another out_dir or delete' in lines[0]


@pytest.mark.skipif(not os.path.exists(TORCHRUN), reason='torchrun not installed')
def test_torchrun_two_ranks_disjoint_and_identical(env, ref, tmp_path):
    out = str(tmp_path / 'ddp')
    p = run_script(TORCHRUN, '--standalone', '--nproc_per_node=2', *args(env, out))
    assert '2 rank(s)' in p.stdout
    store = os.path.join(out, 'activations')
    meta = json.load(open(os.path.join(store, 'meta.json')))
    assert meta['complete'] and meta['world_size'] == 2
    by_rank = {r: [s for s in meta['shards'] if s['rank'] == r] for r in (0, 1)}
    assert len(by_rank[0]) == len(by_rank[1]) == 20
    ranges = sorted(tuple(s['contexts']) for s in meta['shards'])
    assert ranges[0][0] == 0 and ranges[-1][1] == N_CONTEXTS
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))  # disjoint, and together every context
    got, want = store_files(store), store_files(ref)
    assert [f for f in got if f.endswith('.bin')] == [f for f in want if f.endswith('.bin')]
    assert all(got[f] == want[f] for f in want if f.endswith('.bin'))  # the same rows as one process


def test_damaged_store_is_a_one_line_error_naming_the_file(ref, tmp_path):
    def damaged(name: str, fn) -> str:
        d = str(tmp_path / name)
        shutil.copytree(ref, d)
        fn(d)
        with pytest.raises(StoreError) as e:
            ActivationStore(d)
        msg = str(e.value)
        assert '\n' not in msg
        return msg

    def truncate(d):
        with open(os.path.join(d, 'shard_00003.bin'), 'r+b') as f:
            f.truncate(1000)

    def edit_meta(path, **kw):
        m = json.load(open(os.path.join(path, 'meta.json')))
        json.dump({**m, **kw}, open(os.path.join(path, 'meta.json'), 'w'))

    assert 'shard_00003.bin' in damaged('trunc', truncate) and 'truncated' in damaged('trunc2', truncate)
    assert 'shard_00007.bin' in damaged('missing', lambda d: os.remove(os.path.join(d, 'shard_00007.bin')))
    assert 'd=32' in damaged('wrong_d', lambda p: edit_meta(p, d=32))
    assert 'incomplete' in damaged('incomplete', lambda d: edit_meta(d, complete=False))
    assert 'meta.json' in damaged('nometa', lambda d: os.remove(os.path.join(d, 'meta.json')))
    assert 'not valid JSON' in damaged('badjson', lambda d: open(os.path.join(d, 'meta.json'), 'w').write('{'))
    # bit rot with the right size: verify() compares crc32s
    d = str(tmp_path / 'flip')
    shutil.copytree(ref, d)
    with open(os.path.join(d, 'shard_00001.bin'), 'r+b') as f:
        f.seek(100)
        f.write(b'\xff\xff')
    with pytest.raises(StoreError, match='shard_00001.bin'):
        ActivationStore(d).verify()


def test_harvest_heals_a_truncated_shard(env, ref, tmp_path):
    out = str(tmp_path / 'heal')
    shutil.copytree(ref, os.path.join(out, 'activations'))
    with open(os.path.join(out, 'activations', 'shard_00011.bin'), 'r+b') as f:
        f.truncate(10)
    p = run_script(*args(env, out))
    assert 'shard_00011.bin is missing or truncated' in p.stdout
    assert store_files(os.path.join(out, 'activations')) == store_files(ref)


def test_batches_resume_epochs_sample_sequential(ref):
    store = ActivationStore(ref)
    kw = dict(seed=3, shuffle_buffer=10_000, chunk_rows=1000)
    it = store.batches(1000, **kw)
    first = [next(it) for _ in range(200)]  # a bit over 2 epochs of 96,000 rows
    assert it.position == 200 and first[0].shape == (1000, 64) and first[0].dtype == torch.float32
    again = store.batches(1000, start=57, **kw)  # resume mid-epoch, and across the epoch boundary
    for i in range(57, 200):
        assert torch.equal(next(again), first[i]), i
    assert again.position == 200
    seq = torch.cat(list(store.sequential(7000)))
    assert seq.shape == (96000, 64)
    epoch = torch.cat(first[:96])  # each epoch visits every row once
    assert torch.equal(torch.sort(epoch.view(-1)).values, torch.sort(seq.view(-1)).values)
    assert not torch.equal(torch.cat(first[96:192]), epoch)  # a new order in the next epoch
    assert not torch.equal(store.batches(1000, seed=4, shuffle_buffer=10_000, chunk_rows=1000).__next__(), first[0])
    s = store.sample(500, seed=1)
    assert s.shape == (500, 64) and torch.equal(s, store.sample(500, seed=1))
    rows = {tuple(r.tolist()) for r in seq[:, :8]}
    assert all(tuple(r.tolist()) in rows for r in s[:, :8])


def test_on_the_fly_matches_store_statistics_and_resumes(env, ref):
    store = ActivationStore(ref)
    model = load_gpt(torch.load(env['ckpt'], weights_only=True))
    src = OnTheFlySource(model, env['data'], 'train', SITE, context_length=T, tokens_per_context=K,
                         batch_size_contexts=64, seed=0, device='cpu', shuffle_buffer=4096)
    assert src.d == store.d == 64
    it = src.batches(2048, seed=1)
    fly = torch.cat([next(it) for _ in range(24)])  # 49k rows from ~6k contexts
    disk = torch.cat(list(store.sequential(10000)))
    tol = 0.1 * disk.std(0) + 1e-3
    assert ((fly.mean(0) - disk.mean(0)).abs() < tol).all()
    assert ((fly.std(0) - disk.std(0)).abs() < tol).all()
    resumed = src.batches(2048, seed=1, start=7)
    assert all(torch.equal(next(resumed), fly[i * 2048:(i + 1) * 2048]) for i in range(7, 12))
    assert src.sample(300, seed=0).shape == (300, 64)


def test_on_the_fly_rows_are_the_models_rows_in_the_plans_order(env):
    """A window of the on-the-fly source: the model's rows of the contexts drawn from (source seed, stream seed,
    0, window), in the plan's shuffled order, computed where the model is (a torch tensor, no numpy copy)."""
    model = load_gpt(torch.load(env['ckpt'], weights_only=True))
    src = OnTheFlySource(model, env['data'], 'train', SITE, context_length=T, tokens_per_context=K,
                         batch_size_contexts=16, seed=5, device='cpu', shuffle_buffer=400)
    it = src.batches(src.window_rows, seed=2)
    next(it)
    x = next(it)  # window 1
    plan = plan_contexts(np.random.default_rng([5, 2, 0, 1]), src.window_contexts, src.n_tokens, T, K)
    torch.testing.assert_close(x[torch.from_numpy(plan.dest)], recompute(env, plan, slice(None)), atol=1e-6, rtol=0)


def test_library_errors_are_user_errors():
    """Scripts need no try/except around the store's errors: common.exit_on_user_error prints their one line."""
    assert issubclass(StoreError, UserError) and issubclass(NonFiniteRows, UserError)


def edited_ckpt(env: dict, path: str, edit) -> str:
    """A copy of the test checkpoint with edit(state_dict) applied."""
    ck = torch.load(env['ckpt'], weights_only=True)
    edit(ck['model'])
    torch.save(ck, path)
    return path


def test_float16_overflow_is_refused_then_float32_succeeds(env, tmp_path):
    """Rows beyond 65504 never reach a float16 store as inf: one line, exit 2, no shard; float32 then works."""
    ckpt = edited_ckpt(env, str(tmp_path / 'big.pt'), lambda sd: sd['transformer.h.0.mlp.c_fc.weight'].mul_(1e7))
    out = str(tmp_path / 'big')
    store = os.path.join(out, 'activations')
    code, lines, err = run_failing(*args(env, out, f'--transformer_ckpt={ckpt}', '--n_contexts=600'))
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert 'shard_00000.bin' in lines[0] and 'context ' in lines[0] and SITE in lines[0]
    assert 'overflow float16 (max |x| = ' in lines[0] and 'rerun with --dtype=float32' in lines[0]
    assert not [f for f in os.listdir(store) if f.startswith('shard_')]  # nothing written, not even a temp file
    assert json.load(open(os.path.join(store, 'meta.json')))['shards'] == []
    p = run_script(*args(env, out, f'--transformer_ckpt={ckpt}', '--n_contexts=600', '--dtype=float32'))
    assert 'lists no shards yet: starting the store again' in p.stdout
    s = ActivationStore(store)  # the same out_dir: a store that lists no shards yet is started again
    assert s.meta['complete'] and s.dtype == np.float32 and s.n_rows == 600 * K
    x = torch.from_numpy(np.array(s.memmap(0)))
    assert torch.isfinite(x).all() and x.abs().max() > 65504


def test_nan_in_the_transformer_is_refused(env, tmp_path):
    def nan_weight(sd):
        sd['transformer.h.0.mlp.c_fc.weight'][5, 3] = float('nan')

    ckpt = edited_ckpt(env, str(tmp_path / 'nan.pt'), nan_weight)
    out = str(tmp_path / 'nan')
    code, lines, err = run_failing(*args(env, out, f'--transformer_ckpt={ckpt}', '--n_contexts=600', '--dtype=float32'))
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert f'the transformer {ckpt} produced NaN at {SITE} in context ' in lines[0] and 'shard_00000.bin' in lines[0]
    assert 'retrain it' in lines[0]
    assert not [f for f in os.listdir(os.path.join(out, 'activations')) if f.startswith('shard_')]


def test_fill_rows_keeps_every_finite_row_and_refuses_the_rest(env):
    """The boundary, with a stand-in model whose activations are set: |x| <= 65504 is written to float16 (even
    when a row's norm is far above it), 65600 or NaN is refused naming the context; float32 keeps 1e38."""
    class SetActivations:
        def __init__(self, value: float, bad: tuple[int, float] | None = None):
            self.value, self.bad, self.calls = value, bad, 0

        def run(self, x, capture, need_logits):
            a = torch.full((*x.shape, 64), self.value)  # (b, T, d)
            if self.bad is not None and self.calls == self.bad[0] // 32:
                a[self.bad[0] % 32, :, 5] = self.bad[1]  # every position of context bad[0]
            self.calls += 1
            return None, None, {SITE: a}

    n_tokens = len(np.fromfile(os.path.join(env['data'], 'train.bin'), dtype=np.uint16))
    plan = shard_plan(7, 0, 100, 100, n_tokens, T, K)

    def fill(model, dtype=np.float16) -> np.ndarray:
        out = np.empty((plan.rows, 64), dtype=dtype)
        fill_rows_(model, SITE, env['data'], 'train', 'uint16', plan, out, 32, 'cpu')
        return out

    assert (fill(SetActivations(65504.0)) == 65504).all()  # row norm 65504 * 8: still every value fits
    assert (fill(SetActivations(1e38), np.float32) == np.float32(1e38)).all()  # row norms overflow float32
    with pytest.raises(NonFiniteRows, match=r'rows of context 70 \(tokens .*overflow float16 \(max \|x\| = 6.56e\+04'):
        fill(SetActivations(1.0, bad=(70, 65600.0)))
    with pytest.raises(NonFiniteRows, match='the transformer produced NaN at blocks.0.mlp_hidden in context 41 '):
        fill(SetActivations(1.0, bad=(41, float('nan'))), np.float32)
    with pytest.raises(NonFiniteRows, match='produced inf'):
        fill(SetActivations(1.0, bad=(3, -float('inf'))))
