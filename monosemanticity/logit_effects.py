"""
What a feature does to the next-token prediction: its logit weights (decoder direction -> c_proj -> final LayerNorm
linearised: centred, times ln_f.weight, times E[1/σ] of the final residual -> unembedding) and, in pass 3 over the
shown windows only (±window tokens), the per-token activations and the ablation effect: the change of the log-prob of
each actual next token when the feature's contribution f_i·W_dec[i] is removed from the site (Pass3Windows, fed a
batch of contexts at a time like feature_stats' passes). Exact and cheap for a site in the last layer (the MLP output
reaches only the logits of its own position: 'local'); other sites rerun the model per window ('rerun'). Past
dense_mb the (F, V) logit directions are computed a block of rows at a time.
"""
import math
from typing import Iterator, NamedTuple

import torch

from model import GPT
from monosemanticity.feature_stats import HIST_BINS, ROWS_PER_CHUNK, Windows
from monosemanticity.runs import Batch, Contexts, Inputs

N_LOGITS = 10  # top and bottom logit weights shown


# ----------------------------------------------------------------------------- logit directions

class LogitHead(NamedTuple):
    """The final LayerNorm + unembedding written as logits = W_U(γ⊙x_c)/σ + W_U β (x_c: x centred)."""
    gamma: torch.Tensor  # (C,) ln_f.weight
    W_U: torch.Tensor  # (V, C)
    bias: torch.Tensor  # (V,) W_U β
    bias_max: torch.Tensor  # () max of bias
    exp_bias: torch.Tensor  # (V,) exp(bias - bias_max)
    lse_shift: bool  # the log-sum-exp needs a row max (logits may overflow exp())

    def logprob_rows_(self, z: torch.Tensor, inv_sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Rows z (n, V) = W_U(γ⊙x_c) and 1/σ (n,) -> log p(y) (n,) of the logits z/σ + W_U β. Overwrites z."""
        zy = z.gather(1, y[:, None])[:, 0] * inv_sigma + self.bias[y]
        z.mul_(inv_sigma[:, None])
        shift = z.max(1, keepdim=True).values if self.lse_shift else torch.zeros(len(z), 1, device=z.device)
        if self.lse_shift:
            z.sub_(shift)
        lse = torch.log(z.exp_() @ self.exp_bias) + shift[:, 0] + self.bias_max
        return zy - lse


def logit_head(model: GPT) -> LogitHead:
    """The model's ln_f and lm_head as a LogitHead (float32)."""
    gamma = model.transformer.ln_f.weight.float()
    W_U = model.lm_head.weight.float()  # (V, C)
    V = W_U.size(0)
    ln_f_bias = model.transformer.ln_f.bias
    bias = (W_U @ ln_f_bias.float()) if ln_f_bias is not None else torch.zeros(V, device=W_U.device)
    # |logit_v - (W_U β)_v| = |<γ⊙LN-normalised x, W_U[v]>| <= √C·max|γ|·max‖W_U[v]‖: below ~80 - ln V, exp() of
    # the unshifted logits can neither overflow nor underflow to a zero sum, so the log-sum-exp needs no row max
    lse_shift = (math.sqrt(W_U.size(1)) * gamma.abs().max() * W_U.norm(dim=1).max()).item() + math.log(V) > 80
    bias_max = bias.max()
    return LogitHead(gamma, W_U, bias, bias_max, (bias - bias_max).exp(), lse_shift)


class FeatureLogits(NamedTuple):
    centred: torch.Tensor  # (F, C) u_i - mean(u_i), u_i = feature i's direct effect on the final residual
    direct: torch.Tensor | None  # (F, V) Z_u = W_U(γ⊙centred): its effect on the logits before the LayerNorm's 1/σ;
    # None when it exceeds the memory budget: rows() then computes the rows asked for
    gamma: torch.Tensor  # (C,) ln_f.weight
    W_U: torch.Tensor  # (V, C)
    block_rows: int  # rows of Z_u that fit in the memory budget (pass 3 computes them a block at a time)

    def rows(self, idx, out: torch.Tensor | None = None) -> torch.Tensor:
        """Z_u of the features idx (a slice or an index tensor): (n, V), into out if given."""
        if self.direct is not None:
            return self.direct[idx] if out is None else torch.index_select(self.direct, 0, idx, out=out)
        return torch.matmul(self.centred[idx] * self.gamma, self.W_U.T, out=out)


def resid_direction(model: GPT, layer: int, site_kind: str, W: torch.Tensor) -> torch.Tensor:
    """Site directions (n, d_in) -> their direct effect on the residual stream (n, n_embd)."""
    if site_kind == 'mlp_hidden':
        return W @ model.transformer.h[layer].mlp.c_proj.weight.T  # (n, C)
    return W


@torch.no_grad()
def feature_logit_directions(head: LogitHead, U: torch.Tensor, dense_mb: float = float('inf')) -> FeatureLogits:
    """U (F, C) the features' residual directions -> FeatureLogits. Times E[1/σ] (the LayerNorm linearised)
    `direct` gives the logit weights; pass 3's exact ablation uses both. The (F, V) `direct` is kept only if it
    fits in dense_mb MB; else its rows are computed when asked for (FeatureLogits.rows)."""
    centred = U - U.mean(1, keepdim=True)  # LayerNorm removes the mean
    row_bytes = head.W_U.size(0) * 4
    if len(U) * row_bytes > dense_mb * 2 ** 20:
        return FeatureLogits(centred, None, head.gamma, head.W_U, max(64, int(dense_mb * 2 ** 20 // row_bytes)))
    direct = torch.cat([(centred[f0:f0 + 512] * head.gamma) @ head.W_U.T for f0 in range(0, len(U), 512)])
    return FeatureLogits(centred, direct, head.gamma, head.W_U, len(U))


class ShownWindows(NamedTuple):
    tokens: torch.Tensor  # (W, L+1) int32 token ids from start to end + 1, -1 after
    acts: torch.Tensor  # (W, L) the feature's activation at start .. end, 0 after
    effects: torch.Tensor  # (W, L) log p(next token) clean - with the feature ablated, at start .. end


def ablation_buffers(V: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The two (pairs, V) float32 work buffers of the local ablation (16 MB each), shared by every SAE's pass 3."""
    pair_chunk = max(64, 2 ** 22 // V)  # (feature, position) pairs per ablation chunk
    return tuple(torch.empty(pair_chunk, V, device=device) for _ in range(2))


class Pass3Windows:
    """Pass 3 of one SAE: the tokens, activations and ablation effects (mode 'local', 'rerun' or 'none') of every
    window (.shown), fed the batches of contexts that hold its windows (wants) one at a time (add_). buffers:
    ablation_buffers, for mode 'local'."""

    def __init__(self, inputs: Inputs, contexts: Contexts, windows: Windows, mode: str, head: LogitHead,
                 directions: FeatureLogits | None, batch_size: int, buffers: tuple = ()):
        n_win, L, dev = len(windows.ctx), windows.width, windows.ctx.device
        self.inputs, self.windows, self.mode, self.head, self.directions = inputs, windows, mode, head, directions
        self.T, self.batch_size, self.buffers = contexts.length, batch_size, buffers
        self.shown = ShownWindows(torch.full((n_win, L + 1), -1, dtype=torch.int32, device=dev),
                                  torch.zeros(n_win, L, device=dev), torch.zeros(n_win, L, device=dev))
        starts = [b for b, _ in contexts.batches] + [contexts.n]  # each batch's first window, then the end
        self.first = dict(zip(starts, torch.searchsorted(windows.ctx, torch.tensor(starts, device=dev)).tolist()))

    def wants(self, b0: int, b1: int) -> bool:
        return self.first[b0] < self.first[b1]

    def add_(self, batch: Batch, f: torch.Tensor) -> None:
        """The batch's features f (B*T, F) (and its final residual, captured in batch.acts)."""
        windows, shown, T, L, mode = self.windows, self.shown, self.T, self.windows.width, self.mode
        lo, hi, tokens, dev = self.first[batch.b0], self.first[batch.b1], batch.tokens, f.device
        c, feat = windows.ctx[lo:hi] - batch.b0, windows.feat[lo:hi]
        start, end = windows.start[lo:hi], windows.end[lo:hi]
        grid = start[:, None] + torch.arange(L + 1, device=dev)  # (W, L+1) positions
        shown.tokens[lo:hi] = torch.where(grid <= (end[:, None] + 1), tokens[c[:, None], grid.clamp(max=T)], -1)
        pos = grid[:, :L]
        a = f.view(-1, T, f.size(1))[c[:, None], pos.clamp(max=T - 1), feat[:, None]]
        a = torch.where(pos <= end[:, None], a, 0.0)
        shown.acts[lo:hi] = a
        if mode == 'none':
            return
        r = batch.acts[self.inputs.final_site].float()  # (B, T, C)
        wi, j = (a > 0).nonzero().unbind(1)  # firing positions: elsewhere the ablation changes nothing
        if mode == 'local':
            shown.effects[lo + wi, j] = local_ablation_effects(
                self.head, self.directions, r.reshape(-1, r.size(-1)), tokens[:, 1:].reshape(-1), feat[wi],
                c[wi] * T + pos[wi, j], a[wi, j], self.buffers)
        else:
            shown.effects[lo + wi, j] = rerun_ablation_effects(self.inputs, tokens, r, c, feat, end, wi, pos[wi, j],
                                                               self.batch_size)


def local_ablation_effects(head: LogitHead, directions: FeatureLogits, resid: torch.Tensor, y_next: torch.Tensor,
                           feat: torch.Tensor, row: torch.Tensor, act: torch.Tensor,
                           buffers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Exact effect of removing act·u_feat from the final residual at one position, for M (feature, position) pairs.

    resid (N, C) final residual rows, y_next (N,) each row's next token; feat, row, act (M,) the pairs (row indexes
    resid). Returns (M,) log p(y_next) clean - ablated. Valid for a site in the last layer, where the removed
    contribution reaches only its own position's logits. buffers: two (chunk, V) float32 work buffers.
    """
    # LN(r - a·u) = γ⊙(r_c - a·u_c)/σ' + β, so its logits are (Z_r - a·Z_u)/σ' + W_U β with Z_r = W_U(γ⊙r_c)
    # per position and Z_u per feature: exact, without a (pairs x C x V) matmul. Chunks share positions.
    # a (feature, position) pair shown in two windows (e.g. a top example that is also an interval sample) is
    # computed once; pairs are sorted by position so that a chunk needs few Z_r rows. Without the whole Z_u
    # (past the memory budget) the pairs go by blocks of features whose Z_u rows are computed once for the batch
    n_rows, chunk = len(resid), len(buffers[0])
    pair, first = torch.unique(feat * n_rows + row, return_inverse=True)
    pair_feat, pair_row = pair // n_rows, pair % n_rows
    pair_act = torch.zeros(len(pair), device=resid.device).scatter_(0, first, act)
    effect = torch.empty(len(pair), device=resid.device)
    for in_block, Z_u, z_u_row in feature_blocks(directions, pair_feat):
        order = in_block[torch.argsort(pair_row[in_block], stable=True)]
        for m0 in range(0, len(order), chunk):
            o = order[m0:m0 + chunk]
            m, f_o, a_o = len(o), pair_feat[o], pair_act[o]
            rows, inv = torch.unique(pair_row[o], return_inverse=True)
            r_c = resid[rows] - resid[rows].mean(1, keepdim=True)  # (u, C) centred final residual
            z_clean = (r_c * head.gamma) @ head.W_U.T  # (u, V)
            r_abl = r_c[inv] - a_o[:, None] * directions.centred[f_o]  # (m, C) centred residual, feature removed
            z_abl = torch.index_select(z_clean, 0, inv, out=buffers[0][:m])
            z_u = (directions.rows(f_o, out=buffers[1][:m]) if Z_u is None
                   else torch.index_select(Z_u, 0, z_u_row[o], out=buffers[1][:m]))  # (m, V)
            z_abl.addcmul_(z_u, a_o[:, None], value=-1)  # Z_r - a·Z_u
            lp_abl = head.logprob_rows_(z_abl, (r_abl.pow(2).mean(1) + 1e-5).rsqrt(), y_next[pair_row[o]])
            lp_clean = head.logprob_rows_(z_clean, (r_c.pow(2).mean(1) + 1e-5).rsqrt(), y_next[rows])
            effect[o] = lp_clean[inv] - lp_abl
    return effect[first]


def feature_blocks(directions: FeatureLogits, feat: torch.Tensor) -> Iterator[tuple]:
    """The entries of feat (M,) by blocks of at most directions.block_rows distinct features, of even sizes: (their
    indices in feat, the block's Z_u rows (n, V), each entry's row in them (M,)). One block when Z_u is held whole;
    one block without rows (None, None: each entry's row computed with it) when features repeat less than twice
    on average, where rows made per block would cost as much and share fewer positions' Z_r.
    (Blocks of >= 64 rows: a GEMM of one row may round otherwise than the dense Z_u's.)"""
    every = torch.arange(len(feat), device=feat.device)
    if directions.direct is not None:
        yield every, directions.direct, feat
        return
    ids, row = torch.unique(feat, return_inverse=True)
    if len(feat) < 2 * len(ids):
        yield every, None, None
        return
    if not len(ids):
        return
    n_blocks = -(-len(ids) // directions.block_rows)
    for block in torch.arange(len(ids), device=feat.device).tensor_split(n_blocks):
        b0, b1 = int(block[0]), int(block[-1]) + 1
        yield ((row >= b0) & (row < b1)).nonzero()[:, 0], directions.rows(ids[b0:b1]), row - b0


@torch.no_grad()
def rerun_ablation_effects(inputs: Inputs, tokens: torch.Tensor, resid: torch.Tensor, win_ctx: torch.Tensor,
                           win_feat: torch.Tensor, win_end: torch.Tensor, wi: torch.Tensor, pos: torch.Tensor,
                           batch_size: int) -> torch.Tensor:
    """The model rerun per window with the site replaced by x - f_i·W_dec[i] (batch_size windows at a time).

    tokens (B, T+1), resid (B, T, C) their clean final residual; windows (W,): context in the batch, feature, last
    position; firings (M,): window wi at position pos. Returns (M,) log p(next token) clean - ablated."""
    model, site, final_site = inputs.model, inputs.site, inputs.final_site
    cw = win_ctx[wi]
    y = tokens[cw, pos + 1]
    effect = torch.empty(len(wi), device=tokens.device)
    for m0 in range(0, len(win_ctx), batch_size):
        rows = torch.arange(m0, min(m0 + batch_size, len(win_ctx)), device=tokens.device)
        feats = win_feat[rows]

        def ablate(xs: torch.Tensor, feats=feats) -> torch.Tensor:
            fi = inputs.sae.encode(xs.reshape(-1, xs.size(-1))).view(*xs.shape[:2], len(inputs.W_dec)).float()
            fi = fi.gather(2, feats[:, None, None].expand(-1, xs.size(1), 1))  # (W, T', 1)
            return xs - (fi * inputs.W_dec[feats][:, None, :]).to(xs.dtype)

        t_max = int(win_end[rows].max()) + 1
        with inputs.autocast:
            _, _, acts = model.run(tokens[win_ctx[rows], :t_max], capture=[final_site], replace={site: ablate},
                                   need_logits=False)
        r_abl = acts[final_site] if site != final_site else ablate(acts[final_site])  # capture is pre-replacement
        sel = ((wi >= m0) & (wi < m0 + len(rows))).nonzero()[:, 0]
        effect[sel] = (final_logprob(model, resid[cw[sel], pos[sel]], y[sel])
                       - final_logprob(model, r_abl[wi[sel] - m0, pos[sel]].float(), y[sel]))
    return effect


@torch.no_grad()
def final_logprob(model: GPT, resid: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Final residual rows (M, C), next tokens (M,) -> log p(next token) (M,) through ln_f and the unembedding."""
    out = torch.empty(len(y), device=resid.device)
    for m0 in range(0, len(y), 1024):
        logits = model.lm_head(model.transformer.ln_f(resid[m0:m0 + 1024])).float()
        out[m0:m0 + 1024] = logits.gather(1, y[m0:m0 + 1024, None])[:, 0] - torch.logsumexp(logits, 1)
    return out


# ----------------------------------------------------------------------------- logit weights

class LogitWeights(NamedTuple):
    top_ids: torch.Tensor  # (F, N_LOGITS) the tokens whose logits the feature raises most
    top: torch.Tensor  # (F, N_LOGITS) their weights
    bottom_ids: torch.Tensor  # (F, N_LOGITS) ... lowers most
    bottom: torch.Tensor
    hist: torch.Tensor  # (F, HIST_BINS) int64 histogram of all V weights over [lo, hi]
    lo: torch.Tensor  # (F,)
    hi: torch.Tensor  # (F,)


@torch.no_grad()
def logit_weights(directions: FeatureLogits, ln_scale: float) -> LogitWeights:
    """Z_u (F, V), by rows -> the logit weights Z_u·E[1/σ] (the LayerNorm's σ taken as the constant 1/E[1/σ])."""
    n_feat = len(directions.centred)
    w = LogitWeights(*(torch.zeros(n_feat, N_LOGITS, dtype=dt) for dt in (torch.long, None, torch.long, None)),
                     torch.zeros(n_feat, HIST_BINS, dtype=torch.long), torch.zeros(n_feat), torch.zeros(n_feat))
    for f0 in range(0, n_feat, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        lw = directions.rows(sl) * ln_scale  # (n, V)
        v, i = lw.topk(N_LOGITS, dim=1)
        w.top_ids[sl], w.top[sl] = i.cpu(), v.cpu()
        v, i = lw.topk(N_LOGITS, dim=1, largest=False)
        w.bottom_ids[sl], w.bottom[sl] = i.cpu(), v.cpu()
        lo, hi = lw.min(1).values, lw.max(1).values
        b = ((lw - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None] * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
        w.hist[sl] = torch.zeros(len(b), HIST_BINS, dtype=torch.long, device=lw.device).scatter_add_(
            1, b, torch.ones_like(b)).cpu()
        w.lo[sl], w.hi[sl] = lo.cpu(), hi.cpu()
    return w
