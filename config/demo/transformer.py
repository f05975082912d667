# CPU demo: the seed's architecture (1 layer, d_model 128, 4 heads, MLP 512, GELU) on the Python standard
# library's own source (python data/pystdlib/prepare.py): 1100 iterations x 4096 tokens, ~4.5 min on 2 cores,
# val loss ~3.67 nats/token.
out_dir = 'out/demo'
dataset = 'pystdlib'
device = 'cpu'
dtype = 'float32'
compile = False

batch_size = 16
block_size = 256
gradient_accumulation_steps = 1

n_layer = 1
n_head = 4
n_embd = 128
activation = 'gelu'
dropout = 0.0

learning_rate = 3e-3
max_iters = 1100
lr_decay_iters = 1100
min_lr = 3e-4
warmup_iters = 50
eval_interval = 500
eval_iters = 20
log_interval = 10
