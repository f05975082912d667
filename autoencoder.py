"""
Sparse autoencoders (SAEs) for dictionary learning on transformer activations.

One module, `SparseAutoencoder`; what differs between kinds lives in one class per kind (`Kind`, registered
in KINDS by name, selected by `SAEConfig.kind`):
    anthropic2023  "Towards Monosemanticity" (2023): x̄ = x - b_dec, f = ReLU(W_enc x̄ + b_enc),
                   x̂ = W_dec f + b_dec, loss = mean((x̂ - x)^2) + λ·mean_b Σ_i f_i, decoder columns unit norm
                   (renormalised after every step, the gradient component parallel to each column removed
                   before the Adam step), init the seed's nn.Linear default (untied), b_dec at the geometric median,
                   dead neurons resampled.
    april2024      Anthropic's April 2024 update: no b_dec subtraction, loss = mean_b ‖x̂ - x‖² (summed over d)
                   + λ·mean_b Σ_i f_i ‖W_dec[:, i]‖, no norm constraint, decoder init norm 0.1, W_enc = W_decᵀ,
                   inputs scaled by one dataset constant `scale` (E‖scale·x‖ = √d), λ warm-up, linear lr decay,
                   grad-norm clip 1 (its recipe).
    topk           Gao et al. (2024), as openai/sparse_autoencoder's train.py: f = ReLU(TopK(W_enc x̄ + b_enc, k)),
                   loss = mse(x̂, x) / mse(data mean, x) + 1/32 · AuxK (auxk_term: ê decoded with b_dec, e = x - x̂
                   detached, normalised by e's variance in the batch), its init (encoder scaled to unit
                   reconstructions), unit-norm decoder renormalised before the step, Adam eps 6.25e-10. Its training
                   step (and batchtopk's and matryoshka's) decodes from the k kept codes (train_sae.py's default
                   sparse_topk): sparse_topk_loss, whose only dense (B, d)·(d, F) product is the encoder GEMM.
    batchtopk      Bussmann et al. (2024): the k·B largest ReLU'd activations over the batch in training; at
                   inference f = ReLU(pre)·H(pre - θ) with one threshold θ, the running mean of each training batch's
                   smallest kept activation; the authors' loss (plain MSE, AuxK on the non-detached residual) and init.
    matryoshka_batchtopk  Bussmann et al. (2025): batchtopk where every prefix [0, m) of the dictionary (m in
                   matryoshka_widths) reconstructs x too: loss = the mean of the prefixes' MSEs and the b_dec-only
                   one + 1/32 AuxK (the authors' code).
    jumprelu       Rajamanoharan et al. (2024) trained as Gemma Scope: f = pre·H(pre - θ), θ = exp(log_threshold)
                   per feature, a pre-encoder bias folded into b_enc at export, loss = ‖x̂ - x‖² (summed over d) +
                   λ·Σ_i H(pre_i - θ_i), θ trained by straight-through estimators (rectangle kernel, ε = 0.001),
                   unit-norm decoder, inputs scaled to E‖x‖² = 1, cosine lr warm-up and λ warm-up in steps.
weight_init='tied' starts any kind from the tied start instead of its paper's (tied_init_); topk_loss picks the TopK
family's loss form ('openai' or 'bussmann') instead of the kind's authors'.
A new kind is one more `@register` class in the kinds block below: its recipe, its own hyperparameters (Params: each
an SAEConfig field and a train_sae.py key), init, activation, loss terms and SAELens fields; train_sae.py, its sweeps,
the export and load_saelens take it from there.
Any kind can instead work on per-token normalised inputs (`normalize='layer_norm'`, OpenAI's `LN` preprocessing:
x' = (x - mean_d x) / (std_d x + 1e-5), undone after decoding; SAELens' normalize_activations='layer_norm').
RECIPES holds each kind's published optimisation hyperparameters (lr, λ, schedules, clipping, Adam).

Storage (all kinds): W_enc (F, d), b_enc (F,), W_dec (d, F) (columns are features), b_dec (d,), and buffers
`scale` (), `mse_scale` () (topk) and `tokens_since_fired` (F,); a kind may add its own (Kind.add_state_): jumprelu
the parameter `log_threshold` (F,), batchtopk and matryoshka_batchtopk the buffer `threshold` () (float64).
The export (`save_saelens`) uses SAELens' layout instead.

Training loop (what train_sae.py does; checkpoint = sae.state_dict(), opt.state_dict(), config_dict(sae)):
    sae = SparseAutoencoder(SAEConfig(d_in=512, n_features=4096, kind=kind))
    init_from_data_(sae, sample_rows)                # the kind's input scale, MSE normaliser, b_dec init
    recipe = Recipe(**RECIPES[kind], max_steps=max_steps)   # or your own values
    opt = make_adam(sae, recipe.lr, recipe.adam_betas, recipe.adam_eps)
    for step in range(max_steps):
        stats = train_step_(sae, opt, x, step, recipe)  # lr / λ schedules, sae_step_ (clipping as the recipe says)
        if sae.kind.resamples and step in resample_steps:     # anthropic2023
            resample_dead_(sae, opt, silent_latents(sae, window_tokens), rows, generator)
    save_saelens(sae, out_dir, saelens_cfg(sae, 'blocks.0.mlp_hidden', model_name=..., hook_layer=0))
"""
import json
import math
import os
import warnings
from dataclasses import MISSING, dataclass, fields
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from configurator import closest_key_hint
from monosemanticity.common import UserError, atomic_write_bytes, atomic_write_json

NORMALIZE = ('none', 'layer_norm')
WEIGHT_INITS = ('paper', 'tied')
Tensor = torch.Tensor


class ConfigError(UserError, ValueError):
    """An SAE configuration (SAEConfig, a SAELens cfg.json) this module cannot build: one line saying why."""


@dataclass
class Recipe:
    """How an SAE is optimised over a run (RECIPES[kind] + max_steps gives the published one)."""

    lr: float  # peak Adam learning rate
    l1_coeff: float  # λ of the sparsity penalty (anthropic2023: on mean_b Σ_i f_i with the MSE averaged over d;
    #                  jumprelu: on the L0 term mean_b Σ_i H(pre_i - θ_i))
    max_steps: int  # length of the run (the *_frac schedules are fractions of it)
    warmup_frac: float = 0.0  # lr warm-up over this first fraction of the run
    decay_frac: float = 0.0  # lr linear decay to 0 over this last fraction of the run
    l1_warmup_frac: float = 0.0  # λ linear warm-up from 0 over this first fraction of the run
    grad_clip: float = 0.0  # clip the global gradient norm at this value; 0 = off
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 0  # lr warm-up over this many first steps (instead of warmup_frac: give one of the two)
    warmup_shape: str = 'linear'  # 'linear' (from lr/warm-up length at step 0) or 'cosine' (from warmup_start·lr)
    warmup_start: float = 0.0  # warmup_shape='cosine': the lr at step 0 as a fraction of lr
    l1_warmup_steps: int = 0  # λ linear warm-up from 0 over this many first steps (instead of l1_warmup_frac)

    def __post_init__(self):
        if self.warmup_shape not in WARMUP_SHAPES:
            raise ConfigError(f"warmup_shape '{self.warmup_shape}' is not one of {', '.join(WARMUP_SHAPES)}")
        for steps, frac in (('warmup_steps', 'warmup_frac'), ('l1_warmup_steps', 'l1_warmup_frac')):
            if getattr(self, steps) > 0 and getattr(self, frac) > 0:
                raise ConfigError(f"{steps}={getattr(self, steps)} and {frac}={getattr(self, frac)}: give one "
                                  f"(the other 0)")


WARMUP_SHAPES = ('linear', 'cosine')


@dataclass(init=False, eq=False, repr=False)
class SAEConfig:
    """Shape and kind of a sparse autoencoder (saved next to its weights): the fields below, and every kind's own
    hyperparameters (each kind's Params: k, auxk_dead_tokens, jumprelu_bandwidth, ...), each its default unless
    given. SAEConfig(**config_dict(sae)) == sae.cfg."""

    d_in: int  # width d of the activation rows
    n_features: int  # dictionary size F
    kind: str = 'anthropic2023'  # one of KINDS
    k_aux: int = 0  # topk: dead latents used by the AuxK loss; 0 means d_in // 2
    aux_coeff: float = 1 / 32  # topk: weight of the AuxK loss
    dec_init_norm: float = 0.1  # april2024: norm of the decoder columns at init
    normalize: str = 'none'  # 'layer_norm': per-token normalised inputs (OpenAI's LN preprocessing); see module doc
    weight_init: str = 'paper'  # 'paper': the kind's published initialisation (Kind.init_weights_); 'tied': the
    #                             2024 tied start for any kind (tied_init_: Gaussian directions, W_enc = W_decᵀ)
    dtype: str = 'float32'  # parameter dtype (matmuls may run in bf16 via autocast_dtype)

    def __init__(self, d_in: int, n_features: int, **given):
        defaults = {**{f.name: f.default for f in fields(SAEConfig) if f.default is not MISSING}, **kind_params()}
        given = {RENAMED.get(key, key): v for key, v in given.items()}
        for key in given:
            if key not in defaults:
                raise ConfigError(f"SAEConfig has no field '{key}'{closest_key_hint(key, list(defaults))}")
        self.d_in, self.n_features = d_in, n_features
        for key, default in defaults.items():
            value = given.get(key, default)
            setattr(self, key, tuple(value) if isinstance(default, tuple) else value)  # a list from JSON
        if self.kind not in KINDS:
            raise ConfigError(f"SAE kind '{self.kind}' is not one of {', '.join(KINDS)}")
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"normalize '{self.normalize}' is not one of {', '.join(NORMALIZE)}")
        if self.weight_init not in WEIGHT_INITS:
            raise ConfigError(f"weight_init '{self.weight_init}' is not one of {', '.join(WEIGHT_INITS)}")
        KINDS[self.kind].check(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, SAEConfig) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"SAEConfig({', '.join(f'{key}={v!r}' for key, v in vars(self).items())})"


RENAMED = {'dead_tokens': 'auxk_dead_tokens'}  # old SAEConfig field names (older checkpoints' sae_config) -> now


# ----------------------------------------------------------------------------- the kinds

class Kind:
    """Everything that makes one SAE kind differ from another, in one place. The attributes' defaults are
    anthropic2023's choices; a kind states its name and recipe and overrides what it does differently."""

    name = ''
    recipe: dict = {}  # published optimisation hyperparameters (the keys of Recipe but max_steps): RECIPES[name]
    pre_bias = True  # x̄ = x - b_dec enters the encoder in training
    fold_pre_bias = False  # pre_bias: the export folds it into b_enc (else SAELens apply_b_dec_to_input = True)
    b_dec_init = 'median'  # b_dec before training (kinds with pre_bias): the data's geometric median, or 'zero'
    renorm_before_step = False  # unit_norm: renormalise the columns after backward, before the step (else after it)
    clip_first = False  # grad_clip: clip before the renormalisation and parallel-gradient removal (else after them)
    unit_norm = True  # decoder columns kept at unit norm: parallel gradient removed before Adam, renormalised after
    resamples = False  # dead neurons resampled at train_sae.py's resample_steps
    fire_threshold = 0.0  # a latent has fired when its activation exceeds this
    fused = False  # the training step may use FusedL1Loss (a hand-written backward) instead of autograd
    sparse = False  # the training step may use sparse_topk_loss (decoding and gradients from the k kept codes)
    saelens_architecture = 'standard'

    @dataclass
    class Params:
        """The kind's own hyperparameters, each a field with its default and a comment: an SAEConfig field
        (sae.cfg.<name>) and a train_sae.py key (--<name>=..., a config file, a sweep entry). A kind's Params extends
        its parent's. One namespace for every kind (kind_params): a new name starts with its kind's."""

    def check(self, cfg: SAEConfig) -> None:
        """Raise ConfigError if cfg's kind-specific fields are out of range."""

    def dec_init_norm(self, cfg: SAEConfig) -> float:
        """Norm of the decoder columns at init."""
        return 1.0

    @torch.no_grad()
    def init_weights_(self, sae: 'SparseAutoencoder') -> None:
        """The kind's published initialisation of W_enc, b_enc and W_dec (b_dec is set by init_from_data_); the
        default is the tied start."""
        tied_init_(sae, self.dec_init_norm(sae.cfg))

    def add_state_(self, sae: 'SparseAutoencoder') -> None:
        """Register the kind's own parameters / buffers on sae (after W_enc, b_enc, W_dec, b_dec and the buffers)."""

    def activate(self, sae: 'SparseAutoencoder', pre: Tensor) -> Tensor:
        """Pre-activations (B, F) -> features (B, F) (sae.training tells a training forward from inference)."""
        return torch.relu(pre)

    def loss_terms(self, sae: 'SparseAutoencoder', pre: Tensor, f: Tensor, err: Tensor, fired: Tensor,
                   dead: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(recon, l1 before λ, aux before cfg.aux_coeff) from pre-activations and features (B, F), the error
        err = x̂ - x (B, d) float32 in the SAE's input space, the fired mask (F,) and an optional dead set (F,)."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step_(self, sae: 'SparseAutoencoder', f: Tensor) -> None:
        """What the kind updates from the features f (B, F) of a training batch, after the optimizer step."""

    @torch.no_grad()
    def init_from_data_(self, sae: 'SparseAutoencoder', rows: Tensor) -> None:
        """What the kind measures from activation rows (N, d) before training."""
        if self.pre_bias and self.b_dec_init == 'median':
            init_b_dec_(sae, rows)

    def export_tensors(self, sae: 'SparseAutoencoder') -> dict[str, Tensor]:
        """Tensors of the SAELens export beyond W_enc, W_dec, b_enc, b_dec (e.g. jumprelu's `threshold`)."""
        return {}

    @torch.no_grad()
    def load_tensors_(self, sae: 'SparseAutoencoder', sd: dict[str, Tensor], path: str) -> None:
        """Read export_tensors' tensors back from the SAELens state dict sd of the directory path."""

    def saelens_fields(self, cfg: SAEConfig) -> dict:
        """Keys of the SAELens cfg.json beyond the standard architecture's."""
        return {}

    def config_from_saelens(self, saelens: dict) -> dict:
        """SAEConfig fields of this kind read back from a SAELens cfg.json."""
        return {}


KINDS: dict[str, Kind] = {}
RECIPES: dict[str, dict] = {}  # name -> the kind's published recipe: train_sae.py takes every key it is not given here


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: make a Kind selectable by its name (SAEConfig(kind=...), train_sae.py --kind=...), its
    recipe RECIPES[name] and its Params SAEConfig fields and train_sae.py keys."""
    known = {f.name for f in fields(SAEConfig)}
    clash = [f.name for f in fields(cls.Params) if f.name in known or kind_params().get(f.name, f.default) != f.default]
    if clash:
        raise ConfigError(f"kind {cls.name}: Params field '{clash[0]}' is an SAEConfig field or another kind's")
    KINDS[cls.name] = cls()
    RECIPES[cls.name] = {f.name: cls.recipe.get(f.name, f.default) for f in fields(Recipe) if f.name != 'max_steps'}
    return cls


def kind_params() -> dict:
    """Every registered kind's own hyperparameters (Kind.Params) with their defaults, kind by kind: the SAEConfig
    fields and train_sae.py keys the kinds add (k, auxk_dead_tokens, topk_threshold_lr, ...)."""
    return {f.name: f.default for kind in KINDS.values() for f in fields(kind.Params)}


class L1Kind(Kind):
    """ReLU SAEs trained with reconstruction + λ·L1; their training step may run FusedL1Loss."""

    fused = True
    recon_sum_over_d = False  # the reconstruction term: ‖x̂ - x‖² summed over d (else averaged), mean over the batch
    l1_by_decoder_norm = False  # the L1 term: Σ_i f_i ‖W_dec[:, i]‖ (else Σ_i f_i), mean over the batch

    def loss_terms(self, sae, pre, f, err, fired, dead):
        sq, B = err.pow(2), pre.shape[0]
        recon = sq.sum(1).mean() if self.recon_sum_over_d else sq.mean()
        if self.l1_by_decoder_norm:
            l1 = (f.float().sum(0) * col_norms(sae.W_dec)).sum() / B
        else:
            l1 = f.float().sum() / B
        return recon, l1, err.new_zeros(())


@register
class Anthropic2023(L1Kind):
    """Towards Monosemanticity (Bricken et al. 2023), as the seed's run (shehper/monosemantic)."""

    name = 'anthropic2023'
    # Adam lr 3e-4, λ 1e-3, constant
    recipe = dict(lr=3e-4, l1_coeff=1e-3, warmup_frac=0.0, decay_frac=0.0, l1_warmup_frac=0.0,
                  grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=1e-8)
    resamples = True

    @torch.no_grad()
    def init_weights_(self, sae):
        linear_init_(sae)  # the seed's nn.Linear encoder and decoder: PyTorch's default init, untied


@register
class April2024(L1Kind):
    """Anthropic, "Circuits Updates - April 2024", training SAEs."""

    name = 'april2024'
    # lr 5e-5, λ 5 warmed up over the first 5%, lr decayed linearly to 0 over the last 20%, gradient norm clipped
    # at 1, Adam (0.9, 0.999)
    recipe = dict(lr=5e-5, l1_coeff=5.0, warmup_frac=0.0, decay_frac=0.2, l1_warmup_frac=0.05,
                  grad_clip=1.0, adam_betas=(0.9, 0.999), adam_eps=1e-8)
    pre_bias = False  # x enters the encoder as it is; b_dec starts at 0
    unit_norm = False  # the L1 term weighs each f_i by its decoder norm instead
    recon_sum_over_d = True
    l1_by_decoder_norm = True

    def dec_init_norm(self, cfg):
        return cfg.dec_init_norm

    @torch.no_grad()
    def init_from_data_(self, sae, rows):
        if sae.cfg.normalize == 'none':
            sae.scale.fill_(estimate_scale(rows))  # E‖scale·x‖ = √d
        super().init_from_data_(sae, rows)


@register
class TopK(Kind):
    """Gao et al. 2024, "Scaling and evaluating sparse autoencoders", as openai/sparse_autoencoder's train.py."""

    name = 'topk'
    # openai/sparse_autoencoder train.py Config: lr 1e-4, eps 6.25e-10, no clipping, no schedule; no λ (no L1)
    recipe = dict(lr=1e-4, l1_coeff=0.0, warmup_frac=0.0, decay_frac=0.0, l1_warmup_frac=0.0,
                  grad_clip=0.0, adam_betas=(0.9, 0.999), adam_eps=6.25e-10)
    fire_threshold = 1e-3  # openai: a latent fires when its activation exceeds 1e-3
    saelens_architecture = 'topk'
    sparse = True
    renorm_before_step = True  # openai train.py: unit_norm_decoder_, then the gradient adjustment, then opt.step
    loss_form = 'openai'  # the authors' loss: 'openai' (Gao et al.) or 'bussmann' (BatchTopK / Matryoshka code)
    auxk_needs_positive = False  # 'bussmann' AuxK with dead latents but ê = 0: kept (BatchTopKSAE) or 0 (matryoshka)

    @dataclass
    class Params(Kind.Params):
        k: int = 32  # latents kept per row
        auxk_dead_tokens: int = 10_000_000  # topk_loss 'openai': a latent silent for this many tokens is dead for AuxK
        topk_loss: str = ''  # '' = the kind's authors' loss (topk: 'openai'; batchtopk, matryoshka: 'bussmann')
        auxk_dead_batches: int = 0  # topk_loss 'bussmann': dead for AuxK after this many silent batches; 0 = the
        #                             authors' (BatchTopK's config.py 5, matryoshka_sae's 20)

    def check(self, cfg):
        if not 0 < cfg.k <= cfg.n_features:
            raise ConfigError(f"{self.name} SAE needs 0 < k <= n_features, got k={cfg.k}")
        if cfg.topk_loss not in ('', *TOPK_LOSSES):
            raise ConfigError(f"topk_loss '{cfg.topk_loss}' is not one of {', '.join(TOPK_LOSSES)} ('' = the kind's)")

    def activate(self, sae, pre):
        return topk_relu(pre, sae.cfg.k)

    def loss_terms(self, sae, pre, f, err, fired, dead):
        zero = err.new_zeros(())
        dead = self.auxk_dead(sae, fired, pre.shape[0]) if dead is None else dead
        e_hat = None
        if dead.any():  # ê: the reconstruction of the error by the ReLU'd top-k_aux pre-activations of the dead latents
            vals, idx = pre.masked_fill(~dead, -math.inf).topk(min(k_aux(sae.cfg), int(dead.sum())), dim=-1,
                                                               sorted=False)  # (B, k_aux)
            e_hat = torch.zeros_like(pre).scatter_(-1, idx, vals.relu()) @ sae.W_dec.T  # (B, d)
        return recon_term(sae, err), zero, auxk_term(sae, e_hat, err)

    def sparse_recon(self, sae: 'SparseAutoencoder', xs: Tensor, f: Tensor, code: 'SparseCode',
                     W_rows: Tensor) -> tuple[Tensor, Tensor]:
        """The sparse step's (err = x̂ - x (B, d), reconstruction term) from the kept activations f (N,) at code, of
        the preprocessed batch xs (B, d); W_rows (F, d) = decoder_rows."""
        err = (sparse_decode(sae, f, code, W_rows, 'sp_gW_dec') + sae.b_dec).float() - xs  # (B, d)
        return err, recon_term(sae, err)

    @torch.no_grad()
    def auxk_dead(self, sae: 'SparseAutoencoder', fired: Tensor, batch_rows: int) -> Tensor:
        """(F,) bool: the latents dead for AuxK after a batch of batch_rows rows in which `fired` (F,) fired: silent
        for cfg.auxk_dead_tokens tokens (topk_loss 'bussmann': auxk_dead_batches batches) counting this batch (as
        both references: the fire statistics are updated with the batch before the AuxK mask is taken)."""
        n_tokens = batch_rows * (dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1)
        window = sae.cfg.auxk_dead_tokens if topk_loss(sae.cfg) == 'openai' else auxk_dead_batches(sae.cfg) * n_tokens
        return (sae.tokens_since_fired + n_tokens >= window) & ~fired

    @torch.no_grad()
    def init_weights_(self, sae):
        # openai/sparse_autoencoder train.py (Gao et al. 2024, A.1): the encoder nn.Linear's default init, the decoder
        # its transpose with unit-norm columns, then the encoder scaled so that random unit inputs are reconstructed
        # with norm 1 on average
        nn.init.kaiming_uniform_(sae.W_enc, a=math.sqrt(5))
        sae.W_dec.copy_(sae.W_enc.T)
        unit_norm_decoder_(sae)
        sae.b_enc.zero_()
        x = torch.randn(256, sae.cfg.d_in, dtype=sae.W_enc.dtype, device=sae.W_enc.device)
        x /= torch.linalg.vector_norm(x, dim=1, keepdim=True)
        recon = topk_relu(x @ sae.W_enc.T, sae.cfg.k) @ sae.W_dec.T  # (256, d)
        sae.W_enc /= torch.linalg.vector_norm(recon, dim=1).mean()

    @torch.no_grad()
    def init_from_data_(self, sae, rows):
        if topk_loss(sae.cfg) == 'openai':
            init_mse_scale_(sae, rows)  # the main loss is the MSE / the data's variance (openai)
        super().init_from_data_(sae, rows)

    def saelens_fields(self, cfg):
        return dict(k=cfg.k, activation_fn='topk', activation_fn_str='topk', activation_fn_kwargs={'k': cfg.k})

    def config_from_saelens(self, saelens):
        return {'k': saelens.get('k') or saelens.get('activation_fn_kwargs', {}).get('k', 32)}


@register
class BatchTopK(TopK):
    """Bussmann, Leask, Nanda 2024, "BatchTopK Sparse Autoencoders": TopK's SAE, AuxK and loss, but the k·B
    largest ReLU'd activations are kept over the whole batch (B rows) in training; at inference a feature is kept
    where its pre-activation exceeds one global threshold θ, estimated in training as the running mean of the
    smallest kept activation of each batch. The paper (Bussmann, Leask, Nanda 2024, arXiv 2412.06410) defines θ as
    that mean; we update it as the code that has it, bartbussmann/matryoshka_sae sae.py
    `BatchTopKSAE.update_threshold` and SAELens saes/batchtopk_sae.py `update_topk_threshold` (bartbussmann/BatchTopK's
    sae.py keeps no threshold): θ ← (1 - 0.01)·θ + 0.01·min{f > 0}, from θ = 0 (dictionary_learning uses β = 0.999
    from step 1000). Loss and init as the authors' code (topk_loss 'bussmann': recon_term, auxk_term; 'openai' is
    topk's). Exported as SAELens does: a
    jumprelu SAE whose every threshold is θ."""

    name = 'batchtopk'
    # the authors' config.py (bartbussmann/matryoshka_sae, which trains both): Adam lr 3e-4, betas (0.9, 0.99), no
    # clipping (max_grad_norm 1e5), no schedule, no λ
    recipe = dict(lr=3e-4, l1_coeff=0.0, warmup_frac=0.0, decay_frac=0.0, l1_warmup_frac=0.0,
                  grad_clip=0.0, adam_betas=(0.9, 0.99), adam_eps=1e-8)
    fire_threshold = 0.0  # the references count a latent as fired when its activation is > 0
    saelens_architecture = 'jumprelu'  # SAELens saves batchtopk for inference as jumprelu (its inference classes)
    loss_form = 'bussmann'  # the authors' sae.py: plain MSE; AuxK on the residual, not normalised nor detached
    b_dec_init = 'zero'  # the authors' sae.py starts b_dec at 0
    clip_first = True  # the authors' training.py: clip_grad_norm_, then make_decoder_weights_and_grad_unit_norm

    @torch.no_grad()
    def init_weights_(self, sae):
        # the authors' sae.py: W_enc (d, F) kaiming_uniform_ (fan_in F), W_dec = W_encᵀ with unit-norm rows, b_enc 0
        nn.init.kaiming_uniform_(sae.W_dec)  # (d, F): the same fan_in F and bound √(6/F) as their (d, F) W_enc
        sae.W_enc.copy_(sae.W_dec.T)
        unit_norm_decoder_(sae)
        sae.b_enc.zero_()

    @dataclass
    class Params(TopK.Params):
        topk_threshold_lr: float = 0.01  # rate of the running mean that estimates the inference threshold (SAELens')

    def add_state_(self, sae):
        # θ, float64 as SAELens (its running mean of many small updates); -> `threshold` (F,) at export
        sae.register_buffer('threshold', torch.zeros((), dtype=torch.float64, device=sae.W_enc.device))

    def activate(self, sae, pre):
        if sae.training:
            return batch_topk_relu(pre, sae.cfg.k)
        return torch.relu(pre) * (pre > sae.threshold.to(pre.dtype))  # SAELens JumpReLUSAE.encode, θ_i = θ

    @torch.no_grad()
    def after_step_(self, sae, f):
        positive = f[f > 0]
        ranks = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if positive.numel() == 0 and ranks == 1:  # the references skip such a batch
            return
        smallest = positive.min().to(torch.float64) if positive.numel() else sae.threshold.clone()  # (no change)
        if ranks > 1:  # the mean over ranks (each rank's batch is its own top-k·B)
            dist.all_reduce(smallest)
            smallest /= ranks
        lr = sae.cfg.topk_threshold_lr
        sae.threshold.mul_(1 - lr).add_(lr * smallest)

    def export_tensors(self, sae):
        return {'threshold': sae.threshold.float().expand(sae.cfg.n_features).clone()}

    @torch.no_grad()
    def load_tensors_(self, sae, sd, path):
        theta = sd['threshold'] if 'threshold' in sd else sd.get('topk_threshold', torch.zeros(()))
        if theta.numel() > 1 and not bool((theta == theta.flatten()[0]).all()):
            raise ConfigError(f"{path}: per-feature thresholds cannot be a {self.name} SAE's one threshold: "
                              f"load it as kind jumprelu")
        sae.threshold.fill_(float(theta.flatten()[0]))

    def saelens_fields(self, cfg):
        return dict(k=cfg.k, topk_threshold_lr=cfg.topk_threshold_lr)

    def config_from_saelens(self, saelens):
        return {'k': int(saelens.get('k', 32)), 'topk_threshold_lr': saelens.get('topk_threshold_lr', 0.01)}


@register
class MatryoshkaBatchTopK(BatchTopK):
    """Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka Sparse Autoencoders" (also Nabeshima
    2024): BatchTopK (activation, threshold, AuxK on the full reconstruction's error), and every nested prefix of the
    dictionary, latents [0, m) for m in matryoshka_widths, reconstructs x on its own. The loss is the authors' code's
    (bartbussmann/matryoshka_sae sae.py, topk_loss 'bussmann'): the mean of the plain MSEs of the b_dec-only
    reconstruction and of every prefix, + 1/32 · their AuxK; topk_loss='openai' sums the prefixes' normalised MSEs
    as SAELens does (matryoshka_batchtopk_sae.py). Default prefixes: the authors' main.py groups
    F/16, F/16, F/8, F/4, F/2."""

    name = 'matryoshka_batchtopk'
    auxk_needs_positive = True  # GlobalBatchTopKMatryoshkaSAE.get_auxiliary_loss: 0 unless ê has a non-zero entry

    @dataclass
    class Params(BatchTopK.Params):
        matryoshka_widths: tuple[int, ...] = ()  # nested prefix widths, the last n_features (SAELens' name);
        #                                          () = Bussmann et al.'s F/16, F/8, F/4, F/2, F

    def check(self, cfg):
        super().check(cfg)
        widths = matryoshka_widths(cfg)
        if widths[0] < 1 or widths[-1] != cfg.n_features or any(a >= b for a, b in zip(widths, widths[1:])):
            raise ConfigError(f"matryoshka_widths must rise strictly from >= 1 to n_features={cfg.n_features}, "
                              f"got {list(widths)}")

    def loss_terms(self, sae, pre, f, err, fired, dead):
        _, zero, aux = super().loss_terms(sae, pre, f, err, fired, dead)  # AuxK on the full dictionary's error
        parts = [f[:, lo:hi] @ sae.W_dec[:, lo:hi].T for lo, hi in matryoshka_groups(sae.cfg)]  # (B, d) each
        return matryoshka_recon(sae, err, parts), zero, aux

    def sparse_recon(self, sae, xs, f, code, W_rows):
        # one decode of every group at once: entry i goes to the bag (row, group of its column), B·G bags, so each
        # group's part of x̂ is a bag and dW_dec one gradient (one SparseCode instead of one per group: 2x faster)
        groups = matryoshka_groups(sae.cfg)
        B, G, n = xs.shape[0], len(groups), sae.cfg.n_features
        bounds = torch.tensor([hi for _, hi in groups[:-1]], device=code.cols.device)
        bag = code.rows * G + torch.bucketize(code.cols, bounds, right=True)  # (N,) row·G + group
        order = bag.view(1, -1).argsort(dim=1, stable=True).view(-1)  # 2-D: see sparse_code
        by_bag = sparse_code(bag[order], code.cols[order], B * G, n)
        parts = sparse_decode(sae, f[order], by_bag, W_rows, 'sp_gW_dec').view(B, G, -1)  # (B, G, d)
        err = (parts.sum(1) + sae.b_dec).float() - xs  # (B, d)
        return err, matryoshka_recon(sae, err, list(parts.unbind(1)))

    def saelens_fields(self, cfg):
        return {**super().saelens_fields(cfg), 'matryoshka_widths': list(matryoshka_widths(cfg))}

    def config_from_saelens(self, saelens):
        widths = tuple(saelens.get('matryoshka_widths', ()))
        return {**super().config_from_saelens(saelens), 'matryoshka_widths': widths}


@register
class JumpReLU(Kind):
    """Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU SAEs", as its
    appendix pseudo-code (and SAELens jumprelu_sae.py, step mode): f = pre·H(pre - θ) with per-feature θ =
    exp(log_threshold), pre = W_enc (x - b_dec) + b_enc (see below), loss = ‖x̂ - x‖² (summed over d) + λ·Σ_i
    H(pre_i - θ_i), mean over the batch; θ learns through straight-through estimators with the rectangle kernel
    K(u) = 1{|u| < 1/2}, bandwidth ε = 0.001: ∂f/∂θ = -(θ/ε)·K((pre - θ)/ε), ∂H/∂θ = -(1/ε)·K((pre - θ)/ε), no
    gradient from H to pre. Training as Gemma Scope (Lieberum et al. 2024, sec. 3.2, "across all training runs"): a
    pre-encoder bias (pre = W_enc (x - b_dec) + b_enc), folded into b_enc at export; init θ = 0.001, W_dec He-uniform
    rescaled to unit-norm columns (kept unit norm, parallel gradient removed), W_enc = W_decᵀ, zero biases; inputs
    scaled by one dataset constant to E‖x‖² = 1 (folded into the export)."""

    name = 'jumprelu'
    # Gemma Scope sec. 3.2 / the paper: Adam lr 7e-5, betas (0, 0.999), eps 1e-8; lr warmed up along a cosine from
    # 0.1·lr over the first 1,000 steps, λ linearly from 0 over the first 10,000 steps. λ is the knob the paper
    # sweeps (no single published value): 1e-3 is ours, for E‖x‖² = 1. No gradient clipping.
    recipe = dict(lr=7e-5, l1_coeff=1e-3, warmup_steps=1000, warmup_shape='cosine', warmup_start=0.1,
                  l1_warmup_steps=10_000, grad_clip=0.0, adam_betas=(0.0, 0.999), adam_eps=1e-8)
    fold_pre_bias = True  # Gemma Scope's released SAEs have the pre-encoder bias folded into b_enc
    b_dec_init = 'zero'
    saelens_architecture = 'jumprelu'

    @torch.no_grad()
    def init_weights_(self, sae):
        tied_init_(sae, 1.0, uniform=True)  # Gemma Scope: He-uniform W_dec, unit-norm columns, W_enc = W_decᵀ

    @dataclass
    class Params(Kind.Params):  # SAELens' names
        jumprelu_bandwidth: float = 0.001  # ε of the rectangle-kernel pseudo-derivatives of θ
        jumprelu_init_threshold: float = 0.001  # every θ_i at init

    def check(self, cfg):
        if not (cfg.jumprelu_bandwidth > 0 and cfg.jumprelu_init_threshold > 0):
            raise ConfigError(f"jumprelu needs jumprelu_bandwidth > 0 and jumprelu_init_threshold > 0, got "
                              f"{cfg.jumprelu_bandwidth} and {cfg.jumprelu_init_threshold}")

    def add_state_(self, sae):
        theta = torch.full((sae.cfg.n_features,), math.log(sae.cfg.jumprelu_init_threshold), dtype=sae.W_enc.dtype,
                           device=sae.W_enc.device)
        sae.log_threshold = nn.Parameter(theta)  # (F,) θ = exp(log_threshold)

    def activate(self, sae, pre):
        return JumpReLUFunction.apply(pre, sae.log_threshold.exp(), sae.cfg.jumprelu_bandwidth)

    def loss_terms(self, sae, pre, f, err, fired, dead):
        recon = err.pow(2).sum(1).mean()
        l0 = StepFunction.apply(pre, sae.log_threshold.exp(), sae.cfg.jumprelu_bandwidth).float().sum(1).mean()
        return recon, l0, err.new_zeros(())

    @torch.no_grad()
    def init_from_data_(self, sae, rows):
        if sae.cfg.normalize == 'none':
            sae.scale.fill_(estimate_rms_scale(rows))  # E‖scale·x‖² = 1
        super().init_from_data_(sae, rows)

    def export_tensors(self, sae):
        return {'threshold': sae.log_threshold.detach().float().exp()}

    @torch.no_grad()
    def load_tensors_(self, sae, sd, path):
        sae.log_threshold.copy_(sd['threshold'].log())

    def saelens_fields(self, cfg):
        return dict(jumprelu_bandwidth=cfg.jumprelu_bandwidth, jumprelu_init_threshold=cfg.jumprelu_init_threshold)

    def config_from_saelens(self, saelens):
        return {key: saelens[key] for key in ('jumprelu_bandwidth', 'jumprelu_init_threshold') if key in saelens}


def matryoshka_widths(cfg: SAEConfig) -> tuple[int, ...]:
    """The nested prefix widths of a matryoshka_batchtopk SAE: cfg.matryoshka_widths, else F/16, F/8, F/4, F/2, F."""
    return cfg.matryoshka_widths or tuple(cfg.n_features >> i for i in (4, 3, 2, 1, 0))


def matryoshka_groups(cfg: SAEConfig) -> list[tuple[int, int]]:
    """The latents [lo, hi) each prefix adds to the one before it, narrowest first: [(0, F/16), (F/16, F/8), ...]."""
    widths = (0, *matryoshka_widths(cfg))
    return list(zip(widths[:-1], widths[1:]))


def matryoshka_recon(sae: 'SparseAutoencoder', err: Tensor, parts: list[Tensor]) -> Tensor:
    """The Matryoshka reconstruction term from err = x̂ - x (B, d) of the full dictionary and parts[i] (B, d), group
    i's contribution to x̂ (matryoshka_groups): every prefix's recon_term (x̂_m - x, from the widest down, each drops
    the next group's part); 'bussmann' (matryoshka_sae get_loss_dict) also the b_dec-only term, and their mean;
    'openai' their sum, each normalised as topk's (SAELens matryoshka_batchtopk_sae.py sums them)."""
    recon, e = recon_term(sae, err), err
    groups = matryoshka_groups(sae.cfg)
    for (lo, _), part in zip(reversed(groups), reversed(parts)):
        e = e - part.float()  # (B, d) x̂ - x of the prefix [0, lo)
        if lo > 0 or topk_loss(sae.cfg) == 'bussmann':  # prefix 0 (x̂ = b_dec): the authors' code only
            recon = recon + recon_term(sae, e)
    return recon / (len(groups) + 1) if topk_loss(sae.cfg) == 'bussmann' else recon


# ----------------------------------------------------------------------------- the TopK family's loss forms

TOPK_LOSSES = ('openai', 'bussmann')


def topk_loss(cfg: SAEConfig) -> str:
    """The loss form of a TopK-family SAE: cfg.topk_loss, else its kind's authors' (TopK.loss_form)."""
    return cfg.topk_loss or KINDS[cfg.kind].loss_form


def auxk_dead_batches(cfg: SAEConfig) -> int:
    """topk_loss 'bussmann': silent batches after which a latent is dead for AuxK (n_batches_to_dead: 5 in
    bartbussmann/BatchTopK's config.py, 20 in bartbussmann/matryoshka_sae's)."""
    return cfg.auxk_dead_batches or (20 if cfg.kind == 'matryoshka_batchtopk' else 5)


def k_aux(cfg: SAEConfig) -> int:
    """Dead latents AuxK reconstructs with: cfg.k_aux, else d_in // 2 ('openai') or 512 ('bussmann': top_k_aux)."""
    return cfg.k_aux or (cfg.d_in // 2 if topk_loss(cfg) == 'openai' else 512)


def recon_term(sae: 'SparseAutoencoder', err: Tensor) -> Tensor:
    """The reconstruction term of a TopK-family SAE from err = x̂ - x (B, d) in its input space: 'openai' the MSE
    normalised by the data's variance (train.py `mse_scale * mse`), 'bussmann' the plain MSE (sae.py `l2_loss`)."""
    mse = err.pow(2).mean()
    return mse * sae.mse_scale if topk_loss(sae.cfg) == 'openai' else mse


def auxk_term(sae: 'SparseAutoencoder', e_hat: Tensor | None, err: Tensor) -> Tensor:
    """AuxK before aux_coeff, from ê (B, d) = W_dec·z (z: the ReLU'd top-k_aux pre-activations of the dead latents;
    None when no latent is dead) and err = x̂ - x (B, d), both in the SAE's input space; e = x - x̂.
    'openai' (openai/sparse_autoencoder train.py): normalized_mse(ê + b_dec, e + b_dec.detach()) with e detached: ê is
    decoded with the pre-encoder bias, so the term stays (ê = b_dec) and trains b_dec when no latent is dead.
    'bussmann' (BatchTopK / matryoshka_sae sae.py get_auxiliary_loss): mean((ê - e)²), e not detached (its gradient
    reaches the main reconstruction), no normalisation, 0 when no latent is dead."""
    if topk_loss(sae.cfg) == 'bussmann':
        if e_hat is None or (sae.kind.auxk_needs_positive and not bool(e_hat.any())):
            return err.new_zeros(())
        return (e_hat.float() + err).pow(2).mean()
    e = -err.detach()
    e_mean = e.mean(0)  # (d,)
    var = (e - e_mean).pow(2).mean()  # the reference's mse(mean_b e, e)
    b = (sae.b_dec - sae.b_dec.detach()).float()  # (d,) 0, with b_dec's gradient: ê is decoded with b_dec
    if e_hat is None:  # ê = b on every row: mean((b - e)²) = mean((b - ē)²) + var, without (B, d) passes
        return (((b - e_mean).pow(2).mean() + var) / var).nan_to_num(0.0)
    return ((e_hat.float() + b - e).pow(2).mean() / var).nan_to_num(0.0)


# ----------------------------------------------------------------------------- initialisations

@torch.no_grad()
def tied_init_(sae: 'SparseAutoencoder', norm: float, uniform: bool = False) -> None:
    """The tied start (Anthropic's April 2024 update; Gao et al. 2024 A.1): decoder columns in random directions
    (Gaussian, or with uniform=True He-uniform entries) of norm `norm`, W_enc = W_decᵀ, b_enc = 0."""
    if uniform:
        nn.init.kaiming_uniform_(sae.W_dec)
    else:
        nn.init.normal_(sae.W_dec)
    sae.W_dec.mul_(norm / sae.W_dec.norm(dim=0, keepdim=True))
    sae.W_enc.copy_(sae.W_dec.T)
    sae.b_enc.zero_()


@torch.no_grad()
def linear_init_(sae: 'SparseAutoencoder') -> None:
    """The seed's encoder nn.Linear(d, F) and decoder nn.Linear(F, d) at PyTorch's default init, untied: W_enc and
    b_enc ~ U(±1/√d), W_dec ~ U(±1/√F) (kaiming_uniform_ with a = √5), then unit-norm decoder columns."""
    nn.init.kaiming_uniform_(sae.W_enc, a=math.sqrt(5))
    sae.b_enc.uniform_(-1 / math.sqrt(sae.cfg.d_in), 1 / math.sqrt(sae.cfg.d_in))
    nn.init.kaiming_uniform_(sae.W_dec, a=math.sqrt(5))
    unit_norm_decoder_(sae)


# ----------------------------------------------------------------------------- the SAE

class SparseAutoencoder(nn.Module):
    """An SAE of any kind in KINDS; see the module docstring for the maths of each."""

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None):
        super().__init__()
        self.cfg = cfg
        dt = getattr(torch, cfg.dtype)
        d, n = cfg.d_in, cfg.n_features
        self.W_enc = nn.Parameter(torch.empty(n, d, device=device, dtype=dt))  # (F, d)
        self.b_enc = nn.Parameter(torch.zeros(n, device=device, dtype=dt))  # (F,)
        self.W_dec = nn.Parameter(torch.empty(d, n, device=device, dtype=dt))  # (d, F)
        self.b_dec = nn.Parameter(torch.zeros(d, device=device, dtype=dt))  # (d,)
        self.register_buffer('scale', torch.ones((), device=device, dtype=dt))  # input scale (april2024)
        # topk: 1 / mse(data mean, x) over a data sample, the normaliser of the main MSE term (set by init_mse_scale_)
        self.register_buffer('mse_scale', torch.ones((), device=device, dtype=torch.float32))
        self.register_buffer('tokens_since_fired', torch.zeros(n, device=device, dtype=torch.long))
        self._ws: dict[str, Tensor] = {}  # scratch buffers reused by FusedL1Loss (not saved)
        self._ws_forwards = 0  # FusedL1Loss forwards so far: the last one owns the scratch buffers
        self.kind.add_state_(self)  # jumprelu's log_threshold, batchtopk's threshold
        self.reset_parameters()

    @property
    def kind(self) -> Kind:
        """What this SAE's kind does (KINDS[cfg.kind]; cfg.kind is its name)."""
        return KINDS[self.cfg.kind]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """cfg.weight_init 'paper': the kind's published initialisation (Kind.init_weights_); 'tied': tied_init_ at
        the kind's decoder norm. b_dec = 0 (init_from_data_ may set it)."""
        if self.cfg.weight_init == 'paper':
            self.kind.init_weights_(self)
        else:
            tied_init_(self, self.kind.dec_init_norm(self.cfg))
        self.b_dec.zero_()

    def preprocess(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """(B, d) input -> (the SAE's input space (B, d), the (mean, std) (B, 1) each to undo layer_norm, or None).

        The SAE's input space is scale·x (scale = 1 except april2024), or with normalize='layer_norm' the
        per-token normalised (x - mean) / (std + 1e-5) (openai/sparse_autoencoder model.py `LN`, unbiased std).
        """
        x = x.to(self.W_enc.dtype)
        if self.cfg.normalize == 'layer_norm':
            mu = x.mean(-1, keepdim=True)
            xc = x - mu
            std = xc.std(-1, keepdim=True)
            return xc / (std + 1e-5), (mu, std)
        return x * self.scale, None

    def postprocess(self, y: Tensor, stats: tuple[Tensor, Tensor] | None) -> Tensor:
        """A reconstruction in the SAE's input space -> input units (inverse of preprocess)."""
        if stats is not None:
            return y * stats[1] + stats[0]
        return y / self.scale

    def encode_pre_scaled(self, xs: Tensor) -> Tensor:
        """(B, d) in the SAE's input space -> pre-activations (B, F) = W_enc (xs - b_dec) + b_enc."""
        if self.kind.pre_bias:
            xs = xs - self.b_dec
        return torch.addmm(self.b_enc, xs, self.W_enc.T)

    def encode_pre(self, x: Tensor) -> Tensor:
        """(B, d) -> pre-activations (B, F)."""
        return self.encode_pre_scaled(self.preprocess(x)[0])

    def activate(self, pre: Tensor) -> Tensor:
        """Pre-activations (B, F) -> features (B, F): the kind's activation (ReLU; topk: ReLU of the top k)."""
        return self.kind.activate(self, pre)

    def encode(self, x: Tensor) -> Tensor:
        """(B, d) -> features f (B, F)."""
        return self.activate(self.encode_pre(x))

    def decode_scaled(self, f: Tensor) -> Tensor:
        """Features (B, F) -> reconstruction in the SAE's input space (B, d) = W_dec f + b_dec."""
        return torch.addmm(self.b_dec, f, self.W_dec.T)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, d) -> (x̂ (B, d) in the input's units, f (B, F))."""
        xs, stats = self.preprocess(x)
        f = self.activate(self.encode_pre_scaled(xs))
        return self.postprocess(self.decode_scaled(f), stats), f

    def loss(self, x: Tensor, l1_coeff: float = 0.0, dead: Tensor | None = None,
             fused: bool = False, sparse: bool = False) -> dict[str, Tensor]:
        """Differentiable loss of a batch x (B, d). Returns {loss, recon, l1, aux, mse, f, fired}.

        recon: the reconstruction term in the SAE's input space (anthropic2023: mean over elements; april2024:
        ‖·‖² summed over d, mean over batch; topk: mean over elements × mse_scale); l1: the sparsity term
        before λ (april2024: weighted by decoder norms); aux: topk's AuxK term before its coefficient (0 when no
        latent is dead; `dead` defaults to the latents dead after this batch, see TopK.auxk_dead); mse: mean over
        elements in the input's units (for logging); f: the features (B, F); fired: (F,) fired_mask of f.
        fused=True computes recon and l1 with FusedL1Loss where the kind allows it; sparse=True (in training)
        the TopK family's loss (Kind.sparse) with sparse_topk_loss (same values and gradients; its 'f' is then the
        (N,) kept activations, not (B, F)).
        """
        if sparse and self.kind.sparse and self.training:
            return sparse_topk_loss(self, x, dead)
        if fused and self.kind.fused:
            recon, l1, mse, f, fired = fused_l1_loss(self, x)
            aux = recon.new_zeros(())
        else:
            xs, stats = self.preprocess(x)  # (B, d)
            pre = self.encode_pre_scaled(xs)  # (B, F)
            f = self.activate(pre)  # (B, F)
            fired = fired_mask(self, f.detach())  # (F,)
            err = self.decode_scaled(f).float() - xs  # (B, d)
            mse = self._mse_in_input_units(err.detach().pow(2), stats)
            recon, l1, aux = self.kind.loss_terms(self, pre, f, err, fired, dead)
        loss = recon + l1_coeff * l1 + self.cfg.aux_coeff * aux
        return {'loss': loss, 'recon': recon, 'l1': l1, 'aux': aux, 'mse': mse, 'f': f, 'fired': fired}

    def _mse_in_input_units(self, sq: Tensor, stats: tuple[Tensor, Tensor] | None) -> Tensor:
        """Mean of squared errors sq (B, d) taken in the SAE's input space, converted to the input's units."""
        if stats is not None:
            return (sq * stats[1].float().pow(2)).mean()
        return sq.mean() / self.scale.float() ** 2


def fired_mask(sae: SparseAutoencoder, f: Tensor) -> Tensor:
    """(F,) bool: the latents that fired anywhere in the batch f (B, F) (activation above the kind's threshold)."""
    return (f > sae.kind.fire_threshold).any(0)


def topk_relu(pre: Tensor, k: int) -> Tensor:
    """Keep the k largest entries of each row of pre (B, F), ReLU them, zero the rest."""
    vals, idx = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())


def batch_topk_relu(pre: Tensor, k: int) -> Tensor:
    """Keep the k·B largest entries of ReLU(pre) (B, F) over the whole batch, zero the rest (BatchTopK)."""
    flat = pre.relu().flatten()  # (B·F,)
    vals, idx = flat.topk(k * pre.shape[0], sorted=False)
    return torch.zeros_like(flat).scatter_(0, idx, vals).view_as(pre)


def rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1{-1/2 < u < 1/2} of JumpReLU's pseudo-derivatives."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """f = pre·H(pre - θ) for pre (B, F) and θ (F,); backward: ∂f/∂pre = H(pre - θ), and the straight-through
    ∂f/∂θ = -(θ/ε)·K((pre - θ)/ε), summed over the batch (Rajamanoharan et al. 2024, appendix)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        pre, theta = ctx.saved_tensors
        g_theta = (-(theta / ctx.eps) * rectangle((pre - theta) / ctx.eps) * g).sum(0)  # (F,)
        return (pre > theta).to(g.dtype) * g, g_theta.to(theta.dtype), None


class StepFunction(torch.autograd.Function):
    """H(pre - θ) (B, F), the L0 count; backward: ∂H/∂θ = -(1/ε)·K((pre - θ)/ε) summed over the batch, nothing
    to pre (Rajamanoharan et al. 2024, appendix)."""

    @staticmethod
    def forward(ctx, pre: Tensor, theta: Tensor, eps: float) -> Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        pre, theta = ctx.saved_tensors
        g_theta = (-(1.0 / ctx.eps) * rectangle((pre - theta) / ctx.eps) * g).sum(0)  # (F,)
        return None, g_theta.to(theta.dtype), None


# ----------------------------------------------------------------------------- constraints and init

def col_norms(W: Tensor) -> Tensor:
    """Column norms (F,) of W (d, F) (vecdot is a single fast pass; vector_norm(dim=0) is slow on CPU)."""
    return torch.linalg.vecdot(W, W, dim=0).sqrt_()


def col_dots(sae: SparseAutoencoder, A: Tensor, B: Tensor) -> Tensor:
    """Column dot products (F,) of A, B (d, F): linalg.vecdot's own product-then-sum (the same numbers), its (d, F)
    product in a scratch buffer kept on the module (a fresh 32 MB temporary costs page faults: 3x slower)."""
    return torch.mul(A, B, out=_buf(sae, 'col_dots', tuple(A.shape), A.dtype, pad=False)).sum(0)


@torch.no_grad()
def unit_norm_decoder_(sae: SparseAutoencoder) -> None:
    """Rescale every decoder column W_dec[:, i] to unit norm."""
    W = sae.W_dec
    W.div_(col_dots(sae, W, W).sqrt_().clamp_min_(1e-12))


@torch.no_grad()
def remove_parallel_grad_(sae: SparseAutoencoder, unit: bool = False) -> None:
    """Remove from W_dec.grad the component parallel to each decoder column: g_i -= (g_i·w_i / w_i·w_i) w_i.

    unit=True skips computing w_i·w_i (= 1 when the columns were renormalised after the last step).
    """
    W, G = sae.W_dec, sae.W_dec.grad
    if G is None:
        return
    coef = col_dots(sae, G, W)  # (F,)
    if not unit:
        coef /= col_dots(sae, W, W).clamp_min_(1e-24)
    G.addcmul_(W, coef, value=-1.0)


@torch.no_grad()
def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-7, chunk: int = 16384) -> Tensor:
    """Geometric median of the rows of x (N, d) by Weiszfeld's iteration -> (d,) float32."""
    x = x.float()
    m = x.mean(0, dtype=torch.float64)
    for _ in range(iters):
        num, den = torch.zeros_like(m), m.new_zeros(())
        for xc in x.split(chunk):
            w = 1.0 / torch.linalg.vector_norm(xc.double() - m, dim=1).clamp_min_(1e-12)  # (n,)
            num += w @ xc.double()
            den += w.sum()
        m_new = num / den
        moved = torch.linalg.vector_norm(m_new - m)
        m = m_new
        if moved <= tol * (1.0 + torch.linalg.vector_norm(m)):
            break
    return m.float()


@torch.no_grad()
def init_b_dec_(sae: SparseAutoencoder, rows: Tensor) -> None:
    """b_dec = geometric median of the rows (N, d) in the SAE's input space (the init of the kinds with a
    pre-encoder bias: the paper's and openai's)."""
    sae.b_dec.copy_(geometric_median(sae.preprocess(rows.to(sae.W_enc.device))[0].float()))


@torch.no_grad()
def init_from_data_(sae: SparseAutoencoder, rows: Tensor) -> None:
    """Everything the SAE's kind measures from activation rows (N, d) before training (Kind.init_from_data_):
    april2024's input scale, topk's MSE normaliser, b_dec at the geometric median (kinds with a pre-bias)."""
    sae.kind.init_from_data_(sae, rows)


@torch.no_grad()
def init_mse_scale_(sae: SparseAutoencoder, rows: Tensor) -> None:
    """topk: mse_scale = 1 / mean((x - mean x)²) over the rows (N, d) in the SAE's input space: the main loss is
    the MSE normalised by the data's variance (openai/sparse_autoencoder train.py `mse_scale`)."""
    xs = sae.preprocess(rows.to(sae.W_enc.device))[0].double()
    sae.mse_scale.fill_(1.0 / (xs - xs.mean(0)).pow(2).mean().item())


@torch.no_grad()
def estimate_scale(rows: Tensor, chunk: int = 65536) -> float:
    """Scalar s with E‖s·x‖ = √d over rows (N, d): april2024's dataset-wide input scale."""
    total = sum(torch.linalg.vector_norm(c.double(), dim=1).sum().item() for c in rows.split(chunk))
    return math.sqrt(rows.shape[1]) / (total / rows.shape[0])


@torch.no_grad()
def estimate_rms_scale(rows: Tensor, chunk: int = 65536) -> float:
    """Scalar s with E‖s·x‖² = 1 over rows (N, d): jumprelu's dataset-wide input scale (Gemma Scope)."""
    total = sum(c.double().pow(2).sum().item() for c in rows.split(chunk))
    return 1.0 / math.sqrt(total / rows.shape[0])


@torch.no_grad()
def fold_scale_(sae: SparseAutoencoder) -> None:
    """Fold `scale` into the weights (W_enc·s, W_dec/s, b_dec/s) and set it to 1; same function of x."""
    s = sae.scale.clone()
    sae.W_enc.mul_(s)
    sae.W_dec.div_(s)
    sae.b_dec.div_(s)
    sae.scale.fill_(1.0)


# ----------------------------------------------------------------------------- schedules

def l1_coeff_at(step: int, total_steps: int, l1_coeff: float, warmup_frac: float = 0.05,
                warmup_steps: int = 0) -> float:
    """λ warmed up linearly from 0 over the first warmup_steps steps, or else the first warmup_frac of training."""
    warm = warmup_steps or warmup_frac * total_steps
    return l1_coeff * min(1.0, step / warm) if warm > 0 else l1_coeff


def lr_at(step: int, total_steps: int, lr: float, warmup_frac: float = 0.01, decay_frac: float = 0.2,
          warmup_steps: int = 0, warmup_shape: str = 'linear', warmup_start: float = 0.0) -> float:
    """Warm-up over the first warmup_steps steps (or else the first warmup_frac of the run), constant, then linear
    decay to 0 over the last decay_frac. Warm-up 'linear': lr·(step + 1)/W; 'cosine': from warmup_start·lr to lr
    along half a cosine, lr·(s + (1 - s)·(1 - cos(π·step/W))/2) (Gemma Scope, Lieberum et al. 2024, sec. 3.2)."""
    warm, decay_start = warmup_steps or warmup_frac * total_steps, (1.0 - decay_frac) * total_steps
    if warm > 0 and step < warm:
        if warmup_shape == 'cosine':
            return lr * (warmup_start + (1.0 - warmup_start) * (1.0 - math.cos(math.pi * step / warm)) / 2)
        return lr * (step + 1) / warm
    if step >= decay_start and decay_frac > 0:
        return lr * max(0.0, (total_steps - step) / (total_steps - decay_start))
    return lr


# ----------------------------------------------------------------------------- the training step

def make_adam(sae: SparseAutoencoder, lr: float, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8) -> torch.optim.Adam:
    """Adam over the SAE's parameters, fused (one kernel for all tensors) where PyTorch supports it."""
    fused = sae.W_enc.device.type in ('cpu', 'cuda')
    return torch.optim.Adam(sae.parameters(), lr=lr, betas=betas, eps=eps, fused=fused)


def _buf(sae: SparseAutoencoder, name: str, shape: tuple[int, int], dtype: torch.dtype, pad: bool = True) -> Tensor:
    """A scratch (rows, cols) tensor kept on the module between steps (fresh 64 MB allocations cost page faults).

    With pad, rows are padded to a multiple of 64 bytes: GEMMs on rows of odd length (d+1) run up to 1.5x slower.
    Made with zeros, not torch.empty: the bf16 GEMMs on CPU read the padding of a strided operand, so garbage there
    (NaN or inf bit patterns) made a step's loss NaN now and then; the padding is never written after this.
    """
    rows, cols = shape
    ld = -(-cols * dtype.itemsize // 64) * 64 // dtype.itemsize if pad else cols
    t = sae._ws.get(name)
    if t is None or t.shape != (rows, ld) or t.dtype != dtype or t.device != sae.W_enc.device:
        t = sae._ws[name] = torch.zeros((rows, ld), dtype=dtype, device=sae.W_enc.device)
    return t[:, :cols]


def _as_grad(sae: SparseAutoencoder, name: str, g: Tensor, p: Tensor) -> Tensor:
    """g as a gradient autograd can store in p.grad without a copy: p's dtype, contiguous (else copied into the
    scratch buffer `name`; a strided gradient would make the fused Adam step wrong)."""
    if g.dtype == p.dtype and g.is_contiguous():
        return g
    return _buf(sae, name, tuple(g.shape), p.dtype, pad=False).copy_(g)


def _unalias_grads_(sae: SparseAutoencoder) -> None:
    """A .grad left by the last backward may be a view of a scratch buffer this step overwrites: copy such a
    gradient out, so that accumulating into it (two backwards without zero_grad) stays right."""
    scratch = {t.untyped_storage().data_ptr() for t in sae._ws.values()}
    for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
        if p.grad is not None and p.grad.untyped_storage().data_ptr() in scratch:
            p.grad = p.grad.clone()


def _scalar(g: Tensor | None) -> float | Tensor:
    """An output's gradient () as a factor: 0 for None (output unused); a Python number on the CPU (where
    .item() is free and ops by a 0-dim tensor are slow); the tensor on a GPU (.item() would wait for it)."""
    if g is None:
        return 0.0
    return g.item() if g.device.type == 'cpu' else g


class FusedL1Loss(torch.autograd.Function):
    """recon and l1 of an L1Kind (anthropic2023, april2024) with a hand-written backward: 5 GEMMs and 2
    elementwise passes over (B, F) per step, where autograd needs 6 GEMMs and more passes (bench/sae_step.py).

    Biases ride along inside the GEMMs as an extra column of ones ("augmented" operands), so that
    [x̄ 1] @ [W_enc b_enc]ᵀ gives the pre-activations, [g 1]ᵀ @ f gives dW_dec and Σ_b f (the L1 term and
    the fired mask: this is why the forward already runs this backward GEMM), [g 1] @ [W_dec; w] gives dL/df
    including the L1 gradient w, and dpreᵀ @ [x̄ 1] gives dW_enc and db_enc. The GEMM dpre @ W_enc (for db_dec)
    is replaced by db_enc @ W_enc, a vector product. Operands and results live in scratch buffers on the module
    (sae._ws); the gradients handed to autograd are views of them, stored in .grad without a copy.
    """

    @staticmethod
    def forward(ctx, x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, sae: SparseAutoencoder,
                cdt: torch.dtype):
        """x (B, d) in the input's units, the parameters, matmul dtype cdt -> (recon, l1, mse, f (B, F), fired (F,))."""
        _unalias_grads_(sae)
        sae._ws_forwards += 1
        ctx.forward_number = sae._ws_forwards
        kind, B, d, n = sae.kind, x.shape[0], sae.cfg.d_in, sae.cfg.n_features
        x, stats = sae.preprocess(x) if sae.cfg.normalize == 'layer_norm' else (x.to(W_enc.dtype), None)
        s = sae.scale if stats is None else torch.ones_like(sae.scale)  # layer_norm: x is normalised already
        xa = _buf(sae, 'xa', (B, d + 1), cdt)  # (B, d+1) = [s·x - b_dec, 1]
        if kind.pre_bias:
            torch.addcmul(-b_dec, x, s, out=xa[:, :d])
        else:
            torch.mul(x, s, out=xa[:, :d])
        xa[:, d] = 1
        wea = _buf(sae, 'wea', (n, d + 1), cdt)  # (F, d+1) = [W_enc, b_enc]
        wea[:, :d] = W_enc
        wea[:, d] = b_enc
        f = torch.mm(xa, wea.T, out=_buf(sae, 'f', (B, n), cdt)).relu_()  # (B, F)
        wda = _buf(sae, 'wda', (d + 1, n), cdt)  # (d+1, F) = [W_dec; w], w (the L1 row) set in backward
        wda[:d] = W_dec
        xh = torch.addmm(b_dec.to(cdt), f, wda[:d].T, out=_buf(sae, 'xh', (B, d), cdt))  # (B, d) scaled x̂
        err = torch.addcmul(xh, x, s, value=-1.0)  # (B, d) = x̂ - s·x, in the parameter dtype
        sse = torch.dot(err.view(-1), err.view(-1))
        c = 2.0 / B if kind.recon_sum_over_d else 2.0 / (B * d)  # d recon / d x̂
        ga = _buf(sae, 'ga', (B, d + 1), cdt)  # (B, d+1) = [d recon/dx̂, 1]
        torch.mul(err, c, out=ga[:, :d])
        ga[:, d] = 1
        gd = torch.mm(ga.T, f, out=_buf(sae, 'gd', (d + 1, n), cdt))  # (d+1, F) = [dW_dec (recon); Σ_b f]
        fsum = gd[d].to(W_enc.dtype)  # (F,)
        dec_norm = col_norms(W_dec) if kind.l1_by_decoder_norm else None  # (F,)
        l1 = (fsum * dec_norm).sum() / B if kind.l1_by_decoder_norm else fsum.sum() / B
        recon = sse / B if kind.recon_sum_over_d else sse / (B * d)
        mse = sse / (B * d) / s ** 2 if stats is None else sae._mse_in_input_units(err.float().pow(2), stats)
        fired = fsum > 0
        ctx.sae, ctx.cdt, ctx.c, ctx.err, ctx.fsum, ctx.dec_norm = sae, cdt, c, err, fsum, dec_norm
        ctx.scratch = xa, f, wda, ga, gd
        ctx.save_for_backward(W_enc, W_dec)
        ctx.mark_non_differentiable(mse, f, fired)
        ctx.set_materialize_grads(False)  # no (B, F) zeros for f's gradient: 10% of a step
        return recon, l1, mse, f, fired

    @staticmethod
    def backward(ctx, g_recon: Tensor, g_l1: Tensor, *_):
        """Gradients of g_recon·recon + g_l1·l1 (g_recon = 1, g_l1 = λ for the training loss)."""
        sae, cdt, err, fsum, dec_norm = ctx.sae, ctx.cdt, ctx.err, ctx.fsum, ctx.dec_norm
        if ctx.forward_number != sae._ws_forwards:
            raise RuntimeError("FusedL1Loss: its scratch buffers were reused (by another forward, or a backward "
                               "already ran): call backward once, after each forward")
        sae._ws_forwards += 1  # a second backward of this graph would read buffers changed in place below
        xa, f, wda, ga, gd = ctx.scratch
        g_recon, g_l1 = _scalar(g_recon), _scalar(g_l1)
        W_enc, W_dec = ctx.saved_tensors
        B, d, n = err.shape[0], sae.cfg.d_in, sae.cfg.n_features
        with torch.autocast(err.device.type, enabled=False):  # dtypes are explicit here
            if not isinstance(g_recon, float) or g_recon != 1.0:  # the training loss has g_recon = 1
                gd[:d] *= g_recon  # (d, F) dW_dec of the recon term (the forward's GEMM)
                ga[:, :d] *= g_recon  # (B, d) d(g_recon·recon)/dx̂
            wda[d] = g_l1 / B if dec_norm is None else dec_norm * (g_l1 / B)  # (F,) d(g_l1·l1)/df
            df = torch.mm(ga, wda, out=_buf(sae, 'df', (B, n), cdt))  # (B, F) = dL/df
            torch.ops.aten.threshold_backward.grad_input(df, f, 0, grad_input=df)  # (B, F) = dL/dpre
            ge = torch.mm(df.T, xa, out=_buf(sae, 'ge', (n, d + 1), cdt))  # (F, d+1) = [dW_enc, db_enc]
            gW_enc = _buf(sae, 'gW_enc', (n, d), W_enc.dtype, pad=False).copy_(ge[:, :d])
            gb_enc = ge[:, d].to(W_enc.dtype).contiguous()
            gW_dec = _as_grad(sae, 'gW_dec', gd[:d], W_dec)
            gb_dec = err.sum(0) * ctx.c * g_recon  # (d,)
            if sae.kind.pre_bias:
                gb_dec -= gb_enc @ W_enc
            if dec_norm is not None:
                gW_dec.addcmul_(W_dec, fsum * (g_l1 / B) / dec_norm.clamp_min(1e-12))
        return None, gW_enc, gb_enc, gW_dec, gb_dec, None, None


def fused_l1_loss(sae: SparseAutoencoder, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """FusedL1Loss on x (B, d), its matmuls in the dtype of the caller's autocast (else the parameters')."""
    dev = x.device.type
    cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else sae.W_enc.dtype
    with torch.autocast(dev, enabled=False):  # dtypes are explicit inside
        return FusedL1Loss.apply(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, sae, cdt)


# ----------------------------------------------------------------------------- the sparse TopK step (Kind.sparse)

class SparseCode(NamedTuple):
    """Where a (B, F) code is non-zero: N entries grouped by row (in any order within a row)."""

    rows: Tensor  # (N,) long
    cols: Tensor  # (N,) long
    row_starts: Tensor  # (B+1,) the entries of row b are [row_starts[b], row_starts[b+1])
    by_col: Tensor  # (N,) the entries ordered by column
    rows_by_col: Tensor  # (N,) rows[by_col]
    col_starts: Tensor  # (F+1,) the entries of column c are by_col[col_starts[c]:col_starts[c+1]]
    pattern_t: Tensor  # (F, B) sparse CSR tensor of the transposed pattern (values 0): the support of sampled_addmm


def sparse_code(rows: Tensor, cols: Tensor, n_rows: int, n_cols: int, per_row: int = 0) -> SparseCode:
    """The SparseCode of the entries (rows[i], cols[i]) (N,) grouped by row; per_row > 0: that many in every row."""
    def starts(keys: Tensor, n: int) -> Tensor:
        return torch.cat([keys.new_zeros(1), torch.bincount(keys, minlength=n).cumsum(0)])
    if per_row:
        row_starts = torch.arange(0, cols.shape[0] + 1, per_row, device=cols.device)
    else:
        row_starts = starts(rows, n_rows)
    by_col = cols.view(1, -1).argsort(dim=1, stable=True).view(-1)  # 2-D: a one-thread merge sort, not the
    # OpenMP radix sort of 1-D integers (up to 100x slower on a loaded machine: each of its passes waits for a thread)
    rows_by_col, col_starts = rows[by_col], starts(cols, n_cols)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used for sampled_addmm only
        warnings.simplefilter('ignore')
        pattern_t = torch.sparse_csr_tensor(col_starts, rows_by_col, torch.zeros(cols.shape[0], device=cols.device),
                                            (n_cols, n_rows))
    return SparseCode(rows, cols, row_starts, by_col, rows_by_col, col_starts, pattern_t)


def _bag_sum(index: Tensor, table: Tensor, starts: Tensor, weights: Tensor) -> Tensor:
    """(n_bags, d): bag b = Σ_{i in [starts[b], starts[b+1])} weights[i]·table[index[i]] (embedding_bag)."""
    return nn.functional.embedding_bag(index, table, starts, mode='sum', per_sample_weights=weights,
                                       include_last_offset=True)


def _by_col_sum(code: SparseCode, weights: Tensor, table: Tensor) -> Tensor:
    """(F, d): row c = Σ over the entries i in column c of weights[i]·table[rows[i]] (a sparse-dense product)."""
    return _bag_sum(code.rows_by_col, table, code.col_starts, weights[code.by_col])


def _entry_dots(code: SparseCode, W_rows: Tensor, g: Tensor) -> Tensor:
    """(N,): g[rows[i]] · W_rows[cols[i]] for every entry i of code, with W_rows (F, d) and g (B, d). Column by
    column (sampled_addmm on the transposed pattern): each row of W_rows is read once and the gathered rows come
    from the smaller g, 1.3x faster than row by row."""
    by_col = torch.sparse.sampled_addmm(code.pattern_t, W_rows, g.T, beta=0.0).values()  # (N,) in column order
    return torch.empty_like(by_col).index_copy_(0, code.by_col, by_col)


class EncoderOperands(NamedTuple):
    """x̄ and W_enc as the encoder GEMM read them, the tables SparseEncode's gradients gather rows from: the
    parameters' dtype, or under a bf16 autocast the GEMM's bf16 [x̄, 1] and [W_enc, b_enc] with their padding, whole
    rows (x̄ and W_enc are the first d columns; embedding_bag would copy a strided table first: 1.4x slower)."""

    xbar: Tensor  # (B, ≥d)
    W_enc: Tensor  # (F, ≥d)


def _in_param_dtype(t: Tensor, buf: Tensor | None) -> Tensor:
    """t (bf16) cast into buf, a kept buffer in the parameters' dtype (a fresh 32 MB tensor costs page faults: 3x
    slower); t itself when buf is None (fp32: t is in the parameters' dtype already)."""
    return t if buf is None else buf.copy_(t)


class SparseEncode(torch.autograd.Function):
    """The pre-activations pre_values (N,) at the entries of code, taken from the dense encoder GEMM, with the
    gradients of x̄ (B, d), W_enc (F, d), b_enc (F,) computed from those N entries only. Their products read x̄ and
    W_enc from ops (EncoderOperands) in the GEMM's dtype: bf16 under a bf16 autocast, as the dense path's backward
    GEMMs do (and 2-3x faster gathers than fp32), dW_enc then cast into grad_buf; the parameters themselves in fp32."""

    @staticmethod
    def forward(ctx, xbar: Tensor, W_enc: Tensor, b_enc: Tensor, pre_values: Tensor, code: SparseCode,
                ops: EncoderOperands, grad_buf: Tensor | None):
        ctx.save_for_backward(ops.xbar, ops.W_enc)
        ctx.code, ctx.grad_buf, ctx.d = code, grad_buf, W_enc.shape[1]
        return pre_values.to(W_enc.dtype, copy=True)

    @staticmethod
    def backward(ctx, g: Tensor):
        xbar, W_enc = ctx.saved_tensors  # (B, ≥d), (F, ≥d) in the GEMM's dtype
        (code, grad_buf, d), ctx.grad_buf = (ctx.code, ctx.grad_buf, ctx.d), None
        gc = g.to(W_enc.dtype).contiguous()  # (N,)
        g_xbar = None
        if ctx.needs_input_grad[0]:  # (B, d) = Σ_j g_j W_enc[cols_j] per row
            g_xbar = _bag_sum(code.cols, W_enc, code.row_starts, gc)[:, :d].to(g.dtype)
        g_W_enc = _in_param_dtype(_by_col_sum(code, gc, xbar)[:, :d], grad_buf)  # (F, d) = (g sparse)ᵀ x̄
        g_b_enc = g.new_zeros(W_enc.shape[0]).index_add_(0, code.cols, g)  # (F,)
        return g_xbar, g_W_enc, g_b_enc, None, None, None, None


def sparse_encode(sae: SparseAutoencoder, xbar: Tensor, pre_values: Tensor, code: SparseCode, ops: EncoderOperands,
                  name: str) -> Tensor:
    """SparseEncode of pre_values (N,) at code; a bf16 dW_enc is cast into the scratch buffer `name` (one per call in a
    step: both gradients reach W_enc.grad)."""
    W_enc = sae.W_enc
    grad_buf = None if ops.W_enc.dtype == W_enc.dtype else _buf(sae, name, tuple(W_enc.shape), W_enc.dtype, pad=False)
    return SparseEncode.apply(xbar, W_enc, sae.b_enc, pre_values, code, ops, grad_buf)


def _transposed_by_gemm(a: Tensor, out: Tensor) -> Tensor:
    """out (d, F) = aᵀ for a bf16 a (F, d), as the GEMM I·aᵀ with the (d, d) identity: exact (each output is one
    product by 1 plus zeros; a NaN spreads to its whole decoder column, as the step's column norms spread it anyway),
    and with AMX or AVX-512 bf16 1.6x faster than a transposed copy, which runs on one thread."""
    return torch.mm(torch.eye(a.shape[1], dtype=a.dtype, device=a.device), a.T, out=out)


class DecoderRows(NamedTuple):
    """W_dec as rows (F, d) for SparseDecode, made once per step in scratch buffers (no gradient flows through them):
    in the parameters' dtype for sampled_addmm (fp32 only on CPU), and in the matmul dtype for the decoding's gathers
    (bf16 under a bf16 autocast, as the dense path's GEMM: 1.6x faster than fp32; dots then hold the same bf16-rounded
    values, as the dense path's bf16 GEMM g·W_dec reads them). The same tensor twice in fp32."""

    dots: Tensor  # (F, d) the parameters' dtype
    bags: Tensor  # (F, d) the matmul dtype


def decoder_rows(sae: SparseAutoencoder, cdt: torch.dtype) -> DecoderRows:
    """DecoderRows of sae's W_dec (d, F) for matmul dtype cdt."""
    with torch.no_grad():
        W, (d, n) = sae.W_dec, sae.W_dec.shape
        if cdt == W.dtype:
            dots = _buf(sae, 'sp_W_rows', (n, d), W.dtype, pad=False).copy_(W.T)
            return DecoderRows(dots, dots)
        # bf16: W_dec cast (d, F), transposed by the GEMM Wᵀ·I (exact, 3x faster than a transposed fp32 copy);
        # the dots then read the bf16-rounded W_dec as the dense path's bf16 GEMM g·W_dec does
        wc = _buf(sae, 'sp_W_dec_c', (d, n), cdt, pad=False).copy_(W)
        bags = torch.mm(wc.T, torch.eye(d, dtype=cdt, device=W.device), out=_buf(sae, 'sp_W_rows_c', (n, d), cdt,
                                                                                 pad=False))
        return DecoderRows(_buf(sae, 'sp_W_rows', (n, d), W.dtype, pad=False).copy_(bags), bags)


class SparseDecode(torch.autograd.Function):
    """Σ_j values_j W_dec[:, cols_j] per row (B, d) from the N entries of code (values (N,)), and its gradients, with
    W_dec as rows (DecoderRows, made by the caller); g_W_dec (d, F) is written into grad_buf (fresh 32 MB tensors
    cost page faults: a transposed copy into a kept buffer is 3x faster). t_buf (d, F) bf16 (None in fp32): dW_dec's
    products in bf16 under a bf16 autocast, as the dense path's GEMM (3x faster gathers), then transposed by a GEMM."""

    @staticmethod
    def forward(ctx, values: Tensor, W_dec: Tensor, code: SparseCode, rows: DecoderRows, grad_buf: Tensor,
                t_buf: Tensor | None):
        ctx.save_for_backward(values, rows.dots)
        ctx.code, ctx.bufs = code, (grad_buf, t_buf)
        return _bag_sum(code.cols, rows.bags, code.row_starts, values.to(rows.bags.dtype)).to(values.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        values, W_rows = ctx.saved_tensors
        (grad_buf, t_buf), ctx.bufs = ctx.bufs, None
        code, g = ctx.code, g.contiguous()
        g_values = _entry_dots(code, W_rows, g)  # (N,) g_row · W_dec[:, col]
        if t_buf is None:
            g_W_dec = grad_buf.copy_(_by_col_sum(code, values, g).T)  # (d, F)
        else:
            g_W_rows = _by_col_sum(code, values.to(t_buf.dtype), g.to(t_buf.dtype))  # (F, d)
            g_W_dec = grad_buf.copy_(_transposed_by_gemm(g_W_rows, t_buf))  # (d, F)
        return g_values, g_W_dec, None, None, None, None


def sparse_decode(sae: SparseAutoencoder, values: Tensor, code: SparseCode, rows: DecoderRows, name: str) -> Tensor:
    """SparseDecode of values (N,) at code, its dW_dec (products in the dtype of rows.bags) written into the scratch
    buffer `name` (one per call in a step: both gradients reach W_dec.grad)."""
    shape, dt, cdt = tuple(sae.W_dec.shape), sae.W_dec.dtype, rows.bags.dtype
    t_buf = None if cdt == dt else _buf(sae, 'sp_gW_dec_t', shape, cdt, pad=False)
    return SparseDecode.apply(values, sae.W_dec, code, rows, _buf(sae, name, shape, dt, pad=False), t_buf)


def topk_code(sae: SparseAutoencoder, pre: Tensor) -> tuple[SparseCode, Tensor]:
    """The entries topk_relu / batch_topk_relu keep of pre (B, F) (the same top-k calls, so the same ties), and
    pre's values there (N,)."""
    B, n, k = pre.shape[0], pre.shape[1], sae.cfg.k
    if isinstance(sae.kind, BatchTopK) and sae.training:
        flat = pre.relu().flatten().topk(k * B, sorted=False).indices.sort().values  # (k·B,) row-major
        return sparse_code(flat // n, flat % n, B, n), pre.flatten()[flat]
    return row_topk_code(pre, k)


def row_topk_code(pre: Tensor, k: int) -> tuple[SparseCode, Tensor]:
    """The k largest entries of each row of pre (B, F) (pre.topk), in its order, and their values (B·k,)."""
    B, n = pre.shape
    vals, idx = pre.topk(k, dim=-1, sorted=False)  # (B, k)
    rows = torch.arange(B, device=pre.device).repeat_interleave(k)
    return sparse_code(rows, idx.flatten(), B, n, per_row=k), vals.flatten()


@torch.no_grad()
def encoder_gemm(sae: SparseAutoencoder, xbar: Tensor) -> tuple[Tensor, EncoderOperands]:
    """Pre-activations (B, F) = x̄ W_encᵀ + b_enc of x̄ (B, d), the same numbers as encode_pre_scaled (in the
    caller's autocast dtype), written into a scratch buffer kept on the module (a fresh (B, F) costs page faults),
    and the operands the GEMM read."""
    dev = xbar.device.type
    cdt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else sae.W_enc.dtype
    (B, d), n = xbar.shape, sae.cfg.n_features
    out = _buf(sae, 'pre', (B, n), cdt, pad=False)
    with torch.autocast(dev, enabled=False):  # autocast's casts by hand: out= is not autocast-eligible
        if cdt == sae.W_enc.dtype:
            return torch.addmm(sae.b_enc, xbar, sae.W_enc.T, out=out), EncoderOperands(xbar, sae.W_enc)
        # cast into [W_enc, b_enc] (F, d+1) and [x̄, 1] (B, d+1): the bias rides in the GEMM (no (B, F) broadcast)
        wea = _buf(sae, 'sp_wea', (n, d + 1), cdt)
        wea[:, :d].copy_(sae.W_enc)
        wea[:, d].copy_(sae.b_enc)
        xa = _buf(sae, 'sp_xa', (B, d + 1), cdt)
        xa[:, :d].copy_(xbar)
        xa[:, d].fill_(1)
        return torch.mm(xa, wea.T, out=out), EncoderOperands(sae._ws['sp_xa'], sae._ws['sp_wea'])


# where the sparse step is the faster (bench/sparse_step.py, d 512, B 1,024, bf16, 2 CPU cores: at F 512 the dense
# one, up to 1.5x, for every kind and k but matryoshka k 10 (0.97); at F 1,024 with k 40 a draw, 0.97-1.11; from
# F 1,024 with F/k >= 51 the sparse one, 1.02-1.9x): its costs besides the encoder GEMM grow with k·B, the dense
# step's decoding with F·B
SPARSE_MIN_FEATURES = 1024
SPARSE_MIN_FEATURES_PER_K = 32


def sparse_step_pays(cfg: SAEConfig) -> bool:
    """Whether the sparse step (sparse_topk_loss) is the faster for cfg, so sparse_topk='auto' takes it: a kind of
    the TopK family (Kind.sparse) with F >= SPARSE_MIN_FEATURES and F >= SPARSE_MIN_FEATURES_PER_K·k."""
    n = cfg.n_features
    return KINDS[cfg.kind].sparse and n >= SPARSE_MIN_FEATURES and n >= SPARSE_MIN_FEATURES_PER_K * cfg.k


def sparse_topk_loss(sae: SparseAutoencoder, x: Tensor, dead: Tensor | None = None) -> dict[str, Tensor]:
    """SparseAutoencoder.loss of a topk / batchtopk SAE decoded from its k non-zero codes per row: the encoder
    GEMM is the only dense (B, d)·(d, F) product; decoding, AuxK and every gradient use the N = k·B kept entries
    (as the sparse decoder kernels of Gao et al. 2024, "Scaling and evaluating sparse autoencoders":
    openai/sparse_autoencoder kernels.py). Same values and gradients as the dense path; 'f' is the (N,) kept
    activations."""
    B, kind = x.shape[0], sae.kind
    _unalias_grads_(sae)
    xs, stats = sae.preprocess(x)  # (B, d)
    xbar = xs - sae.b_dec if kind.pre_bias else xs  # (B, d)
    with torch.no_grad():
        pre, ops = encoder_gemm(sae, xbar)  # (B, F), x̄ and W_enc as the GEMM read them
        code, pre_values = topk_code(sae, pre)  # (N,) kept entries
    f = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc').relu()  # (N,)
    W_rows = decoder_rows(sae, ops.W_enc.dtype)  # W_dec's rows (F, d) for the gathers and sampled_addmm
    with torch.autocast(x.device.type, enabled=False):
        err, recon = kind.sparse_recon(sae, xs, f, code, W_rows)  # (B, d) x̂ - x, the kind's reconstruction term
    fired = torch.zeros_like(sae.b_enc).index_add_(0, code.cols, (f.detach() > kind.fire_threshold).to(f.dtype)) > 0
    dead = kind.auxk_dead(sae, fired, B) if dead is None else dead
    aux = sparse_auxk_loss(sae, pre, xbar, err, dead, W_rows, ops)
    mse = sae._mse_in_input_units(err.detach().pow(2), stats)
    zero = err.new_zeros(())
    return {'loss': recon + sae.cfg.aux_coeff * aux, 'recon': recon, 'l1': zero, 'aux': aux, 'mse': mse,
            'f': f, 'fired': fired}


def sparse_auxk_loss(sae: SparseAutoencoder, pre: Tensor, xbar: Tensor, err: Tensor, dead: Tensor,
                     W_rows: DecoderRows, ops: EncoderOperands) -> Tensor:
    """The AuxK term (auxk_term) with ê from the top-k_aux dead pre-activations as a SparseCode: pre (B, F) without
    gradient (its scratch buffer, overwritten here), its gradient through SparseEncode of xbar (B, d); err = x̂ - x
    (B, d); dead (F,) bool; W_rows the step's decoder_rows; ops the encoder GEMM's operands."""
    e_hat = None
    if dead.any():
        with torch.no_grad():  # (B·k_aux,) the dead latents' top k_aux; in place: a fresh (B, F) costs page faults
            code, pre_values = row_topk_code(pre.masked_fill_(~dead, -math.inf), min(k_aux(sae.cfg), int(dead.sum())))
        z = sparse_encode(sae, xbar, pre_values, code, ops, 'sp_gW_enc_aux').relu()  # (B·k,)
        with torch.autocast(err.device.type, enabled=False):
            e_hat = sparse_decode(sae, z, code, W_rows, 'sp_gW_dec_aux')  # (B, d)
    return auxk_term(sae, e_hat, err)


def _sync_grads_(sae: SparseAutoencoder) -> None:
    """Average gradients over torchrun ranks (sae_step_ runs on the plain module, not a DDP wrapper)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for p in sae.parameters():
            dist.all_reduce(p.grad)
            p.grad.div_(dist.get_world_size())


@torch.no_grad()
def update_fire_counter_(sae: SparseAutoencoder, fired: Tensor, n_tokens: int) -> None:
    """tokens_since_fired += n_tokens, then 0 where fired (F,) bool; merged over ranks under torchrun."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        fired = fired.to(torch.uint8)
        dist.all_reduce(fired, op=dist.ReduceOp.MAX)
        n_tokens *= dist.get_world_size()
    sae.tokens_since_fired.add_(n_tokens).masked_fill_(fired.bool(), 0)


def silent_latents(sae: SparseAutoencoder, window_tokens: int) -> Tensor:
    """(F,) bool: latents that did not fire in the last window_tokens tokens (nor were resampled since): the dead
    neurons a resampling revives. (topk's AuxK dead set is TopK.auxk_dead.)"""
    return sae.tokens_since_fired >= window_tokens


def sae_step_(sae: SparseAutoencoder, opt: torch.optim.Optimizer, x: Tensor, l1_coeff: float = 0.0,
              autocast_dtype: torch.dtype | None = None, grad_clip: float = 0.0, fused: bool = True,
              want_l0: bool = False, sparse: bool = False) -> dict[str, Tensor]:
    """One training step on a batch x (B, d); returns detached stats {loss, recon, l1, aux, mse, fired (F,)[, l0]}.

    loss (fused=True: FusedL1Loss for the L1 kinds; sparse=True: sparse_topk_loss for the TopK family; else
    plain autograd) and .backward(), gradient
    averaging over torchrun ranks, parallel-gradient removal (unit-norm kinds), optional grad-norm clipping
    (april2024 trains with grad_clip=1.0), opt.step(), decoder renormalisation (unit-norm kinds), and the fire
    counters (tokens_since_fired) behind silent_latents and AuxK.
    autocast_dtype=torch.bfloat16 (or calling it inside torch.autocast) runs the matmuls in bf16; parameters,
    gradients, Adam and the loss stay fp32.
    Under torchrun pass the plain module: gradients are all-reduced here, not by a DDP wrapper.
    """
    dev = x.device.type
    if autocast_dtype is None and torch.is_autocast_enabled(dev):  # called inside torch.autocast(...)
        autocast_dtype = torch.get_autocast_dtype(dev)
    cdt = autocast_dtype or sae.W_enc.dtype
    opt.zero_grad(set_to_none=True)
    with torch.autocast(dev, dtype=cdt, enabled=cdt != sae.W_enc.dtype):
        out = sae.loss(x, l1_coeff, fused=fused, sparse=sparse)
    out['loss'].backward()
    _sync_grads_(sae)
    if grad_clip > 0 and sae.kind.clip_first:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
    renorm_first = sae.kind.unit_norm and sae.kind.renorm_before_step
    if renorm_first:
        unit_norm_decoder_(sae)  # openai train.py and the BatchTopK code: after backward, before the step
    if sae.kind.unit_norm:
        remove_parallel_grad_(sae, unit=True)  # columns are unit norm: renormalised just now or after the last step
    if grad_clip > 0 and not sae.kind.clip_first:
        torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
    opt.step()
    if sae.kind.unit_norm and not renorm_first:
        unit_norm_decoder_(sae)  # the paper: renormalised after every step
    update_fire_counter_(sae, out['fired'], x.shape[0])
    f = out.pop('f')
    sae.kind.after_step_(sae, f.detach())  # batchtopk: its threshold's running mean
    if want_l0:
        out['l0'] = (f > 0).sum(dtype=torch.float32) / x.shape[0]
    return {k: v.detach() for k, v in out.items()}


def train_step_(sae: SparseAutoencoder, opt: torch.optim.Optimizer, x: Tensor, step: int, recipe: Recipe,
                autocast_dtype: torch.dtype | None = None, want_l0: bool = False, sparse: bool = False) -> dict:
    """Step `step` (0-based) of a run: sets the recipe's lr and λ for this step (lr_at, l1_coeff_at), then
    sae_step_ with the recipe's gradient clipping (sparse: the TopK family by sparse_topk_loss). Returns
    sae_step_'s stats plus the lr and l1_coeff used."""
    lr = lr_at(step, recipe.max_steps, recipe.lr, recipe.warmup_frac, recipe.decay_frac, recipe.warmup_steps,
               recipe.warmup_shape, recipe.warmup_start)
    for group in opt.param_groups:
        group['lr'] = lr
    l1_coeff = l1_coeff_at(step, recipe.max_steps, recipe.l1_coeff, recipe.l1_warmup_frac, recipe.l1_warmup_steps)
    stats = sae_step_(sae, opt, x, l1_coeff, autocast_dtype, recipe.grad_clip, want_l0=want_l0, sparse=sparse)
    return {**stats, 'lr': lr, 'l1_coeff': l1_coeff}


# ----------------------------------------------------------------------------- resampling (Kind.resamples)

@torch.no_grad()
def per_row_loss(sae: SparseAutoencoder, rows: Tensor, chunk: int = 8192) -> Tensor:
    """Reconstruction loss ‖x - x̂‖² (summed over d) of each row of rows (N, d), in chunks -> (N,) float32."""
    out = []
    for xc in rows.split(chunk):
        xc = xc.to(sae.W_enc.device, sae.W_enc.dtype)
        x_hat, _ = sae(xc)
        out.append((x_hat - xc).float().pow(2).sum(1))
    return torch.cat(out)


@torch.no_grad()
def resample_dead_(sae: SparseAutoencoder, opt: torch.optim.Optimizer, dead: Tensor, rows: Tensor,
                   generator: torch.Generator | None = None, chunk: int = 8192) -> Tensor:
    """Anthropic's resampling of the dead features (F,) bool, using activation rows (N, d); returns their indices.

    Rows are drawn with probability ∝ (per-row reconstruction loss)² (without replacement unless there are
    fewer candidate rows than dead features). For each dead feature i with row x: W_dec[:, i] = x/‖x‖,
    W_enc[i] = x/‖x‖ · 0.2 · mean norm of the alive encoder rows, b_enc[i] = 0, and Adam's exp_avg / exp_avg_sq
    of exactly those rows / entries / columns are zeroed; tokens_since_fired[i] = 0. Nothing else changes.
    """
    idx = dead.nonzero().squeeze(1)
    if idx.numel() == 0:
        return idx
    p = per_row_loss(sae, rows, chunk).double().pow(2)  # (N,)
    if p.sum() <= 0:
        p = torch.ones_like(p)
    replace = idx.numel() > int((p > 0).sum())
    pick = torch.multinomial(p, idx.numel(), replacement=replace, generator=generator)  # (n_dead,)
    x = rows[pick.to(rows.device)].to(sae.W_enc.device, torch.float32)  # (n_dead, d)
    x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    enc_norm = torch.linalg.vector_norm(sae.W_enc[alive].float(), dim=1).mean() if alive.any() else 1.0
    sae.W_dec[:, idx] = x.T.to(sae.W_dec.dtype)
    sae.W_enc[idx] = (x * (0.2 * enc_norm)).to(sae.W_enc.dtype)
    sae.b_enc[idx] = 0
    for p_, sl in ((sae.W_enc, (idx,)), (sae.b_enc, (idx,)), (sae.W_dec, (slice(None), idx))):
        for key in ('exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'):
            if key in opt.state.get(p_, {}):
                opt.state[p_][key][sl] = 0
    sae.tokens_since_fired[idx] = 0
    return idx


# ----------------------------------------------------------------------------- SAELens export

@torch.no_grad()
def state_for_export(sae: SparseAutoencoder) -> dict[str, Tensor]:
    """SAELens layout, scale folded in: W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae), b_dec (d_in), and
    the kind's own (Kind.export_tensors: jumprelu, batchtopk and matryoshka_batchtopk write threshold (d_sae))."""
    s, b_enc = sae.scale.float(), sae.b_enc.float().clone()
    if sae.kind.pre_bias and sae.kind.fold_pre_bias:  # W_enc (x - b_dec) + b_enc = W_enc x + (b_enc - W_enc b_dec)
        b_enc -= sae.W_enc.float() @ sae.b_dec.float()
    return {'W_enc': (sae.W_enc.float() * s).T.contiguous(), 'W_dec': (sae.W_dec.float() / s).T.contiguous(),
            'b_enc': b_enc, 'b_dec': (sae.b_dec.float() / s).contiguous(), **sae.kind.export_tensors(sae)}


def saelens_cfg(sae: SparseAutoencoder, hook_name: str, model_name: str | None = None,
                hook_layer: int | None = None, context_size: int | None = None, **extra) -> dict:
    """cfg.json for SAELens' SAE.load_from_disk, in the flat pre-6.0 form that SAELens 6.x converts on load.

    model_name / hook_layer / context_size / hook_head_index / dataset_path are written (null when not
    given) because SAELens 5.x requires them; `extra` adds or overrides any key (e.g. dataset_path).
    """
    kind = sae.kind
    cfg = {'architecture': kind.saelens_architecture,
           'd_in': sae.cfg.d_in, 'd_sae': sae.cfg.n_features, 'dtype': 'float32', 'device': 'cpu',
           'hook_name': hook_name, 'apply_b_dec_to_input': kind.pre_bias and not kind.fold_pre_bias,
           'normalize_activations': sae.cfg.normalize, 'activation_fn': 'relu', 'activation_fn_str': 'relu',
           'model_name': model_name, 'hook_layer': hook_layer, 'context_size': context_size,
           'hook_head_index': None, 'dataset_path': None, 'prepend_bos': False,
           'finetuning_scaling_factor': False}
    cfg.update(kind.saelens_fields(sae.cfg))
    cfg['sae_kind'] = kind.name  # ours (load_saelens); SAELens ignores unknown keys
    return {**cfg, **extra}


def save_saelens(sae: SparseAutoencoder, out_dir: str, cfg: dict) -> None:
    """Write out_dir/sae_weights.safetensors and out_dir/cfg.json, each atomically (temp + rename)."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_bytes(os.path.join(out_dir, 'sae_weights.safetensors'), safetensors_bytes(state_for_export(sae)))
    atomic_write_json(os.path.join(out_dir, 'cfg.json'), cfg)


def load_saelens(path: str, device: torch.device | str = 'cpu', cfg: dict | None = None) -> SparseAutoencoder:
    """Read an SAELens directory (ours or SAELens' standard / topk / jumprelu / batchtopk) back into a
    SparseAutoencoder (scale 1); a b_dec subtracted (or not) unlike the kind does is folded into b_enc.
    cfg: its cfg.json when the caller has read it already (read from path otherwise)."""
    if cfg is None:
        with open(os.path.join(path, 'cfg.json')) as fh:
            cfg = json.load(fh)
    sd = load_file(os.path.join(path, 'sae_weights.safetensors'))
    name = cfg.get('sae_kind') or _kind_of_saelens(cfg, path).name
    if name not in KINDS:
        raise ConfigError(f"{path}: SAE kind '{name}' is not one of {', '.join(KINDS)}")
    kind = KINDS[name]
    normalize = cfg.get('normalize_activations') or 'none'
    if normalize not in NORMALIZE:
        raise ConfigError(f"{path}: normalize_activations '{normalize}' is not supported ({', '.join(NORMALIZE)})")
    sae = SparseAutoencoder(SAEConfig(d_in=cfg['d_in'], n_features=cfg['d_sae'], kind=kind.name, normalize=normalize,
                                      **kind.config_from_saelens(cfg)), device=device)
    with torch.no_grad():
        sae.W_enc.copy_(sd['W_enc'].T)
        sae.W_dec.copy_(sd['W_dec'].T)
        sae.b_enc.copy_(sd['b_enc'])
        sae.b_dec.copy_(sd['b_dec'])
        applied = cfg.get('apply_b_dec_to_input', True)
        if applied != kind.pre_bias:  # W_enc (x - b_dec) + b_enc = W_enc x + (b_enc - W_enc b_dec): fold it in
            sae.b_enc.add_(sd['b_dec'] @ sd['W_enc'], alpha=-1.0 if applied else 1.0)
        if cfg.get('rescale_acts_by_decoder_norm'):  # SAELens topk: pre·‖W_dec[:, i]‖, decoded f_i / ‖W_dec[:, i]‖
            norms = col_norms(sae.W_dec).clamp_min(1e-8)  # (F,) folded in as SAELens' fold_W_dec_norm (same f, x̂)
            sae.W_enc.mul_(norms[:, None])
            sae.b_enc.mul_(norms)
            sae.W_dec.div_(norms)
        kind.load_tensors_(sae, sd, path)
    return sae


def _kind_of_saelens(cfg: dict, path: str) -> Kind:
    """The kind of a SAELens cfg.json written by SAELens: the kind named as its architecture (jumprelu, topk), else
    the first with its architecture and b_dec use."""
    arch, pre_bias = cfg.get('architecture', 'standard'), cfg.get('apply_b_dec_to_input', True)
    if arch in KINDS:
        return KINDS[arch]
    kinds = [kind for kind in KINDS.values() if kind.saelens_architecture == arch]
    if not kinds:
        known = sorted({kind.saelens_architecture for kind in KINDS.values()})
        raise ConfigError(f"{path}: SAELens architecture '{arch}' is not supported ({' or '.join(known)})")
    return next((kind for kind in kinds if kind.pre_bias == pre_bias), kinds[0])


def config_dict(sae: SparseAutoencoder) -> dict:
    """The SAEConfig as a plain dict (for checkpoints: SparseAutoencoder(SAEConfig(**d))); the kinds' Params only
    where they differ from their defaults (a checkpoint holds what was set, not every kind's knobs)."""
    params = kind_params()
    return {key: v for key, v in vars(sae.cfg).items() if key not in params or v != params[key]}
