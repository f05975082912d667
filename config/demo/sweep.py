# CPU demo sweep (make sweep, after make demo): 10 SAEs trained on one pass over the demo store, each batch read
# once and fed to all of them, then the Pareto report (out/demo/sweep/pareto.json + pareto.png):
#   python train_sae.py config/demo/sweep.py                     # --init_from=resume continues, skips what is done
# A family of sizes (TopK k=20, 512 -> 4096 features: feature splitting) and two sparsity levels of each kind.
# Every key not in an entry is the run's (below); an entry of another kind takes its kind's published recipe
# (autoencoder.RECIPES) for the keys left unset here. A kind is one more line per SAE, e.g.
#   dict(name='batchtopk_1024_k20', kind='batchtopk', n_features=1024, k=20),
#   dict(name='matryoshka_1024_k20', kind='matryoshka_batchtopk', n_features=1024, k=20),
#   dict(name='jumprelu_1024_l0_1e-3', kind='jumprelu', n_features=1024, l1_coeff=1e-3),
sweep = [
    dict(name='topk_512_k20', kind='topk', n_features=512, k=20),
    dict(name='topk_1024_k20', kind='topk', n_features=1024, k=20),
    dict(name='topk_2048_k20', kind='topk', n_features=2048, k=20),
    dict(name='topk_4096_k20', kind='topk', n_features=4096, k=20),
    dict(name='topk_1024_k10', kind='topk', n_features=1024, k=10),
    dict(name='topk_1024_k40', kind='topk', n_features=1024, k=40),
    dict(name='anthropic2023_1024_l1_1e-3', kind='anthropic2023', n_features=1024, l1_coeff=1e-3),
    dict(name='anthropic2023_1024_l1_3e-3', kind='anthropic2023', n_features=1024, l1_coeff=3e-3),
    dict(name='april2024_1024_l1_2', kind='april2024', n_features=1024, l1_coeff=2.0),
    dict(name='april2024_1024_l1_5', kind='april2024', n_features=1024, l1_coeff=5.0),
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
