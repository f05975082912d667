"""
Prepare any folder, file or glob of UTF-8 text files: one document per file, own BPE (rustbpe) or gpt2.

    python data/text/prepare.py --input=path/to/folder
    python data/text/prepare.py --input='notes/**/*.md' --vocab_size=2048 --out_dir=data/notes
    python data/text/prepare.py --input=input.txt --tokenizer=gpt2   # gpt2 needs tiktoken's download once

Writes train.bin, val.bin (token ids, an end-of-text token after each document), documents.json (per split each
document's path relative to the input, '/'-separated, in the order of the split's documents; a single file's two
pieces are both its path), meta.json (and tokenizer.json for 'bpe') into out_dir (default: this folder). Files are
sorted by path relative to the input; a file is val when a hash of that path is < val_fraction (with few files, the
lowest-hash ones); a single file is split at the newline nearest 1 - val_fraction of its text. Non-UTF-8 and empty
files are skipped and counted; an empty corpus is an error and nothing is written. The BPE is trained on the train
documents only. Deterministic. label_concepts.py makes each first-level folder of the input a concept
(docs/concepts.md).
"""
import glob
import os
import sys
import time

# run as a script, python puts data/text (not the repo root) on sys.path: add the root for monosemanticity/
_repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, _repo)
from monosemanticity import tokenizer as tk  # noqa: E402
from monosemanticity.common import die, exit_on_user_error  # noqa: E402
from configurator import configure  # noqa: E402

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
input = ''  # a folder (every file below it), a single file, or a glob ('docs/**/*.txt'); required
tokenizer = 'bpe'  # 'bpe': train our own byte-level BPE on the train files; 'gpt2': tiktoken's gpt2
vocab_size = 4096  # BPE vocabulary size, end-of-text token included (ignored for gpt2)
val_fraction = 0.05  # expected share of files (or, for a single file, of its text) in val
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin, val.bin, meta.json (+ tokenizer.json) go
num_threads = os.cpu_count() or 1  # tiktoken encoding threads
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

t0 = time.time()
if not input:
    die("no input: pass --input=path/to/folder (or a file, or a glob like 'docs/**/*.txt')")
if tokenizer not in ('bpe', 'gpt2'):
    die(f"tokenizer={tokenizer!r}: expected 'bpe' or 'gpt2'")
if not 0 < val_fraction < 1:
    die(f"val_fraction={val_fraction} must be strictly between 0 and 1")

# the files: paths relative to a root, sorted; our own outputs never count as input
outputs = {os.path.join(os.path.abspath(out_dir), n)
           for n in ('train.bin', 'val.bin', 'meta.json', 'tokenizer.json', tk.DOCUMENTS_FILE)}
if os.path.isdir(input):
    root, paths = input, []
    for dirpath, dirnames, filenames in os.walk(input):
        dirnames[:] = [d for d in dirnames if not d.startswith('.') and d != '__pycache__']
        paths += [os.path.join(dirpath, f) for f in filenames if not f.startswith('.')]
elif os.path.isfile(input):
    root, paths = os.path.dirname(input), [input]
else:
    paths = [p for p in glob.glob(input, recursive=True) if os.path.isfile(p)]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else ''
paths = [p for p in paths if os.path.abspath(p) not in outputs and not p.endswith('.tmp')]
rel_paths = sorted((os.path.relpath(os.path.abspath(p), os.path.abspath(root)) for p in paths),
                   key=lambda p: p.replace(os.sep, '/'))
if not rel_paths:
    die(f"input={input!r} matches no files")
files, skipped, empty = tk.utf8_files(root, rel_paths)
if not files:
    die(f"input={input!r}: no text: of {len(rel_paths)} files, {len(skipped)} are not UTF-8 "
                     f"and {len(empty)} are empty")

# the split: by file; a single file is cut at a newline
if len(files) == 1:
    text = next(tk.iter_texts(root, files))
    if len(text) < 2:
        die(f"input={input!r}: one file of {len(text)} character cannot be split into train/val")
    cut = int(len(text) * (1 - val_fraction))
    cut = text.rfind('\n', 0, cut) + 1 or cut  # just after the last newline before the cut, if any
    cut = min(max(cut, 1), len(text) - 1)
    train_docs, val_docs = (lambda: iter([text[:cut]])), (lambda: iter([text[cut:]]))
    n_train_docs, n_val_docs = 1, 1
    documents = {'train': files, 'val': files}  # both pieces come from the one file
    val_rule = f"single file: val = its text after character {cut} (the newline nearest {1 - val_fraction:.0%})"
else:
    train_files, val_files = tk.split_files(files, val_fraction)
    train_docs, val_docs = (lambda: tk.iter_texts(root, train_files)), (lambda: tk.iter_texts(root, val_files))
    n_train_docs, n_val_docs = len(train_files), len(val_files)
    documents = {'train': train_files, 'val': val_files}
    val_rule = f"sha1(relative path)[:8] < {val_fraction} * 2**64 (lowest hashes if a split would be empty)"
print(f"{len(rel_paths)} files under {root or '.'}: {n_train_docs} train docs, {n_val_docs} val docs, "
      f"{len(skipped)} non-UTF-8 skipped, {len(empty)} empty skipped")

# the tokenizer
if tokenizer == 'gpt2':
    enc = tk.gpt2_encoding()
else:
    t1 = time.time()
    enc = tk.train_bpe(train_docs(), vocab_size, name=f'text-bpe{vocab_size}')
    print(f"trained BPE (rustbpe) on the train docs: vocab {enc.n_vocab} in {time.time() - t1:.1f}s"
          + (f" (the corpus has too few distinct pairs for {vocab_size})" if enc.n_vocab < vocab_size else ''))

# the files: bins, tokenizer, then meta.json last
os.makedirs(out_dir, exist_ok=True)
tk.remove_meta(out_dir)
tok_fields = tk.tokenizer_fields(enc, out_dir)
train_bin, val_bin = os.path.join(out_dir, 'train.bin'), os.path.join(out_dir, 'val.bin')
n_train = tk.write_tokens(train_docs(), enc, train_bin, num_threads=num_threads, total=n_train_docs)
n_val = tk.write_tokens(val_docs(), enc, val_bin, num_threads=num_threads, total=n_val_docs)
doc_fields = tk.write_documents(out_dir, documents)
tk.write_meta(out_dir, vocab_size=enc.n_vocab, dtype=tk.token_dtype(enc.n_vocab).name, eot_token=enc.eot_token,
              **tok_fields, corpus=f"text: the UTF-8 files of input={input!r}, one document per file",
              train_tokens=n_train, val_tokens=n_val, train_docs=n_train_docs, val_docs=n_val_docs,
              val_rule=val_rule, skipped_files=skipped, empty_files=len(empty),
              vocab_size_requested=vocab_size if tokenizer == 'bpe' else None, **doc_fields)

tok_file = [tok_fields['tokenizer_file']] if tok_fields['tokenizer_file'] else []
for name in ['train.bin', 'val.bin', tk.DOCUMENTS_FILE] + tok_file:
    print(f"wrote {os.path.join(out_dir, name)} ({os.path.getsize(os.path.join(out_dir, name)):,} bytes)")
print(f"wrote {os.path.join(out_dir, 'meta.json')}")
print(f"train: {n_train:,} tokens, val: {n_val:,} tokens, in {time.time() - t0:.1f}s")
default_dir = os.path.abspath(out_dir) == os.path.dirname(os.path.abspath(__file__))
print(f"next: python train_transformer.py config/demo/transformer.py --dataset={'text' if default_dir else out_dir}")
