"""monosemanticity/families.py: families of a sweep (SAEs alike but for their size) and the links of their features
across sizes."""
import ast
import json
import os

import numpy as np
import pytest
import torch

from monosemanticity import families as fam
from autoencoder import SAEConfig, SparseAutoencoder, load_saelens, save_saelens, saelens_cfg
from conftest import make_token_dataset, run_failing, save_transformer
from model import GPT, GPTConfig
from monosemanticity.runs import load_transformer
from monosemanticity.site import SiteSettings

SITE, D_IN, T = 'blocks.0.mlp_hidden', 64, 32
ARGS = ['--family_contexts=12', f'--context_length={T}', '--batch_size=5', '--device=cpu', '--seed=3']
THRESHOLD, MIN_DENSITY = 0.4, 1e-5  # build_interface.py's defaults (test_the_default_link_is_the_papers_masked_cosine)


def member(name: str, n: int, kind: str = 'topk', **config) -> fam.SweepMember:
    cfg = {'architecture': kind, 'd_in': D_IN, 'd_sae': n, 'hook_name': SITE, 'sae_kind': kind,
           **({'k': config['k']} if 'k' in config else {})}
    config = {'kind': kind, 'n_features': n, **config}
    config = {**config, 'lr': config.get('lr', 1e-3), 'batch_size': 64, 'name': name}  # train_sae.py's key order
    return fam.SweepMember(name, f'/x/{name}', cfg, config, kind, n)


def test_families_are_the_saes_alike_but_for_their_size():
    members = [member('a', 128, k=20), member('b', 32, k=20), member('c', 64, k=20), member('d', 64, k=10),
               member('e', 64, k=20, lr=3e-4), member('f', 32, k=10, lr=3e-4),
               member('m1', 64, 'matryoshka_batchtopk', k=8, matryoshka_widths=[4, 64]),
               member('m2', 128, 'matryoshka_batchtopk', k=8, matryoshka_widths=[8, 128]),
               member('j', 64, 'jumprelu', l1_coeff=1e-3), member('j2', 128, 'jumprelu', l1_coeff=3e-3)]
    got = {f.name: (f.members, f.sizes) for f in fam.find_families(members)}
    # e (another lr) is alone; d and f differ in lr, j and j2 in l1_coeff; matryoshka widths scale with F
    assert got == {'topk_k20_lr0.001': (['b', 'c', 'a'], [32, 64, 128]),
                   'matryoshka_batchtopk': (['m1', 'm2'], [64, 128])}


def test_streaming_correlation_equals_numpy_corrcoef():
    g = torch.Generator().manual_seed(0)
    acts = [torch.rand(300, F, generator=g) * (torch.rand(300, F, generator=g) < 0.2) for F in (5, 9, 12)]
    acts[1][:, 3] = 0  # a feature that never fires: correlation 0
    acts[2][:, 0] = acts[0][:, 2] * 2 + 1  # a perfectly correlated pair
    sums = fam.CorrelationSums([5, 9, 12])
    for b0 in range(0, 300, 70):  # batches of uneven size
        sums.add_([a[b0:b0 + 70] for a in acts])
    assert sums.n == 300
    for i, j in ((0, 1), (0, 2), (1, 2)):
        Fi = acts[i].size(1)
        with np.errstate(invalid='ignore'):  # numpy: nan for the silent feature
            want = np.nan_to_num(np.corrcoef(acts[i].double().T.numpy(), acts[j].double().T.numpy())[:Fi, Fi:])
        np.testing.assert_allclose(sums.corr(i, j).numpy(), want, atol=1e-10)
    assert sums.corr(0, 2)[2, 0] == pytest.approx(1.0)


def brute_masked_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Fa, Fb): per pair, the cosine of the two activation columns over the tokens where a's fires and over those
    where b's fires, the greater; 0 for an empty mask or a zero vector (by loops)."""
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            for mask in (a[:, i] > 0, b[:, j] > 0):
                x, y = a[mask, i], b[mask, j]
                norm = np.linalg.norm(x) * np.linalg.norm(y)
                out[i, j] = max(out[i, j], x @ y / norm if norm > 0 else 0.0)
    return out


def brute_decoded_masked_cos(a: np.ndarray, b: np.ndarray, dec_a: np.ndarray, dec_b: np.ndarray) -> np.ndarray:
    """(Fa, Fb): the paper's masked cosine of the decoded activations: per pair, the cosine of the (tokens x d)
    vectors a_i(t)·dec_a[i] and b_j(t)·dec_b[j] over the tokens where a_i fires and over those where b_j fires, the
    greater (by loops over the pairs, on the full decoded vectors)."""
    out = np.zeros((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            for mask in (a[:, i] > 0, b[:, j] > 0):
                x, y = np.outer(a[mask, i], dec_a[i]), np.outer(b[mask, j], dec_b[j])  # (tokens, d) each
                norm = np.linalg.norm(x) * np.linalg.norm(y)
                out[i, j] = max(out[i, j], (x * y).sum() / norm if norm > 0 else 0.0)
    return out


def test_streaming_masked_cosine_equals_a_brute_force_computation():
    g = torch.Generator().manual_seed(0)
    acts = [torch.rand(300, F, generator=g) * (torch.rand(300, F, generator=g) < 0.1) for F in (5, 9, 12)]
    acts[1][:, 3] = 0  # a feature that never fires: 0
    acts[2][:, 0] = acts[0][:, 2] * (torch.rand(300, generator=g) < 0.5)  # a child: fires on half its parent's tokens
    sums = fam.CorrelationSums([5, 9, 12], masked=True)
    for b0 in range(0, 300, 70):  # batches of uneven size
        sums.add_([a[b0:b0 + 70] for a in acts])
    for i, j in ((0, 1), (0, 2), (1, 2)):
        want = brute_masked_cos(acts[i].double().numpy(), acts[j].double().numpy())
        np.testing.assert_allclose(sums.masked_cos(i, j).numpy(), want, atol=1e-10)
        assert (want > 0.01).sum() > 5  # the test has teeth: pairs that fire together
    assert sums.masked_cos(0, 2)[2, 0] == pytest.approx(1.0)  # on the child's tokens, the two are equal
    assert sums.corr(0, 2)[2, 0] < 0.9  # not so by correlation over all tokens
    np.testing.assert_array_equal(sums.density(1).numpy(), (acts[1] > 0).double().mean(0).numpy())


def planted_split(n_small: int = 8, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Unit decoders of a small dictionary and a twice larger one that holds each small direction split in two
    (each child = the parent's direction + its own noise), shuffled; returns them and the planted parents."""
    g = torch.Generator().manual_seed(seed)
    small = torch.nn.functional.normalize(torch.randn(n_small, D_IN, generator=g), dim=1)
    children = small.repeat(2, 1) + 0.6 * torch.nn.functional.normalize(torch.randn(2 * n_small, D_IN, generator=g),
                                                                         dim=1)
    perm = torch.randperm(2 * n_small, generator=g)
    large = torch.nn.functional.normalize(children[perm], dim=1)
    return [small, large], torch.arange(2 * n_small)[perm] % n_small


def planted_activations(planted: torch.Tensor, n: int = 4000, density: float = 0.03,
                         seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations of planted_split's dictionaries: each small feature fires on `density` of the n tokens, and
    exactly one of its two children fires with it, with its value (which one: a coin). Returns (a_small (n, S),
    a_large (n, 2S), child (S, 2): the ids of each small feature's children)."""
    S = len(planted) // 2
    g = torch.Generator().manual_seed(seed)
    a_small = torch.rand(n, S, generator=g) * (torch.rand(n, S, generator=g) < density)
    which = torch.rand(n, S, generator=g) < 0.5
    child = torch.stack([torch.nonzero(planted == i)[:, 0] for i in range(S)])  # (S, 2)
    a_large = torch.zeros(n, 2 * S)
    a_large.scatter_(1, torch.where(which, child[:, 0], child[:, 1]), a_small)
    return a_small, a_large, child


def link_two(decoders: list[torch.Tensor], acts: list[torch.Tensor], link: str = 'masked',
             threshold: float = THRESHOLD, min_density: float = MIN_DENSITY) -> dict:
    """link_family of a family of two members 's' and 'l' from their decoders and activations."""
    sums = fam.CorrelationSums([len(d) for d in decoders], masked=True)
    sums.add_(acts)
    family = fam.Family('topk', 'topk', ['s', 'l'], [len(d) for d in decoders])
    return fam.link_family(family, decoders, sums, link, threshold, min_density)['features']


@pytest.mark.parametrize('link', ['masked', 'decoder', 'activation'])
def test_parent_links_recover_a_planted_split(link):
    (small, large), planted = planted_split()
    a_small, a_large, child = planted_activations(planted)
    feats = link_two([small, large], [a_small, a_large], link)
    assert [[p['feature'] for p in f['parents']] for f in feats['l']] == [[p] for p in planted.tolist()]
    cos, corr = small @ large.T, np.corrcoef(a_small.T.numpy(), a_large.T.numpy())[:8, 8:]
    masked = brute_decoded_masked_cos(a_small.double().numpy(), a_large.double().numpy(), small.double().numpy(),
                                      large.double().numpy())
    for j, f in enumerate(feats['l']):
        (p,) = f['parents']
        assert p['cos'] == pytest.approx(cos[p['feature'], j].item(), abs=1e-4)
        assert p['corr'] == pytest.approx(corr[p['feature'], j], abs=1e-4)
        assert p['masked'] == pytest.approx(masked[p['feature'], j], abs=1e-4)
    assert all(f['parents'] == [] for f in feats['s'])
    score, key = {'decoder': (cos, 'cos'), 'activation': (torch.from_numpy(corr), 'corr'),
                  'masked': (torch.from_numpy(masked), 'masked')}[link]
    for m, other, sc in (('s', 'l', score), ('l', 's', score.T)):  # relatives: the 3 best of score > 0, best first
        for i, f in enumerate(feats[m]):
            best = [v for v in sc[i].topk(3).values.tolist() if v > 0]
            assert [r[key] for r in f['relatives']] == pytest.approx(best, abs=1e-4) and len(best) >= 1
            assert {r['sae'] for r in f['relatives']} == {other}
    for i, f in enumerate(feats['s']):
        assert sorted(r['feature'] for r in f['relatives'][:2]) == sorted(child[i].tolist())  # its two children first


def test_a_link_below_the_threshold_is_no_parent():
    """A feature of the larger size that matches nothing of the smaller one (it fires on tokens of its own) has no
    parent, however close its best match; with the threshold above every score, no feature has one."""
    (small, large), planted = planted_split()
    a_small, a_large, _ = planted_activations(planted)
    g = torch.Generator().manual_seed(5)
    new = torch.rand(4000, generator=g) * (torch.rand(4000, generator=g) < 0.03)  # a feature new at this size
    acts = [a_small, torch.cat([a_large, new[:, None]], 1)]
    large = torch.cat([large, torch.nn.functional.normalize(torch.randn(1, D_IN, generator=g), dim=1)])
    feats = link_two([small, large], acts)
    best = brute_masked_cos(acts[0].double().numpy(), acts[1][:, 16:].double().numpy())[:, 0].max()
    assert 0 < best < THRESHOLD  # it has a best match: a weak one
    assert feats['l'][16]['parents'] == [] and feats['l'][16]['relatives'] != []
    assert all(len(f['parents']) == 1 for f in feats['l'][:16])
    assert all(f['parents'] == [] for f in link_two([small, large], acts, threshold=1.01)['l'])


def test_a_feature_that_merges_two_has_two_parents():
    """The paper: features split and merge. A feature of the larger size firing wherever either of two features of
    the smaller one fires, with their values, has both as parents (best first); the others keep one."""
    (small, large), planted = planted_split()
    a_small, a_large, child = planted_activations(planted)
    a_large[:, 0] = a_small[:, 3] + 0.5 * a_small[:, 5]  # feature 0 of the larger: a merge of 3 and 5
    large[0] = torch.nn.functional.normalize(small[3] + small[5], dim=0)  # its direction between theirs
    feats = link_two([small, large], [a_small, a_large])
    parents = feats['l'][0]['parents']
    assert sorted(p['feature'] for p in parents) == [3, 5] and all(p['masked'] >= THRESHOLD for p in parents)
    assert parents[0]['masked'] >= parents[1]['masked']
    assert all(len(f['parents']) == 1 for f in feats['l'][1:])
    assert sorted(c for c in range(16) if 3 in [p['feature'] for p in feats['l'][c]['parents']]) == sorted(
        set(child[3].tolist()) | {0})


def test_ultralow_features_are_not_linked():
    """A feature firing on fewer than min_density of the tokens has no parent and no relative and is no one's, even
    when it matches perfectly; the default min_density keeps a feature that fires once in the 4000 tokens."""
    (small, large), planted = planted_split()
    a_small, a_large, child = planted_activations(planted)
    c = child[2, 0].item()
    a_large[:, c] = 0
    t = int(torch.nonzero(a_small[:, 2])[0])
    a_large[t, c] = a_small[t, 2]  # fires once (density 2.5e-4), as its parent there: masked cosine 1
    kept = link_two([small, large], [a_small, a_large])
    parent = kept['l'][c]['parents']  # masked activation cosine 1: the decoded one is the decoder cosine
    assert [p['feature'] for p in parent] == [2] and parent[0]['masked'] == pytest.approx((small[2] @ large[c]).item(),
                                                                                         abs=1e-4)
    assert kept['l'][c]['density'] == 2.5e-4
    feats = link_two([small, large], [a_small, a_large], min_density=1e-3)
    assert feats['l'][c]['parents'] == [] and feats['l'][c]['relatives'] == []
    assert all(r['feature'] != c for f in feats['s'] for r in f['relatives'])
    assert all(len(f['parents']) == 1 for j, f in enumerate(feats['l']) if j != c)  # the others as before
    a_small[:, 4] = 0
    a_small[t, 4] = 1.0  # a small feature that fires once: no one's parent
    low = link_two([small, large], [a_small, a_large], min_density=1e-3)['l']
    assert all(4 not in [p['feature'] for p in f['parents']] for f in low)


def test_the_default_link_is_the_papers_masked_cosine():
    """build_interface.py's config defaults, made into SiteSettings as its main() does (from_config): the masked
    cosine, the threshold 0.4, ultralow features (< 1e-5) not linked."""
    tree = ast.parse(open(os.path.join(os.path.dirname(os.path.dirname(__file__)), 'build_interface.py')).read())
    script = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
    s = SiteSettings.from_config(script)
    assert (s.family_link, s.family_threshold, s.family_min_density) == ('masked', THRESHOLD, MIN_DENSITY)
    d = SiteSettings()  # a library caller's defaults: the same
    assert (d.family_link, d.family_threshold, d.family_min_density) == ('masked', THRESHOLD, MIN_DENSITY)


# ----------------------------------------------------------------------------- the script on a fake sweep

def save_sae(path: str, W_dec: torch.Tensor, kind: str = 'anthropic2023', **cfg) -> None:
    """An SAE export with decoder directions W_dec (F, D_IN) (rows of norms 0.5-1.5: the links must not depend on
    them) and W_enc = 3·W_dec (each feature reads its own direction)."""
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, n_features=len(W_dec), kind=kind, **cfg))
    norms = 0.5 + torch.rand(len(W_dec), 1, generator=torch.Generator().manual_seed(len(W_dec)))
    with torch.no_grad():
        sae.W_dec.copy_((W_dec * norms).T)
        sae.W_enc.copy_(W_dec * 3)
        sae.b_enc.fill_(-0.05)
        sae.b_dec.zero_()
    save_saelens(sae, path, saelens_cfg(sae, SITE))


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
    """A tiny transformer and a sweep of 3 anthropic2023 SAEs (8 -> 16 -> 32 features, each larger one holding the
    smaller one's directions and a split of each) and one topk SAE (not of the family)."""
    root = tmp_path_factory.mktemp('families')
    data = make_token_dataset(str(root / 'data'), n_train=100, n_val=3000)
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=T, bias=True, vocab_size=64, dropout=0.0,
                activation='gelu')
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    out = str(root / 'out')
    save_transformer(out, model, args, data, 64)
    (small, mid), planted_mid = planted_split(8, seed=0)
    (_, large), planted_large = planted_split(16, seed=1)
    large = torch.nn.functional.normalize(large * 0.3 + mid[planted_large], dim=1)  # split of mid's features
    sweep_dir = os.path.join(out, 'sweep')
    for name, W in (('s8', small), ('s16', mid), ('s32', large)):
        save_sae(os.path.join(sweep_dir, name), W)
    save_sae(os.path.join(sweep_dir, 'tk16'), mid, 'topk', k=4)
    transformer = load_transformer(out, '', '', T, 'cpu', 'float32')
    members = fam.sweep_members(sweep_dir)
    fam.write_families(sweep_dir, fam.link_sweep(sweep_dir, members, transformer, 'val', 12, 5, 'decoder', THRESHOLD,
                                                 MIN_DENSITY, 3))
    return {'dir': sweep_dir, 'out': out, 'model': model, 'data': data, 'planted': [planted_mid, planted_large],
            'members': members, 'json': json.load(open(os.path.join(sweep_dir, 'families.json')))}


def test_link_sweep_finds_the_family_and_recovers_the_planted_splits(sweep):
    (f,) = sweep['json']['families']
    assert (f['name'], f['kind'], f['members'], f['sizes']) == ('anthropic2023', 'anthropic2023',
                                                                ['s8', 's16', 's32'], [8, 16, 32])
    assert [x['parents'][0]['feature'] for x in f['features']['s16']] == sweep['planted'][0].tolist()
    assert [x['parents'][0]['feature'] for x in f['features']['s32']] == sweep['planted'][1].tolist()
    assert f['link'] == 'decoder' and f['n_tokens'] == sweep['json']['n_tokens'] == 12 * T
    assert (f['threshold'], f['min_density']) == (sweep['json']['threshold'], sweep['json']['min_density']) == (
        THRESHOLD, MIN_DENSITY)
    assert [len(x['relatives']) for x in f['features']['s8']] == [6] * 8  # 3 in each other size
    assert [n for n in os.listdir(sweep['dir']) if n.startswith('families')] == ['families.json']


def test_link_sweep_cosines_and_correlations_equal_a_direct_computation(sweep):
    """Decoder cosines from the exports; correlations, masked cosines (by loops) and densities from every token of
    the contexts families.json names."""
    js = sweep['json']
    f = js['families'][0]
    saes = [load_saelens(os.path.join(sweep['dir'], m)) for m in f['members']]
    val = np.fromfile(os.path.join(sweep['data'], 'val.bin'), dtype=np.uint16).astype(np.int64)
    toks = torch.from_numpy(np.stack([val[s:s + T] for s in js['context_starts']]))
    with torch.no_grad():
        x = sweep['model'].run(toks, capture=[SITE], need_logits=False)[2][SITE].reshape(-1, D_IN)
        acts = [s.encode(x).double().numpy() for s in saes]
    for i in range(2):
        W_a, W_b = (torch.nn.functional.normalize(s.W_dec.detach().T, dim=1) for s in saes[i:i + 2])
        cos = (W_a @ W_b.T).numpy()
        corr = np.nan_to_num(np.corrcoef(acts[i].T, acts[i + 1].T)[:f['sizes'][i], f['sizes'][i]:])
        assert (acts[i].std(0) > 0).sum() >= f['sizes'][i] // 2  # most features fire: the test has teeth
        masked = brute_decoded_masked_cos(acts[i], acts[i + 1], W_a.double().numpy(), W_b.double().numpy())
        assert ((masked > 0.05) & (masked < 0.95)).sum() > 10  # varied values: the test has teeth
        for j, x in enumerate(f['features'][f['members'][i + 1]]):
            assert x['parents'] == sorted(x['parents'], key=lambda p: -p['cos'])  # best first
            assert [p['feature'] for p in x['parents']] == [k for k in np.argsort(-cos[:, j]) if cos[k, j] >= 0.4]
            for p in x['parents']:
                assert p['cos'] == pytest.approx(cos[p['feature'], j], abs=1e-4)
                assert p['corr'] == pytest.approx(corr[p['feature'], j], abs=1e-4)
                assert p['masked'] == pytest.approx(masked[p['feature'], j], abs=1e-4)
        assert [x['density'] for x in f['features'][f['members'][i]]] == pytest.approx((acts[i] > 0).mean(0),
                                                                                       rel=1e-3)
        rel = f['features'][f['members'][i]][0]['relatives']
        assert [r['feature'] for r in rel if r['sae'] == f['members'][i + 1]] == list(np.argsort(-cos[0])[:3])


def test_families_json_is_written_atomically(sweep, tmp_path, monkeypatch):
    """A write that fails half way leaves the old families.json as it was, and no temp file."""
    d = str(tmp_path)
    fam.write_families(d, sweep['json'])
    before = open(os.path.join(d, 'families.json')).read()
    assert json.loads(before) == sweep['json']
    broken = {**sweep['json'], 'families': [{**sweep['json']['families'][0], 'features': {'s8': [object()]}}]}
    with pytest.raises(TypeError):
        fam.write_families(d, broken)
    assert os.listdir(d) == ['families.json'] and open(os.path.join(d, 'families.json')).read() == before


def test_families_json_is_read_back_only_for_the_same_settings(sweep):
    """build_interface.py --sweep_dir reuses families.json only when it was linked as now asked (else relinks)."""
    read = lambda *a: fam.read_families(sweep['dir'], sweep['members'], *a)
    same = ('decoder', THRESHOLD, MIN_DENSITY, 12, 'val', 3)
    assert read(*same) == sweep['json']
    for k, v in enumerate(('masked', 0.5, 1e-4, 13, 'train', 4)):  # each setting changed alone
        other = same[:k] + (v,) + same[k + 1:]
        assert read(*other) is None, other


def test_bad_input_is_one_line(sweep, tmp_path):
    code, lines, _ = run_failing('build_interface.py', f"--out_dir={sweep['out']}", f'--sweep_dir={tmp_path / "none"}',
                                 *ARGS)
    assert code == 2 and len(lines) == 1 and 'is not a folder' in lines[0]
    with pytest.raises(fam.UserError, match='no family'):
        lonely = tmp_path / 'sweep'
        save_sae(str(lonely / 'only'), torch.eye(8, D_IN))
        fam.families_or_error(str(lonely), fam.sweep_members(str(lonely)))
    for bad, key in (('--family_link=cosine', 'family_link'), ('--family_threshold=1.5', 'family_threshold'),
                     ('--family_min_density=-1', 'family_min_density')):
        code, lines, _ = run_failing('build_interface.py', f"--out_dir={sweep['out']}", f'--sweep_dir={tmp_path}',
                                     *ARGS, bad)
        assert code == 2 and len(lines) == 1 and key in lines[0], lines
