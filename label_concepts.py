"""
Label every token of a prepared Python dataset with ground-truth concepts (monosemanticity/concepts.py: comments,
strings, keywords, function bodies, call arguments, bracket depth, ...), once, next to the data.

    python label_concepts.py --data_dir=data/pystdlib        # ~45 s on the demo data, 2 cores (docs/concepts.md)

Writes <data_dir>/concepts_train.bin and concepts_val.bin (one row per token of <split>.bin: the concepts bit-packed
with np.packbits along the concept axis, (n_tokens, ceil(C/8)) uint8; end-of-text tokens and the tokens of documents
that do not parse are all-zero rows), then concepts.json (concept names in column order, kinds, base rates, files
labelled and skipped and why, the token rule, the Python that labelled them, each split's fingerprint). Rerun: when
concepts.json matches the splits' tokens and this Python, it says "labels are up to date" and writes nothing.
"""
import os
import platform

import numpy as np

from monosemanticity.common import (atomic_write_json, data_dir_of, exit_on_user_error, file_sha256, load_data_meta,
                                    token_memmap)
from monosemanticity import concepts
from monosemanticity.concepts import CONCEPTS, ROW_BYTES, label_split, up_to_date
from monosemanticity.tokenizer import load_tokenizer
from configurator import configure

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
data_dir = 'data/pystdlib'  # a prepared dataset: a folder under data/ or a path
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

TOKEN_RULE = ("a token takes the labels of its first byte that is not a space or tab (its first byte if it has no "
              "other): the BPE glues a word to the space before it")
FOLDER_CONCEPT = ("none: meta.json does not record each document's path, so the first-level folder a document came "
                  "from is not a concept")


def label_dataset(data_dir: str, meta: dict, json_path: str, fingerprints: dict) -> None:
    """Label both splits, then write concepts.json (last: it only ever describes complete label files)."""
    enc = load_tokenizer(data_dir)
    token_bytes = np.array([len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)], dtype=np.int64)  # (V,)
    splits, skipped = {}, []
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'concepts_{split}.bin')
        result = label_split(token_memmap(data_dir, split, meta['dtype']), meta['eot_token'], enc, token_bytes, path)
        rates = result.counts / max(result.tokens, 1)
        splits[split] = dict(file=os.path.basename(path), tokens=result.tokens, row_bytes=ROW_BYTES,
                             tokens_sha256=fingerprints[split], files=result.files, files_skipped=len(result.skipped),
                             base_rates={c.name: round(float(r), 6) for c, r in zip(CONCEPTS, rates)})
        skipped += [dict(split=split, **s) for s in result.skipped]
        print(f"{split}: {result.tokens:,} tokens, {result.files} files ({len(result.skipped)} skipped)")

    atomic_write_json(json_path, dict(
        format="concepts_<split>.bin: (tokens, row_bytes) uint8, row i = np.packbits of token i's concepts (bool, "
               "columns in `concepts` order) along the concept axis; end-of-text and skipped files' tokens are 0",
        concepts=[dict(name=c.name, kind=c.kind) for c in CONCEPTS], token_rule=TOKEN_RULE,
        skipped_rule="a document that Python's ast or tokenize rejects gets no labels (all-zero rows) and is listed",
        python=platform.python_version(), labeller_sha256=fingerprints['labeller'], folder_concept=FOLDER_CONCEPT,
        splits=splits, skipped=skipped))
    for s in skipped:
        print(f"skipped {s['split']} document {s['document']} (token {s['first_token']}): {s['reason']}")
    print(f"wrote {json_path}")


# -----------------------------------------------------------------------------
data_dir = data_dir_of(data_dir)
meta = load_data_meta(data_dir)  # one line and exit 2 when data_dir is not a prepared dataset
json_path = os.path.join(data_dir, 'concepts.json')
fingerprints = {split: file_sha256(os.path.join(data_dir, f'{split}.bin')) for split in ('train', 'val')}
fingerprints['labeller'] = file_sha256(concepts.__file__)  # new labelling code: new labels
if up_to_date(json_path, fingerprints):
    print(f"labels are up to date: {json_path}")
else:
    label_dataset(data_dir, meta, json_path, fingerprints)

