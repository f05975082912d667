"""
Where the sparse TopK step pays: seconds per training step of the sparse step (sparse_topk_loss) against the dense
one (autograd through the (B, F) code) for each kind of the TopK family, over dictionary sizes F and k, measured
alternately in the same process; and which of the two train_sae.py's sparse_topk='auto' takes there
(autoencoder.sparse_step_pays). The ratio is sparse / dense: below 1 the sparse step is faster.

    python -m bench.sparse_step                                 # the demo sweep's shapes: d 512, B 1024, bf16
    python -m bench.sparse_step --features=512,16384 --ks=32 --batch_size=4096 --dtype=float32

Each cell alternates `rounds` blocks of `steps_per_round` dense and sparse steps (shared cores drift) and compares
medians. The steps are sae_step_'s whole step (loss, backward, Adam, renormalisation) on random rows.
"""
import statistics
import time

import torch

from autoencoder import SAEConfig, SparseAutoencoder, make_adam, sae_step_, sparse_step_pays
from configurator import configure

d_in = 512  # activation width d
batch_size = 1024  # rows per step B
features = '512,1024,2048,4096'  # dictionary sizes F
ks = '10,20,40'  # k values
kinds = 'topk,batchtopk,matryoshka_batchtopk'  # the TopK family's kinds measured
dtype = 'bfloat16'  # matmul dtype (bfloat16: autocast, as the demo; float32: none)
rounds = 5  # alternating dense / sparse blocks
steps_per_round = 3  # steps timed per block
threads = 0  # torch threads (0 = PyTorch's default)
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)


def timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def cell(kind: str, n: int, k: int, cdt: torch.dtype | None) -> tuple[float, float, bool]:
    """(dense s/step, sparse s/step, what 'auto' picks) for one kind, F = n, k."""
    cfg = SAEConfig(d_in=d_in, n_features=n, kind=kind, k=k)
    x = torch.randn(batch_size, d_in)
    steps = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        sae = SparseAutoencoder(cfg)
        opt = make_adam(sae, lr=1e-4)
        steps[sparse] = (lambda s, o, sp: lambda: sae_step_(s, o, x, 0.0, cdt, sparse=sp))(sae, opt, sparse)
        steps[sparse]()  # warm-up: scratch buffers, Adam state
    t = {False: [], True: []}
    for _ in range(rounds):
        for sparse, fn in steps.items():
            t[sparse].append(timed(fn, steps_per_round))
    return statistics.median(t[False]), statistics.median(t[True]), sparse_step_pays(cfg)


def main() -> None:
    if threads:
        torch.set_num_threads(threads)
    cdt = None if dtype == 'float32' else getattr(torch, dtype)
    print(f"d={d_in} B={batch_size} {dtype} threads={torch.get_num_threads()} rounds={rounds}x{steps_per_round}: "
          f"median s/step, sparse / dense (< 1: the sparse step is faster), and what sparse_topk='auto' takes")
    print(f"{'kind':22} {'F':>6} {'k':>4} {'F/k':>6} {'dense':>8} {'sparse':>8} {'ratio':>6}  auto")
    for kind in kinds.split(','):
        for n in map(int, features.split(',')):
            for k in map(int, ks.split(',')):
                dense, sparse, pays = cell(kind, n, k, cdt)
                ok = '' if pays == (sparse < dense) else '  (the other is faster here)'
                print(f"{kind:22} {n:6} {k:4} {n / k:6.1f} {dense:8.4f} {sparse:8.4f} {sparse / dense:6.2f}  "
                      f"{'sparse' if pays else 'dense'}{ok}", flush=True)


if __name__ == '__main__':
    main()
