# The seed's SAE run (shehper/monosemantic): Anthropic's 2023 recipe on the 1-layer model's MLP activations
# (blocks.0.mlp_hidden, d=512), 4096 features, batch 8192, lr 3e-4, L1 1e-3, neuron resampling at
# 25k/50k/75k/100k, ~5e5 steps (~4B rows). Needs: train_transformer.py config/transformer.py, then
# generate_activations.py config/activations.py. Several GPUs: torchrun --standalone --nproc_per_node=8 ...
# (batch_size is per rank: use batch_size = 8192 // n_gpus to keep the seed's global batch).
# λ convention: the anthropic2023 loss averages the squared error over the d = 512 dimensions and sums the L1 over
# the features, as the paper (and the seed) do, so l1_coeff is the paper's λ.
out_dir = 'out/owt'
source = 'store'
kind = 'anthropic2023'
n_features = 4096
l1_coeff = 1e-3
lr = 3e-4
batch_size = 8192
max_steps = 500000
resample_steps = (25000, 50000, 75000, 100000)
resample_rows = 819200
eval_interval = 5000
eval_contexts = 64
final_eval_contexts = 4096
ckpt_interval = 2000
log_interval = 100
device = 'auto'
autocast_dtype = 'float32'
wandb_log = False
wandb_run_name = 'sae-anthropic2023-4096'
