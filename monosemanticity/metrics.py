"""
Metrics of a sparse autoencoder: reconstruction and sparsity over a window of activation rows
(MetricsAccumulator), and the same spliced into the transformer (evaluate_saes / evaluate_sae: CE losses, loss
recovered, KL; the passes that do not depend on the SAE run once for all the SAEs evaluated together).
One definition for train_sae.py's logs and metrics.json and the interface.
"""
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from autoencoder import SparseAutoencoder

Tensor = torch.Tensor


# ----------------------------------------------------------------------------- metrics

@torch.no_grad()
def batch_stats(x: Tensor, x_hat: Tensor, f: Tensor) -> dict[str, Tensor]:
    """Sums over a batch (x, x̂ (B, d), f (B, F)) from which MetricsAccumulator aggregates its metrics."""
    x, x_hat = x.double(), x_hat.double()
    mean = x.mean(0)  # (d,)
    fire = (f != 0).sum(0)  # (F,) int64
    return {'n': torch.tensor(x.shape[0]), 'sse': (x - x_hat).pow(2).sum(), 'mean': mean,
            'm2': (x - mean).pow(2).sum(), 'fire': fire, 'l0': fire.sum(), 'l1': f.abs().sum(dtype=torch.float64)}


class MetricsAccumulator:
    """Accumulates batch_stats over many batches; compute() gives the metrics of the whole window.

    mse = Σ‖x - x̂‖² / (n·d); fvu = Σ‖x - x̂‖² / Σ‖x - mean‖² (mean over the window, merged exactly with Chan's
    formula); l0, l1 = mean nonzero count and Σ_i |f_i| per row; density = fraction of rows where each
    feature fired; dead = never fired in the window; ultralow = alive with density < 1e-5.
    """

    def __init__(self, n_features: int, hist_bins: int = 40, hist_range: tuple[float, float] = (-8.0, 0.0)):
        self.n, self.sse, self.m2, self.l0, self.l1 = 0, 0.0, 0.0, 0, 0.0
        self.mean: Tensor | None = None
        self.fire = torch.zeros(n_features, dtype=torch.long)
        self.hist_bins, self.hist_range = hist_bins, hist_range

    def update(self, x: Tensor, x_hat: Tensor, f: Tensor) -> None:
        self.add(batch_stats(x, x_hat, f))

    def add(self, s: dict[str, Tensor]) -> None:
        """Merge the sums of one batch (from batch_stats)."""
        nb = int(s['n'])
        if self.mean is None:
            self.mean, self.m2 = s['mean'].cpu(), float(s['m2'])
        else:
            delta = s['mean'].cpu() - self.mean
            tot = self.n + nb
            self.mean = self.mean + delta * (nb / tot)
            self.m2 += float(s['m2']) + float(delta.pow(2).sum()) * self.n * nb / tot
        self.n += nb
        self.sse += float(s['sse'])
        self.l0 += int(s['l0'])
        self.l1 += float(s['l1'])
        self.fire += s['fire'].cpu()

    def compute(self) -> dict:
        """{mse, fvu, l0, l1, dead_frac, ultralow_frac, density (F,), density_hist {counts, edges}, n_tokens}."""
        n, d = max(self.n, 1), (self.mean.numel() if self.mean is not None else 1)
        density = self.fire.double() / n
        dead = self.fire == 0
        ultralow = ~dead & (density < 1e-5)
        lo, hi = self.hist_range
        logd = density[~dead].log10().clamp(lo, hi).float()
        counts = torch.histc(logd, bins=self.hist_bins, min=lo, max=hi) if logd.numel() else torch.zeros(0)
        edges = torch.linspace(lo, hi, self.hist_bins + 1)
        return {'mse': self.sse / (n * d), 'fvu': self.sse / max(self.m2, 1e-30), 'l0': self.l0 / n,
                'l1': self.l1 / n, 'dead_frac': dead.double().mean().item(),
                'ultralow_frac': ultralow.double().mean().item(), 'density': density.float(),
                'density_hist': {'counts': [int(c) for c in counts.tolist()], 'edges': edges.tolist()},
                'n_tokens': self.n}


# ----------------------------------------------------------------------------- evaluation in the model

def splice(sae: SparseAutoencoder, acc: MetricsAccumulator) -> Callable[[Tensor], Tensor]:
    """The site's replacement in GPT.run: h (B, T, d) -> the SAE's reconstruction of it; acc takes the batch's
    reconstruction metrics."""
    def reconstruct(h: Tensor) -> Tensor:
        x = h.reshape(-1, h.shape[-1]).float()  # (B*T, d)
        x_hat, f = sae(x)
        acc.update(x, x_hat, f)
        return x_hat.view_as(h).to(h.dtype)
    return reconstruct


@torch.no_grad()
def evaluate_saes(saes: list[SparseAutoencoder], gpt: nn.Module, site: str, batches, data_mean: Tensor,
                  ablation_ce: dict | None = None) -> list[dict]:
    """Every metric of each SAE spliced into a transformer, over token batches (x, y) each (B, T), in one pass over
    the batches: each batch's clean forward (and its zero- and mean-ablation forwards) runs once for every SAE, and
    each SAE adds its spliced forward. Each SAE's metrics are bitwise those of evaluate_sae on it alone: the same
    ops on the same inputs, summed in the same order. One batch's clean log-probs are held at a time.

    gpt.run(x, y, replace=..., reduction='none') (model.GPT.run) gives per-token CE with the site replaced by the
    SAE's reconstruction, by zeros and by data_mean (d,), next to the clean CE. The reconstruction metrics of
    MetricsAccumulator (mse, fvu, l0, l1, density, dead, ultralow) are taken over every token position.
    loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean), a ratio of means; kl_spliced = mean over
    tokens of KL(clean || spliced) next-token distributions.
    ablation_ce: a dict kept by the caller for one fixed sequence of batches (and data_mean): the zero- and
    mean-ablation CE sums of batch i are computed once into it and read back by later calls (they do not depend
    on the SAE), which saves two forward passes per batch in periodic evaluations.
    """
    if not saes:
        return []
    accs = [MetricsAccumulator(sae.cfg.n_features) for sae in saes]
    ce = {'clean': 0.0, 'zero': 0.0, 'mean': 0.0}  # shared by the SAEs
    ce_spliced, kl, n_tok = [0.0] * len(saes), [0.0] * len(saes), 0
    was_training = [sae.training for sae in saes]
    for sae in saes:
        sae.eval()
    ablation_ce = {} if ablation_ce is None else ablation_ce
    for i, (x, y) in enumerate(batches):
        logits, loss, _ = gpt.run(x, y, reduction='none')  # the clean pass, once for every SAE
        logp = torch.log_softmax(logits.float(), -1)  # (B, T, V)
        p = logp.exp()  # (B, T, V)
        del logits
        ce['clean'] += loss.sum().item()
        if i not in ablation_ce:
            ablation_ce[i] = (
                gpt.run(x, y, replace={site: torch.zeros_like}, reduction='none')[1].sum().item(),
                gpt.run(x, y, replace={site: lambda h: data_mean.to(h.dtype).expand_as(h)},
                        reduction='none')[1].sum().item())
        ce['zero'] += ablation_ce[i][0]
        ce['mean'] += ablation_ce[i][1]
        for j, sae in enumerate(saes):  # the CE from the same log-probs as the KL: one log_softmax, no temporaries
            logits_s, _, _ = gpt.run(x, replace={site: splice(sae, accs[j])})
            logp_s = torch.log_softmax(logits_s.float(), -1)  # (B, T, V)
            del logits_s
            ce_spliced[j] -= logp_s.gather(-1, y.unsqueeze(-1)).sum().item()  # Σ -log p_s(y): cross_entropy's
            kl[j] -= torch.dot(p.view(-1), logp_s.sub_(logp).view(-1)).item()  # Σ p (log p - log p_s)
            del logp_s
        n_tok += y.numel()
    for sae, mode in zip(saes, was_training):
        sae.train(mode)
    return [splice_metrics(acc, {**ce, 'spliced': s}, k, n_tok) for acc, s, k in zip(accs, ce_spliced, kl)]


def evaluate_sae(sae: SparseAutoencoder, gpt: nn.Module, site: str, batches, data_mean: Tensor,
                 ablation_ce: dict | None = None) -> dict:
    """Every metric of one SAE spliced into a transformer: evaluate_saes of it alone."""
    return evaluate_saes([sae], gpt, site, batches, data_mean, ablation_ce)[0]


def splice_metrics(acc: MetricsAccumulator, ce_sums: dict[str, float], kl_sum: float, n_tok: int) -> dict:
    """The metrics dict of one SAE from its accumulator and its sums over n_tok tokens: CE sums (clean, spliced, zero,
    mean) and the KL sum."""
    m = acc.compute()
    ce = {k: v / max(n_tok, 1) for k, v in ce_sums.items()}

    def ratio(a: float, b: float) -> float:
        return a / b if b != 0 else float('nan')

    m.update(ce_clean=ce['clean'], ce_spliced=ce['spliced'], ce_zero_ablation=ce['zero'],
             ce_mean_ablation=ce['mean'], kl_spliced=kl_sum / max(n_tok, 1),
             loss_recovered=ratio(ce['zero'] - ce['spliced'], ce['zero'] - ce['clean']),
             loss_recovered_mean_abl=ratio(ce['mean'] - ce['spliced'], ce['mean'] - ce['clean']),
             eval_tokens=n_tok, alive_frac=1.0 - m['dead_frac'])
    m['ultralow_frac_of_alive'] = m['ultralow_frac'] / max(m['alive_frac'], 1e-12)
    return m


def val_contexts(n_val_tokens: int, context_length: int, n_contexts: int) -> tuple[np.ndarray, int]:
    """The starts of n_contexts contexts spread evenly over a split of n_val_tokens tokens (at most as many as fit)
    and their length T (train_sae.py's evaluations: the same ones every time; each is cut T+1 long for its
    next-token targets)."""
    T = min(context_length, n_val_tokens - 1)
    n_contexts = max(1, min(n_contexts, (n_val_tokens - 1) // T))
    return np.arange(n_contexts) * ((n_val_tokens - 1 - T) // max(n_contexts - 1, 1)), T


def summary_line(r: dict) -> str:
    """An evaluation's metrics in one line."""
    return (f"mse {r['mse']:.4g}, fvu {r['fvu']:.3f}, L0 {r['l0']:.1f}, alive {r['alive_frac']:.1%}, "
            f"loss recovered {r['loss_recovered']:.3f} (mean-abl {r['loss_recovered_mean_abl']:.3f}), "
            f"CE clean/spliced/zero {r['ce_clean']:.3f}/{r['ce_spliced']:.3f}/{r['ce_zero_ablation']:.3f}")
