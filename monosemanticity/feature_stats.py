"""
The feature browser's statistics of every feature at once, in streaming passes over the contexts (RAM does not grow
with their number; nothing of size n_tokens x n_features is kept). Each pass of an SAE is an object fed one batch of
contexts at a time (add_: the batch, as runs.run_batches ran it through the transformer, and the SAE's features of
it), so that one forward pass per batch feeds every SAE of a sweep (site.py):
  pass 1  density, max/mean activation, top_k contexts per feature (one example per context), the tokens each
          feature fires on (TokenCounts), co-activation counts (CoactCounts, first coact_tokens tokens), the final
          residual's scale
  pass 2  activation histograms and the n_intervals equal-width intervals of (0, max]: their share of the
          activations and interval_samples random examples each (one per context)
  then    the shown windows (select_windows; pass 3 is logit_effects.Pass3Windows), decoder-cosine and
          co-activation neighbours, the tokens each feature fires on most, the features of the example texts.
The (F, V) token counts and (F, F) co-activation counts are dense while they fit in dense_mb, else exact and sparse.
"""
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from monosemanticity.runs import Batch, Contexts, Inputs, TokenFile, pick_chunks

HIST_BINS = 40  # bins of the activation and logit-weight histograms
N_NEIGHBOURS = 10  # decoder-cosine and co-activation neighbours per feature
N_TOP_TOKENS = 10  # tokens a feature fires on most
EXAMPLE_MAX_FEATURES = 64  # most active features kept per token of an example text
ROWS_PER_CHUNK = 256  # features per step of the logit-weight and neighbour computations


# ----------------------------------------------------------------------------- pass 1: density, max, top-k, tokens

class Pass1(NamedTuple):
    n_fire: torch.Tensor  # (F,) int64 tokens the feature fires on (f > 0)
    act_sum: torch.Tensor  # (F,) float64 sum of its activations
    act_max: torch.Tensor  # (F,) float32
    top_act: torch.Tensor  # (top_k, F) the best per-context maxima, descending (0 = no example)
    top_ctx: torch.Tensor  # (top_k, F) their context (-1 = none)
    top_pos: torch.Tensor  # (top_k, F) their position in the context
    token_counts: 'TokenCounts'  # firings per (feature, token id); .rows(sl) -> (n, V) int32
    coact: 'CoactCounts'  # co-firing counts over the first coact_tokens tokens; .rows(sl) -> (n, F) int32
    coact_tokens: int  # tokens counted in coact
    ln_scale: float  # E[1/σ] of the final residual (σ: its LayerNorm's standard deviation per token)


class EveryBatch:
    """A pass that reads every batch of its contexts (pass 3 reads only those holding its windows)."""

    def wants(self, b0: int, b1: int) -> bool:
        return True


class Pass1Counts(EveryBatch):
    """Pass 1 of one SAE, fed a batch of contexts at a time (add_), read once every batch is in (result). The running
    top-k keeps one example per context. The (F, V) token and (F, F) co-firing counts are dense matrices when each
    fits in dense_mb MB, else sparse."""

    def __init__(self, inputs: Inputs, contexts: Contexts, top_k: int, coact_tokens: int, dense_mb: float = 256):
        n_feat, V, dev = len(inputs.W_dec), inputs.model.config.vocab_size, inputs.W_dec.device
        self.final_site, self.T, self.n_tokens = inputs.final_site, contexts.length, contexts.n_tokens
        self.n_fire = torch.zeros(n_feat, dtype=torch.long, device=dev)
        self.act_sum = torch.zeros(n_feat, dtype=torch.float64, device=dev)
        self.act_max = torch.zeros(n_feat, device=dev)
        self.top_act = torch.zeros(top_k, n_feat, device=dev)
        self.top_ctx = torch.full((top_k, n_feat), -1, dtype=torch.long, device=dev)
        self.top_pos = torch.zeros(top_k, n_feat, dtype=torch.long, device=dev)
        self.token_counts = TokenCounts(n_feat, V, dev, dense=n_feat * V * 4 <= dense_mb * 2 ** 20)
        self.coact = CoactCounts(n_feat, dev, dense=n_feat * n_feat * 4 <= dense_mb * 2 ** 20)
        self.coact_limit = contexts.n_tokens if coact_tokens <= 0 else min(coact_tokens, contexts.n_tokens)
        self.coact_seen, self.inv_sigma_sum = 0, 0.0

    def add_(self, batch: Batch, f: torch.Tensor) -> None:
        """The batch's features f (B*T, F) (and its final residual, captured in batch.acts)."""
        (b0, b1), T, top_k, n_feat = (batch.b0, batch.b1), self.T, len(self.top_act), f.size(1)
        B = b1 - b0
        fire = f > 0  # (N, F)
        t_idx, feat = fire.nonzero().unbind(1)
        self.n_fire += torch.bincount(feat, minlength=n_feat)
        self.act_sum += f.sum(0).double()
        torch.maximum(self.act_max, f.amax(0), out=self.act_max)
        # top-k over contexts: each context's best token per feature, merged with the best so far
        ctx_max = f.view(B, T, n_feat).amax(1)  # (B, F)
        self.top_act, i = torch.cat([self.top_act, ctx_max]).topk(top_k, dim=0)
        self.top_ctx = torch.cat([self.top_ctx, torch.arange(b0, b1, device=f.device)[:, None].expand(B, n_feat)]
                                 ).gather(0, i)
        self.top_pos = torch.cat([self.top_pos, torch.zeros_like(ctx_max, dtype=torch.long)]).gather(0, i)
        rank, fk = (i >= top_k).nonzero().unbind(1)  # entries new from this batch: find their token
        self.top_pos[rank, fk] = f.view(B, T, n_feat)[i[rank, fk] - top_k, :, fk].argmax(1)
        self.token_counts.add_(feat, batch.tokens[:, :-1].reshape(-1)[t_idx])
        if self.coact_seen < self.coact_limit:
            take = min(self.coact_limit - self.coact_seen, len(fire))
            self.coact.add_(fire[:take], t_idx, feat, self.coact_seen)
            self.coact_seen += take
        r = batch.acts[self.final_site].float()  # (B, T, C)
        self.inv_sigma_sum += (r.var(-1, unbiased=False) + 1e-5).rsqrt().sum().item()

    def result(self) -> Pass1:
        return Pass1(self.n_fire, self.act_sum, self.act_max, self.top_act, self.top_ctx, self.top_pos,
                     self.token_counts, self.coact, self.coact_seen, self.inv_sigma_sum / self.n_tokens)


def coact_counts(fire: torch.Tensor) -> torch.Tensor:
    """fire (N, F) bool -> (F, F) co-firing counts (int32): an exact int8 matmul on CPU, float elsewhere."""
    if fire.device.type == 'cpu':
        A = fire.to(torch.int8)
        try:
            return torch._int_mm(A.T.contiguous(), A)  # 4x a float32 matmul here; private API, so a fallback
        except (RuntimeError, AttributeError):
            pass
    A = fire.float()
    return (A.T @ A).round().int()


PAIRS_PER_STEP = 2 ** 24  # (feature, feature) pairs made at once by CoactCounts.rows (its memory: 8 bytes each)


class TokenCounts:
    """Firings per (feature, token id), exact: a dense (F, V) int32 matrix, or (dense=False) sparse counts whose
    memory grows with the distinct (feature, token) pairs seen: sorted int64 keys feature·V + token and their
    counts, each batch's keys counted (unique) and merged into them once the batches held reach their size."""

    def __init__(self, n_feat: int, V: int, device, dense: bool):
        self.shape, self.dense, self.device = (n_feat, V), dense, device
        self.counts = torch.zeros(n_feat * V if dense else 0, dtype=torch.int32 if dense else torch.long,
                                  device=device)  # dense: (F, V) flattened; sparse: per key
        self.keys = torch.zeros(0, dtype=torch.long, device=device)
        self.held: list[tuple[torch.Tensor, torch.Tensor]] = []  # batches' (keys, counts) not merged yet
        self.merge_at = 2 ** 20  # held keys merged once they are this many and as many as the merged ones

    def add_(self, feat: torch.Tensor, token: torch.Tensor) -> None:
        """One firing per entry of feat, token (E,) int64."""
        key = feat * self.shape[1] + token
        if self.dense:
            self.counts.index_add_(0, key, torch.ones(1, dtype=torch.int32, device=self.device).expand(len(key)))
            return
        self.held.append(torch.unique(key, return_counts=True))
        if sum(len(k) for k, _ in self.held) >= max(len(self.keys), self.merge_at):
            self.merge_()

    def merge_(self) -> None:
        keys = torch.cat([self.keys, *(k for k, _ in self.held)])
        counts = torch.cat([self.counts, *(c for _, c in self.held)])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.counts = torch.zeros(len(self.keys), dtype=torch.long, device=self.device).index_add_(0, inverse, counts)
        self.held = []

    def rows(self, sl: slice) -> torch.Tensor:
        """(n, V) int32 counts of the features sl.start ... sl.stop-1."""
        n_feat, V = self.shape
        if self.dense:
            return self.counts.view(n_feat, V)[sl]
        if self.held:
            self.merge_()
        lo, hi = torch.searchsorted(self.keys, torch.tensor([sl.start * V, sl.stop * V], device=self.device)).tolist()
        block = torch.zeros((sl.stop - sl.start) * V, dtype=torch.int32, device=self.device)
        block[self.keys[lo:hi] - sl.start * V] = self.counts[lo:hi].int()
        return block.view(-1, V)


class CoactCounts:
    """Co-firing counts of feature pairs, exact: a dense (F, F) int32 matrix, or (dense=False) the firings
    themselves (token, feature) from which rows(sl) counts a block of rows: memory grows with the tokens' firings
    (coact_tokens x L0), not with F²."""

    def __init__(self, n_feat: int, device, dense: bool):
        self.n_feat, self.dense, self.device = n_feat, dense, device
        self.matrix = torch.zeros(n_feat, n_feat, dtype=torch.int32, device=device) if dense else None
        self.firings: list[tuple[torch.Tensor, torch.Tensor]] = []  # (token, feature) int32, token-major order
        self.csr = None

    def add_(self, fire: torch.Tensor, t_idx: torch.Tensor, feat: torch.Tensor, t0: int) -> None:
        """fire (n, F) bool, of tokens t0 ... t0+n-1; t_idx, feat (E,): fire's nonzero() (t_idx may go past n)."""
        if self.dense:
            self.matrix += coact_counts(fire)
            return
        e = int(torch.searchsorted(t_idx, len(fire)))
        self.firings.append(((t_idx[:e] + t0).int(), feat[:e].int()))

    def diagonal(self) -> torch.Tensor:
        """(F,) firings of each feature over the counted tokens."""
        if self.dense:
            return self.matrix.diagonal()
        return torch.bincount(self.index()[1], minlength=self.n_feat).int()

    def index(self) -> tuple:
        """The firings (made once): token (E,) int32 and feature (E,) int64 in token-major order, each token's first
        firing (n_tokens + 1,), the firings' order by feature (E,) and each feature's first in it (F + 1,)."""
        if self.csr is None:
            tok = torch.cat([torch.zeros(0, dtype=torch.int32, device=self.device), *(t for t, _ in self.firings)])
            feat = torch.cat([torch.zeros(0, dtype=torch.int32, device=self.device), *(f for _, f in self.firings)])
            tok_start = torch.searchsorted(tok, torch.arange(int(tok.max()) + 2 if len(tok) else 1,
                                                             dtype=torch.int32, device=self.device))
            by_feat = torch.argsort(feat, stable=True)
            feat_start = torch.searchsorted(feat[by_feat], torch.arange(self.n_feat + 1, dtype=torch.int32,
                                                                        device=self.device))
            self.csr, self.firings = (tok, feat.long(), tok_start, by_feat, feat_start), []
        return self.csr

    def rows(self, sl: slice) -> torch.Tensor:
        """(n, F) int32 co-firing counts of the features sl.start ... sl.stop-1 with every feature."""
        if self.dense:
            return self.matrix[sl]
        tok, feat, tok_start, by_feat, feat_start = self.index()
        n = sl.stop - sl.start
        block = torch.zeros(n * self.n_feat, dtype=torch.int32, device=self.device)
        mine = by_feat[feat_start[sl.start]:feat_start[sl.stop]]  # the block's firings
        t = tok[mine].long()
        first, width = tok_start[t], tok_start[t + 1] - tok_start[t]  # each one's token: its firings
        ends = width.cumsum(0)
        for a, b in pair_steps(ends, PAIRS_PER_STEP):  # at most PAIRS_PER_STEP pairs at a time
            w = width[a:b]
            row = torch.repeat_interleave(feat[mine[a:b]] - sl.start, w)
            offset = torch.arange(int(w.sum()), device=self.device) - torch.repeat_interleave(w.cumsum(0) - w, w)
            partner = feat[torch.repeat_interleave(first[a:b], w) + offset]
            block.index_add_(0, row * self.n_feat + partner,
                             torch.ones(1, dtype=torch.int32, device=self.device).expand(len(partner)))
        return block.view(n, self.n_feat)


def pair_steps(ends: torch.Tensor, budget: int) -> list[tuple[int, int]]:
    """Consecutive ranges [a, b) of items with cumulative sizes `ends` (E,), each of total size <= budget (or
    one item)."""
    steps, a, done = [], 0, 0
    while a < len(ends):
        b = max(int(torch.searchsorted(ends, done + budget, right=True)), a + 1)
        steps.append((a, b))
        a, done = b, int(ends[b - 1])
    return steps


# ----------------------------------------------------------------------------- pass 2: histograms, interval samples

def smallest_per_group(group: torch.Tensor, key: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the (at most) k smallest keys (in [0, 1)) of each group, and their rank 0..k-1 in the group."""
    order = torch.argsort(group.double() + key)  # sorted by (group, key)
    g = group[order]
    rank = torch.arange(len(g), device=g.device) - torch.searchsorted(g, g)
    keep = rank < k
    return order[keep], rank[keep]


@dataclass
class IntervalSamples:
    """Up to S random examples per bucket (a feature's activation interval), all (n_buckets, S), slot by key.

    A uniform random sample without replacement is the S smallest of i.i.d. uniform keys (a bottom-k sketch),
    so a stream of batches can be sampled keeping only S keys per bucket. One example per context first: each
    context offers only its smallest-key token per bucket, so the sample is what walking all tokens in random
    order gives when a token whose context is already in the sample is skipped."""
    key: torch.Tensor  # float64 random keys, inf = empty slot
    ctx: torch.Tensor  # context index (meaningful where key is finite)
    pos: torch.Tensor  # position in the context
    act: torch.Tensor  # the activation

    @classmethod
    def empty(cls, n_buckets: int, S: int, device) -> 'IntervalSamples':
        shape = (n_buckets, max(S, 1))
        return cls(torch.full(shape, math.inf, dtype=torch.float64, device=device),
                   torch.full(shape, -1, dtype=torch.long, device=device),
                   torch.zeros(shape, dtype=torch.long, device=device), torch.zeros(shape, device=device))

    def offer_(self, bucket: torch.Tensor, ctx: torch.Tensor, pos: torch.Tensor, act: torch.Tensor,
               contexts: tuple[int, int], gen: torch.Generator) -> None:
        """Firings (n,) from contexts [c0, c1) (each context offered in one call only) compete for the slots."""
        S = self.key.size(1)
        key = torch.rand(len(act), generator=gen, dtype=torch.float64, device=act.device)
        live = (key < self.key[bucket, -1]).nonzero()[:, 0]  # a key above a full bucket's S-th smallest can't get in
        bucket, ctx, pos, key, act = bucket[live], ctx[live], pos[live], key[live], act[live]
        c0, c1 = contexts
        one, _ = smallest_per_group(bucket * (c1 - c0) + (ctx - c0), key, 1)
        old = torch.isfinite(self.key).view(-1).nonzero()[:, 0]
        c_bucket = torch.cat([old // S, bucket[one]])
        c_key = torch.cat([self.key.view(-1)[old], key[one]])
        c_ctx = torch.cat([self.ctx.view(-1)[old], ctx[one]])
        c_pos = torch.cat([self.pos.view(-1)[old], pos[one]])
        c_act = torch.cat([self.act.view(-1)[old], act[one]])
        keep, rank = smallest_per_group(c_bucket, c_key, S)
        slot = c_bucket[keep] * S + rank
        self.key.fill_(math.inf)
        self.key.view(-1)[slot], self.ctx.view(-1)[slot] = c_key[keep], c_ctx[keep]
        self.pos.view(-1)[slot], self.act.view(-1)[slot] = c_pos[keep], c_act[keep]


class Pass2(NamedTuple):
    hist: torch.Tensor  # (F, HIST_BINS) int64 activation histogram over (0, max]
    interval_count: torch.Tensor  # (F, n_intervals) int64 firings per equal-width interval of (0, max]
    samples: IntervalSamples | None  # bucket = feature * n_intervals + interval; None if interval_samples = 0


class Pass2Counts(EveryBatch):
    """Pass 2 of one SAE (needs pass 1's max), fed a batch of contexts at a time (add_): histograms, interval counts
    and S interval samples per (feature, interval); read once every batch is in (result)."""

    def __init__(self, act_max: torch.Tensor, T: int, n_intervals: int, S: int, seed: int):
        n_feat, dev = len(act_max), act_max.device
        self.T, self.n_intervals, self.S = T, n_intervals, S
        self.hist = torch.zeros(n_feat * HIST_BINS, dtype=torch.long, device=dev)
        self.interval_count = torch.zeros(n_feat * n_intervals, dtype=torch.long, device=dev)
        self.samples = IntervalSamples.empty(n_feat * n_intervals, S, dev)
        self.safe_max = act_max.clamp_min(1e-30)
        self.gen = torch.Generator(device=dev).manual_seed(seed)

    def add_(self, batch: Batch, f: torch.Tensor) -> None:
        """The batch's features f (B*T, F)."""
        T, n_intervals, dev = self.T, self.n_intervals, f.device
        t_idx, feat = (f > 0).nonzero().unbind(1)
        act = f[t_idx, feat]
        rel = act / self.safe_max[feat]  # in (0, 1]
        self.hist.index_add_(0, feat * HIST_BINS + (rel * HIST_BINS).long().clamp_(max=HIST_BINS - 1),
                             torch.ones(1, dtype=torch.long, device=dev).expand(len(act)))
        bucket = feat * n_intervals + (rel * n_intervals).long().clamp_(max=n_intervals - 1)  # interval j: [j, j+1)/n
        self.interval_count.index_add_(0, bucket, torch.ones(1, dtype=torch.long, device=dev).expand(len(act)))
        if self.S:
            self.samples.offer_(bucket, batch.b0 + t_idx // T, t_idx % T, act, (batch.b0, batch.b1), self.gen)

    def result(self) -> Pass2:
        n_feat = len(self.safe_max)
        return Pass2(self.hist.view(n_feat, HIST_BINS), self.interval_count.view(n_feat, self.n_intervals),
                     self.samples if self.S else None)


# ---------------------------------------------------------------------------- the shown windows (pass 3: logit_effects)

class Windows(NamedTuple):
    """Every shown window (W,), sorted by context: each feature's top examples, then its interval samples."""
    feat: torch.Tensor
    ctx: torch.Tensor
    pos: torch.Tensor  # the example token
    act: torch.Tensor  # its activation
    kind: torch.Tensor  # rank among the top examples (< top_k), or top_k + interval
    start: torch.Tensor  # first position shown
    end: torch.Tensor  # last position shown (inclusive); tokens are shown up to end + 1 (the last target)
    width: int  # 2·window + 1: positions a window can show


def select_windows(stats: Pass1, intervals: Pass2, window: int, T: int) -> Windows:
    """The top examples of pass 1 and the interval samples of pass 2, each with ±window tokens around it."""
    top_k, n_feat = stats.top_act.shape
    dev = stats.top_act.device
    found = stats.top_act > 0
    feat = [torch.arange(n_feat, device=dev).expand(top_k, n_feat)[found]]
    ctx, pos, act = [stats.top_ctx[found]], [stats.top_pos[found]], [stats.top_act[found]]
    kind = [torch.arange(top_k, device=dev)[:, None].expand(top_k, n_feat)[found]]
    s = intervals.samples
    if s is not None:
        n_buckets, S = s.key.shape
        n_int = n_buckets // n_feat
        filled = torch.isfinite(s.key)
        feat.append((torch.arange(n_buckets, device=dev) // n_int)[:, None].expand(n_buckets, S)[filled])
        ctx.append(s.ctx[filled])
        pos.append(s.pos[filled])
        act.append(s.act[filled])
        kind.append(top_k + (torch.arange(n_buckets, device=dev) % n_int)[:, None].expand(n_buckets, S)[filled])
    order = torch.argsort(torch.cat(ctx), stable=True)
    feat, ctx, pos, act, kind = (torch.cat(a)[order] for a in (feat, ctx, pos, act, kind))
    return Windows(feat, ctx, pos, act, kind, (pos - window).clamp(min=0), (pos + window).clamp(max=T - 1),
                   2 * window + 1)


class Neighbours(NamedTuple):
    cos_ids: torch.Tensor  # (F, k) nearest features by decoder cosine, k = min(N_NEIGHBOURS, F - 1)
    cos: torch.Tensor  # (F, k)
    coact_ids: torch.Tensor  # (F, k) most co-activating features (score -1: fewer co-fire)
    coact_score: torch.Tensor  # (F, k) Ochiai coefficient n(i and j) / sqrt(n(i)·n(j))
    coact_p: torch.Tensor  # (F, k) P(j fires | i fires)


@torch.no_grad()
def feature_neighbours(W_dec: torch.Tensor, coact: 'CoactCounts') -> Neighbours:
    """W_dec (F, d_in) decoder rows and coact (CoactCounts: (F, F) co-firing counts) -> each feature's neighbours."""
    n_feat, dev = len(W_dec), W_dec.device
    k = min(N_NEIGHBOURS, n_feat - 1)
    nb = Neighbours(*(torch.zeros(n_feat, k, dtype=dt) for dt in (torch.long, None, torch.long, None, None)))
    Wn = W_dec / W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n_coact = coact.diagonal().float()
    for f0 in range(0, n_feat if k > 0 else 0, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        rows = torch.arange(sl.start, sl.stop, device=dev)
        cs = Wn[sl] @ Wn.T  # (n, F) decoder cosines
        cs[rows - f0, rows] = -math.inf
        v, i = cs.topk(k, dim=1)
        nb.cos_ids[sl], nb.cos[sl] = i.cpu(), v.cpu()
        cc = coact.rows(sl).float()
        score = cc / (n_coact[sl, None] * n_coact[None, :]).sqrt().clamp_min(1e-12)
        score[rows - f0, rows] = -1
        score[cc == 0] = -1
        v, i = score.topk(k, dim=1)
        nb.coact_ids[sl], nb.coact_score[sl] = i.cpu(), v.cpu()
        nb.coact_p[sl] = (cc.gather(1, i) / n_coact[sl, None].clamp_min(1)).cpu()
    return nb


class TopTokens(NamedTuple):
    ids: torch.Tensor  # (F, n) the tokens each feature fires on most, n = min(N_TOP_TOKENS, V)
    counts: torch.Tensor  # (F, n) its firings on them (0: fewer distinct tokens)


def top_tokens(token_counts: 'TokenCounts') -> TopTokens:
    """token_counts (TokenCounts: (F, V) firings per token id) -> the tokens each feature fires on most."""
    n_feat, V = token_counts.shape
    top = TopTokens(torch.zeros(n_feat, min(N_TOP_TOKENS, V), dtype=torch.long),
                    torch.zeros(n_feat, min(N_TOP_TOKENS, V), dtype=torch.long))
    for f0 in range(0, n_feat, ROWS_PER_CHUNK):
        sl = slice(f0, min(f0 + ROWS_PER_CHUNK, n_feat))
        v, i = token_counts.rows(sl).topk(top.ids.size(1), dim=1)
        top.counts[sl], top.ids[sl] = v.long().cpu(), i.cpu()
    return top


# ----------------------------------------------------------------------------- example texts

class ExampleTexts(NamedTuple):
    starts: list[int]  # token offsets in <split>.bin
    length: int  # tokens per text
    texts: list[dict]  # data/examples.js (docs/browser.md)


def example_contexts(file: TokenFile, n: int, length: int, batch_size: int, rng: np.random.Generator,
                     quiet: bool = False) -> Contexts:
    """n random texts of `length` tokens, in batches: read and run like the statistics' contexts."""
    starts = pick_chunks(len(file), length, n, rng, f"{file.split}.bin in {file.data_dir}") if n else np.zeros(0, int)
    batches = [(e0, min(e0 + batch_size, len(starts))) for e0 in range(0, len(starts), batch_size)]
    return Contexts(file, starts, length, batches, quiet)


class ExampleFeatures(EveryBatch):
    """One SAE's active features on each token of the example texts (the strongest first, at most
    EXAMPLE_MAX_FEATURES) and their activations, fed a batch of texts at a time."""

    def __init__(self, length: int):
        self.length, self.features, self.acts = length, [], []

    def add_(self, batch: Batch, f: torch.Tensor) -> None:
        """The batch's features f (B*length, F)."""
        n_feat = f.size(1)
        v, i = f.view(-1, self.length, n_feat).topk(min(EXAMPLE_MAX_FEATURES, n_feat), dim=2)  # (B, T, k)
        for vb, ib in zip(v.tolist(), i.tolist()):
            self.features.append([[fi for fv, fi in zip(vt, it) if fv > 0] for vt, it in zip(vb, ib)])
            self.acts.append([[float(f'{fv:.4g}') for fv in vt if fv > 0] for vt in vb])


def example_texts(contexts: Contexts, tokens: list[list[int]], feats: ExampleFeatures) -> ExampleTexts:
    """data/examples.js: each text's start, tokens (the same for every SAE: read once) and the SAE's features."""
    texts = [{'start': int(s), 'tokens': t, 'features': fe, 'acts': a}
             for s, t, fe, a in zip(contexts.starts, tokens, feats.features, feats.acts)]
    return ExampleTexts([int(s) for s in contexts.starts], contexts.length, texts)
