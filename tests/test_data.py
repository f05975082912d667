"""Data preparation: deterministic byte-identical outputs, exact round trips, honest meta.json, clear errors."""
import json
import os
import random

import numpy as np
import pytest
import tiktoken

from monosemanticity import tokenizer as tk
from monosemanticity.common import UserError
from conftest import REPO, run_script

OUTPUTS = ('train.bin', 'val.bin', 'meta.json', 'tokenizer.json')
WORDS = ['def', 'return', 'self', 'import', 'the', 'cat', 'sat', 'naïve', 'café', '日本語', '🙂', '\t', '(x)', '42']


def make_corpus(root: str, n_files: int = 24, seed: int = 0) -> dict[str, str]:
    """A folder of small UTF-8 text files (in subfolders, some CRLF, non-ASCII) plus a non-UTF-8 and an empty file."""
    rng = random.Random(seed)
    texts = {}
    for i in range(n_files):
        rel = os.path.join(f'sub{i % 3}', f'doc{i:02d}.txt') if i % 2 else f'doc{i:02d}.txt'
        nl = '\r\n' if i % 5 == 0 else '\n'
        lines = [' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(rng.randint(5, 30))]
        texts[rel] = nl.join(lines) + nl
    for rel, text in texts.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)) or root, exist_ok=True)
        with open(os.path.join(root, rel), 'wb') as f:
            f.write(text.encode('utf-8'))
    with open(os.path.join(root, 'latin1.txt'), 'wb') as f:
        f.write('caf\xe9 cr\xe8me'.encode('latin-1'))  # not UTF-8: skipped and counted
    open(os.path.join(root, 'empty.txt'), 'w').close()  # empty: skipped and counted
    return texts


def read_tokens(data_dir: str, split: str, meta: dict) -> np.ndarray:
    return np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=np.dtype(meta['dtype']))


def decode_docs(enc: tiktoken.Encoding, ids: np.ndarray) -> list[str]:
    """The documents of a token file: it must end with end-of-text, one after each document."""
    assert ids.size and ids[-1] == enc.eot_token
    text = enc.decode(ids.tolist())
    return text.split(tk.EOT)[:-1]


@pytest.fixture(scope='module')
def text_runs(tmp_path_factory):
    """data/text/prepare.py run twice on the same corpus into two folders."""
    base = tmp_path_factory.mktemp('text')
    texts = make_corpus(str(base / 'corpus'))
    procs = [run_script('data/text/prepare.py', f'--input={base / "corpus"}', '--vocab_size=320',
                        f'--out_dir={base / name}', '--num_threads=1') for name in ('a', 'b')]
    return base, texts, procs


def test_text_prepare_is_deterministic(text_runs):
    base, _, _ = text_runs
    for name in OUTPUTS + ('documents.json',):
        assert (base / 'a' / name).read_bytes() == (base / 'b' / name).read_bytes(), name
    assert not [p for p in os.listdir(base / 'a') if p.endswith('.tmp')]


def test_text_prepare_round_trip_and_meta(text_runs):
    base, texts, procs = text_runs
    out = str(base / 'a')
    meta = json.loads((base / 'a' / 'meta.json').read_text())
    enc = tk.load_tokenizer(out)
    train, val = (decode_docs(enc, read_tokens(out, s, meta)) for s in ('train', 'val'))
    # every UTF-8 file is exactly one document, in one split, byte for byte (CRLF and non-ASCII kept)
    assert sorted(train + val) == sorted(texts.values())
    assert len(train) == meta['train_docs'] and len(val) == meta['val_docs'] and len(val) >= 1
    order = sorted(texts, key=lambda p: p.replace(os.sep, '/'))
    assert train == [texts[p] for p in order if texts[p] in train]  # sorted by path
    # meta.json tells the truth
    for split in ('train', 'val'):
        size = os.path.getsize(os.path.join(out, f'{split}.bin'))
        assert meta[f'{split}_tokens'] == size // np.dtype(meta['dtype']).itemsize
    assert meta['dtype'] == 'uint16' and meta['tokenizer'] == 'bpe' and meta['tokenizer_file'] == 'tokenizer.json'
    assert meta['vocab_size'] == enc.n_vocab <= 320 and meta['eot_token'] == enc.eot_token == enc.n_vocab - 1
    assert meta['skipped_files'] == ['latin1.txt'] and meta['empty_files'] == 1
    assert '1 non-UTF-8 skipped' in procs[0].stdout and 'next: python train_transformer.py' in procs[0].stdout
    # documents.json: each document's path, in the order of the split's documents
    paths = json.loads((base / 'a' / meta['documents_file']).read_text())
    assert meta['documents_file'] == 'documents.json' and sorted(paths) == ['train', 'val']
    assert [texts[p.replace('/', os.sep)] for p in paths['train']] == train
    assert [texts[p.replace('/', os.sep)] for p in paths['val']] == val
    assert any(p.startswith('sub1/') for p in paths['train'] + paths['val'])  # '/'-separated, relative to the input
    # the saved tokenizer is the one a fresh training on the train documents gives
    fresh = tk.train_bpe(train, 320, name='fresh')
    assert fresh._mergeable_ranks == enc._mergeable_ranks and fresh._pat_str == enc._pat_str
    sample = 'def café(self):\r\n    return 日本語 🙂 <|endoftext|>'
    assert enc.encode_ordinary(sample) == fresh.encode_ordinary(sample)
    assert enc.decode(enc.encode_ordinary(sample)) == sample


def test_text_prepare_single_file_splits_at_newline(tmp_path):
    text = ''.join(f'line {i} of the only file\n' for i in range(200))
    (tmp_path / 'one.txt').write_text(text)
    run_script('data/text/prepare.py', f'--input={tmp_path / "one.txt"}', '--vocab_size=300',
               f'--out_dir={tmp_path / "out"}', '--val_fraction=0.1')
    out = str(tmp_path / 'out')
    meta = tk.read_meta(out)
    enc = tk.load_tokenizer(out)
    train, val = (decode_docs(enc, read_tokens(out, s, meta)) for s in ('train', 'val'))
    assert len(train) == len(val) == 1 and train[0] + val[0] == text
    assert train[0].endswith('\n') and 0.05 < len(val[0]) / len(text) < 0.15
    assert tk.read_documents(out, meta) == {'train': ['one.txt'], 'val': ['one.txt']}  # both pieces: its path


@pytest.mark.parametrize('case', ['no match', 'not utf-8', 'only empty', 'no input'])
def test_text_prepare_empty_corpus_is_one_line_error(tmp_path, case):
    (tmp_path / 'in').mkdir()
    (tmp_path / 'in' / 'x.bin').write_bytes(b'\xff\xfe\x00\x81')
    (tmp_path / 'in' / 'e.txt').write_text('')
    arg = {'no match': f'--input={tmp_path / "in" / "*.md"}', 'not utf-8': f'--input={tmp_path / "in" / "x.bin"}',
           'only empty': f'--input={tmp_path / "in" / "*.txt"}', 'no input': '--input='}[case]
    p = run_script('data/text/prepare.py', arg, f'--out_dir={tmp_path / "out"}', check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), p.stderr
    assert not (tmp_path / 'out').exists()


def test_pystdlib_prepare(tmp_path):
    """The embedded default, once, with a small vocab: honest meta, val.bin decodes to the val files."""
    p = run_script('data/pystdlib/prepare.py', '--vocab_size=512', f'--out_dir={tmp_path}', timeout=120)
    assert 'next: python train_transformer.py config/demo/transformer.py' in p.stdout
    meta = tk.read_meta(str(tmp_path))
    enc = tk.load_tokenizer(str(tmp_path))
    assert meta['vocab_size'] == enc.n_vocab == 512 and meta['eot_token'] == 511 and meta['dtype'] == 'uint16'
    for split in ('train', 'val'):
        assert meta[f'{split}_tokens'] == os.path.getsize(tmp_path / f'{split}.bin') // 2 > 0
    assert meta['train_tokens'] > 10 * meta['val_tokens'] and meta['val_files'] > 10
    assert isinstance(meta['skipped_files'], list) and all(f.endswith('.py') for f in meta['skipped_files'])
    # val.bin is exactly the val files' text, sorted by path, an end-of-text after each
    root, want = meta['stdlib'], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ('site-packages', 'dist-packages', '__pycache__')]
        want += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames if f.endswith('.py')]
    want = sorted((f for f in want if tk.is_val_file(f, 0.05) and f not in meta['skipped_files']),
                  key=lambda f: f.replace(os.sep, '/'))
    texts = [t for t in (open(os.path.join(root, f), 'rb').read().decode('utf-8') for f in want) if t]
    assert decode_docs(enc, read_tokens(str(tmp_path), 'val', meta)) == texts and len(texts) == meta['val_files']


def test_train_bpe_is_deterministic(tmp_path):
    texts = list(make_corpus(str(tmp_path), n_files=12, seed=1).values())
    a, b = tk.train_bpe(texts, 300, 'a'), tk.train_bpe(reversed(texts), 300, 'b')  # order of documents too
    assert a._mergeable_ranks == b._mergeable_ranks


def test_save_and_load_tokenizer(tmp_path):
    enc = tk.train_bpe(list(make_corpus(str(tmp_path / 'c'), n_files=8).values()), 290, 'rt')
    tk.save_tokenizer(enc, str(tmp_path / 'tok.json'))
    back = tk.load_tokenizer_file(str(tmp_path / 'tok.json'))
    assert (back.name, back._pat_str, back._special_tokens) == (enc.name, enc._pat_str, enc._special_tokens)
    assert back._mergeable_ranks == enc._mergeable_ranks and back.eot_token == enc.eot_token
    (tmp_path / 'bad.json').write_text('{"name": "x"}')
    with pytest.raises(UserError, match='not a valid tokenizer file'):
        tk.load_tokenizer_file(str(tmp_path / 'bad.json'))


def test_missing_meta_names_the_prepare_command(tmp_path):
    with pytest.raises(UserError) as e:
        tk.load_tokenizer(str(tmp_path / 'pystdlib'))
    msg = str(e.value)
    assert '\n' not in msg and '`python data/pystdlib/prepare.py`' in msg


def test_write_tokens_uint32_streaming(tmp_path):
    """A vocab above 65536 ids is written as uint32; chunks stream to disk; no temp file is left."""
    ranks = {bytes([i]): i for i in range(256)}
    enc = tiktoken.Encoding('big', pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={tk.EOT: 70000})
    docs = ['héllo', '', 'wörld ' * 100]
    path = str(tmp_path / 'x.bin')
    n = tk.write_tokens(iter(docs), enc, path, chunk_chars=10)
    ids = np.fromfile(path, dtype=np.uint32)
    assert tk.token_dtype(enc.n_vocab) == np.uint32 and n == ids.size == sum(len(d.encode()) + 1 for d in docs)
    assert enc.decode(ids.tolist()) == ''.join(d + tk.EOT for d in docs)
    assert os.listdir(tmp_path) == ['x.bin']


def test_load_tokenizer_gpt2(tmp_path, monkeypatch):
    """meta.json with tokenizer 'gpt2' loads tiktoken's gpt2 (stubbed here: no network in tests)."""
    stub = tiktoken.Encoding('gpt2', pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                             special_tokens={tk.EOT: 256})
    monkeypatch.setattr(tiktoken, 'get_encoding', lambda name: stub if name == 'gpt2' else None)
    tk.write_meta(str(tmp_path), vocab_size=257, dtype='uint16', eot_token=256, tokenizer='gpt2',
                  tokenizer_file=None, corpus='stub', train_tokens=0, val_tokens=0)
    assert tk.load_tokenizer(str(tmp_path)) is stub


def test_tokenize_dataset_to_bins(tmp_path):
    """The openwebtext path (datasets map + memmap) on a local text dataset with an injected local encoding."""
    datasets = pytest.importorskip('datasets')
    texts = make_corpus(str(tmp_path / 'corpus'), n_files=30)
    files = [str(tmp_path / 'corpus' / rel) for rel in sorted(texts)]
    ds = datasets.load_dataset('text', data_files=files, sample_by='document', cache_dir=str(tmp_path / 'hf'))
    split = ds['train'].train_test_split(test_size=0.2, seed=2357, shuffle=True)
    split['val'] = split.pop('test')
    enc = tk.train_bpe(split['train']['text'], 300, name='owt-test')
    outs = []
    for num_proc in (1, 2):
        out = str(tmp_path / f'out{num_proc}')
        meta = tk.tokenize_dataset_to_bins(split, enc, out, num_proc=num_proc, corpus='local test', total_batches=7)
        outs.append(out)
        assert meta == tk.read_meta(out) and tk.load_tokenizer(out)._mergeable_ranks == enc._mergeable_ranks
        for name in ('train', 'val'):
            ids = read_tokens(out, name, meta)
            assert meta[f'{name}_tokens'] == ids.size and meta[f'{name}_docs'] == len(split[name])
            assert decode_docs(enc, ids) == split[name]['text']  # dataset order, an end-of-text after each
        assert sorted(os.listdir(out)) == sorted(OUTPUTS)
    for name in OUTPUTS:
        assert open(os.path.join(outs[0], name), 'rb').read() == open(os.path.join(outs[1], name), 'rb').read()


def test_prepare_scripts_have_run_commands():
    for ds in ('pystdlib', 'text', 'openwebtext'):
        with open(os.path.join(REPO, 'data', ds, 'prepare.py')) as f:
            assert f'python data/{ds}/prepare.py' in f.read(600)
