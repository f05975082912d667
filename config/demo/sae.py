# CPU demo: an SAE on the demo transformer's MLP activations (blocks.0.mlp_hidden, d=512) from the store of
# python generate_activations.py config/demo/activations.py, in a few minutes on 2 cores.
# The best recipe we found for this budget is TopK (k=20): at the same L0 it recovers more of the loss than
# the paper's L1 recipe (docs/recipes.md, "Recipes tried on the demo"). Keys not set here (λ, schedules, clipping,
# Adam) take the kind's published values (autoencoder.RECIPES; --help shows them). The paper's recipe on the demo:
#   python train_sae.py config/demo/sae.py --kind=anthropic2023 --l1_coeff=3e-3
# Anthropic's April 2024 update (λ 5 warmed up over 5%, lr decay over the last 20%, clip 1):
#   python train_sae.py config/demo/sae.py --kind=april2024
out_dir = 'out/demo'
source = 'store'
kind = 'topk'
k = 20
auxk_dead_tokens = 100_000  # the demo sees ~2.7M tokens: revive latents silent for ~100 steps
n_features = 2048
lr = 1e-3  # every kind: the demo's short run needs a higher lr than the published ones
batch_size = 1024
max_steps = 2600
resample_steps = (500, 1000, 1500, 2000)  # kind='anthropic2023' only
resample_rows = 65536
geometric_median_rows = 16384
autocast_dtype = 'bfloat16'
eval_interval = 1000
eval_contexts = 16
final_eval_contexts = 1024  # 262k val tokens: the window for density, dead and ultralow
ckpt_interval = 500
log_interval = 50
device = 'cpu'
