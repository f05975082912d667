"""
The one tokenize-and-write path shared by every data/<ds>/prepare.py and by the later stages.

Train a byte-level BPE with rustbpe, run it with tiktoken (as nanochat); save it as JSON next to the data;
stream documents -> token ids + end-of-text after each document -> train.bin / val.bin (raw uint16/uint32,
as nanoGPT); describe the result in meta.json. Later stages call `read_meta` and `load_tokenizer`.
"""
import base64
import codecs
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import tiktoken

from monosemanticity.common import (DATA_META_KEYS, UserError, atomic_file, atomic_write_bytes, atomic_write_json,
                                    load_data_meta, prepare_hint, progress, read_json)

EOT = '<|endoftext|>'
META_KEYS = DATA_META_KEYS  # the fields every meta.json has (common.DATA_META_KEYS)
DOCUMENTS_FILE = 'documents.json'  # each document's source path, per split (write_documents)

# -----------------------------------------------------------------------------
# the tokenizer: train with rustbpe, run with tiktoken


def train_bpe(texts: Iterable[str], vocab_size: int, name: str = 'bpe') -> tiktoken.Encoding:
    """Train a byte-level BPE on `texts` with rustbpe: vocab_size - 1 ranks + the end-of-text token."""
    import rustbpe
    if vocab_size < 257:
        raise UserError(f"vocab_size={vocab_size} is too small (256 byte tokens + end-of-text need 257)")
    tok = rustbpe.Tokenizer()
    # counting is parallel but merges are picked by (count, pair) with a fixed tie-break: deterministic
    tok.train_from_iterator(iter(texts), vocab_size - 1)
    ranks = sorted(tok.get_mergeable_ranks(), key=lambda br: br[1])
    mergeable_ranks = {bytes(b): r for b, r in ranks}
    assert list(mergeable_ranks.values()) == list(range(len(mergeable_ranks))), "rustbpe ranks are not dense"
    return tiktoken.Encoding(name, pat_str=tok.get_pattern(), mergeable_ranks=mergeable_ranks,
                             special_tokens={EOT: len(mergeable_ranks)})


def save_tokenizer(enc: tiktoken.Encoding, path: str) -> None:
    """Write `enc` as JSON: name, pat_str, special_tokens, base64 token bytes in rank order (atomic)."""
    ranks = enc._mergeable_ranks  # tiktoken has no public accessor; these three are what it pickles
    by_rank = sorted(ranks.items(), key=lambda br: br[1])
    if [r for _, r in by_rank] != list(range(len(by_rank))):
        raise ValueError(f"tokenizer {enc.name!r} has non-contiguous ranks; cannot save as a rank-ordered list")
    obj = {'name': enc.name, 'pat_str': enc._pat_str, 'special_tokens': dict(enc._special_tokens),
           'mergeable_ranks': [base64.b64encode(b).decode('ascii') for b, _ in by_rank]}
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + '\n').encode())


def load_tokenizer_file(path: str) -> tiktoken.Encoding:
    """Rebuild the tiktoken Encoding that `save_tokenizer` wrote to `path`."""
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
        ranks = {base64.b64decode(s): i for i, s in enumerate(obj['mergeable_ranks'])}
        return tiktoken.Encoding(obj['name'], pat_str=obj['pat_str'], mergeable_ranks=ranks,
                                 special_tokens={k: int(v) for k, v in obj['special_tokens'].items()})
    except FileNotFoundError:
        raise UserError(f"tokenizer file {path} not found") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a valid tokenizer file ({type(e).__name__}: {e})") from None


def gpt2_encoding() -> tiktoken.Encoding:
    """tiktoken's gpt2 encoding; one error line if it cannot be fetched (needs the network once)."""
    try:
        return tiktoken.get_encoding('gpt2')
    except Exception as e:  # download and cache failures come in many types
        raise UserError(f"cannot load tiktoken's gpt2 encoding (needs network once): "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def tokenizer_fields(enc: tiktoken.Encoding, data_dir: str) -> dict:
    """meta.json's tokenizer fields for `enc`; a non-gpt2 encoding is saved to <data_dir>/tokenizer.json."""
    path = os.path.join(data_dir, 'tokenizer.json')
    if enc.name == 'gpt2':
        if os.path.exists(path):
            os.remove(path)  # a BPE left by an earlier run would only mislead
        return {'tokenizer': 'gpt2', 'tokenizer_file': None}
    save_tokenizer(enc, path)
    return {'tokenizer': 'bpe', 'tokenizer_file': 'tokenizer.json'}


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)

# -----------------------------------------------------------------------------
# meta.json: what later stages read


def read_meta(data_dir: str) -> dict:
    """<data_dir>/meta.json, checked (common.load_data_meta without requiring the .bin files)."""
    return load_data_meta(data_dir, need_bins=False)


def load_tokenizer(data_dir: str) -> tiktoken.Encoding:
    """The encoding that wrote <data_dir>/*.bin: tiktoken gpt2, or the BPE saved next to the data."""
    meta = read_meta(data_dir)
    kind = meta['tokenizer']
    if kind == 'gpt2':
        enc = gpt2_encoding()
    elif kind == 'bpe':
        if not meta.get('tokenizer_file'):
            raise UserError(f"{os.path.join(data_dir, 'meta.json')} says tokenizer 'bpe' but names no file")
        enc = load_tokenizer_file(os.path.join(data_dir, meta['tokenizer_file']))
    else:
        raise UserError(f"{os.path.join(data_dir, 'meta.json')}: unknown tokenizer {kind!r} "
                         f"(expected 'gpt2' or 'bpe')")
    if enc.n_vocab != meta['vocab_size'] or enc.eot_token != meta['eot_token']:
        raise UserError(f"tokenizer of {data_dir} has n_vocab={enc.n_vocab}, eot={enc.eot_token} but "
                         f"meta.json says {meta['vocab_size']}, {meta['eot_token']}: {prepare_hint(data_dir)}")
    return enc


def write_meta(data_dir: str, **fields) -> dict:
    """Atomically write <data_dir>/meta.json (needs at least META_KEYS); returns the dict written."""
    missing = [k for k in META_KEYS if k not in fields]
    if missing:
        raise ValueError(f"write_meta: missing fields {missing}")
    meta = {k: fields[k] for k in META_KEYS} | {k: v for k, v in fields.items() if k not in META_KEYS}
    text = json.dumps(meta, indent=2, ensure_ascii=False) + '\n'
    atomic_write_bytes(os.path.join(data_dir, 'meta.json'), text.encode())
    return meta


def write_documents(data_dir: str, paths: dict[str, Sequence[str]]) -> dict:
    """Write <data_dir>/documents.json: {'train': [...], 'val': [...]}, each document's source path relative to the
    input ('/'-separated), in the order of <split>.bin's documents (atomic). Returns meta.json's field naming it."""
    atomic_write_json(os.path.join(data_dir, DOCUMENTS_FILE),
                      {split: [p.replace(os.sep, '/') for p in split_paths] for split, split_paths in paths.items()})
    return {'documents_file': DOCUMENTS_FILE}


def read_documents(data_dir: str, meta: dict) -> dict[str, list[str]] | None:
    """Per split its documents' source paths (write_documents), or None when meta.json names no documents file."""
    if not meta.get('documents_file'):
        return None
    path = os.path.join(data_dir, meta['documents_file'])
    paths = read_json(path, prepare_hint(data_dir))
    if not (isinstance(paths, dict) and all(isinstance(paths.get(s), list) for s in ('train', 'val'))):
        raise UserError(f"{path} holds no 'train' and 'val' lists of paths: {prepare_hint(data_dir)}")
    return paths


def remove_meta(data_dir: str) -> None:
    """Delete a previous meta.json before rewriting the data, so no meta ever describes other files."""
    try:
        os.remove(os.path.join(data_dir, 'meta.json'))
    except FileNotFoundError:
        pass

# -----------------------------------------------------------------------------
# text files -> documents


def utf8_files(root: str, rel_paths: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Sort `rel_paths` (under `root`) into (non-empty UTF-8 files, non-UTF-8/unreadable ones, empty ones)."""
    ok, skipped, empty = [], [], []
    for rel in rel_paths:
        try:
            n_chars, dec = 0, codecs.getincrementaldecoder('utf-8')()
            with open(os.path.join(root, rel), 'rb') as f:  # streams: holds 1 MB at a time
                while block := f.read(1 << 20):
                    n_chars += len(dec.decode(block))
            n_chars += len(dec.decode(b'', final=True))
            (ok if n_chars else empty).append(rel)
        except (UnicodeDecodeError, OSError):
            skipped.append(rel)
    return ok, skipped, empty


def is_val_file(rel_path: str, val_fraction: float) -> bool:
    """The fixed split rule: a file is val when a stable hash (sha1) of its relative path falls below val_fraction."""
    h = int.from_bytes(hashlib.sha1(rel_path.replace(os.sep, '/').encode('utf-8')).digest()[:8], 'big')
    return h < val_fraction * 2**64


def split_files(rel_paths: Sequence[str], val_fraction: float) -> tuple[list[str], list[str]]:
    """(train, val) by `is_val_file`; with few files, moves the lowest-hash files so both splits are non-empty."""
    train = [p for p in rel_paths if not is_val_file(p, val_fraction)]
    val = [p for p in rel_paths if is_val_file(p, val_fraction)]
    if len(rel_paths) >= 2 and (not train or not val):
        key = lambda p: hashlib.sha1(p.replace(os.sep, '/').encode('utf-8')).digest()
        ranked = sorted(rel_paths, key=key)
        n_val = min(max(1, round(val_fraction * len(ranked))), len(ranked) - 1)
        val_set = set(ranked[:n_val])
        train = [p for p in rel_paths if p not in val_set]
        val = [p for p in rel_paths if p in val_set]
    return train, val


def iter_texts(root: str, rel_paths: Iterable[str]) -> Iterator[str]:
    """Yield each file's text exactly (no newline translation), one document per file, one file at a time."""
    for rel in rel_paths:
        with open(os.path.join(root, rel), 'rb') as f:
            yield f.read().decode('utf-8')

# -----------------------------------------------------------------------------
# documents -> train.bin / val.bin


def write_tokens(docs: Iterable[str], enc: tiktoken.Encoding, path: str, dtype: np.dtype | None = None,
                 num_threads: int = 2, chunk_chars: int = 1 << 22, total: int | None = None) -> int:
    """Encode `docs` in chunks, an end-of-text token after each, streamed to `path` (atomic); returns #tokens."""
    dtype = np.dtype(dtype) if dtype is not None else token_dtype(enc.n_vocab)
    if enc.n_vocab > np.iinfo(dtype).max + 1:
        raise ValueError(f"dtype {dtype} cannot hold token ids up to {enc.n_vocab - 1}")
    eot = enc.eot_token
    total = len(docs) if total is None and hasattr(docs, '__len__') else total
    n_tokens = 0
    bar = progress(total=total, unit='doc', desc=f"writing {os.path.basename(path)}")
    with atomic_file(path, 'wb') as f, bar:
        def flush(chunk: list[str]) -> int:
            ids = enc.encode_ordinary_batch(chunk, num_threads=max(1, num_threads))
            for doc_ids in ids:
                doc_ids.append(eot)
            arr = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=sum(len(d) for d in ids))
            arr.tofile(f)
            bar.update(len(chunk))
            return arr.size
        chunk, n_chars = [], 0
        for doc in docs:
            chunk.append(doc)
            n_chars += len(doc)
            if n_chars >= chunk_chars:
                n_tokens += flush(chunk)
                chunk, n_chars = [], 0
        if chunk:
            n_tokens += flush(chunk)
    return n_tokens


def tokenize_dataset_to_bins(dset_dict, enc: tiktoken.Encoding, out_dir: str, num_proc: int = 1,
                             corpus: str = '', text_column: str = 'text', total_batches: int = 1024,
                             **meta_fields) -> dict:
    """nanoGPT's openwebtext recipe on a datasets.DatasetDict {'train', 'val'}: map-tokenize, then <split>.bin
    via np.memmap in contiguous shards (temp name + rename); writes meta.json last and returns it."""
    os.makedirs(out_dir, exist_ok=True)
    remove_meta(out_dir)
    eot, dtype = enc.eot_token, token_dtype(enc.n_vocab)

    def process(example: dict) -> dict:
        ids = enc.encode_ordinary(example[text_column])  # encode_ordinary ignores any special tokens
        ids.append(eot)  # the end-of-text token after each document
        return {'ids': ids, 'len': len(ids)}

    tokenized = {split: dset_dict[split].map(process, remove_columns=dset_dict[split].column_names,
                                             desc=f"tokenizing {split}", num_proc=num_proc if num_proc > 1 else None)
                 for split in ('train', 'val')}
    counts = {}
    for split, dset in tokenized.items():
        arr_len = int(np.sum(dset['len'], dtype=np.uint64))
        path = os.path.join(out_dir, f'{split}.bin')
        with atomic_file(path, 'wb+') as f:
            if arr_len:  # np.memmap cannot map an empty file
                arr = np.memmap(f, dtype=dtype, mode='w+', shape=(arr_len,))
                idx, n_batches = 0, max(1, min(total_batches, len(dset)))
                for batch_idx in progress(range(n_batches), desc=f"writing {path}"):
                    batch = dset.shard(num_shards=n_batches, index=batch_idx, contiguous=True).with_format('numpy')
                    arr_batch = np.concatenate(list(batch['ids'])) if len(batch) else np.empty(0, dtype)
                    arr[idx: idx + len(arr_batch)] = arr_batch
                    idx += len(arr_batch)
                assert idx == arr_len, f"wrote {idx} tokens into {path}, expected {arr_len}"
                arr.flush()
                del arr
        counts[split] = arr_len
    return write_meta(out_dir, vocab_size=enc.n_vocab, dtype=dtype.name, eot_token=eot,
                      **tokenizer_fields(enc, out_dir), corpus=corpus,
                      train_tokens=counts['train'], val_tokens=counts['val'],
                      train_docs=len(tokenized['train']), val_docs=len(tokenized['val']), **meta_fields)
