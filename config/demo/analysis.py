# CPU demo: the paper's findings measured on the demo run (after make demo and run B, `make analysis`), ~1-2 min on
# 2 cores. Run A is out/demo, run B out/demo/run_b (the same three stages, the transformer with --seed=1338).
# Writes out/demo/analysis/ (report.json, interpretability.png, universality.png); then the two sites:
#   python build_interface.py config/demo/interface.py
#   python build_interface.py config/demo/interface.py --out_dir=out/demo/run_b --analysis=out/demo/analysis/report.json
out_dir = 'out/demo'  # run A; run B is <out_dir>/run_b (run_b = '')
device = 'cpu'
dtype = 'float32'

n_contexts = 1024  # x 256 tokens = 262k val tokens: half explain the units, half score them; all for universality
context_length = 256  # the demo transformer's block_size
explain_frac = 0.5
batch_size = 32
fire_frac = 0.5  # a unit fires above half its max over the EXPLAIN tokens (features and neurons alike)
min_precision = 0.5
min_pattern_fires = 2
max_patterns = 10
n_output_tokens = 5
