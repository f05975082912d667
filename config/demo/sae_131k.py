# The paper's largest dictionary on the demo (not part of make demo): a TopK SAE (k=32) with 131,072 features on the
# demo store, trained with the sparse step (the encoder GEMM its only dense product), a few hundred steps:
#   python train_sae.py config/demo/sae_131k.py
#   python build_interface.py config/demo/interface_131k.py
# Reads out/demo/activations and out/demo/transformer (make demo first); writes out/demo131k/sae/.
out_dir = 'out/demo131k'
activations_dir = 'out/demo/activations'
transformer_ckpt = 'out/demo/transformer/ckpt.pt'
source = 'store'
kind = 'topk'
k = 32
n_features = 131072
auxk_dead_tokens = 100_000
lr = 1e-3
batch_size = 1024
max_steps = 300
autocast_dtype = 'bfloat16'
geometric_median_rows = 16384
eval_interval = 100
eval_contexts = 8
final_eval_contexts = 64
eval_batch_size = 4
ckpt_interval = 100
log_interval = 20
device = 'cpu'
