"""The SAE step as rank 0 of two torchrun ranks against the one-process step on both ranks' rows: every factor of the
world size in the step (gradient averaging, the fire counters, AuxK's dead window, BatchTopK's threshold) is 1 in a
one-process test, so only a second rank shows whether it is there.

In-process and fast: torch.distributed is replaced by TwoRanks, which replays the other rank. The step's all_reduce
inputs (gradients, fired mask, smallest kept activation) come from the forward and backward of the rank's own rows,
never from an earlier reduction in the step, so rank 1's step run first records exactly what rank 1 would send,
and rank 0's step then reduces with it. (tests/test_train_sae.py runs train_sae.py under torchrun with gloo.)
"""
import pytest
import torch
import torch.distributed as dist

from autoencoder import SAEConfig, SparseAutoencoder, make_adam, sae_step_

D, F, B, WORLD = 12, 40, 16, 2  # B rows per rank
SINCE = 100  # tokens_since_fired of every latent before the step
AUXK_DEAD = SINCE + WORLD * B  # AuxK's window: dead counting the step's tokens of both ranks, alive counting one's


class TwoRanks:
    """torch.distributed as one rank of two sees it: all_reduce records what this rank sends and, given the other
    rank's recorded sends, reduces with them (SUM or MAX), in the order of the calls."""

    def __init__(self, other: list[torch.Tensor] | None = None):
        self.other, self.sent = other, []

    def all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM, **_) -> None:
        self.sent.append(t.clone())
        if self.other is not None:
            theirs = self.other[len(self.sent) - 1].to(t.dtype)
            torch.maximum(t, theirs, out=t) if op == dist.ReduceOp.MAX else t.add_(theirs)


def as_ranks(monkeypatch, fake: TwoRanks) -> None:
    monkeypatch.setattr(dist, 'is_available', lambda: True)
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    monkeypatch.setattr(dist, 'get_world_size', lambda group=None: WORLD)
    monkeypatch.setattr(dist, 'all_reduce', fake.all_reduce)


def data(n: int, seed: int) -> torch.Tensor:
    """Skewed, non-centred rows (like MLP activations)."""
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, D, generator=g)) * 2 + 0.3


def make(kind: str) -> SparseAutoencoder:
    """The same SAE on every rank: non-trivial biases (some latents fire on one rank's rows only, some on none),
    every latent silent for SINCE tokens."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=D, n_features=F, kind=kind, k=4, auxk_dead_tokens=AUXK_DEAD))
    with torch.no_grad():
        sae.b_dec.copy_(data(1, 9)[0] * 0.5)
        sae.b_enc.normal_(0, 0.3).sub_(1.0 if kind == 'anthropic2023' else 0.0)
        sae.tokens_since_fired.fill_(SINCE)
        if kind == 'batchtopk':
            sae.threshold.fill_(0.3)
    return sae


def rows(rank: int | None) -> torch.Tensor:
    """The step's batch: both ranks' rows (rank None), or one rank's half."""
    x = data(WORLD * B, 1)
    return x if rank is None else x[rank * B:(rank + 1) * B]


def rank0_step(monkeypatch, kind: str, sparse: bool = False) -> SparseAutoencoder:
    """The SAE of rank 0 after one step on its rows, rank 1's step replayed into its reductions."""
    rank1 = TwoRanks()
    with monkeypatch.context() as m:
        as_ranks(m, rank1)
        sae = make(kind)
        sae_step_(sae, make_adam(sae, 1e-2), rows(1), 3e-2, sparse=sparse)
    rank0 = TwoRanks(rank1.sent)
    with monkeypatch.context() as m:
        as_ranks(m, rank0)
        sae = make(kind)
        sae_step_(sae, make_adam(sae, 1e-2), rows(0), 3e-2, sparse=sparse)
    assert len(rank0.sent) == len(rank1.sent) > 0
    return sae


def test_gradients_are_averaged_and_fire_counters_merged_over_ranks(monkeypatch):
    """Rank 0's fused anthropic2023 step is the one-process step on both ranks' rows: the same gradients (the mean
    over ranks of each rank's mean), weights, and fire counters (fired on any rank -> 0, else + both ranks' tokens)."""
    got = rank0_step(monkeypatch, 'anthropic2023')
    sae = make('anthropic2023')
    with torch.no_grad():
        fired = [(sae.encode(rows(r)) > 0).any(0) for r in range(WORLD)]
    assert (fired[0] != fired[1]).any() and not (fired[0] | fired[1]).all()  # the merge shows
    sae_step_(sae, make_adam(sae, 1e-2), rows(None), 3e-2)
    for (name, p), q in zip(got.named_parameters(), sae.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=f"{name}.grad")
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-7, msg=name)
    assert torch.equal(got.tokens_since_fired, torch.where(fired[0] | fired[1], 0, SINCE + WORLD * B))
    assert torch.equal(got.tokens_since_fired, sae.tokens_since_fired)


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_auxk_dead_window_counts_every_ranks_tokens(monkeypatch, sparse):
    """With SINCE + B < auxk_dead_tokens = SINCE + 2B, a latent silent on this rank is dead for AuxK only when both
    ranks' tokens of the step are counted: rank 0's AuxK term is the one of that dead set (dense and sparse step)."""
    sae = make('topk')
    x = rows(0)
    with torch.no_grad():
        dead = ~(sae.encode(x) > 1e-3).any(0)  # SINCE + 2B >= auxk_dead_tokens: every latent silent here
        want = sae.loss(x, dead=dead)['aux']
        alive = sae.loss(x, dead=torch.zeros(F, dtype=torch.bool))['aux']  # the dead set counting one rank's tokens
    assert want > 0 and want.item() != pytest.approx(alive.item(), rel=1e-3)
    with monkeypatch.context() as m:
        as_ranks(m, TwoRanks())
        aux = sae.loss(x, sparse=sparse)['aux']
    torch.testing.assert_close(aux.detach(), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
def test_batchtopk_threshold_is_the_mean_over_ranks(monkeypatch, sparse):
    """θ ← 0.99·θ + 0.01·(mean over ranks of each rank's smallest kept activation)."""
    sae = make('batchtopk')
    smallest = []
    for r in range(WORLD):
        with torch.no_grad():
            f = sae.loss(rows(r))['f']
        smallest.append(f[f > 0].min().double().item())
    assert smallest[0] != pytest.approx(smallest[1], rel=1e-3)
    got = rank0_step(monkeypatch, 'batchtopk', sparse)
    assert got.threshold.item() == pytest.approx(0.99 * 0.3 + 0.01 * sum(smallest) / WORLD, rel=1e-9)
