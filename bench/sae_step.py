"""
Seconds per SAE training step against the matmul roofline, measured in the same process.

    python -m bench.sae_step                       # d=512, F=4096, B=4096, fp32 and bf16
    python -m bench.sae_step --profile=True        # plus a torch.profiler table of the fused step
    python -m bench.sae_step --n_features=1024 --rounds=3
    python -m bench.sae_step --l1=False --autograd=False   # only the TopK row (F=16384, k=32)

The step is anthropic2023's `sae_step_` (forward, loss, backward, parallel-gradient removal, Adam,
renormalisation), its loss and gradients by FusedL1Loss (an autograd.Function with a hand-written backward).
Its roofline is the six (B×d)·(d×F)-sized GEMMs a step needs with autograd (2 forward, 4 backward: 12·B·d·F
FLOPs), timed alone with preallocated outputs. This machine's speed drifts (shared cores), so GEMM blocks and
step blocks alternate for `rounds` rounds and medians are compared. The fused step does 5 of the 6 GEMMs
(db_dec comes from db_enc @ W_enc), so its ratio can go below 1. "autograd" is the same step through
loss().backward(), for comparison.
The TopK rows (kind topk, F = topk_features, k = topk_k) time its sparse step (sparse_topk_loss: decoding and
gradients from the k kept codes per row; the encoder GEMM, 1/6 of the roofline, is its only dense product)
against the 12·B·d·F roofline at that F, measured in the same rounds; "topk dense" is the dense autograd step;
"topk floor" the three parts no TopK step can skip, timed alone in the same rounds: the encoder GEMM (B, d)·(d, F),
the top-k of its (B, F) rows (torch.topk) and the fused Adam update of the parameters: the lowest ratio this machine
allows a step built from PyTorch's kernels.
"""
import statistics
import time

import torch

from autoencoder import SAEConfig, SparseAutoencoder, make_adam, sae_step_
from configurator import configure

d_in = 512  # activation width d
n_features = 4096  # dictionary size F
batch_size = 4096  # rows per step B
dtypes = 'float32,bfloat16'  # matmul dtypes to measure (bf16 = autocast_dtype of the step)
rounds = 10  # alternating GEMM-block / step-block rounds
steps_per_round = 2  # steps timed per round
autograd = True  # also time the autograd step (fused=False; for topk the dense step)
l1 = True  # time anthropic2023's step (F = n_features)
topk = True  # time topk's sparse step (F = topk_features)
topk_features = 16384  # dictionary size F of the TopK rows
topk_k = 32  # k of the TopK rows
profile = False  # print a torch.profiler table of a few fused steps
threads = 0  # torch threads (0 = PyTorch's default)
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)


def gemm_block(B: int, d: int, n: int, dt: torch.dtype):
    """The step's six GEMMs with their shapes and transposes, writing into preallocated outputs."""
    x, g = torch.randn(B, d, dtype=dt), torch.randn(B, d, dtype=dt)
    W_enc, W_dec = torch.randn(n, d, dtype=dt), torch.randn(d, n, dtype=dt)
    f, df = torch.randn(B, n, dtype=dt), torch.randn(B, n, dtype=dt)
    o_bf, o_bd, o_dn, o_nd = (torch.empty(B, n, dtype=dt), torch.empty(B, d, dtype=dt),
                              torch.empty(d, n, dtype=dt), torch.empty(n, d, dtype=dt))

    def run():
        torch.mm(x, W_enc.T, out=o_bf)  # pre = x̄ W_encᵀ
        torch.mm(f, W_dec.T, out=o_bd)  # x̂ = f W_decᵀ
        torch.mm(g.T, f, out=o_dn)  # dW_dec = gᵀ f
        torch.mm(g, W_dec, out=o_bf)  # df = g W_dec
        torch.mm(df.T, x, out=o_nd)  # dW_enc = dpreᵀ x̄
        torch.mm(df, W_enc, out=o_bd)  # dx̄ = dpre W_enc
    return run


def timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def make_steps(kind: str, n: int, cdt: torch.dtype | None) -> dict:
    """The steps timed for one SAE kind with F = n: {label: step function}."""
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_features=n, kind=kind, k=topk_k))
    opt = make_adam(sae, lr=1e-4)
    x = torch.randn(batch_size, d_in)
    if kind == 'topk':
        steps = {'topk sparse': lambda: sae_step_(sae, opt, x, 0.0, cdt, sparse=True)}
        if autograd:
            steps['topk dense'] = lambda: sae_step_(sae, opt, x, 0.0, cdt, fused=False)
        steps['topk floor'] = floor_block(n, cdt or torch.float32)
        return steps
    steps = {'fused': lambda: sae_step_(sae, opt, x, 1e-3, cdt)}
    if autograd:
        steps['autograd'] = lambda: sae_step_(sae, opt, x, 1e-3, cdt, fused=False)
    return steps


def floor_block(n: int, dt: torch.dtype):
    """The encoder GEMM, top-k and Adam update of a TopK step with F = n, each alone, into preallocated outputs."""
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, n_features=n, kind='topk', k=topk_k))
    opt = make_adam(sae, lr=1e-4)
    for p in sae.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    xa, W = torch.randn(batch_size, d_in, dtype=dt), sae.W_enc.detach().to(dt)
    pre = torch.empty(batch_size, n, dtype=dt)

    def run():
        torch.mm(xa, W.T, out=pre)  # pre = x̄ W_encᵀ
        pre.topk(topk_k, dim=-1, sorted=False)
        opt.step()
    return run


def measure(steps: dict, n: int, dt: torch.dtype) -> list[tuple]:
    """Alternate the roofline GEMM block (F = n) and each step for `rounds` rounds; medians -> table rows."""
    B, d = batch_size, d_in
    flops = 12 * B * d * n
    gemm = gemm_block(B, d, n, dt)
    gemm()
    for fn in steps.values():
        fn()  # warm-up: workspace, Adam state
    t_gemm, t_step = [], {k: [] for k in steps}
    for _ in range(rounds):
        t_gemm.append(timed(gemm, 1))
        for k, fn in steps.items():
            t_step[k].append(timed(fn, steps_per_round))
    roof = statistics.median(t_gemm)
    rows = []
    for k, ts in t_step.items():
        s = statistics.median(ts)
        rows.append((str(dt).removeprefix('torch.'), n, k, s, roof, s / roof, flops / s / 1e9, flops / roof / 1e9))
    return rows


def main() -> None:
    if threads:
        torch.set_num_threads(threads)
    B, d = batch_size, d_in
    print(f"d={d} B={B} threads={torch.get_num_threads()} rounds={rounds}: roofline = 6 GEMMs = 12·B·d·F FLOP/step "
          f"(F={n_features}: {12 * B * d * n_features / 1e9:.1f} GFLOP; topk F={topk_features}, k={topk_k}: "
          f"{12 * B * d * topk_features / 1e9:.1f} GFLOP)")
    rows = []
    for name in dtypes.split(','):
        dt = getattr(torch, name)
        cdt = None if dt == torch.float32 else dt
        if l1:
            steps = make_steps('anthropic2023', n_features, cdt)
            rows += measure(steps, n_features, dt)
        if topk:
            rows += measure(make_steps('topk', topk_features, cdt), topk_features, dt)
        if profile and l1:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as prof
            with prof(activities=[ProfilerActivity.CPU]) as p:
                for _ in range(3):
                    steps['fused']()
            print(p.key_averages().table(sort_by='self_cpu_time_total', row_limit=15))
    print(f"{'dtype':9} {'F':>6} {'step':11} {'s/step':>8} {'roofline':>9} {'ratio':>6} {'GFLOP/s':>8} "
          f"{'GEMM GFLOP/s':>13}")
    for name, n, k, s, roof, r, gf, gg in rows:
        print(f"{name:9} {n:6} {k:11} {s:8.3f} {roof:9.3f} {r:6.2f} {gf:8.0f} {gg:13.0f}")


if __name__ == '__main__':
    main()
