"""
Label every token of a prepared Python dataset with ground-truth concepts (monosemanticity/concepts.py: comments,
strings, keywords, function bodies, call arguments, bracket depth, ...), once, next to the data; when the dataset
records each document's path (documents.json: data/text/prepare.py), also the first-level folder each document came
from ('folder:notes': every token of a document in notes/).

    python label_concepts.py --data_dir=data/pystdlib        # ~45-50 s CPU on the demo data (docs/concepts.md)

Writes <data_dir>/concepts_train.bin and concepts_val.bin (one row per token of <split>.bin: the concepts bit-packed
with np.packbits along the concept axis, (n_tokens, ceil(C/8)) uint8, C = the Python concepts + the dataset's folder
columns; end-of-text tokens are all-zero rows, the tokens of documents that do not parse have only their folder's
bit), then concepts.json (concept names in column order, kinds, base rates, files labelled and skipped and why, the
folders without a column, the token rule, the Python that labelled them, each split's fingerprint). Rerun: when
concepts.json matches the splits' tokens, their documents' paths, the columns and this Python, it says "labels are
up to date" and writes nothing.
"""
import os
import platform

import numpy as np

from monosemanticity.common import (atomic_write_json, data_dir_of, exit_on_user_error, file_sha256, load_data_meta,
                                    token_memmap)
from monosemanticity import concepts
from monosemanticity.concepts import (CONCEPTS, FOLDER_CAP, Folders, choose_folders, dataset_concepts,
                                      document_folders, documents, label_split, row_bytes, split_documents, up_to_date)
from monosemanticity.tokenizer import load_tokenizer, read_documents
from configurator import configure

exit_on_user_error()  # a UserError from any helper ends the run with one line and exit code 2

# -----------------------------------------------------------------------------
data_dir = 'data/pystdlib'  # a prepared dataset: a folder under data/ or a path
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)
# -----------------------------------------------------------------------------

SPLITS = ('train', 'val')
TOKEN_RULE = ("a token takes the labels of its first byte that is not a space or tab (its first byte if it has no "
              "other): the BPE glues a word to the space before it")
FOLDER_RULE = (f"folder:X holds on every token of a document whose path relative to the input is X/...: a file at "
               f"the top level has no folder, an end-of-text token none; one column per first-level folder of the "
               f"train documents, the {FOLDER_CAP} of most train tokens (the rest in folders_dropped); a document "
               f"that does not parse as Python keeps its folder's label")
NO_FOLDERS = ("none: meta.json names no documents file (each document's path), so the first-level folder a document "
              "came from is not a concept; the prepare script that records it: data/text/prepare.py")


def label_dataset(data_dir: str, meta: dict, json_path: str, fingerprints: dict, splits: dict, folders: Folders,
                  recorded: bool) -> None:
    """Label both splits (splits[split]: its SplitDocuments), then write concepts.json (last: it only ever describes
    complete label files)."""
    enc = load_tokenizer(data_dir)
    token_bytes = np.array([len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)], dtype=np.int64)  # (V,)
    columns = dataset_concepts(folders.kept)
    entries, skipped = {}, []
    for split in SPLITS:
        path = os.path.join(data_dir, f'concepts_{split}.bin')
        result = label_split(token_memmap(data_dir, split, meta['dtype']), splits[split], enc, token_bytes, path)
        rates = result.counts / max(result.tokens, 1)
        entries[split] = dict(file=os.path.basename(path), tokens=result.tokens, row_bytes=row_bytes(len(columns)),
                              tokens_sha256=fingerprints[split], files=result.files,
                              files_skipped=len(result.skipped),
                              base_rates={c.name: round(float(r), 6) for c, r in zip(columns, rates)})
        skipped += [dict(split=split, **s) for s in result.skipped]
        print(f"{split}: {result.tokens:,} tokens, {result.files} files ({len(result.skipped)} skipped)")

    atomic_write_json(json_path, dict(
        format="concepts_<split>.bin: (tokens, row_bytes) uint8, row i = np.packbits of token i's concepts (bool, "
               "columns in `concepts` order) along the concept axis; end-of-text tokens are 0, skipped files' "
               "tokens have only their folder's bit",
        concepts=[dict(name=c.name, kind=c.kind) for c in columns], token_rule=TOKEN_RULE,
        skipped_rule="a document that Python's ast or tokenize rejects gets no Python labels (its folder's label "
                     "only) and is listed",
        python=platform.python_version(), labeller_sha256=fingerprints['labeller'],
        folder_concept=FOLDER_RULE if recorded else NO_FOLDERS, folders_dropped=folders.dropped,
        documents_sha256=fingerprints['documents'], splits=entries, skipped=skipped))
    for s in skipped:
        print(f"skipped {s['split']} document {s['document']} (token {s['first_token']}): {s['reason']}")
    print(f"wrote {json_path}")


# -----------------------------------------------------------------------------
data_dir = data_dir_of(data_dir)
meta = load_data_meta(data_dir)  # one line and exit 2 when data_dir is not a prepared dataset
json_path = os.path.join(data_dir, 'concepts.json')
paths = read_documents(data_dir, meta)  # per split each document's path, or None when the dataset records none
paths_file = os.path.join(data_dir, meta['documents_file']) if paths is not None else None
docs = {split: documents(token_memmap(data_dir, split, meta['dtype']), meta['eot_token']) for split in SPLITS}
doc_folders = {split: document_folders(paths[split] if paths is not None else None, docs[split],
                                       f"{paths_file}'s {split!r}")
               for split in SPLITS}
folders = choose_folders(doc_folders['train'], [end - start for start, end in docs['train']])
if folders.dropped:
    print(f"{len(folders.dropped)} folders beyond the {FOLDER_CAP} of most train tokens get no column: "
          f"{', '.join(folders.dropped)}")
names = [c.name for c in dataset_concepts(folders.kept)]
fingerprints = {split: file_sha256(os.path.join(data_dir, f'{split}.bin')) for split in SPLITS}
fingerprints['labeller'] = file_sha256(concepts.__file__)  # new labelling code: new labels
fingerprints['documents'] = file_sha256(paths_file) if paths_file else None  # a file moved to another folder
if up_to_date(json_path, fingerprints, names):
    print(f"labels are up to date: {json_path}")
else:
    print(f"{len(CONCEPTS)} Python concepts + {len(folders.kept)} folders: {len(names)} columns")
    label_dataset(data_dir, meta, json_path, fingerprints,
                  {split: split_documents(docs[split], doc_folders[split], folders.kept) for split in SPLITS},
                  folders, paths is not None)
