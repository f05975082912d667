"""monosemanticity/families.py: families of a sweep (SAEs alike but for their size) and the links of their features
across sizes."""
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

SITE, D_IN, T = 'blocks.0.mlp_hidden', 64, 32
ARGS = ['--family_contexts=12', f'--context_length={T}', '--batch_size=5', '--device=cpu', '--seed=3']


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


@pytest.mark.parametrize('link', ['decoder', 'activation'])
def test_parent_links_recover_a_planted_split(link):
    (small, large), planted = planted_split()
    g = torch.Generator().manual_seed(1)
    # activations: a parent fires, and exactly one of its two children fires with it (which one: a coin)
    a_small = torch.rand(2000, 8, generator=g) * (torch.rand(2000, 8, generator=g) < 0.3)
    which = torch.rand(2000, 8, generator=g) < 0.5
    child = torch.stack([torch.nonzero(planted == i)[:, 0] for i in range(8)])  # (8, 2) ids of each one's children
    a_large = torch.zeros(2000, 16)
    a_large.scatter_(1, torch.where(which, child[:, 0], child[:, 1]).expand(2000, 8), a_small)
    sums = fam.CorrelationSums([8, 16])
    sums.add_([a_small, a_large])
    family = fam.Family('topk', 'topk', ['s', 'l'], [8, 16])
    out = fam.link_family(family, [small, large], sums, link)
    feats = out['features']
    assert [f['parent'] for f in feats['l']] == planted.tolist()
    cos, corr = small @ large.T, np.corrcoef(a_small.T.numpy(), a_large.T.numpy())[:8, 8:]
    for j, f in enumerate(feats['l']):
        assert f['parent_cos'] == pytest.approx(cos[f['parent'], j].item(), abs=1e-4)
        assert f['parent_corr'] == pytest.approx(corr[f['parent'], j], abs=1e-4)
    assert all(f['parent'] == -1 and f['parent_cos'] is None for f in feats['s'])
    score = cos if link == 'decoder' else torch.from_numpy(corr)
    for i, f in enumerate(feats['s']):  # relatives: the 3 best of the other size, best first
        assert [r['feature'] for r in f['relatives']] == score[i].topk(3).indices.tolist()
        assert {r['sae'] for r in f['relatives']} == {'l'} and sorted(r['feature'] for r in f['relatives'][:2]) == \
            sorted(child[i].tolist())  # its two children first
    assert all([r['sae'] for r in f['relatives']] == ['s'] * 3 for f in feats['l'])


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
    fam.write_families(sweep_dir, fam.link_sweep(sweep_dir, members, transformer, 'val', 12, 5, 'decoder', 3))
    return {'dir': sweep_dir, 'out': out, 'model': model, 'data': data, 'planted': [planted_mid, planted_large],
            'members': members, 'json': json.load(open(os.path.join(sweep_dir, 'families.json')))}


def test_link_sweep_finds_the_family_and_recovers_the_planted_splits(sweep):
    (f,) = sweep['json']['families']
    assert (f['name'], f['kind'], f['members'], f['sizes']) == ('anthropic2023', 'anthropic2023',
                                                                ['s8', 's16', 's32'], [8, 16, 32])
    assert [x['parent'] for x in f['features']['s16']] == sweep['planted'][0].tolist()
    assert [x['parent'] for x in f['features']['s32']] == sweep['planted'][1].tolist()
    assert f['link'] == 'decoder' and f['n_tokens'] == sweep['json']['n_tokens'] == 12 * T
    assert [len(x['relatives']) for x in f['features']['s8']] == [6] * 8  # 3 in each other size
    assert [n for n in os.listdir(sweep['dir']) if n.startswith('families')] == ['families.json']


def test_link_sweep_cosines_and_correlations_equal_a_direct_computation(sweep):
    """Decoder cosines from the exports; correlations from every token of the contexts families.json names."""
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
        for j, x in enumerate(f['features'][f['members'][i + 1]]):
            assert x['parent_cos'] == pytest.approx(cos[x['parent'], j], abs=1e-4)
            assert x['parent_corr'] == pytest.approx(corr[x['parent'], j], abs=1e-4)
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
    assert read('decoder', 12, 'val', 3) == sweep['json']
    for other in (('activation', 12, 'val', 3), ('decoder', 13, 'val', 3), ('decoder', 12, 'train', 3),
                  ('decoder', 12, 'val', 4)):
        assert read(*other) is None, other


def test_bad_input_is_one_line(sweep, tmp_path):
    code, lines, _ = run_failing('build_interface.py', f"--out_dir={sweep['out']}", f'--sweep_dir={tmp_path / "none"}',
                                 *ARGS)
    assert code == 2 and len(lines) == 1 and 'is not a folder' in lines[0]
    with pytest.raises(fam.UserError, match='no family'):
        lonely = tmp_path / 'sweep'
        save_sae(str(lonely / 'only'), torch.eye(8, D_IN))
        fam.families_or_error(str(lonely), fam.sweep_members(str(lonely)))
    code, lines, _ = run_failing('build_interface.py', f"--out_dir={sweep['out']}", f'--sweep_dir={tmp_path}',
                                 *ARGS, '--family_link=cosine')
    assert code == 2 and len(lines) == 1 and 'family_link' in lines[0], lines
