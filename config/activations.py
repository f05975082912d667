# The seed's activation dataset (shehper/monosemantic): blocks.0.mlp_hidden (d=512) of the 1-layer OpenWebText
# transformer (config/transformer.py), 20M contexts of 1024 tokens x 200 positions = 4B rows.
# Disk: 4B rows x 512 x 2 bytes = 4.1 TB of fp16 (2,000 shards of 2 GB). RAM: one shard + one batch per rank.
# 8 GPUs: torchrun --standalone --nproc_per_node=8 generate_activations.py config/activations.py
# No disk to spare? train_sae.py can compute the rows on the fly instead (activations.OnTheFlySource).
out_dir = 'out/owt'
split = 'train'
site = 'mlp_hidden'
layer = -1
n_contexts = 20_000_000
tokens_per_context = 200
context_length = 0  # the model's block_size (1024)
dtype = 'float16'
rows_per_shard = 2 ** 21
batch_size = 64  # contexts per forward pass (64 x 1024 tokens)
device = 'auto'
