"""build_interface.py's sparse token and co-activation counts (big dictionaries): equal to the dense ones and to
brute force, down to the top tokens, the neighbours (ids, ties included) and the whole site."""
import glob
import os

import numpy as np
import pytest
import torch

from monosemanticity import feature_stats as fs
from monosemanticity import logit_effects as le
from monosemanticity import runs
from test_interface import build_site, read_js

F, V, N = 300, 37, 900  # features, vocab, tokens


def firings(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, F) bool firing pattern with dead features, a dense-ish token and many tied counts; (N,) token ids."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(F, generator=g) * 0.05
    p[:5] = 0  # dead
    fire = torch.rand(N, F, generator=g) < p
    fire[3] = True  # one token where every feature fires: F² pairs
    fire[10:20, 50:60] = True  # a block of features with identical (tied) counts
    return fire, torch.randint(0, V, (N,), generator=g)


def counted(fire: torch.Tensor, tokens: torch.Tensor, dense: bool, batch: int = 64, coact_n: int = N):
    """TokenCounts and CoactCounts fed like Pass1Counts: batch by batch, co-firing over the first coact_n."""
    tc, cc = fs.TokenCounts(F, V, 'cpu', dense), fs.CoactCounts(F, 'cpu', dense)
    tc.merge_at = 50  # merge often
    for b0 in range(0, N, batch):
        f = fire[b0:b0 + batch]
        t_idx, feat = f.nonzero().unbind(1)
        tc.add_(feat, tokens[b0:b0 + batch][t_idx])
        if b0 < coact_n:
            cc.add_(f[:coact_n - b0], t_idx, feat, b0)
    return tc, cc


@pytest.mark.parametrize('seed', [0, 1])
def test_sparse_counts_equal_dense_and_brute_force(seed, monkeypatch):
    monkeypatch.setattr(fs, 'PAIRS_PER_STEP', 97)  # many steps, one token (F² pairs) over the budget
    monkeypatch.setattr(fs, 'ROWS_PER_CHUNK', 64)
    fire, tokens = firings(seed)
    coact_n = 700  # not a multiple of the batch: the last counted batch is cut
    ref_tokens = np.zeros((F, V), dtype=np.int64)  # brute force
    np.add.at(ref_tokens, (fire.nonzero()[:, 1].numpy(), tokens[fire.nonzero()[:, 0]].numpy()), 1)
    A = fire[:coact_n].numpy().astype(np.int64)
    ref_coact = A.T @ A
    (tc_d, cc_d), (tc_s, cc_s) = counted(fire, tokens, True, coact_n=coact_n), counted(fire, tokens, False,
                                                                                       coact_n=coact_n)
    for sl in (slice(0, 64), slice(64, 300), slice(299, 300), slice(0, 300)):
        assert np.array_equal(tc_s.rows(sl).numpy(), ref_tokens[sl]) and np.array_equal(tc_d.rows(sl).numpy(),
                                                                                        ref_tokens[sl])
        assert np.array_equal(cc_s.rows(sl).numpy(), ref_coact[sl]) and np.array_equal(cc_d.rows(sl).numpy(),
                                                                                       ref_coact[sl])
    assert np.array_equal(cc_s.diagonal().numpy(), np.diag(ref_coact))
    assert len(tc_s.keys) == (ref_tokens > 0).sum() < F * V and not tc_s.held  # memory: only the pairs seen
    top_d, top_s = fs.top_tokens(tc_d), fs.top_tokens(tc_s)
    assert all(torch.equal(a, b) for a, b in zip(top_d, top_s))
    W_dec = torch.randn(F, 8, generator=torch.Generator().manual_seed(seed))
    nb_d, nb_s = fs.feature_neighbours(W_dec, cc_d), fs.feature_neighbours(W_dec, cc_s)
    assert all(torch.equal(a, b) for a, b in zip(nb_d, nb_s))  # ids of tied scores included
    # brute force of the neighbour scores and of the top tokens' counts
    n = np.diag(ref_coact).astype(np.float64)
    for i in range(5, F, 7):
        top = sorted(ref_tokens[i], reverse=True)[:fs.N_TOP_TOKENS]
        assert top_s.counts[i].tolist() == top and all(ref_tokens[i, t] == c for t, c in
                                                       zip(top_s.ids[i].tolist(), top))
        score = ref_coact[i] / np.sqrt(n[i] * n).clip(1e-12)
        score[i], score[ref_coact[i] == 0] = -1, -1
        best = np.sort(score)[::-1][:fs.N_NEIGHBOURS]
        assert nb_s.coact_score[i].numpy() == pytest.approx(best, abs=1e-6)
        assert all(score[j] == pytest.approx(s, abs=1e-6) for j, s in zip(nb_s.coact_ids[i].tolist(),
                                                                           nb_s.coact_score[i].tolist()) if s > 0)


def test_no_firings():
    tc, cc = fs.TokenCounts(F, V, 'cpu', False), fs.CoactCounts(F, 'cpu', False)
    fire = torch.zeros(10, F, dtype=torch.bool)
    t_idx, feat = fire.nonzero().unbind(1)
    tc.add_(feat, t_idx)
    cc.add_(fire, t_idx, feat, 0)
    assert not tc.rows(slice(0, F)).any() and not cc.rows(slice(0, F)).any() and not cc.diagonal().any()


def site_files(site_dir: str) -> dict:
    files = {os.path.relpath(p, site_dir): read_js(p) for p in glob.glob(os.path.join(site_dir, '*', '*.js'))
             if os.path.basename(os.path.dirname(p)) in ('data', 'features')}
    files['data/index.js'].pop('meta')  # paths and time
    return files


@pytest.fixture(scope='module')
def sites(tmp_path_factory):
    root = tmp_path_factory.mktemp('sparse_stats')
    return build_site(str(root / 'dense')), build_site(str(root / 'sparse'), '--dense_stats_mb=0')


def test_site_from_sparse_counts_is_the_dense_one(sites):
    a, b = (site_files(s['site']) for s in sites)
    assert sorted(a) == sorted(b) and len(a) > 3
    for name in a:
        assert a[name] == b[name], name
    assert any(d['coact'] and d['top_tokens'] for d in read_js(os.path.join(sites[1]['site'], 'features',
                                                                             '0000.js')))


def test_pass1_is_sparse_past_dense_stats_mb(sites):
    """Pass1Counts itself: dense matrices when they fit in dense_mb, else sparse counts of the pairs seen."""
    out = sites[0]['out']
    inputs = runs.load_inputs(runs.load_transformer(out, '', '', 32, 'cpu', 'float32'), os.path.join(out, 'sae'))
    file = runs.TokenFile(inputs.data_dir, 'val', inputs.data_meta['dtype'], 'cpu')
    stats = []
    for dense_mb in (1, 0):
        contexts = runs.pick_contexts(file, 32, 30, 7, np.random.default_rng(3), quiet=True)
        counts = fs.Pass1Counts(inputs, contexts, 4, 500, dense_mb)
        for batch in runs.run_batches(inputs.model, inputs.autocast, contexts, [inputs.site, inputs.final_site], ''):
            counts.add_(batch, runs.encode_batch(inputs, batch))
        stats.append(counts.result())
    dense, sparse = stats
    assert dense.token_counts.dense and dense.coact.dense and not sparse.token_counts.dense and not sparse.coact.dense
    n_feat, V = sparse.token_counts.shape
    every = slice(0, n_feat)
    assert torch.equal(dense.token_counts.rows(every), sparse.token_counts.rows(every))
    assert torch.equal(dense.coact.rows(every), sparse.coact.rows(every))
    assert len(sparse.token_counts.keys) == int((dense.token_counts.rows(every) > 0).sum()) < n_feat * V
    assert sparse.coact.matrix is None and len(sparse.coact.index()[0]) == int(dense.coact.rows(every).diagonal().sum())


@pytest.mark.parametrize('M', [200, 14, 0])
def test_ablation_effects_by_feature_blocks_equal_the_dense_logits_and_brute_force(M):
    """Pass 3's exact ablation effect of M (feature, position) pairs: with Z_u held whole, and past the budget by
    blocks of 3 features whose rows are computed per block (M 200: features repeat) or row by row with their pair
    (M 14: they do not), against log-softmax of the final LayerNorm + unembedding of r and of r - a·u."""
    torch.manual_seed(0)
    C, V, F, N = 16, 50, 20, 30
    gamma, W_U, beta = torch.rand(C) + 0.5, torch.randn(V, C), torch.randn(C) * 0.1
    bias = W_U @ beta
    head = le.LogitHead(gamma, W_U, bias, bias.max(), (bias - bias.max()).exp(), False)
    U, resid, y = torch.randn(F, C), torch.randn(N, C), torch.randint(V, (N,))
    feat, row = torch.randint(F, (M,)), torch.randint(N, (M,))
    act = ((feat * 7 + row) % 5 + 1).float() / 4  # a pair's activation (the same wherever the pair repeats)
    dense = le.feature_logit_directions(head, U)
    lazy = le.feature_logit_directions(head, U, dense_mb=0)._replace(block_rows=3)
    assert dense.direct is not None and lazy.direct is None
    buffers = tuple(torch.empty(4, V) for _ in range(2))  # 4 pairs per chunk: many chunks per block
    got = {name: le.local_ablation_effects(head, d, resid, y, feat, row, act, buffers)
           for name, d in (('dense', dense), ('blocks', lazy))}

    def logp(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (C,), gamma, beta).matmul(W_U.T).log_softmax(-1).gather(
            -1, t[:, None])[:, 0]
    want = logp(resid[row], y[row]) - logp(resid[row] - act[:, None] * U[feat], y[row])
    for name, effect in got.items():
        torch.testing.assert_close(effect, want, rtol=1e-4, atol=1e-5, msg=name)
