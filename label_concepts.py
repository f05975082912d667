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
from typing import NamedTuple

import numpy as np

from monosemanticity.common import (atomic_file, atomic_write_json, data_dir_of, exit_on_user_error, file_sha256,
                                    load_data_meta, progress, read_json, token_memmap)
from monosemanticity import concepts
from monosemanticity.concepts import CONCEPTS, NotPython, label_document
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


class SplitLabels(NamedTuple):
    tokens: int
    files: int
    skipped: list[dict]  # {document, first_token, reason} of each document that does not parse
    counts: np.ndarray  # (C,) tokens carrying each concept


def documents(tokens: np.ndarray, eot: int):
    """(start, end) token ranges of the documents of a split: the runs between end-of-text tokens."""
    start = 0
    for end in np.flatnonzero(tokens == eot).tolist() + [len(tokens)]:
        if end > start:
            yield start, end
        start = end + 1


def label_split(tokens: np.ndarray, eot: int, enc, token_bytes: np.ndarray, path: str) -> SplitLabels:
    """Label each document of `tokens` (n,) and write the packed (n, ceil(C/8)) uint8 rows to `path` (atomic)."""
    width = (len(CONCEPTS) + 7) // 8
    counts, skipped, files = np.zeros(len(CONCEPTS), dtype=np.int64), [], 0
    docs = list(documents(tokens, eot))
    with atomic_file(path, 'wb+') as f:
        if len(tokens):  # np.memmap cannot map an empty file
            f.truncate(len(tokens) * width)  # all-zero rows: end-of-text and skipped documents stay so
            out = np.memmap(f, dtype=np.uint8, mode='r+', shape=(len(tokens), width))
            for i, (start, end) in enumerate(progress(docs, unit='doc', desc=f"labelling {os.path.basename(path)}")):
                ids = np.asarray(tokens[start:end], dtype=np.int64)
                ends = np.cumsum(token_bytes[ids])
                spans = np.stack([ends - token_bytes[ids], ends], axis=1)  # (n_doc, 2) byte ranges
                files += 1
                try:
                    text = enc.decode_bytes(ids.tolist()).decode('utf-8')
                    labels = label_document(text, spans)  # (n_doc, C)
                except (NotPython, UnicodeDecodeError) as e:
                    reason = str(e) if isinstance(e, NotPython) else f"not UTF-8: {e}"
                    skipped.append(dict(document=i, first_token=start, reason=reason))
                    continue
                out[start:end] = np.packbits(labels, axis=1)
                counts += labels.sum(axis=0)
            out.flush()
            del out
    return SplitLabels(len(tokens), files, skipped, counts)


def up_to_date(json_path: str, fingerprints: dict) -> bool:
    """True when concepts.json describes these splits' tokens, this labeller (concepts.py) and this Python, and its
    files exist."""
    if not os.path.isfile(json_path):
        return False
    old = read_json(json_path)
    width = (len(CONCEPTS) + 7) // 8
    same = (old.get('python') == platform.python_version() and old.get('labeller_sha256') == fingerprints['labeller']
            and [c['name'] for c in old.get('concepts', [])] == [c.name for c in CONCEPTS])
    for split in ('train', 'val'):
        sha, entry = fingerprints[split], old.get('splits', {}).get(split, {})
        path = os.path.join(os.path.dirname(json_path), f'concepts_{split}.bin')
        same = same and entry.get('tokens_sha256') == sha and os.path.isfile(path) and \
            os.path.getsize(path) == entry.get('tokens', -1) * width
    return same


def label_dataset(data_dir: str, meta: dict, json_path: str, fingerprints: dict) -> None:
    """Label both splits, then write concepts.json (last: it only ever describes complete label files)."""
    enc = load_tokenizer(data_dir)
    token_bytes = np.array([len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)], dtype=np.int64)  # (V,)
    splits, skipped = {}, []
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'concepts_{split}.bin')
        result = label_split(token_memmap(data_dir, split, meta['dtype']), meta['eot_token'], enc, token_bytes, path)
        rates = result.counts / max(result.tokens, 1)
        splits[split] = dict(file=os.path.basename(path), tokens=result.tokens, row_bytes=(len(CONCEPTS) + 7) // 8,
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

