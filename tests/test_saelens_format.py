"""The SAELens format without SAELens: tests/test_saelens.py checks our exports against the real SAELens, but SAELens
is optional and those tests skip without it. Here the same directories are read by SAELens's inference formulas,
written out below from its source (sae_lens/saes/standard_sae.py, topk_sae.py, jumprelu_sae.py, batchtopk_sae.py and
sae.py's layer_norm), in float64: our export of every kind must give our features and reconstruction under them,
and directories laid out as SAELens saves them (a topk or batchtopk training checkpoint with decoder-norm rescaling,
a standard SAE without the pre-encoder bias) must load with load_saelens into the same function.
"""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from autoencoder import (KINDS, ConfigError, SAEConfig, SparseAutoencoder, init_from_data_, load_saelens, save_saelens,
                         saelens_cfg)

D, F, K = 16, 48, 4
MARGIN = 1e-4  # rows with a pre-activation this close to a top-k cut or a threshold may flip under rounding


def saelens_forward(path: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, x̂) of the rows x (N, d_in) by SAELens's inference SAE of the directory path (cfg.json +
    sae_weights.safetensors, W_enc (d_in, d_sae), W_dec (d_sae, d_in)), its formulas in float64:
        normalize_activations 'layer_norm': x ← (x - mean) / (std + 1e-5) (unbiased std), undone on x̂
        sae_in = x - b_dec·apply_b_dec_to_input; pre = sae_in @ W_enc + b_enc
        rescale_acts_by_decoder_norm (topk family): pre ← pre·‖W_dec[i]‖, f ← f / ‖W_dec[i]‖ before decoding
        standard: f = ReLU(pre); topk: ReLU of the k largest per row (k = cfg k = activation_fn_kwargs k);
        jumprelu: ReLU(pre)·(pre > threshold); batchtopk (its training save; inference is jumprelu with every
        threshold = topk_threshold, batchtopk_sae.py): ReLU(pre)·(pre > topk_threshold)
        x̂ = f @ W_dec + b_dec."""
    with open(os.path.join(path, 'cfg.json')) as fh:
        cfg = json.load(fh)
    sd = {key: t.double() for key, t in load_file(os.path.join(path, 'sae_weights.safetensors')).items()}
    x = x.double()
    mu, std = torch.zeros(()), torch.ones(())
    if cfg.get('normalize_activations', 'none') == 'layer_norm':
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        x = (x - mu) / (std + 1e-5)
    pre = (x - sd['b_dec'] * cfg.get('apply_b_dec_to_input', True)) @ sd['W_enc'] + sd['b_enc']
    norms = sd['W_dec'].norm(dim=1)
    rescale = cfg.get('rescale_acts_by_decoder_norm', False)
    if rescale:
        pre = pre * norms
    arch = cfg['architecture']
    if arch == 'standard':
        f = pre.relu()
    elif arch == 'topk':
        k = cfg['k']
        assert cfg.get('activation_fn_kwargs', {'k': k})['k'] == k  # SAELens 5.x reads it there, 6.x from k
        vals, idx = pre.topk(k, dim=1)
        f = torch.zeros_like(pre).scatter(1, idx, vals.relu())
    else:
        theta = sd['threshold'] if arch == 'jumprelu' else sd['topk_threshold']
        assert arch in ('jumprelu', 'batchtopk'), arch
        f = pre.relu() * (pre > theta)
    x_hat = (f / norms if rescale else f) @ sd['W_dec'] + sd['b_dec']
    return f, x_hat * std + mu


def near_ties(pre: torch.Tensor, f: torch.Tensor, k: int | None, theta: torch.Tensor | float) -> torch.Tensor:
    """(N,) bool: rows whose features could differ under float32 rounding (a pre-activation within MARGIN of the
    k-th / (k+1)-th cut, of θ, or of 0)."""
    if k is not None:
        top = pre.topk(k + 1, dim=1).values
        return (top[:, -2] - top[:, -1]).abs() < MARGIN
    return ((pre - theta).abs() < MARGIN).any(1) | ((pre.abs() < MARGIN) & (f == 0)).any(1)


def assert_same(ours: SparseAutoencoder, path: str, x: torch.Tensor) -> None:
    """Ours and SAELens's formulas on the directory agree on x: the same active set, values and x̂ (to float32
    rounding), off the near-tie rows."""
    f_theirs, x_hat_theirs = saelens_forward(path, x)
    with torch.no_grad():
        x_hat, f = ours(x)
        pre = ours.encode_pre(x)
    kind = ours.kind.name
    theta = {'jumprelu': lambda: ours.log_threshold.exp(), 'batchtopk': lambda: ours.threshold.float(),
             'matryoshka_batchtopk': lambda: ours.threshold.float()}.get(kind, lambda: 0.0)()
    keep = ~near_ties(pre, f, ours.cfg.k if kind == 'topk' else None, theta)
    assert keep.float().mean() > 0.9
    assert torch.equal(f[keep] != 0, f_theirs[keep] != 0), "active features differ"
    torch.testing.assert_close(f[keep].double(), f_theirs[keep], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_hat[keep].double(), x_hat_theirs[keep], rtol=1e-5, atol=1e-5)


def rows(n: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g) * 3 + torch.randn(D, generator=g)  # non-zero mean, scale 3


def our_sae(kind: str, normalize: str) -> SparseAutoencoder:
    """A (16 -> 48) SAE initialised from data as train_sae.py does (input scales, b_dec), then with biases and
    thresholds moved off 0 so that every exported tensor matters."""
    torch.manual_seed(len(kind))
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind=kind, k=K, normalize=normalize))
    init_from_data_(sae, rows(512, 1))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.add_(torch.randn(D) * 0.1)
        if hasattr(sae, 'threshold'):
            sae.threshold.fill_(0.3)
        if kind == 'jumprelu':
            sae.log_threshold.normal_(-1.5, 0.3)
    return sae.eval()


CASES = [(kind, 'none') for kind in KINDS] + [('topk', 'layer_norm'), ('april2024', 'layer_norm')]


@pytest.mark.parametrize('kind,normalize', CASES, ids=[f'{k}-{n}' for k, n in CASES])
def test_our_export_read_by_saelens_formulas(kind, normalize, tmp_path):
    """save_saelens's directory of every kind, read by SAELens's formulas, gives our features and x̂ (tests/
    test_saelens.py: by SAELens itself); load_saelens reads it back into the same function."""
    sae = our_sae(kind, normalize)
    save_saelens(sae, str(tmp_path), saelens_cfg(sae, 'blocks.0.mlp_hidden'))
    assert_same(sae, str(tmp_path), rows(256, 2))
    back = load_saelens(str(tmp_path)).eval()
    assert (back.cfg.kind, back.cfg.normalize) == (kind, normalize)
    assert_same(back, str(tmp_path), rows(256, 2))


def write_saelens_dir(path, cfg: dict, tensors: dict) -> str:
    os.makedirs(path)
    save_file({key: t.contiguous() for key, t in tensors.items()}, os.path.join(path, 'sae_weights.safetensors'))
    with open(os.path.join(path, 'cfg.json'), 'w') as fh:
        json.dump(cfg, fh)
    return str(path)


def saelens_tensors(seed: int) -> dict:
    """Random SAELens-layout weights: decoder rows of norms 0.5 to 2.5 (not 1), biases off 0."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(F, D, generator=g)
    W_dec *= (torch.rand(F, 1, generator=g) * 2 + 0.5) / W_dec.norm(dim=1, keepdim=True)
    return {'W_enc': torch.randn(D, F, generator=g) * 0.3, 'W_dec': W_dec, 'b_enc': torch.randn(F, generator=g) * 0.1,
            'b_dec': torch.randn(D, generator=g) * 0.1}


SAELENS_COMMON = dict(d_in=D, d_sae=F, dtype='float32', device='cpu', apply_b_dec_to_input=True,
                      normalize_activations='none', reshape_activations='none',
                      metadata=dict(hook_name='blocks.0.mlp_hidden', model_name='tiny'))


def test_saelens_topk_checkpoint_with_decoder_norm_rescaling_loads_as_its_function(tmp_path):
    """A SAELens topk training save (rescale_acts_by_decoder_norm, decoder norms not 1: SAELens's default for topk
    training) loads as a topk SAE with the norms folded into the weights: the same features and x̂."""
    cfg = {**SAELENS_COMMON, 'architecture': 'topk', 'k': K, 'rescale_acts_by_decoder_norm': True,
           'aux_loss_coefficient': 1.0, 'decoder_init_norm': 0.1}
    path = write_saelens_dir(tmp_path / 'topk', cfg, saelens_tensors(0))
    sae = load_saelens(path).eval()
    assert sae.cfg.kind == 'topk' and sae.cfg.k == K
    assert_same(sae, path, rows(256, 3))


def test_saelens_batchtopk_checkpoint_loads_its_threshold(tmp_path):
    """A SAELens batchtopk training save (architecture batchtopk, the scalar float64 topk_threshold, decoder-norm
    rescaling) loads as a batchtopk SAE with that θ: its inference features and x̂ are SAELens's."""
    cfg = {**SAELENS_COMMON, 'architecture': 'batchtopk', 'k': K, 'topk_threshold_lr': 0.02,
           'rescale_acts_by_decoder_norm': True}
    tensors = {**saelens_tensors(1), 'topk_threshold': torch.tensor(0.35, dtype=torch.float64)}
    path = write_saelens_dir(tmp_path / 'batchtopk', cfg, tensors)
    sae = load_saelens(path).eval()
    assert sae.cfg.kind == 'batchtopk' and sae.cfg.k == K and sae.cfg.topk_threshold_lr == 0.02
    assert sae.threshold.item() == pytest.approx(0.35)
    assert_same(sae, path, rows(256, 4))


def test_saelens_standard_sae_without_pre_bias_loads_as_the_kind_without_it(tmp_path):
    """A standard SAELens SAE whose b_dec does not enter the encoder is read as the kind that does the same
    (april2024), not another kind with the bias folded in."""
    cfg = {**SAELENS_COMMON, 'architecture': 'standard', 'apply_b_dec_to_input': False}
    path = write_saelens_dir(tmp_path / 'standard', cfg, saelens_tensors(2))
    sae = load_saelens(path).eval()
    assert sae.cfg.kind == 'april2024'
    torch.testing.assert_close(sae.b_enc.detach(), load_file(os.path.join(path, 'sae_weights.safetensors'))['b_enc'])
    assert_same(sae, path, rows(256, 5))


def test_per_feature_thresholds_are_not_one_batchtopk_threshold(tmp_path):
    """A jumprelu-layout export named batchtopk whose thresholds differ cannot be a batchtopk SAE's one θ: one-line
    error that says to load it as jumprelu."""
    cfg = {**SAELENS_COMMON, 'architecture': 'jumprelu', 'sae_kind': 'batchtopk', 'k': K}
    tensors = {**saelens_tensors(3), 'threshold': torch.linspace(0.1, 0.5, F)}
    path = write_saelens_dir(tmp_path / 'jumprelu', cfg, tensors)
    with pytest.raises(ConfigError, match='load it as kind jumprelu'):
        load_saelens(path)
    assert load_saelens(path, cfg={**cfg, 'sae_kind': 'jumprelu'}).cfg.kind == 'jumprelu'
