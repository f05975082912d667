# CPU demo: the feature browser of the demo SAE (after train_sae.py config/demo/sae.py), ~30 s on 2 cores.
# Open out/demo/interface/index.html in a browser afterwards (works from disk, no server).
out_dir = 'out/demo'
device = 'cpu'
dtype = 'float32'

n_contexts = 1024  # x 256 tokens = 262k validation tokens for densities, top examples and intervals
context_length = 256  # the demo transformer's block_size
batch_size = 32
top_k = 20
window = 8  # tokens either side of a shown token
n_intervals = 12
interval_samples = 5
n_example_texts = 25
example_length = 128
coact_tokens = 65536
