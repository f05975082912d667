"""build_interface.py on a tiny model + tiny SAE: every statistic against brute force over all tokens."""
import ast
import dataclasses
import glob
import itertools
import json
import math
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import tiktoken
import torch
from safetensors.torch import save_file

from monosemanticity import feature_stats as fs
from monosemanticity import logit_effects as le
from monosemanticity import runs
from monosemanticity import site as site_build
from monosemanticity import sweep_site as sweep_site_build

from monosemanticity.common import read_site_data
from conftest import REPO, run_script, save_transformer, write_token_data
from model import GPT, GPTConfig

SITE = 'blocks.0.mlp_hidden'
XSS = [b'<script>alert(1)</script>', b'"><img src=x onerror=alert(1)>']
N_FEAT, D_IN, T, CTX, BATCH, TOP_K, WINDOW, N_INT, S = 40, 64, 32, 30, 7, 4, 3, 12, 5
ARGS = [f'--n_contexts={CTX}', f'--context_length={T}', f'--batch_size={BATCH}', f'--top_k={TOP_K}',
        f'--window={WINDOW}', f'--n_intervals={N_INT}', f'--interval_samples={S}', '--n_example_texts=4',
        '--example_length=24', '--coact_tokens=500', '--device=cpu', '--seed=3']


def tiny_encoding() -> tiktoken.Encoding:
    """Byte tokens 0-255, two whole-token XSS strings (256, 257), the first two bytes of '日' (258), eot 259."""
    ranks = {bytes([i]): i for i in range(256)}
    for b in XSS + ['日'.encode()[:2]]:
        ranks[b] = len(ranks)
    return tiktoken.Encoding('tiny', pat_str=r"""\S+|\s+""", mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': len(ranks)})


def build_site(root: str, *extra: str, logit_scale: float = 10.0, topk: int = 0) -> dict:
    """Dataset + tokenizer, a 1-layer GPT, an SAE (one dead feature) under root; run build_interface.py."""
    rng = np.random.default_rng(0)
    data = os.path.join(root, 'data')
    os.makedirs(data, exist_ok=True)
    enc = tiny_encoding()
    pieces = [list('def f(x):\n\treturn x + 1  # café, naïve \r\n'.encode()), [256], [257], [258, 0xA5],
              list('日本語 <b>"&amp;</b>\''.encode()), list(' the cat sat on the mat.'.encode())]
    ids = []
    while len(ids) < 6000:
        ids += pieces[rng.integers(len(pieces))]
        if rng.random() < 0.05:
            ids.append(enc.eot_token)
    arr = np.array(ids, dtype=np.uint16)
    write_token_data(data, enc, arr, 'test')
    torch.manual_seed(0)
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=T, bias=True, vocab_size=enc.n_vocab, dropout=0.0,
                activation='gelu')
    model = GPT(GPTConfig(**args))
    with torch.no_grad():  # larger weights than at init, so that ablations move the log-probs visibly
        model.transformer.h[0].mlp.c_proj.weight.mul_(20)
        model.lm_head.weight.mul_(logit_scale)
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
        model.transformer.ln_f.bias.normal_(0, 0.1)
    out = os.path.join(root, 'out')
    save_transformer(out, model, args, data, enc.n_vocab)
    with torch.no_grad():
        idx = torch.from_numpy(arr[:T * 16].astype(np.int64)).view(16, T)
        x = model.run(idx, capture=[SITE], need_logits=False)[2][SITE].reshape(-1, D_IN)
    W_dec = torch.randn(N_FEAT, D_IN)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = torch.randn(D_IN, N_FEAT) / (x.std() * D_IN ** 0.5)
    b_dec = x.mean(0)
    b_enc = -torch.rand(N_FEAT) * 1.5
    b_enc[7] = -1e6  # dead
    os.makedirs(os.path.join(out, 'sae'), exist_ok=True)
    save_file({'W_enc': W_enc.contiguous(), 'W_dec': W_dec.contiguous(), 'b_enc': b_enc, 'b_dec': b_dec},
              os.path.join(out, 'sae', 'sae_weights.safetensors'))
    with open(os.path.join(out, 'sae', 'cfg.json'), 'w') as f:
        json.dump({'architecture': 'topk' if topk else 'standard', 'd_in': D_IN, 'd_sae': N_FEAT, 'hook_name': SITE,
                   'apply_b_dec_to_input': True, **({'k': topk} if topk else {})}, f)
    p = run_script('build_interface.py', f'--out_dir={out}', *ARGS, *extra)
    return {'root': root, 'out': out, 'data': data, 'site': os.path.join(out, 'interface'), 'model': model,
            'val': arr, 'stdout': p.stdout, 'enc': enc,
            'sae': {'W_enc': W_enc, 'W_dec': W_dec, 'b_enc': b_enc, 'b_dec': b_dec}}


def read_js(path: str) -> object:
    """The JSON inside `loadFeatures(...);` or `window.X=...;`: data files hold nothing but JSON."""
    return read_site_data(path)


def read_features(site_dir: str) -> dict:
    """Every feature's data, from the features/NNNN.js files."""
    feats = {}
    for path in sorted(glob.glob(os.path.join(site_dir, 'features', '*.js'))):
        feats.update({d['id']: d for d in read_js(path)})
    return feats


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return build_site(str(tmp_path_factory.mktemp('interface')))


@pytest.fixture(scope='module')
def brute(site):
    """f for every token, computed like the script (same batches) but independently of its code."""
    meta = json.load(open(os.path.join(site['site'], 'meta.json')))
    starts = np.array(meta['context_starts'])
    toks = torch.from_numpy(np.stack([site['val'][s:s + T + 1].astype(np.int64) for s in starts]))
    sae, model = site['sae'], site['model']
    fs, rs = [], []
    with torch.no_grad():
        for b0 in range(0, len(toks), BATCH):
            _, _, acts = model.run(toks[b0:b0 + BATCH, :-1], capture=[SITE, 'blocks.0.resid_post'], need_logits=False)
            x = acts[SITE].reshape(-1, D_IN)
            fs.append(torch.relu((x - sae['b_dec']) @ sae['W_enc'] + sae['b_enc']).view(-1, T, N_FEAT))
            rs.append(acts['blocks.0.resid_post'])
    feats = read_features(site['site'])
    assert sorted(feats) == list(range(N_FEAT))
    return {'meta': meta, 'toks': toks, 'f': torch.cat(fs), 'r': torch.cat(rs), 'feats': feats}


def test_site_is_complete_and_log_ends_with_index(site):
    d = site['site']
    for name in ('index.html', 'feature.html', 'examples.html', 'style.css', 'common.js', 'data/vocab.js',
                 'data/index.js', 'data/examples.js', 'meta.json'):
        assert os.path.isfile(os.path.join(d, name)), name
    assert len(glob.glob(os.path.join(d, 'features', '*.js'))) == -(-N_FEAT // 64)
    assert json.load(open(os.path.join(d, 'meta.json')))['complete']
    assert not glob.glob(os.path.join(site['out'], 'interface.*'))  # no temp or old folder left behind
    assert site['stdout'].strip().splitlines()[-1] == f"open {os.path.abspath(os.path.join(d, 'index.html'))}"


def test_density_max_and_histograms(site, brute):
    f, feats = brute['f'].reshape(-1, N_FEAT), brute['feats']
    index = read_js(os.path.join(site['site'], 'data', 'index.js'))
    assert index['n_fire'] == (f > 0).sum(0).tolist()
    assert feats[7]['n_fire'] == 0 and feats[7]['top'] == []
    assert sum(len(iv['samples']) for iv in feats[7]['intervals']) == 0
    for i in range(N_FEAT):
        d, v = feats[i], f[:, i][f[:, i] > 0]
        assert d['density'] == pytest.approx(len(v) / len(f))
        if not len(v):
            continue
        mx = v.max()
        assert d['max'] == pytest.approx(mx.item(), abs=1e-4)
        assert d['mean'] == pytest.approx(v.mean().item(), abs=1e-3)
        H = len(d['hist'])
        assert d['hist'] == torch.bincount((v / mx * H).long().clamp(max=H - 1), minlength=H).tolist()
        interval = (v / mx * N_INT).long().clamp(max=N_INT - 1)
        assert [iv['n'] for iv in d['intervals']] == torch.bincount(interval, minlength=N_INT).tolist()
        assert sum(iv['share'] for iv in d['intervals']) == pytest.approx(1, abs=1e-3)


def test_top_examples_are_the_best_context_maxima(brute):
    f, toks = brute['f'], brute['toks']
    for i in range(N_FEAT):
        top = brute['feats'][i]['top']
        best = f[:, :, i].max(1).values  # (contexts,)
        want = best[best > 0].sort(descending=True).values[:TOP_K]
        assert [w['act'] for w in top] == pytest.approx(want.tolist(), abs=1e-5)
        assert len({w['context'] for w in top}) == len(top)  # one example per context
        for w in top:
            assert f[w['context'], w['pos'], i].item() == pytest.approx(w['act'], abs=1e-5)
            s, n = w['start'], len(w['acts'])
            assert s == max(0, w['pos'] - WINDOW) and s + n - 1 == min(T - 1, w['pos'] + WINDOW)
            assert w['tokens'] == toks[w['context'], s:s + n + 1].tolist()  # the window and the token after it
            assert w['acts'] == pytest.approx(f[w['context'], s:s + n, i].tolist(), abs=6e-4)


def test_interval_samples_are_members_one_per_context(brute):
    f = brute['f']
    for i in range(N_FEAT):
        d = brute['feats'][i]
        if not d['n_fire']:
            continue
        mx = f[:, :, i].max()
        j_of = (f[:, :, i] / mx * N_INT).long().clamp(max=N_INT - 1)
        for j, iv in enumerate(d['intervals']):
            member = (f[:, :, i] > 0) & (j_of == j)  # (contexts, T)
            n_ctx = int(member.any(1).sum())
            assert len(iv['samples']) == min(S, n_ctx)
            assert len({w['context'] for w in iv['samples']}) == len(iv['samples'])
            for w in iv['samples']:
                assert member[w['context'], w['pos']]
                assert f[w['context'], w['pos'], i].item() == pytest.approx(w['act'], abs=1e-6)
                assert iv['lo'] - 1e-4 <= w['act'] <= iv['hi'] + 1e-4


def test_logit_weights_through_linearised_layernorm(site, brute):
    model, W_dec = site['model'], site['sae']['W_dec']
    r = brute['r'].reshape(-1, 16)
    ln_scale = (r.var(-1, unbiased=False) + 1e-5).rsqrt().mean().item()
    assert brute['meta']['ln_scale'] == pytest.approx(ln_scale, rel=1e-4)
    u = W_dec @ model.transformer.h[0].mlp.c_proj.weight.detach().T  # (F, C)
    u = u - u.mean(1, keepdim=True)
    lw = (u * model.transformer.ln_f.weight.detach() * ln_scale) @ model.lm_head.weight.detach().T  # (F, V)
    for i in range(N_FEAT):
        L = brute['feats'][i]['logits']
        top, bot = lw[i].topk(10), lw[i].topk(10, largest=False)
        assert [w for _, w in L['pos']] == pytest.approx(top.values.tolist(), abs=1e-3)
        assert [w for _, w in L['neg']] == pytest.approx(bot.values.tolist(), abs=1e-3)
        assert lw[i, [t for t, _ in L['pos']]].tolist() == pytest.approx(top.values.tolist(), abs=1e-3)
        assert sum(L['hist']) == lw.shape[1]
        assert L['lo'] == pytest.approx(lw[i].min().item(), abs=1e-3)


def ablated_effects(site, toks: torch.Tensor, feat: int) -> torch.Tensor:
    """log p(next token) clean - with the site replaced by x - f_i W_dec[i]: a real forward pass. (B, T)"""
    sae, model = site['sae'], site['model']

    def zero_feature(x):
        fi = torch.relu((x - sae['b_dec']) @ sae['W_enc'][:, feat] + sae['b_enc'][feat])  # (B, T)
        return x - fi[..., None] * sae['W_dec'][feat]

    with torch.no_grad():
        clean = torch.log_softmax(model.run(toks[:, :-1])[0], -1)
        abl = torch.log_softmax(model.run(toks[:, :-1], replace={SITE: zero_feature})[0], -1)
    y = toks[:, 1:, None]
    return (clean.gather(2, y) - abl.gather(2, y))[..., 0]


@pytest.mark.parametrize('which', ['top', 'intervals'])
def test_ablation_effect_equals_a_forward_pass_without_the_feature(site, brute, which):
    checked = 0
    for i in range(0, N_FEAT, 3):
        d = brute['feats'][i]
        wins = d['top'] if which == 'top' else [w for iv in d['intervals'] for w in iv['samples']]
        for w in wins[:3]:
            eff = ablated_effects(site, brute['toks'][w['context']:w['context'] + 1], i)[0]
            s, n = w['start'], len(w['effects'])
            assert w['effects'] == pytest.approx(eff[s:s + n].tolist(), abs=3e-4, rel=2e-3)
            checked += int(any(abs(e) > 1e-2 for e in w['effects']))
    assert checked > 5  # the effects are not all ~0


def test_ablation_with_large_logits(tmp_path):
    """Logits beyond exp()'s float32 range take the max-shifted log-sum-exp path: still a forward pass's values."""
    big = build_site(str(tmp_path), logit_scale=300.0)
    assert big['model'].lm_head.weight.norm(dim=1).max() * 1.5 * 4 > 80  # the bound that selects that path
    feats = read_features(big['site'])
    meta = json.load(open(os.path.join(big['site'], 'meta.json')))
    toks = torch.from_numpy(np.stack([big['val'][s:s + T + 1].astype(np.int64) for s in meta['context_starts']]))
    for i in (0, 9, 21):
        for w in feats[i]['top'][:2]:
            eff = ablated_effects(big, toks[w['context']:w['context'] + 1], i)[0]
            s, n = w['start'], len(w['effects'])
            assert w['effects'] == pytest.approx(eff[s:s + n].tolist(), abs=2e-3, rel=2e-3)


def test_topk_sae(tmp_path):
    """A SAELens 'topk' SAE: at most k features per token, the k largest of the ReLU'd pre-activations."""
    s = build_site(str(tmp_path), topk=3)
    meta = json.load(open(os.path.join(s['site'], 'meta.json')))
    assert meta['architecture'] == 'topk'
    toks = torch.from_numpy(np.stack([s['val'][st:st + T].astype(np.int64) for st in meta['context_starts']]))
    with torch.no_grad():
        x = s['model'].run(toks, capture=[SITE], need_logits=False)[2][SITE].reshape(-1, D_IN)
    pre = torch.relu((x - s['sae']['b_dec']) @ s['sae']['W_enc'] + s['sae']['b_enc'])
    v, i = pre.topk(3, dim=1)
    f = torch.zeros_like(pre).scatter_(1, i, v)
    index = read_js(os.path.join(s['site'], 'data', 'index.js'))
    assert index['n_fire'] == (f > 0).sum(0).tolist()
    assert all(len(ids) <= 3 for e in read_js(os.path.join(s['site'], 'data', 'examples.js')) for ids in e['features'])


def test_rerun_ablation_agrees_with_the_local_formula(site, brute, tmp_path):
    out = str(tmp_path / 'rerun')
    run_script('build_interface.py', f'--out_dir={out}', f"--transformer_ckpt={site['out']}/transformer/ckpt.pt",
               f"--sae_dir={site['out']}/sae", *ARGS, '--ablation=rerun')
    assert json.load(open(os.path.join(out, 'interface', 'meta.json')))['ablation'] == 'rerun'
    feats = read_features(os.path.join(out, 'interface'))
    for i in range(0, N_FEAT, 4):
        d, ref = feats[i], brute['feats'][i]
        assert [(w['context'], w['pos']) for w in d['top']] == [(w['context'], w['pos']) for w in ref['top']]
        for w, r in zip(d['top'], ref['top']):
            assert w['effects'] == pytest.approx(r['effects'], abs=3e-4, rel=2e-3)


def test_neighbours_and_top_tokens(site, brute):
    f, toks = brute['f'], brute['toks'][:, :-1]
    Wn = site['sae']['W_dec'] / site['sae']['W_dec'].norm(dim=1, keepdim=True)
    cos = Wn @ Wn.T
    cos.fill_diagonal_(-2)
    A = (f.reshape(-1, N_FEAT)[:500] > 0).float()  # co-activation counts over the first coact_tokens tokens
    C = A.T @ A
    score = C / (C.diagonal()[:, None] * C.diagonal()[None, :]).sqrt().clamp_min(1e-12)
    for i in range(N_FEAT):
        d = brute['feats'][i]
        assert [c for _, c in d['cos']] == pytest.approx(cos[i].topk(10).values.tolist(), abs=1e-3)
        assert all(cos[i, j].item() == pytest.approx(c, abs=1e-3) for j, c in d['cos'])
        for j, sc, p in d['coact']:
            assert j != i and score[i, j].item() == pytest.approx(sc, abs=1e-3)
            assert C[i, j].item() / C[i, i].item() == pytest.approx(p, abs=1e-3)
        others = score[i].clone()
        others[i] = -1
        others[C[i] == 0] = -1
        assert len(d['coact']) == min(10, int((others > 0).sum()))
        fired = toks[f[:, :, i] > 0]
        counts = torch.bincount(fired, minlength=site['enc'].n_vocab)
        assert [n for _, n in d['top_tokens']] == counts.sort(descending=True).values[:len(d['top_tokens'])].tolist()
        assert all(counts[t].item() == n for t, n in d['top_tokens'])


def test_example_texts_list_the_active_features(site, brute):
    meta, sae, model = brute['meta'], site['sae'], site['model']
    ex = read_js(os.path.join(site['site'], 'data', 'examples.js'))
    L = meta['example_length']
    assert len(ex) == 4 and [e['start'] for e in ex] == meta['example_starts']
    for e in ex:
        toks = torch.from_numpy(site['val'][e['start']:e['start'] + L].astype(np.int64))[None]
        assert e['tokens'] == toks[0].tolist()
        with torch.no_grad():
            x = model.run(toks, capture=[SITE], need_logits=False)[2][SITE][0]
        f = torch.relu((x - sae['b_dec']) @ sae['W_enc'] + sae['b_enc'])  # (L, F)
        for t in range(L):
            ids, acts = e['features'][t], e['acts'][t]
            active = (f[t] > 0).nonzero()[:, 0]
            assert sorted(ids) == sorted(active.tolist()) and len(acts) == len(ids)
            assert acts == sorted(acts, reverse=True)
            assert acts == pytest.approx(f[t, ids].tolist(), abs=6e-4)


def test_tokens_are_data_never_markup(site):
    d = site['site']
    vocab = read_js(os.path.join(d, 'data', 'vocab.js'))
    assert vocab[256] == XSS[0].decode() and vocab[257] == XSS[1].decode()
    assert vocab[258] == list('日'.encode()[:2])  # partial UTF-8 is kept as bytes, never written raw
    assert vocab[0xC3] == [0xC3] and vocab[ord('<')] == '<'
    for path in glob.glob(os.path.join(d, '*.html')):
        html = open(path, encoding='utf-8').read()
        assert 'alert(' not in html and '<img' not in html
    for path in glob.glob(os.path.join(d, 'data', '*.js')) + glob.glob(os.path.join(d, 'features', '*.js')):
        raw = open(path, 'rb').read()
        assert raw.isascii()  # ensure_ascii: every non-ASCII character is a \\u escape inside a JSON string
        read_js(path)  # and the whole file is one JSON value in a call/assignment: no executable token text
    for name in ('errors.js', 'common.js', 'page_index.js', 'page_feature.js', 'page_examples.js', 'page_concepts.js'):
        src = open(os.path.join(REPO, 'interface', name)).read()
        assert 'innerHTML' not in src and 'insertAdjacentHTML' not in src and 'document.write' not in src


def test_failed_run_leaves_the_old_site(site):
    before = open(os.path.join(site['site'], 'meta.json')).read()
    p = run_script('build_interface.py', f"--out_dir={site['out']}", '--sae_dir=/nonexistent', *ARGS, check=False)
    assert p.returncode != 0 and p.stderr.strip().count('\n') == 0 and 'train_sae.py' in p.stderr
    assert open(os.path.join(site['site'], 'meta.json')).read() == before


@pytest.mark.parametrize('broken', ['sae', 'transformer'])
def test_nonfinite_weights_are_refused_and_no_site_written(site, tmp_path, broken):
    """A diverged SAE (or transformer) gives one line naming the tensor and its count of NaN/inf entries."""
    sae_dir, ckpt = os.path.join(site['out'], 'sae'), os.path.join(site['out'], 'transformer', 'ckpt.pt')
    if broken == 'sae':
        sae_dir = str(tmp_path / 'sae')
        os.makedirs(sae_dir)
        W_enc = site['sae']['W_enc'].clone()
        W_enc[3, :3] = float('nan')
        save_file({**site['sae'], 'W_enc': W_enc.contiguous()}, os.path.join(sae_dir, 'sae_weights.safetensors'))
        json.dump(json.load(open(os.path.join(site['out'], 'sae', 'cfg.json'))), open(f'{sae_dir}/cfg.json', 'w'))
        want = f"{sae_dir}/sae_weights.safetensors: W_enc has 3 non-finite (NaN/inf) entries of {D_IN * N_FEAT:,}"
    else:
        ck = torch.load(ckpt, weights_only=True)
        ck['model']['transformer.h.0.mlp.c_proj.weight'][0, :2] = float('inf')
        ckpt = str(tmp_path / 'ckpt.pt')
        torch.save(ck, ckpt)
        want = f"{ckpt}: transformer.h.0.mlp.c_proj.weight has 2 non-finite (NaN/inf) entries of {16 * D_IN:,}"
    out = str(tmp_path / 'out')
    p = run_script('build_interface.py', f'--out_dir={out}', f'--sae_dir={sae_dir}', f'--transformer_ckpt={ckpt}',
                   *ARGS, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and 'Traceback' not in p.stderr, p.stderr
    assert lines[0].startswith(f'error: {want}: ')
    assert not os.path.exists(out) or not os.listdir(out)  # no site, no half-built temp folder


def test_layer_norm_sae_is_refused_in_one_line(site, tmp_path):
    """The browser's ablation and logit panels assume x̂ linear in f: a layer_norm SAE is refused, not mis-shown."""
    sae_dir = str(tmp_path / 'sae')
    shutil.copytree(os.path.join(site['out'], 'sae'), sae_dir)
    cfg = json.load(open(os.path.join(sae_dir, 'cfg.json')))
    json.dump({**cfg, 'normalize_activations': 'layer_norm'}, open(os.path.join(sae_dir, 'cfg.json'), 'w'))
    p = run_script('build_interface.py', f"--out_dir={tmp_path / 'out'}", f'--sae_dir={sae_dir}',
                   f"--transformer_ckpt={os.path.join(site['out'], 'transformer', 'ckpt.pt')}", *ARGS, check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "normalize='layer_norm'" in lines[0], p.stderr
    assert not os.path.exists(tmp_path / 'out' / 'interface')


# ----------------------------------------------------------------------------- the steps, called directly

def walk_distribution(context_of: list[int], S: int) -> dict[frozenset, float]:
    """Exact law of the interval sample: all tokens in uniformly random order, each taken unless its context is
    already in the sample, until S are taken. With one token per context: a uniform sample without replacement."""
    counts = Counter()
    orders = list(itertools.permutations(range(len(context_of))))
    for order in orders:
        taken, seen = [], set()
        for t in order:
            if context_of[t] not in seen and len(taken) < S:
                seen.add(context_of[t])
                taken.append(t)
        counts[frozenset(taken)] += 1
    return {k: n / len(orders) for k, n in counts.items()}


def sample_stream(context_of: list[int], batches: list[tuple[int, int]], S: int, n_trials: int) -> list[frozenset]:
    """IntervalSamples.offer_ fed batch by batch; the same stream goes to n_trials buckets (independent keys), so
    each bucket is one trial. Returns each trial's sample as the set of token ids (stored as the position)."""
    samples = fs.IntervalSamples.empty(n_trials, S, 'cpu')
    gen = torch.Generator().manual_seed(0)
    ctx = torch.tensor(context_of)
    for c0, c1 in batches:
        tok = ((ctx >= c0) & (ctx < c1)).nonzero()[:, 0]
        bucket = torch.arange(n_trials).repeat_interleave(len(tok))
        t = tok.repeat(n_trials)
        samples.offer_(bucket, ctx[t], t, torch.ones(len(t)), (c0, c1), gen)
    filled = torch.isfinite(samples.key)
    for b in range(n_trials):  # at most one example per context, and as many as there are contexts up to S
        assert len(set(samples.ctx[b][filled[b]].tolist())) == int(filled[b].sum()) == min(S, len(set(context_of)))
        assert all(context_of[t] == c for t, c in zip(samples.pos[b][filled[b]].tolist(),
                                                      samples.ctx[b][filled[b]].tolist()))
    return [frozenset(samples.pos[b][filled[b]].tolist()) for b in range(n_trials)]


@pytest.mark.parametrize('context_of, S', [
    ([0, 1, 2, 3, 4, 5], 3),  # one token per context: every 3-subset equally likely (uniform, no replacement)
    ([0, 0, 0, 1, 2, 2, 3, 4], 2),  # contexts of several tokens: one per context first
    ([0, 0, 1, 1, 1], 3),  # fewer contexts than S: one token of each, uniform within the context
])
def test_interval_samples_are_uniform_one_per_context(context_of, S):
    batches = [(0, 2), (2, 4), (4, max(context_of) + 1)]  # the stream arrives in batches of contexts
    n = 6000
    got = Counter(sample_stream(context_of, batches, S, n))
    want = walk_distribution(context_of, S)
    assert set(got) <= set(want)
    for k, p in want.items():
        assert abs(got[k] / n - p) < 5 * math.sqrt(p * (1 - p) / n), (sorted(k), got[k] / n, p)


@pytest.mark.parametrize('site_kind', ['mlp_hidden', 'mlp_out', 'resid_post'])
def test_local_ablation_formula_equals_a_rerun_without_the_feature(site_kind):
    """The exact local formula (a site in the last layer) against the model rerun with act·W_dec[i] removed."""
    torch.manual_seed(0)
    V, C = 50, 16
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=T, bias=True, vocab_size=V, dropout=0.0,
                          activation='gelu')).eval()
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight.mul_(20)
        model.lm_head.weight.mul_(10)
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
        model.transformer.ln_f.bias.normal_(0, 0.1)
    for p in model.parameters():
        p.requires_grad_(False)
    site, final = f'blocks.1.{site_kind}', 'blocks.1.resid_post'
    W_dec = torch.randn(6, 4 * C if site_kind == 'mlp_hidden' else C)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    idx = torch.randint(V, (3, T + 1))
    x, y = idx[:, :-1], idx[:, 1:]
    resid = model.run(x, capture=[final], need_logits=False)[2][final].reshape(-1, C)  # (3·T, C)
    # pairs (feature, row of resid, activation); a repeated pair and pairs sharing a position, as pass 3 has
    feat = torch.tensor([0, 3, 5, 3, 1, 2, 4, 0])
    row = torch.tensor([5, 5, 40, 5, 70, 3, 94, 31])
    act = torch.tensor([1.5, 0.7, 2.0, 0.7, 0.3, 1.1, 0.9, 2.5])
    head = le.logit_head(model)
    directions = le.feature_logit_directions(head, le.resid_direction(model, 1, site_kind, W_dec))
    buffers = (torch.empty(3, V), torch.empty(3, V))  # chunks of 3 pairs
    got = le.local_ablation_effects(head, directions, resid, y.reshape(-1), feat, row, act, buffers)
    clean = torch.log_softmax(model.run(x)[0], -1)
    for m in range(len(feat)):
        b, t = divmod(int(row[m]), T)

        def remove(h, b=b, t=t, m=m):
            h = h.clone()
            h[b, t] -= act[m] * W_dec[feat[m]]
            return h

        ablated = torch.log_softmax(model.run(x, replace={site: remove})[0], -1)
        want = clean[b, t, y[b, t]] - ablated[b, t, y[b, t]]
        assert got[m].item() == pytest.approx(want.item(), abs=2e-4, rel=1e-3)
    assert (got.abs() > 1e-2).sum() >= 4  # the effects are not all ~0


# ----------------------------------------------------------------------------- a sweep's site

def save_raw_sae(path: str, W_enc: torch.Tensor, W_dec: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor,
                 **cfg) -> None:
    os.makedirs(path, exist_ok=True)
    save_file({'W_enc': W_enc.contiguous(), 'W_dec': W_dec.contiguous(), 'b_enc': b_enc.contiguous(),
               'b_dec': b_dec}, os.path.join(path, 'sae_weights.safetensors'))
    with open(os.path.join(path, 'cfg.json'), 'w') as f:
        json.dump({'architecture': 'standard', 'd_in': D_IN, 'd_sae': len(W_dec), 'hook_name': SITE,
                   'apply_b_dec_to_input': True, **cfg}, f)


@pytest.fixture(scope='module')
def sweep_site(site, tmp_path_factory):
    """A sweep of the module's transformer: s8 (features 8-15 of the module's SAE), s16 (those 8 and a split of
    each: the same encoder column, a nearby decoder direction) and tk8 (topk: no family); its site."""
    sae, sweep_dir = site['sae'], os.path.join(site['out'], 'sweep')
    W_enc, W_dec, b_enc = sae['W_enc'][:, 8:16], sae['W_dec'][8:16], sae['b_enc'][8:16]
    noise = torch.randn(8, D_IN, generator=torch.Generator().manual_seed(0))
    child = torch.nn.functional.normalize(W_dec + 0.5 * noise / noise.norm(dim=1, keepdim=True), dim=1)
    save_raw_sae(os.path.join(sweep_dir, 's8'), W_enc, W_dec, b_enc, sae['b_dec'])
    save_raw_sae(os.path.join(sweep_dir, 's16'), W_enc.repeat(1, 2), torch.cat([W_dec, child]), b_enc.repeat(2),
                 sae['b_dec'])
    save_raw_sae(os.path.join(sweep_dir, 'tk8'), sae['W_enc'][:, 16:24], sae['W_dec'][16:24], sae['b_enc'][16:24],
                 sae['b_dec'], architecture='topk', k=2)
    p = run_script('build_interface.py', f"--out_dir={site['out']}", f'--sweep_dir={sweep_dir}', *ARGS)
    single = {}  # each SAE's site built alone
    for name in ('s8', 's16', 'tk8'):
        out = str(tmp_path_factory.mktemp(f'single_{name}'))
        run_script('build_interface.py', f'--out_dir={out}', f"--transformer_ckpt={site['out']}/transformer/ckpt.pt",
                   f'--sae_dir={sweep_dir}/{name}', *ARGS)
        single[name] = os.path.join(out, 'interface')
    return {'dir': sweep_dir, 'site': os.path.join(sweep_dir, 'interface'), 'stdout': p.stdout, 'single': single}


def test_sweep_site_has_the_contracts_files(sweep_site):
    d = sweep_site['site']
    for name in ('index.html', 'family.html', 'page_sweep.js', 'page_family.js', 'common.js', 'errors.js',
                 'style.css', 'data/sweep.js', 'data/family_standard.js'):
        assert os.path.isfile(os.path.join(d, name)), name
    assert open(os.path.join(d, 'index.html')).read() == open(os.path.join(REPO, 'interface', 'sweep.html')).read()
    assert not os.path.exists(os.path.join(d, 'sweep.html'))
    assert not glob.glob(os.path.join(sweep_site['dir'], 'interface.*'))  # one temp folder, swapped in
    assert os.path.isfile(os.path.join(sweep_site['dir'], 'families.json'))
    sweep = read_js(os.path.join(d, 'data', 'sweep.js'))
    assert [m['name'] for m in sweep['members']] == ['s16', 's8', 'tk8'] and sweep['pareto_png'] is None
    settings = site_build.SiteSettings()  # build_interface.py's defaults: the paper's masked cosine, 0.4, 1e-5
    assert sweep['families'] == [{'name': 'standard', 'kind': 'standard', 'members': ['s8', 's16'], 'sizes': [8, 16],
                                  'link': 'masked', 'threshold': settings.family_threshold,
                                  'min_density': settings.family_min_density,
                                  'n_tokens': settings.family_contexts * T}]
    for m in sweep['members']:
        member = os.path.join(d, os.path.dirname(m['href']))
        assert os.path.isfile(os.path.join(d, m['href'])) and os.path.isfile(os.path.join(member, 'feature.html'))
        assert not any(os.path.exists(os.path.join(member, n)) for n in site_build.SWEEP_PAGES)
        meta = read_js(os.path.join(member, 'data', 'index.js'))['meta']
        assert meta['sweep'] == {'member': m['name'], 'family': None if m['name'] == 'tk8' else 'standard',
                                 'root': '../'}
    assert sweep_site['stdout'].count('] s') + sweep_site['stdout'].count('] tk') == 3  # one line per SAE


def test_sweep_relatives_point_at_existing_features_and_recover_the_split(sweep_site):
    d = sweep_site['site']
    feats = {m: read_features(os.path.join(d, m)) for m in ('s8', 's16', 'tk8')}
    family = read_js(os.path.join(d, 'data', 'family_standard.js'))
    nodes = family['nodes']
    assert all(f['relatives'] == [] for f in feats['tk8'].values())
    for m, other in (('s8', 's16'), ('s16', 's8')):
        for i, f in feats[m].items():  # a feature silent on the family's tokens is not linked: no relatives
            scores = [r['masked'] for r in f['relatives']]  # up to 3 of a positive score, best first
            assert (1 <= len(scores) <= 3 if nodes[m][i]['linked'] else scores == []), (m, i)
            assert all(v > 0 for v in scores) and scores == sorted(scores, reverse=True)
            assert all(r['sae'] == other for r in f['relatives'])
            for r in f['relatives']:
                assert r['n_features'] == len(feats[other]) and r['feature'] in feats[other]
    linked = [i for i in range(8) if nodes['s8'][i]['linked']]
    assert len(linked) >= 6 and all(nodes['s16'][i]['linked'] == nodes['s16'][i + 8]['linked'] == (i in linked)
                                    for i in range(8))
    # the planted split: each s16 feature's best parent (masked cosine 1: the same column, the same activations)
    assert [n['parents'][0]['feature'] if n['parents'] else None for n in nodes['s16']] == [
        i if i in linked else None for i in range(8)] * 2
    assert nodes['s16'][0]['parents'][0]['masked'] == nodes['s16'][0]['parents'][0]['cos'] == pytest.approx(1.0)
    assert all(n['parents'] == [] for n in nodes['s8'])
    for i, n in enumerate(nodes['s8']):  # children: the inverse of the parents (several parents: several lists)
        assert n['children'] == [j for j, c in enumerate(nodes['s16']) if i in [p['feature'] for p in c['parents']]]
        assert {i, i + 8} <= set(n['children']) or i not in linked
    for n in nodes['s16']:  # parents: every feature of the smaller SAE at or above the threshold, best first
        assert all(p['masked'] >= family['threshold'] for p in n['parents'])
        assert [p['masked'] for p in n['parents']] == sorted((p['masked'] for p in n['parents']), reverse=True)
    assert nodes['s8'][3]['density'] == pytest.approx(feats['s8'][3]['density'], rel=1e-3)


def test_sweep_member_is_its_single_site_plus_relatives(sweep_site, site):
    """The same code path: every member's data files equal the single build of its SAE byte for byte, but the
    relatives of its feature records and INDEX.meta.sweep (the records written again without their relatives by
    the site's own serialiser must be the single site's file bytes); meta.json but the build's config, time and
    timings. A single build has neither relatives nor meta.sweep."""
    for name, single in sweep_site['single'].items():
        member = os.path.join(sweep_site['site'], name)
        assert sorted(os.listdir(member)) == sorted(os.listdir(single))
        files = sorted(os.path.relpath(f, member) for f in glob.glob(os.path.join(member, '*', '*.js')))
        assert sorted(os.path.relpath(f, single) for f in glob.glob(os.path.join(single, '*', '*.js'))) == files
        assert len(files) >= 4 and 'data/index.js' in files and 'features/0000.js' in files
        for rel in files:
            a, b = (open(os.path.join(d, rel), encoding='ascii').read() for d in (member, single))
            if rel.startswith('features/'):
                records = read_js(os.path.join(member, rel))
                assert all('relatives' in r for r in records)
                shorn = [site_build.js({k: v for k, v in r.items() if k != 'relatives'}) for r in records]
                a = f"loadFeatures([{','.join(shorn)}]);\n"
            elif rel == 'data/index.js':
                index_a, index_b = read_js(os.path.join(member, rel)), read_js(os.path.join(single, rel))
                assert index_a['meta'].pop('sweep')['member'] == name and 'sweep' not in index_b['meta']
                index_a['meta']['built'] = index_b['meta']['built']
                a = f"window.INDEX={site_build.js(index_a)};\n"
            assert a == b, (name, rel)
        meta_a, meta_b = (json.load(open(os.path.join(d, 'meta.json'))) for d in (member, single))
        for m in (meta_a, meta_b):
            for key in ('built', 'seconds', 'config', 'sweep'):
                m.pop(key, None)
        assert meta_a == meta_b
    for d in (*sweep_site['single'].values(), site['site']):
        assert not any('relatives' in f for f in read_features(d).values())
        assert 'sweep' not in read_js(os.path.join(d, 'data', 'index.js'))['meta']
        assert 'sweep_dir' not in json.load(open(os.path.join(d, 'meta.json')))['config']
        assert not any(os.path.exists(os.path.join(d, n)) for n in site_build.SWEEP_PAGES)


def test_sweep_runs_the_transformer_once_per_batch_for_all_its_saes(sweep_site, tmp_path, monkeypatch):
    """The sweep's SAEs share each batch's forward pass: building the sweep's site (3 SAEs) runs the transformer
    as often as building one SAE's site does: once per batch of contexts in each of the 3 passes, once per batch of
    example texts. (The families are read from families.json: they cost no forward pass here.)"""
    sweep_dir = str(tmp_path / 'sweep')
    shutil.copytree(sweep_site['dir'], sweep_dir, ignore=shutil.ignore_patterns('interface'))  # times kept
    calls = []
    run = GPT.run

    def counted(model, idx, *args, **kwargs):
        calls.append(len(idx))
        return run(model, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, 'run', counted)
    settings = site_build.SiteSettings(n_contexts=CTX, batch_size=BATCH, top_k=TOP_K, window=WINDOW,
                                       n_intervals=N_INT, interval_samples=S, n_example_texts=4, example_length=24,
                                       coact_tokens=500, seed=3)
    transformer = runs.load_transformer(os.path.dirname(sweep_site['dir']), '', '', T, 'cpu', 'float32')
    site_dir = sweep_site_build.build_sweep_site(sweep_dir, transformer, settings, {})
    sweep_calls, calls[:] = list(calls), []
    assert sorted(os.listdir(site_dir)) == sorted(os.listdir(sweep_site['site']))
    inputs = runs.load_inputs(transformer, os.path.join(sweep_dir, 's16'))
    site_build.build_site(inputs, str(tmp_path / 'one'), settings, {}, verbose=False)
    batches = [min(BATCH, CTX - b0) for b0 in range(0, CTX, BATCH)]  # 5 batches of contexts, 1 of example texts
    assert calls == batches * 3 + [4]  # pass 3 too: each batch holds some shown window
    assert sweep_calls == calls


def test_build_site_from_another_module_uses_the_settings_it_is_given(site, tmp_path):
    """build_site takes its settings as an argument: none of build_interface.py's defaults (or this module's ARGS)
    leak into a site built from a library call with other values."""
    s = site_build.SiteSettings(n_contexts=9, batch_size=4, top_k=2, window=2, n_intervals=5, interval_samples=1,
                                n_example_texts=2, example_length=12, coact_tokens=40, ablation='none', seed=7)
    inputs = runs.load_inputs(runs.load_transformer(site['out'], '', '', T, 'cpu', 'float32'),
                              os.path.join(site['out'], 'sae'))
    out = str(tmp_path / 'site')
    site_build.build_site(inputs, out, s, {'note': 'from a test'}, verbose=False)
    meta = json.load(open(os.path.join(out, 'meta.json')))
    assert (meta['n_contexts'], meta['top_k'], meta['window'], meta['n_intervals'], meta['interval_samples'],
            meta['ablation'], meta['coact_tokens'], meta['example_length']) == (9, 2, 2, 5, 1, 'none', 40, 12)
    assert meta['config'] == {'note': 'from a test'} and len(meta['example_starts']) == 2
    assert meta['context_starts'] == sorted(meta['context_starts']) and len(meta['context_starts']) == 9
    feats = read_features(out)
    assert all(len(f['top']) <= 2 and len(f['intervals']) == 5 for f in feats.values())
    assert all(len(x['tokens']) <= 2 * 2 + 2 for f in feats.values() for x in f['top'])
    assert all(e == 0 for f in feats.values() for x in f['top'] for e in x['effects'])  # ablation='none'
    other = str(tmp_path / 'other')
    site_build.build_site(inputs, other, dataclasses.replace(s, seed=8), {}, verbose=False)
    assert json.load(open(os.path.join(other, 'meta.json')))['context_starts'] != meta['context_starts']


def test_site_settings_defaults_are_the_scripts():
    """SiteSettings' defaults (for callers of build_site) are build_interface.py's config defaults: one set."""
    tree = ast.parse(open(os.path.join(REPO, 'build_interface.py')).read())
    script = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
    for f in dataclasses.fields(site_build.SiteSettings):
        assert script[f.name] == f.default, f.name
