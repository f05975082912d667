# The seed's scale: the feature browser of the 4096-feature SAE on OpenWebText's validation split (out/owt),
# after train_sae.py config/sae.py. Meant for a GPU (tens of minutes on one); on CPU lower n_contexts.
out_dir = 'out/owt'
device = 'auto'
dtype = 'float32'

n_contexts = 8192  # x 1024 tokens = 8.4M validation tokens
context_length = 1024
batch_size = 16
top_k = 20
window = 10
n_intervals = 12
interval_samples = 5
n_example_texts = 25
example_length = 128
coact_tokens = 1048576
