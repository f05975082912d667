# The seed's transformer (shehper/monosemantic): nanoGPT on OpenWebText with the gpt2 tokenizer,
# 1 layer, d_model 128, 4 heads, MLP 512 (4 x d_model), GELU, block 1024, 200k iterations.
# Prepare: python data/openwebtext/prepare.py. 8 GPUs: torchrun --standalone --nproc_per_node=8 ...
out_dir = 'out/owt'
dataset = 'openwebtext'
wandb_log = False
wandb_project = 'monosemanticity'
wandb_run_name = 'transformer-1l-128'

# nanoGPT's batch settings: 12 x 1024 tokens x 40 micro-steps = ~491k tokens per iteration
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

n_layer = 1
n_head = 4
n_embd = 128
activation = 'gelu'
dropout = 0.0

learning_rate = 6e-4
max_iters = 200000
lr_decay_iters = 200000
min_lr = 6e-5
warmup_iters = 2000
eval_interval = 2000
eval_iters = 200
