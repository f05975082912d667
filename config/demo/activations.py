# CPU demo: blocks.0.mlp_hidden (d=512) of the demo transformer (python train_transformer.py
# config/demo/transformer.py) on the Python stdlib corpus: 15k contexts of 256 tokens x 200 positions
# = 3.0M rows, 3.1 GB of fp16 in 12 shards. Measured on an idle 2-core box: 20 s (~150k rows/s).
out_dir = 'out/demo'
split = 'train'
site = 'mlp_hidden'
layer = -1
n_contexts = 15_000
tokens_per_context = 200  # like the seed (200 per context); the demo's contexts are 256 tokens long
context_length = 0  # the model's block_size (256)
dtype = 'float16'
rows_per_shard = 2 ** 18  # 256 MB shards; RAM: one shard + one batch (+ <= 1/4 shard while one is saved)
batch_size = 32
device = 'cpu'
