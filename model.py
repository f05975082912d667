"""
nanoGPT's GPT (karpathy/nanoGPT model.py) with a choice of MLP activation and named hook sites.

Hook sites, per layer i (all (B, T, C) except mlp_hidden, which is (B, T, 4C)):
    blocks.{i}.resid_pre   input to the block
    blocks.{i}.attn_out    attention output (after its projection)
    blocks.{i}.resid_mid   resid_pre + attn_out
    blocks.{i}.mlp_hidden  MLP hidden activations after the nonlinearity (the paper's SAE site)
    blocks.{i}.mlp_out     MLP output (after its projection)
    blocks.{i}.resid_post  resid_mid + mlp_out

`GPT.run(idx, capture=..., replace=...)` captures any sites and replaces any site with a function in one
forward pass, and stops after the last captured site when no logits are wanted. `GPT.forward(idx, targets)`
returns (logits, loss) as nanoGPT does.
"""
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

SITES = ('resid_pre', 'attn_out', 'resid_mid', 'mlp_hidden', 'mlp_out', 'resid_post')


def site_name(layer: int, site: str) -> str:
    """(0, "mlp_hidden") -> "blocks.0.mlp_hidden": the one place a hook site's name is built (parse_site reads it)."""
    return f'blocks.{layer}.{site}'


def parse_site(name: str) -> tuple[int, str]:
    """'blocks.0.mlp_hidden' -> (0, 'mlp_hidden'); ValueError with a readable message otherwise."""
    parts = name.split('.')
    if len(parts) != 3 or parts[0] != 'blocks' or not parts[1].isdigit() or parts[2] not in SITES:
        raise ValueError(f"hook site '{name}' is not of the form blocks.<layer>.<{'|'.join(SITES)}>")
    return int(parts[1]), parts[2]


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):

    def __init__(self, config: 'GPTConfig'):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                           dropout_p=self.dropout if self.training else 0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config: 'GPTConfig'):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU() if config.activation == 'gelu' else nn.ReLU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)


def _no_hook(name: str, x: torch.Tensor) -> torch.Tensor:
    return x


class Block(nn.Module):

    def __init__(self, config: 'GPTConfig'):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, hook: Callable[[str, torch.Tensor], torch.Tensor] = _no_hook) -> torch.Tensor:
        """hook(site, tensor) -> tensor is called at every site of the block (capture/replace)."""
        x = hook('resid_pre', x)
        a = hook('attn_out', self.attn(self.ln_1(x)))
        x = hook('resid_mid', x + a)
        h = hook('mlp_hidden', self.mlp.act(self.mlp.c_fc(self.ln_2(x))))  # (B, T, 4C)
        m = hook('mlp_out', self.mlp.dropout(self.mlp.c_proj(h)))
        return hook('resid_post', x + m)


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2 vocab_size of 50257, padded up to nearest multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # True: bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster
    activation: str = 'gelu'  # 'gelu' (nanoGPT, the seed) or 'relu' (Anthropic's 1-layer models)


class _StopForward(Exception):
    """Raised after the last captured site when no logits are needed."""


class GPT(nn.Module):

    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        if config.activation not in ('gelu', 'relu'):
            raise ValueError(f"activation '{config.activation}' is not 'gelu' or 'relu'")
        self.config = config

        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: https://paperswithcode.com/method/weight-tying
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # scaled init to the residual projections, per GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings are subtracted by default (token ones are tied to lm_head)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def run(self, idx: torch.Tensor, targets: torch.Tensor | None = None, capture: Iterable[str] = (),
            replace: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None, need_logits: bool = True,
            reduction: str = 'mean') -> tuple[torch.Tensor | None, torch.Tensor | None, dict[str, torch.Tensor]]:
        """
        One forward pass over idx (B, T). Returns (logits (B, T, V) or None, loss or None, acts).
        capture: site names whose activations are returned in `acts` (the values before any replacement).
        replace: site name -> function of the activation returning its replacement (spliced SAE, ablations).
        need_logits=False with no targets stops right after the last captured site.
        reduction: 'mean' (a scalar loss, ignore_index -1) or 'none' (per-token loss, (B, T)).
        """
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, f"sequence of length {t} > block size {self.config.block_size}"
        capture, replace = set(capture), dict(replace or {})
        for name in capture | set(replace):
            layer, _ = parse_site(name)
            if layer >= self.config.n_layer:
                raise ValueError(f"hook site '{name}': the model has {self.config.n_layer} layer(s)")
        acts: dict[str, torch.Tensor] = {}
        stop_early = not need_logits and targets is None and bool(capture)
        remaining = set(capture)

        def make_hook(i: int) -> Callable[[str, torch.Tensor], torch.Tensor]:
            def hook(site: str, x: torch.Tensor) -> torch.Tensor:
                name = site_name(i, site)
                if name in capture:
                    acts[name] = x
                    remaining.discard(name)
                if name in replace:
                    x = replace[name](x)
                if stop_early and not remaining:
                    raise _StopForward
                return x
            return hook

        pos = torch.arange(0, t, dtype=torch.long, device=device)  # shape (t)
        tok_emb = self.transformer.wte(idx)  # token embeddings of shape (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # position embeddings of shape (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        try:
            for i, block in enumerate(self.transformer.h):
                x = block(x, make_hook(i) if (capture or replace) else _no_hook)
        except _StopForward:
            return None, None, acts
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1,
                                   reduction=reduction)
            if reduction == 'none':
                loss = loss.view(b, t)
        return logits, loss, acts

    def forward(self, idx: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """nanoGPT's forward: (logits, loss) with targets; logits of the last position only without."""
        if targets is not None:
            logits, loss, _ = self.run(idx, targets)
            return logits, loss
        logits, _, _ = self.run(idx[:, -self.config.block_size:])
        return logits[:, [-1], :], None  # note: using list [-1] to preserve the time dim

    def crop_block_size(self, block_size: int) -> None:
        """Model surgery to decrease the block size if necessary."""
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas: tuple[float, float],
                             device_type: str) -> torch.optim.Optimizer:
        """AdamW; weight decay on 2D params (matmuls, embeddings), none on biases and LayerNorm weights."""
        param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {'params': decay_params, 'weight_decay': weight_decay},
            {'params': nodecay_params, 'weight_decay': 0.0},
        ]
        fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == 'cuda'
        extra_args = dict(fused=True) if use_fused else dict()
        return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)

    def flops_per_token(self) -> float:
        """Training FLOPs per token (6N + attention), PaLM appendix B."""
        N = self.get_num_params()
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    def estimate_mfu(self, fwdbwd_per_iter: int, dt: float, peak_flops: float = 312e12) -> float:
        """Model flops utilization relative to `peak_flops` (default: A100 bf16 peak, 312 TFLOPS)."""
        flops_per_iter = self.flops_per_token() * self.config.block_size * fwdbwd_per_iter
        return flops_per_iter / dt / peak_flops

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None) -> torch.Tensor:
        """Sample max_new_tokens continuations of idx (b, t), feeding predictions back in."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('Inf')
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def load_gpt(ckpt: dict, device: str = 'cpu') -> GPT:
    """A GPT from a train_transformer.py checkpoint dict (keys model_args, model), in eval mode."""
    model = GPT(GPTConfig(**ckpt['model_args']))
    state_dict = {k.removeprefix('_orig_mod.'): v for k, v in ckpt['model'].items()}
    model.load_state_dict(state_dict)
    return model.to(device).eval()
