"""
Prepare OpenWebText for the seed reproduction (GPU scale), as nanoGPT's data/openwebtext/prepare.py does.

    python data/openwebtext/prepare.py
    python data/openwebtext/prepare.py --num_proc=16 --out_dir=/scratch/owt   # overrides; --help lists keys

Downloads the dataset with HF `datasets` (~54 GB in the HF cache, ~8M documents), holds out 0.05% as val
(seed 2357), tokenizes with tiktoken gpt2 (an end-of-text token after each document) and writes train.bin
(~9B tokens, ~17 GB) and val.bin (~4M tokens) as uint16 plus meta.json into out_dir (default: this folder).
The dataset -> bins step is tokenizer.tokenize_dataset_to_bins, which tests run on a local dataset.
"""
import os
import sys
import time

# run as a script, python puts data/openwebtext (not the repo root) on sys.path: add the root for monosemanticity/
_repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, _repo)
from monosemanticity import tokenizer as tk  # noqa: E402
from monosemanticity.common import die, exit_on_user_error  # noqa: E402
from configurator import configure  # noqa: E402

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
dataset = 'Skylion007/openwebtext'  # HF hub name ('openwebtext' was a loading script, which datasets>=4 refuses)
num_proc = 8  # workers in .map(); about half the number of cpu cores is a good start
num_proc_load_dataset = 8  # workers in load_dataset(); depends on network speed too
test_size = 0.0005  # fraction of documents held out as val
seed = 2357  # seed of the train/val split
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin, val.bin, meta.json go
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

t0 = time.time()
enc = tk.gpt2_encoding()  # before the long download: fail fast without tiktoken's files
from datasets import load_dataset  # heavy; only this script needs it

try:
    ds = load_dataset(dataset, num_proc=num_proc_load_dataset)
except Exception as e:  # network, hub and cache failures come in many types
    die(f"load_dataset({dataset!r}) failed: {type(e).__name__}: {str(e).splitlines()[0]}")

# owt only has a 'train' split: hold out a val split (train 8,009,762 / val 4,007 documents)
split_dataset = ds['train'].train_test_split(test_size=test_size, seed=seed, shuffle=True)
split_dataset['val'] = split_dataset.pop('test')  # rename the test split to val

meta = tk.tokenize_dataset_to_bins(split_dataset, enc, out_dir, num_proc=num_proc,
                                   corpus=f"{dataset} (HF datasets), val = {test_size} of documents (seed {seed})",
                                   dataset=dataset, test_size=test_size, seed=seed)
for name in ('train.bin', 'val.bin', 'meta.json'):
    print(f"wrote {os.path.join(out_dir, name)}")
print(f"train: {meta['train_tokens']:,} tokens, val: {meta['val_tokens']:,} tokens, in {time.time() - t0:.0f}s")
default_dir = os.path.abspath(out_dir) == os.path.dirname(os.path.abspath(__file__))
print("next: python train_transformer.py config/transformer.py" + ('' if default_dir else f" --dataset={out_dir}"))
