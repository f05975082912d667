# The feature browser of the 131,072-feature SAE of config/demo/sae_131k.py (not part of make demo):
#   python build_interface.py config/demo/interface_131k.py
# Its statistics are exact sparse counts (F x F co-activations would be 64 GB) and its logit weights are computed by
# rows; a smaller sample of contexts and small batches keep a batch's (tokens x 131,072) codes near 0.5 GB.
out_dir = 'out/demo131k'
transformer_ckpt = 'out/demo/transformer/ckpt.pt'
device = 'cpu'
dtype = 'float32'
n_contexts = 256
context_length = 256
batch_size = 4
top_k = 10
n_intervals = 6
interval_samples = 2
n_example_texts = 10
example_length = 128
coact_tokens = 16384
