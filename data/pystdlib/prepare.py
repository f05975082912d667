"""
Prepare the embedded default corpus: every .py file of the running Python's standard library (no download).

    python data/pystdlib/prepare.py
    python data/pystdlib/prepare.py --vocab_size=512 --out_dir=/tmp/pystdlib   # overrides; --help lists keys

Writes train.bin, val.bin (uint16 token ids, an end-of-text token after each file), tokenizer.json,
documents.json (per split each file's path relative to the standard library, in document order: label_concepts.py's
folder concepts, 'asyncio', 'email', ...) and meta.json into out_dir (default: this folder). Files (site-packages
and __pycache__ excluded) are sorted by relative path, one document each; a file is val when a hash of its relative
path is < val_fraction; non-UTF-8 and empty files are skipped and counted. A byte-level BPE (rustbpe) is trained on
the train files only and run with tiktoken. Deterministic: two runs write byte-identical files. ~10 s on 2 cores.
"""
import os
import platform
import sys
import sysconfig
import time

# run as a script, python puts data/pystdlib (not the repo root) on sys.path: add the root for monosemanticity/
_repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, _repo)
from monosemanticity import tokenizer as tk  # noqa: E402
from monosemanticity.common import die, exit_on_user_error  # noqa: E402
from configurator import configure  # noqa: E402

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
vocab_size = 4096  # BPE vocabulary size, end-of-text token included
val_fraction = 0.05  # expected share of files in val (a file is val when a hash of its relative path falls below)
out_dir = os.path.dirname(os.path.abspath(__file__))  # where the five files go (default: data/pystdlib)
num_threads = os.cpu_count() or 1  # tiktoken encoding threads
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

t0 = time.time()
stdlib = sysconfig.get_paths()['stdlib']
rel_paths = []
for dirpath, dirnames, filenames in os.walk(stdlib):
    dirnames[:] = [d for d in dirnames if d not in ('site-packages', 'dist-packages', '__pycache__')]
    rel_paths += [os.path.relpath(os.path.join(dirpath, f), stdlib) for f in filenames if f.endswith('.py')]
rel_paths.sort(key=lambda p: p.replace(os.sep, '/'))
files, skipped, empty = tk.utf8_files(stdlib, rel_paths)
if not files:
    die(f"no UTF-8 .py files found under {stdlib} ({len(skipped)} skipped, {len(empty)} empty)")
train_files, val_files = tk.split_files(files, val_fraction)
print(f"{len(rel_paths)} .py files under {stdlib}: {len(train_files)} train, {len(val_files)} val, "
      f"{len(skipped)} non-UTF-8 skipped, {len(empty)} empty skipped")

os.makedirs(out_dir, exist_ok=True)
tk.remove_meta(out_dir)  # meta.json is written last: it only ever describes complete files
t1 = time.time()
enc = tk.train_bpe(tk.iter_texts(stdlib, train_files), vocab_size, name=f'pystdlib-bpe{vocab_size}')
print(f"trained BPE (rustbpe) on the train files: vocab {enc.n_vocab} in {time.time() - t1:.1f}s")
tok_fields = tk.tokenizer_fields(enc, out_dir)  # saves tokenizer.json
train_bin, val_bin = os.path.join(out_dir, 'train.bin'), os.path.join(out_dir, 'val.bin')
n_train = tk.write_tokens(tk.iter_texts(stdlib, train_files), enc, train_bin, num_threads=num_threads,
                          total=len(train_files))
n_val = tk.write_tokens(tk.iter_texts(stdlib, val_files), enc, val_bin, num_threads=num_threads, total=len(val_files))
doc_fields = tk.write_documents(out_dir, {'train': train_files, 'val': val_files})
tk.write_meta(out_dir, vocab_size=enc.n_vocab, dtype=tk.token_dtype(enc.n_vocab).name, eot_token=enc.eot_token,
              **tok_fields, corpus=f"pystdlib: the .py files of the Python {platform.python_version()} standard "
                                   f"library (site-packages excluded), one document per file, sorted by path",
              train_tokens=n_train, val_tokens=n_val, stdlib=stdlib,
              train_files=len(train_files), val_files=len(val_files),
              val_rule=f"sha1(relative path)[:8] < {val_fraction} * 2**64",
              skipped_files=skipped, empty_files=len(empty), vocab_size_requested=vocab_size, **doc_fields)

for name in ('train.bin', 'val.bin', 'tokenizer.json', tk.DOCUMENTS_FILE):
    print(f"wrote {os.path.join(out_dir, name)} ({os.path.getsize(os.path.join(out_dir, name)):,} bytes)")
print(f"wrote {os.path.join(out_dir, 'meta.json')}")
print(f"train: {n_train:,} tokens, val: {n_val:,} tokens, in {time.time() - t0:.1f}s")
default_dir = os.path.abspath(out_dir) == os.path.dirname(os.path.abspath(__file__))
print("next: python train_transformer.py config/demo/transformer.py" + ('' if default_dir else f" --dataset={out_dir}"))
