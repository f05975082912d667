"""Our SAELens exports against the real SAELens, and bench/saelens.py end to end.

SAELens is optional (its own venv, never this project's): the tests that need it run when SAELENS_PYTHON names a
python that imports sae_lens (e.g. SAELENS_PYTHON=~/saelens-venv/bin/python pytest tests/test_saelens.py) and are
skipped with the reason otherwise. The Pareto report's SAELens points need no SAELens and always run.
"""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from autoencoder import (KINDS, RECIPES, SAEConfig, SparseAutoencoder, init_from_data_, load_saelens, save_saelens,
                         saelens_cfg)
from monosemanticity.store import ActivationStore
from bench.saelens import Evaluation, parse_config, run_child, saelens_missing, saelens_python
from conftest import harvested_run, run_script
from monosemanticity.sweep import pareto_table, write_pareto

PYTHON = saelens_python()
MISSING = saelens_missing(PYTHON)
needs_saelens = pytest.mark.skipif(MISSING is not None, reason=f"SAELens absent: {MISSING}")
SAELENS_CLASS = {'anthropic2023': 'StandardSAE', 'april2024': 'StandardSAE', 'topk': 'TopKSAE',
                 'batchtopk': 'JumpReLUSAE', 'matryoshka_batchtopk': 'JumpReLUSAE', 'jumprelu': 'JumpReLUSAE'}
MARGIN = 1e-4  # rows with a pre-activation this close to a top-k cut or a threshold may flip under rounding


def our_sae(kind: str, x: torch.Tensor, normalize: str = 'none') -> SparseAutoencoder:
    """A (32 -> 64) SAE of kind initialised from x as train_sae.py does (april2024's and jumprelu's input scale,
    b_dec at the median), then with biases and thresholds moved off 0 so every exported tensor matters."""
    torch.manual_seed(len(kind))
    sae = SparseAutoencoder(SAEConfig(d_in=32, n_features=64, kind=kind, k=4, normalize=normalize))
    init_from_data_(sae, x)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.add_(torch.randn(32) * 0.1)
        if hasattr(sae, 'threshold'):
            sae.threshold.fill_(0.3)
        if kind == 'jumprelu':
            sae.log_threshold.normal_(-1.5, 0.3)
    return sae.eval()


def near_ties(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """(N,) bool: rows of x whose features could differ under rounding (a pre-activation within MARGIN of the
    k-th / (k+1)-th cut, or of its threshold)."""
    pre = sae.encode_pre(x)
    if sae.cfg.kind == 'topk':
        top = pre.topk(sae.cfg.k + 1, dim=1).values
        return (top[:, -2] - top[:, -1]).abs() < MARGIN
    theta = {'jumprelu': lambda: sae.log_threshold.exp(), 'batchtopk': lambda: sae.threshold.float(),
             'matryoshka_batchtopk': lambda: sae.threshold.float()}.get(sae.cfg.kind, lambda: torch.zeros(()))()
    return ((pre - theta).abs() < MARGIN).any(1)


def assert_same(sae: SparseAutoencoder, x: torch.Tensor, f_theirs: torch.Tensor, x_hat_theirs: torch.Tensor,
                what: str) -> None:
    """Ours and SAELens's features and reconstructions of x agree: the same active set and values to 1e-5
    (relative, 1e-5 absolute; float32, the same formulas in another order), off the near-tie rows."""
    with torch.no_grad():
        x_hat, f = sae(x)
        keep = ~near_ties(sae, x)
    assert keep.float().mean() > 0.9, what
    assert torch.equal(f[keep] != 0, f_theirs[keep] != 0), f"{what}: active features differ"
    torch.testing.assert_close(f_theirs[keep], f[keep], rtol=1e-5, atol=1e-5, msg=lambda m: f"{what}: f {m}")
    torch.testing.assert_close(x_hat_theirs[keep], x_hat[keep], rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"{what}: x_hat {m}")


@needs_saelens
def test_every_kind_loads_with_saelens_load_from_disk(tmp_path):
    """Every kind's export (and topk, april2024 with layer_norm) is read by SAELens's own SAE.load_from_disk as the
    class SAELens uses for it, whose encode / decode give our features and reconstruction; and SAELens's own
    saves (topk with decoder-norm rescaling, batchtopk, matryoshka_batchtopk, jumprelu) read by our load_saelens
    give SAELens's features and reconstruction, as does a SAELens topk checkpoint (decoder norms not folded)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g) * 3 + torch.randn(32, generator=g)  # non-zero mean, scale 3
    cases = [(kind, 'none') for kind in KINDS] + [('topk', 'layer_norm'), ('april2024', 'layer_norm')]
    ours = {f'{kind}_{norm}': our_sae(kind, x, norm) for kind, norm in cases}
    for name, sae in ours.items():
        save_saelens(sae, str(tmp_path / name), saelens_cfg(sae, 'blocks.0.mlp_hidden', model_name='tiny',
                                                            hook_layer=0, context_size=16))
    made = [dict(kind=kind, d_in=32, n_features=64, k=4, dir=str(tmp_path / f'saelens_{kind}'))
            for kind in ('topk', 'batchtopk', 'matryoshka_batchtopk', 'jumprelu')]
    made.append(dict(kind='topk', d_in=32, n_features=64, k=4, dir=str(tmp_path / 'saelens_ckpt'), training_save=True))
    for m in made:
        m.update(matryoshka_widths=[16, 64]) if m['kind'] == 'matryoshka_batchtopk' else None
    save_file({'x': x}, str(tmp_path / 'x.safetensors'))
    dirs = [str(tmp_path / name) for name in ours] + [m['dir'] for m in made]
    info = run_child(PYTHON, 'encode', dict(dirs=dirs, x=str(tmp_path / 'x.safetensors'), make=made,
                                            out=str(tmp_path / 'out.safetensors')), threads=1)['saes']
    out = load_file(str(tmp_path / 'out.safetensors'))
    for i, (name, sae) in enumerate(ours.items()):
        assert info[i]['class'] == SAELENS_CLASS[sae.cfg.kind], (name, info[i])
        assert_same(sae, x, out[f'f_{i}'], out[f'x_hat_{i}'], f"our {name} in SAELens")
    for i, m in enumerate(made, start=len(ours)):
        assert info[i]['class'] == ('TopKSAE' if m['kind'] == 'topk' else 'JumpReLUSAE'), info[i]
        assert_same(load_saelens(m['dir']).eval(), x, out[f'f_{i}'], out[f'x_hat_{i}'], f"SAELens {m['kind']} in ours")


def test_pareto_report_takes_saelens_points(tmp_path):
    """SAELens's SAEs (<sweep>/saelens/<name>/metrics.json, source 'saelens') join the report: pareto.json records
    say their source ('ours' | 'saelens'), the plot draws them, and a rewrite (train_sae.py's at a sweep's end)
    keeps them."""
    def metrics(kind, l0, source=None):
        m = dict(kind=kind, n_features=64, l0=l0, fvu=0.5, loss_recovered=0.9, loss_recovered_mean_abl=0.8,
                 kl_spliced=0.01, alive_frac=1.0, ultralow_frac_of_alive=0.0, tokens_seen=100,
                 train_seconds_this_run=1.0, config=dict(k=8, l1_coeff=1e-3))
        return json.dumps({**m, 'source': source} if source else m)
    for path, m in (('topk_a', metrics('topk', 8.0)), ('saelens/topk_a', metrics('topk', 9.0, 'saelens')),
                    ('saelens/jumprelu_b', metrics('jumprelu', 12.0, 'saelens')),
                    ('saelens/ours/sweep/topk_a', metrics('topk', 7.0))):
        os.makedirs(tmp_path / path)
        (tmp_path / path / 'metrics.json').write_text(m)
    records = write_pareto(str(tmp_path), RECIPES)
    assert [(r['name'], r['source'], r['l0']) for r in records] == [
        ('topk_a', 'ours', 8.0), ('jumprelu_b', 'saelens', 12.0), ('topk_a', 'saelens', 9.0)]
    assert json.loads((tmp_path / 'pareto.json').read_text()) == records
    assert write_pareto(str(tmp_path), RECIPES) == records and 'SAELens jumprelu' in pareto_table(records)
    assert write_pareto(str(tmp_path), RECIPES, extra=[])[-1]['source'] == 'ours'


@needs_saelens
def test_bench_trains_both_and_evaluates_alike(tmp_path):
    """python -m bench.saelens on a tiny harvested run: SAELens's trainer saw our store's batches in train_sae.py's
    order; its exports load with load_saelens and their metrics.json is evaluate_sae's on train_sae.py's final
    contexts (ours re-evaluated the same way gives its own metrics.json); pareto.json holds both sources."""
    out = harvested_run(tmp_path, 30, 40)
    points = [dict(name='topk_64_k4', kind='topk', n_features=64, k=4),
              dict(name='jumprelu_64', kind='jumprelu', n_features=64, l1_coeff=1e-3)]
    p = run_script('bench/saelens.py', f'--out_dir={out}', f'--saelens_python={PYTHON}', f'--points={points!r}',
                   '--max_steps=20', '--batch_size=64', '--geometric_median_rows=256', '--shuffle_buffer=512',
                   '--final_eval_contexts=4', '--eval_batch_size=2', '--threads=1', timeout=600)
    assert '| topk_64_k4 |' in p.stdout and '| jumprelu_64 |' in p.stdout, p.stdout
    records = json.loads(open(os.path.join(out, 'sweep', 'pareto.json')).read())
    assert sorted((r['name'], r['source']) for r in records) == [
        ('jumprelu_64', 'ours'), ('jumprelu_64', 'saelens'), ('topk_64_k4', 'ours'), ('topk_64_k4', 'saelens')]
    m = json.loads(open(os.path.join(out, 'sweep', 'saelens', 'topk_64_k4', 'metrics.json')).read())
    first = next(ActivationStore(os.path.join(out, 'activations')).batches(64, seed=0, shuffle_buffer=512))
    assert m['saelens_training']['first_batch_sum'] == pytest.approx(float(first.double().sum()), rel=1e-12)
    ours_dir = os.path.join(out, 'sweep', 'saelens', 'ours', 'sweep', 'topk_64_k4')
    ours = json.loads(open(os.path.join(ours_dir, 'metrics.json')).read())
    assert m['steps'] == ours['steps'] == 20 and m['source'] == 'saelens' and m['eval_tokens'] == ours['eval_tokens']
    evaluation = Evaluation(parse_config([f'--out_dir={out}', '--geometric_median_rows=256', '--final_eval_contexts=4',
                                          '--eval_batch_size=2']))
    again = evaluation(load_saelens(ours_dir))
    for key in ('l0', 'fvu', 'loss_recovered', 'loss_recovered_mean_abl', 'kl_spliced', 'alive_frac', 'ce_clean'):
        assert again[key] == pytest.approx(ours[key], rel=1e-5, abs=1e-7), key
    table = json.loads(open(os.path.join(out, 'sweep', 'saelens', 'side_by_side.json')).read())
    assert [p['name'] for p in table['points']] == ['topk_64_k4', 'jumprelu_64']
    point = table['points'][0]
    assert point['ours']['fvu'] == ours['fvu'] and point['saelens']['fvu'] == m['fvu']
    assert point['saelens_over_ours'] == pytest.approx(point['saelens']['s_per_step'] / point['ours']['s_per_step'])
    assert len(point['ours']['load_avg']) == len(point['saelens']['load_avg']) == 2
