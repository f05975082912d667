# CPU demo sweep (make sweep, after make demo): 16 SAEs trained on one pass over the demo store, each batch read
# once and fed to all of them, then the Pareto report (out/demo/sweep/pareto.json + pareto.png):
#   python train_sae.py config/demo/sweep.py                     # --init_from=resume continues, skips what is done
# A family of sizes (TopK k=20, 512 -> 4096 features: feature splitting) and two sparsity levels of every kind at
# 512 features (the paper's smallest dictionary), so that the sweep and its site fit in 20 minutes on 2 cores.
# Every key not in an entry is the run's (below); an entry of another kind takes its kind's published recipe
# (autoencoder.RECIPES) for the keys left unset here. Adding an SAE is one more line.
# jumprelu: from its published θ init (0.001) θ cannot rise far in 2600 steps (θ = exp(log θ), and Adam moves log θ
# by about lr per step: at most x e^2.6 here), so L0 stays near 400 whatever λ (measured: 412-416 at step 1000 for
# λ 3e-4 ... 1e-2); the demo starts θ at 0.03 (jumprelu_init_threshold). Its published warm-ups (lr 1,000 steps,
# λ 10,000 steps: Gemma Scope) are longer than this whole run, so the demo scales them to 1% and 5% of its 2600 steps.
_JUMPRELU = dict(kind='jumprelu', n_features=512, jumprelu_init_threshold=0.03, warmup_steps=26, l1_warmup_steps=130)
sweep = [
    dict(name='topk_512_k20', kind='topk', n_features=512, k=20),
    dict(name='topk_1024_k20', kind='topk', n_features=1024, k=20),
    dict(name='topk_2048_k20', kind='topk', n_features=2048, k=20),
    dict(name='topk_4096_k20', kind='topk', n_features=4096, k=20),
    dict(name='topk_512_k10', kind='topk', n_features=512, k=10),
    dict(name='topk_512_k40', kind='topk', n_features=512, k=40),
    dict(name='batchtopk_512_k20', kind='batchtopk', n_features=512, k=20),
    dict(name='batchtopk_512_k40', kind='batchtopk', n_features=512, k=40),
    dict(name='matryoshka_512_k20', kind='matryoshka_batchtopk', n_features=512, k=20),
    dict(name='matryoshka_512_k40', kind='matryoshka_batchtopk', n_features=512, k=40),
    dict(name='jumprelu_512_l0_3e-3', **_JUMPRELU, l1_coeff=3e-3),
    dict(name='jumprelu_512_l0_1e-2', **_JUMPRELU, l1_coeff=1e-2),
    dict(name='anthropic2023_512_l1_1e-3', kind='anthropic2023', n_features=512, l1_coeff=1e-3),
    dict(name='anthropic2023_512_l1_3e-3', kind='anthropic2023', n_features=512, l1_coeff=3e-3),
    dict(name='april2024_512_l1_2', kind='april2024', n_features=512, l1_coeff=2.0),
    dict(name='april2024_512_l1_5', kind='april2024', n_features=512, l1_coeff=5.0),
]
out_dir = 'out/demo'
source = 'store'
# the rest as config/demo/sae.py, so topk_2048_k20 is the demo's SAE (same seed, batches and numbers)
lr = 1e-3  # every kind: the demo's short run needs a higher lr than the published ones
auxk_dead_tokens = 100_000  # topk: revive latents silent for ~100 steps
batch_size = 1024
max_steps = 2600  # 2.7M tokens per SAE
resample_steps = (500, 1000, 1500, 2000)  # anthropic2023 only
resample_rows = 65536
geometric_median_rows = 16384
autocast_dtype = 'bfloat16'
eval_interval = 1000
eval_contexts = 16
final_eval_contexts = 1024  # 262k val tokens per SAE: the window for density, dead and ultralow
ckpt_interval = 500
log_interval = 50
device = 'cpu'
