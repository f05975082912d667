"""
A trained run as the browser, the findings and the families read it: the transformer and its dataset
(load_transformer), an SAE export that reads one of its sites (load_sae, load_inputs), random contexts of a split
(pick_contexts), each batch of them through the transformer once (run_batches) and an SAE's features of it
(encode_batch), the vocabulary as text (load_vocab). Unusable inputs raise UserError with one line naming the file
and the fix; NaN/inf weights are refused.
"""
import os
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from autoencoder import SparseAutoencoder, load_saelens
from model import GPT, load_gpt, parse_site, site_name
from monosemanticity.common import (UserError, autocast, data_dir_of, load_checkpoint, load_data_meta, print0, progress,
                                    read_json, token_memmap, token_windows)
from monosemanticity.tokenizer import load_tokenizer

class Transformer(NamedTuple):
    """The transformer every SAE of a run (or sweep) reads, its dataset and the forward passes' settings."""
    model: GPT
    ckpt_path: str
    data_dir: str
    data_meta: dict  # the dataset's meta.json
    context_length: int  # tokens per context (T)
    device: str
    dtype: str
    autocast: object  # the autocast context of every forward pass


class Inputs(NamedTuple):
    model: GPT
    sae: SparseAutoencoder
    W_dec: torch.Tensor  # (F, d_in) float32: the decoder rows, the SAE's own
    site: str  # the hook the SAE reads, e.g. 'blocks.0.mlp_hidden'
    layer: int
    site_kind: str  # 'mlp_hidden', 'mlp_out', 'resid_post', ...
    final_site: str  # the last block's resid_post (ln_f and the unembedding turn it into logits)
    architecture: str  # SAELens cfg.json's 'architecture'
    ckpt_path: str
    sae_path: str
    data_dir: str
    data_meta: dict  # the dataset's meta.json
    context_length: int  # tokens per context (T)
    autocast: object  # the autocast context of every forward pass
    device: str
    dtype: str


def load_transformer(out_dir: str, transformer_ckpt: str, dataset: str, context_length: int, device: str,
                     dtype: str) -> Transformer:
    """The transformer (<out_dir>/transformer/ckpt.pt unless transformer_ckpt) and its dataset, checked."""
    ckpt_path = transformer_ckpt or os.path.join(out_dir, 'transformer', 'ckpt.pt')
    checkpoint = load_checkpoint(ckpt_path, 'cpu',
                                 hint="train one with train_transformer.py (or set --transformer_ckpt)")
    refuse_nonfinite(checkpoint.get('model', {}), ckpt_path,
                     "retrain it with train_transformer.py or set --transformer_ckpt")
    model = load_gpt(checkpoint, device)
    for p in model.parameters():
        p.requires_grad_(False)
    data_dir = data_dir_of(dataset or checkpoint.get('data', {}).get('dataset') or '')
    if not data_dir:
        raise UserError(f"{ckpt_path} names no dataset: set --dataset")
    data_meta = load_data_meta(data_dir)
    T = context_length or model.config.block_size
    if T > model.config.block_size:
        raise UserError(f"context_length={T} exceeds the model's block_size {model.config.block_size}")
    return Transformer(model, ckpt_path, data_dir, data_meta, T, device, dtype, autocast(device, dtype))


class LoadedSAE(NamedTuple):
    sae: SparseAutoencoder
    cfg: dict  # its cfg.json
    site: str  # the hook it reads
    layer: int
    site_kind: str


def load_sae(sae_path: str, transformer: Transformer) -> LoadedSAE:
    """An SAE export (autoencoder.load_saelens) that reads a site of the transformer; UserError if unusable."""
    sae_cfg = read_json(os.path.join(sae_path, 'cfg.json'), "train an SAE with train_sae.py (or set --sae_dir)")
    weights_path = os.path.join(sae_path, 'sae_weights.safetensors')
    if not os.path.isfile(weights_path):
        raise UserError(f"{weights_path} not found: train an SAE with train_sae.py first")
    site = sae_cfg.get('hook_name', '')
    try:
        layer, site_kind = parse_site(site)
    except ValueError as e:
        raise UserError(f"{sae_path}/cfg.json: {e}") from None
    n_layer = transformer.model.config.n_layer
    if layer >= n_layer:
        raise UserError(f"the SAE reads {site} but {transformer.ckpt_path} has {n_layer} layer(s)")
    try:
        sae = load_saelens(sae_path, device=transformer.device, cfg=sae_cfg).eval()  # cfg.json read once, above
    except ValueError as e:
        raise UserError(str(e)) from None
    sae_params = dict(sae.named_parameters())
    refuse_nonfinite(sae_params, weights_path,
                     "the SAE diverged: retrain it with train_sae.py (e.g. a lower lr) or set --sae_dir")
    for p in sae.parameters():
        p.requires_grad_(False)
    return LoadedSAE(sae, sae_cfg, site, layer, site_kind)


def load_inputs(transformer: Transformer, sae_path: str) -> Inputs:
    """The transformer and the SAE the browser shows (load_sae); UserError if unusable."""
    sae, sae_cfg, site, layer, site_kind = load_sae(sae_path, transformer)
    if sae.cfg.normalize != 'none':  # x̂ = (W_dec f + b_dec)·std + mean: a feature's contribution scales per token
        raise UserError(f"{sae_path}: the feature browser does not support SAEs trained with normalize="
                        f"'{sae.cfg.normalize}' yet (its ablation and logit panels assume x̂ = W_dec f + b_dec): "
                        f"train one with --normalize=none to browse it")
    n_layer = transformer.model.config.n_layer
    return Inputs(transformer.model, sae, sae.W_dec.detach().float().T.contiguous(), site, layer, site_kind,
                  site_name(n_layer - 1, 'resid_post'), sae_cfg.get('architecture', 'standard'),
                  transformer.ckpt_path, sae_path, transformer.data_dir, transformer.data_meta,
                  transformer.context_length, transformer.autocast, transformer.device, transformer.dtype)


def refuse_nonfinite(tensors: dict[str, torch.Tensor], path: str, fix: str) -> None:
    """One line naming the first tensor with NaN/inf entries (a diverged run): its statistics would be noise."""
    for name, t in tensors.items():
        n_bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if n_bad:
            raise UserError(f"{path}: {name} has {n_bad:,} non-finite (NaN/inf) entries of {t.numel():,}: {fix}")


@dataclass(frozen=True)
class TokenFile:
    data_dir: str
    split: str
    dtype: str  # meta.json's token dtype
    device: str

    def __len__(self) -> int:
        return len(token_memmap(self.data_dir, self.split, self.dtype))

    def read(self, starts: np.ndarray, length: int) -> torch.Tensor:
        """(B, length+1) int64 tokens on device: each chunk plus the token after it (the last position's target)."""
        return token_windows(token_memmap(self.data_dir, self.split, self.dtype), starts, length + 1).to(self.device)


def pick_chunks(n_tokens: int, length: int, n: int, rng: np.random.Generator, where: str) -> np.ndarray:
    """Start offsets of n random non-overlapping chunks of length+1 tokens (sorted)."""
    n_chunks = (n_tokens - 1) // length
    if n_chunks < 1:
        raise UserError(f"{where} has {n_tokens} tokens, fewer than context_length+1 = {length + 1}")
    return np.sort(rng.choice(n_chunks, size=min(n, n_chunks), replace=False)) * length


class Contexts(NamedTuple):
    file: TokenFile
    starts: np.ndarray  # (n,) sorted token offsets of the contexts in <split>.bin
    length: int  # T tokens per context
    batches: list[tuple[int, int]]  # context ranges [b0, b1) of the forward passes
    quiet: bool = False  # no progress bars (a member of a sweep site: one line per SAE)

    @property
    def n(self) -> int:
        return len(self.starts)

    @property
    def n_tokens(self) -> int:
        return len(self.starts) * self.length

    def read(self, b0: int, b1: int) -> torch.Tensor:
        """Contexts b0 .. b1-1 as (b1-b0, T+1) tokens."""
        return self.file.read(self.starts[b0:b1], self.length)

    def bar(self, desc: str):
        """The batches, with a progress bar unless quiet."""
        return progress(self.batches, desc=desc, disable=self.quiet)


def pick_contexts(file: TokenFile, length: int, n: int, batch_size: int, rng: np.random.Generator,
                  quiet: bool = False) -> Contexts:
    """n random non-overlapping contexts of `length` tokens (fewer if the split is short), in batches; quiet: no
    progress bars over them."""
    starts = pick_chunks(len(file), length, n, rng, f"{file.split}.bin in {file.data_dir}")
    if len(starts) < n:
        print0(f"note: {file.split}.bin holds only {len(starts)} contexts of {length} tokens (asked for {n})")
    batches = [(b0, min(b0 + batch_size, len(starts))) for b0 in range(0, len(starts), batch_size)]
    return Contexts(file, starts, length, batches, quiet)


class Batch(NamedTuple):
    """A batch of contexts through the transformer once: what every SAE of a build reads of it."""
    b0: int  # its contexts are b0 ... b1-1
    b1: int
    tokens: torch.Tensor  # (B, T+1) the contexts and each one's next token
    acts: dict[str, torch.Tensor]  # the captured sites' activations (B, T, d) each, in the forward pass's dtype


@torch.no_grad()
def run_batches(model: GPT, autocast, contexts: Contexts, capture: list[str], desc: str,
                wanted: Callable[[int, int], bool] | None = None) -> Iterator[Batch]:
    """The batches of the contexts (those `wanted` keeps), each through the model once (in the autocast context),
    up to the last captured site (no logits)."""
    for b0, b1 in contexts.bar(desc):
        if wanted is not None and not wanted(b0, b1):
            continue
        tokens = contexts.read(b0, b1)
        with autocast:
            _, _, acts = model.run(tokens[:, :-1], capture=capture, need_logits=False)
        yield Batch(b0, b1, tokens, acts)


@torch.no_grad()
def encode_batch(inputs: Inputs, batch: Batch) -> torch.Tensor:
    """The SAE's features f (B*T, F) float32 of the batch's contexts (its site's activations through its encoder)."""
    with inputs.autocast:
        f = inputs.sae.encode(batch.acts[inputs.site].reshape(-1, inputs.W_dec.size(1)))
    return f.float()


# ----------------------------------------------------------------------------- the vocabulary

def load_vocab(data_dir: str, data_meta: dict, V: int) -> list:
    """Per token id: its text (valid UTF-8), or its bytes as a list of ints (partial UTF-8); '⟨id⟩' if unknown."""
    if data_meta.get('tokenizer') == 'bpe' and not data_meta.get('tokenizer_file'):
        print0(f"note: {data_dir}/meta.json names no tokenizer file; tokens are shown as ⟨id⟩")
        return [f'⟨{i}⟩' for i in range(V)]
    try:
        enc = load_tokenizer(data_dir)
    except UserError as e:  # e.g. gpt2's ranks not cached and no network: still a usable site
        print0(f"note: {e}; tokens are shown as ⟨id⟩")
        return [f'⟨{i}⟩' for i in range(V)]
    vocab = []
    for i in range(V):
        try:
            b = enc.decode_single_token_bytes(i)
        except (KeyError, ValueError):
            vocab.append(f'⟨{i}⟩')
            continue
        try:
            vocab.append(b.decode('utf-8'))
        except UnicodeDecodeError:
            vocab.append(list(b))
    return vocab
