"""Ground-truth concept labels (monosemanticity/concepts.py, label_concepts.py): hand-labelled snippets and the
command end to end on a tiny prepared dataset."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import run_failing, run_script
from monosemanticity.concepts import CONCEPTS, COLUMN, FOLDER_CAP, NotPython, label_document
from monosemanticity.tokenizer import is_val_file, load_tokenizer

WORDS = re.compile(r' ?\w+| ?[^\w\s]|\s+')  # BPE-like pieces: a word keeps the space before it


def spans_of(pieces: list[str]) -> np.ndarray:
    """(n, 2) UTF-8 byte [start, end) of consecutive pieces."""
    sizes = np.array([len(p.encode('utf-8')) for p in pieces])
    ends = np.cumsum(sizes)
    return np.stack([ends - sizes, ends], axis=1)


def labelled(text: str, pieces: list[str] | None = None) -> list[tuple[str, set[str]]]:
    """(piece, its concepts) for each piece of `text` (WORDS pieces unless given)."""
    pieces = pieces if pieces is not None else WORDS.findall(text)
    assert ''.join(pieces) == text
    labels = label_document(text, spans_of(pieces))
    return [(p, {CONCEPTS[j].name for j in np.flatnonzero(row)}) for p, row in zip(pieces, labels)]


def of(rows: list[tuple[str, set[str]]], piece: str, nth: int = 0) -> set[str]:
    """The concepts of the nth occurrence of `piece`."""
    return [c for p, c in rows if p == piece][nth]


def test_comment_keyword_builtin_number_line_start():
    rows = labelled("import os  # say len\nx = len(y) + 3\n")
    assert of(rows, 'import') == {'line_start', 'keyword:import', 'import'}
    assert of(rows, ' os') == {'import'}
    assert of(rows, '#') == {'comment'}
    assert of(rows, ' len') == {'comment'}  # a builtin's name inside a comment is only comment
    assert of(rows, 'x') == {'line_start'}
    assert of(rows, ' =') == set()
    assert of(rows, ' len', 1) == {'builtin'}  # the first non-blank byte decides: ' len' is the builtin
    assert of(rows, 'y') == {'call_args', 'bracket_depth>=1'}
    assert of(rows, ' 3') == {'number'}


def test_docstring_vs_plain_string_and_function_body():
    rows = labelled('def f():\n    """Doc."""\n    s = "plain"\n    return s\n')
    assert of(rows, 'def') == {'line_start', 'keyword:def'}
    assert of(rows, 'Doc') == {'string', 'docstring', 'function_body', 'indent_1'}
    assert of(rows, 'plain') == {'string', 'function_body', 'indent_1'}
    assert of(rows, 'return') == {'line_start', 'keyword:return', 'function_body', 'indent_1'}
    # a string that is not the first statement is no docstring, even alone on its line
    rows = labelled('x = 1\n"not doc"\n')
    assert 'docstring' not in of(rows, 'not')
    assert of(labelled('def g():\n    b"raw"\n'), 'raw') == {'string', 'function_body', 'indent_1'}  # bytes: no doc


def test_nested_fstring_is_one_span():
    rows = labelled('v = f"{x!r} {f\'{len(y)}\'}"\n')
    for piece in ('x', 'r', ' {', 'f', 'len', 'y'):
        assert of(rows, piece) == {'string', 'fstring'}, piece  # no builtin, call or bracket inside an f-string
    assert of(rows, 'v') == {'line_start'}
    assert 'fstring' not in of(labelled('v = "{x}"\n'), 'x')


def test_decorator_class_body_and_method():
    rows = labelled('@register(1)\nclass A:\n    z = 1\n    @property\n    def m(self):\n        return 2\n')
    assert of(rows, '@') == {'line_start', 'decorator'}
    assert of(rows, '1') == {'decorator', 'call_args', 'bracket_depth>=1', 'number'}
    assert of(rows, 'z') == {'line_start', 'class_body', 'indent_1'}
    assert of(rows, '@', 1) == {'line_start', 'decorator', 'indent_1'}  # a method's decorator is in the method
    assert of(rows, ' m') == {'indent_1'}
    assert of(rows, 'return') == {'line_start', 'keyword:return', 'function_body', 'indent_2'}


def test_indentation_belongs_to_its_statement():
    text = 'class A:\n    z = 1\n    def m(self):\n        return 2\n'
    rows = labelled(text, ['class', ' A', ':\n', '   ', ' z', ' =', ' 1', '\n', '   ', ' def', ' m', '(self', '):\n',
                           '       ', ' return', ' 2', '\n'])
    assert of(rows, '   ') == {'class_body', 'indent_1'}
    assert of(rows, '   ', 1) == {'indent_1'}  # the method's indentation is the method's
    assert of(rows, '       ') == {'function_body', 'indent_2'}
    rows = labelled('for x in y:\n    pass\n', ['for', ' x', ' in', ' y', ':\n', '   ', ' pass', '\n'])
    assert of(rows, '   ') == {'loop', 'indent_1'}


def test_lambda_in_comprehension_call_args_subscript_and_depth():
    rows = labelled('r = [(lambda a: a[i])(v) for v in d[k]]\n')
    assert of(rows, 'lambda') == {'keyword:lambda', 'comprehension', 'bracket_depth>=1', 'bracket_depth>=2'}
    assert of(rows, 'i') == {'comprehension', 'subscript', 'bracket_depth>=1', 'bracket_depth>=2'}
    assert of(rows, 'v') == {'comprehension', 'call_args', 'bracket_depth>=1', 'bracket_depth>=2'}
    assert of(rows, ' for') == {'keyword:for', 'comprehension', 'bracket_depth>=1'}
    assert of(rows, 'k') == {'comprehension', 'subscript', 'bracket_depth>=1', 'bracket_depth>=2'}
    assert of(rows, ' [') == {'comprehension'}  # the opening bracket is outside its own depth


def test_indentation_levels_loop_and_try():
    text = ('for i in x:\n'
            '    try:\n'
            '        while y:\n'
            '            pass\n'
            '    except E:\n'
            '        pass\n')
    rows = labelled(text)
    assert of(rows, 'for') == {'line_start', 'keyword:for', 'loop'}
    assert of(rows, 'try') == {'line_start', 'keyword:try', 'loop', 'try', 'indent_1'}
    assert of(rows, 'while') == {'line_start', 'keyword:while', 'loop', 'try', 'indent_2'}
    assert of(rows, 'pass') == {'line_start', 'keyword:pass', 'loop', 'try', 'indent_3+'}
    assert of(rows, 'except') == {'line_start', 'keyword:except', 'loop', 'try', 'indent_1'}


def test_multibyte_text_before_a_labelled_span():
    # 'é' and '日本' are 2 and 3 bytes a character: a character column would put 'len' elsewhere
    rows = labelled('é = "日本"; n = len(é)  # ok\n')
    assert of(rows, ' len') == {'builtin'}
    assert of(rows, 'é', 1) == {'call_args', 'bracket_depth>=1'}
    assert of(rows, '#') == {'comment'}
    assert of(rows, '日本') == {'string'}


def test_token_straddling_two_labels_takes_its_first_bytes():
    text = 'f("a")  # c\n'
    rows = labelled(text, ['f', '(', '"a', '")', '  #', ' c', '\n'])
    assert of(rows, '"a') == {'string', 'call_args', 'bracket_depth>=1'}
    assert of(rows, '")') == {'string', 'call_args', 'bracket_depth>=1'}  # its ')' half is outside all three
    assert of(rows, '  #') == {'comment'}  # leading blanks are skipped: the '#' byte decides
    assert of(rows, '(') == set()


def test_only_the_first_token_of_a_logical_line_and_a_byte_order_mark():
    rows = labelled('get_value(a,\n          b); c\n', ['get', '_value', '(', 'a', ',', '\n', '          ', 'b', ');',
                                                           ' c', '\n'])
    assert of(rows, 'get') == {'line_start'}
    assert of(rows, '_value') == set()  # the rest of the first token, and the continuation line, are not
    assert of(rows, 'b') == {'call_args', 'bracket_depth>=1'}
    assert of(rows, ' c') == set()  # after ';': the same logical line
    # a UTF-8 byte order mark (3 bytes), which ast refuses inside a str, is skipped over
    rows = labelled('\ufeffx = len(y)\n', ['\ufeff', 'x', ' =', ' len', '(', 'y', ')', '\n'])
    assert of(rows, ' len') == {'builtin'} and of(rows, 'y') == {'call_args', 'bracket_depth>=1'}


def test_file_that_does_not_parse_raises():
    with pytest.raises(NotPython, match='ast'):
        label_document('def f(:\n', spans_of(['def', ' f', '(:', '\n']))
    with pytest.raises(ValueError):
        label_document('x = 1\n', np.array([[0, 99]]))


def test_columns():
    assert len(COLUMN) == len(CONCEPTS) and COLUMN['keyword:def'] < COLUMN['function_body']
    assert {c.kind for c in CONCEPTS} == {'lexical', 'structural'}


# ----------------------------------------------------------------------------- the command, end to end

GOOD = {'a.py': 'import os\n\n\ndef f(x):\n    """Doc."""\n    return [len(v) for v in x]  # é\n',
        'b.py': 'class A:\n    z = {"k": (1, [2])}\n\n    @staticmethod\n    def m():\n        pass\n',
        'c.py': 'for i in range(3):\n    try:\n        print(f"{i}")\n    except ValueError:\n        pass\n',
        'd.py': 'x = 1\n', 'e.py': 'y = [2]\n', 'f.py': 'z = {3: 4}\n'}
BAD = {'bad.py': 'def broken(:\n    pass\n'}


@pytest.fixture(scope='module')
def labelled_data(tmp_path_factory):
    base = tmp_path_factory.mktemp('concepts')
    os.makedirs(base / 'corpus')
    for name, text in (GOOD | BAD).items():
        (base / 'corpus' / name).write_text(text)
    data = str(base / 'data')
    run_script('data/text/prepare.py', f'--input={base / "corpus"}', '--vocab_size=300', f'--out_dir={data}',
               '--num_threads=1', '--val_fraction=0.3')
    first = run_script('label_concepts.py', f'--data_dir={data}')
    return data, first


def test_command_writes_packed_labels_equal_to_the_library(labelled_data):
    data, first = labelled_data
    meta = json.load(open(os.path.join(data, 'meta.json')))
    info = json.load(open(os.path.join(data, 'concepts.json')))
    enc = load_tokenizer(data)
    assert [c['name'] for c in info['concepts']] == [c.name for c in CONCEPTS]
    n_skipped, n_files = 0, 0
    for split in ('train', 'val'):
        tokens = np.fromfile(os.path.join(data, f'{split}.bin'), dtype=meta['dtype'])
        packed = np.fromfile(os.path.join(data, f'concepts_{split}.bin'), dtype=np.uint8)
        rows = np.unpackbits(packed.reshape(len(tokens), -1), axis=1, count=len(CONCEPTS)).astype(bool)
        assert not rows[tokens == enc.eot_token].any()
        counts, start = np.zeros(len(CONCEPTS)), 0
        for end in np.flatnonzero(tokens == enc.eot_token):
            ids = tokens[start:end].tolist()
            text = enc.decode(ids)
            sizes = np.array([len(enc.decode_single_token_bytes(t)) for t in ids])
            spans = np.stack([np.cumsum(sizes) - sizes, np.cumsum(sizes)], axis=1)
            n_files += 1
            if text in BAD.values():
                n_skipped += 1
                assert not rows[start:end].any()
            else:
                np.testing.assert_array_equal(rows[start:end], label_document(text, spans))
                counts += rows[start:end].sum(axis=0)
            start = end + 1
        rates = info['splits'][split]['base_rates']
        assert rates == {c.name: round(counts[j] / len(tokens), 6) for j, c in enumerate(CONCEPTS)}
        assert info['splits'][split]['tokens'] == len(tokens)
    assert n_files == len(GOOD) + len(BAD) == sum(info['splits'][s]['files'] for s in ('train', 'val'))
    assert n_skipped == 1 == len(info['skipped']) and 'ast' in info['skipped'][0]['reason']
    assert 'skipped' in first.stdout


def test_command_rerun_skips_and_relabels_other_tokens(labelled_data, tmp_path):
    data, _ = labelled_data
    path = os.path.join(data, 'concepts_val.bin')
    before = os.stat(path).st_mtime_ns
    p = run_script('label_concepts.py', f'--data_dir={data}')
    assert 'labels are up to date' in p.stdout and os.stat(path).st_mtime_ns == before
    copy = str(tmp_path / 'copy')
    shutil.copytree(data, copy)
    tokens = np.fromfile(os.path.join(copy, 'val.bin'), dtype=np.uint16)
    tokens[0] = (tokens[0] + 1) % load_tokenizer(copy).eot_token  # other tokens, same length
    tokens.tofile(os.path.join(copy, 'val.bin'))
    p = run_script('label_concepts.py', f'--data_dir={copy}')
    assert 'up to date' not in p.stdout and 'wrote' in p.stdout
    info = json.load(open(os.path.join(copy, 'concepts.json')))
    info['labeller_sha256'] = 'older labelling code'
    with open(os.path.join(copy, 'concepts.json'), 'w') as f:
        json.dump(info, f)
    assert 'wrote' in run_script('label_concepts.py', f'--data_dir={copy}').stdout


def test_command_bad_data_dir_is_one_line(tmp_path):
    code, lines, _ = run_failing('label_concepts.py', f'--data_dir={tmp_path / "nothing"}')
    assert code == 2 and len(lines) == 1 and lines[0].startswith('error:')


def test_command_skips_a_document_that_is_not_utf8(labelled_data, tmp_path):
    data, _ = labelled_data
    copy = str(tmp_path / 'copy')
    shutil.copytree(data, copy)
    enc = load_tokenizer(copy)
    with open(os.path.join(copy, 'val.bin'), 'ab') as f:  # one more document: the lone byte 0xff
        np.array([enc.encode_single_token(b'\xff'), enc.eot_token], dtype=np.uint16).tofile(f)
    paths = json.load(open(os.path.join(copy, 'documents.json')))
    with open(os.path.join(copy, 'documents.json'), 'w') as f:
        json.dump({'train': paths['train'], 'val': paths['val'] + ['ff.bin']}, f)  # and its path
    run_script('label_concepts.py', f'--data_dir={copy}')
    info = json.load(open(os.path.join(copy, 'concepts.json')))
    assert [s['reason'][:10] for s in info['skipped'] if s['split'] == 'val'][-1] == 'not UTF-8:'
    packed = np.fromfile(os.path.join(copy, 'concepts_val.bin'), dtype=np.uint8)
    assert len(packed) == info['splits']['val']['tokens'] * info['splits']['val']['row_bytes']
    assert not packed[-2 * info['splits']['val']['row_bytes']:].any()


# ----------------------------------------------------------------------------- folder concepts (documents.json)

NOTES = '# Notes\n\nSome *text*: not Python at all.\n'
FOLDERS = {'top.py': GOOD['d.py'], 'pkg/a.py': GOOD['a.py'], 'pkg/sub/b.py': GOOD['b.py'], 'pkg/bad.py': BAD['bad.py'],
           'notes/readme.md': NOTES, 'notes/todo.txt': 'then: fix it (twice)\n', 'tools/c.py': GOOD['c.py'],
           'tools/e.py': GOOD['e.py'], 'tools/f.py': GOOD['f.py'], 'notes/more.md': NOTES * 2}


def prepare_corpus(base, files: dict[str, str], val_fraction: float = 0.3) -> str:
    """<base>/corpus written and prepared into <base>/data (data/text/prepare.py); returns the data folder."""
    for rel, text in files.items():
        os.makedirs(os.path.dirname(base / 'corpus' / rel), exist_ok=True)
        (base / 'corpus' / rel).write_text(text)
    data = str(base / 'data')
    run_script('data/text/prepare.py', f'--input={base / "corpus"}', '--vocab_size=300', f'--out_dir={data}',
               '--num_threads=1', f'--val_fraction={val_fraction}')
    return data


def check_folder_labels(data: str) -> dict:
    """By hand, per split: a document's tokens carry folder:X exactly when its recorded path is X/..., and the Python
    columns of the library when it parses (none when it does not); end-of-text tokens nothing. Returns
    concepts.json."""
    meta = json.load(open(os.path.join(data, 'meta.json')))
    info = json.load(open(os.path.join(data, 'concepts.json')))
    paths = json.load(open(os.path.join(data, meta['documents_file'])))
    enc = load_tokenizer(data)
    names = [c['name'] for c in info['concepts']]
    P = len(CONCEPTS)
    assert names[:P] == [c.name for c in CONCEPTS] and {c['kind'] for c in info['concepts'][P:]} <= {'folder'}
    for split in ('train', 'val'):
        tokens = np.fromfile(os.path.join(data, f'{split}.bin'), dtype=meta['dtype'])
        packed = np.fromfile(os.path.join(data, f'concepts_{split}.bin'), dtype=np.uint8)
        assert info['splits'][split]['row_bytes'] == (len(names) + 7) // 8
        rows = np.unpackbits(packed.reshape(len(tokens), -1), axis=1, count=len(names)).astype(bool)
        assert not rows[tokens == enc.eot_token].any()
        ends = np.flatnonzero(tokens == enc.eot_token)
        assert len(ends) == len(paths[split])
        for path, start, end in zip(paths[split], np.concatenate([[0], ends[:-1] + 1]), ends):
            want = np.zeros(len(names) - P, dtype=bool)
            if '/' in path and f"folder:{path.split('/')[0]}" in names:
                want[names.index(f"folder:{path.split('/')[0]}") - P] = True
            np.testing.assert_array_equal(rows[start:end, P:], np.broadcast_to(want, (end - start, len(want))))
            text = enc.decode(tokens[start:end].tolist())
            assert text == FOLDERS.get(path, text)
            try:
                sizes = np.array([len(enc.decode_single_token_bytes(t)) for t in tokens[start:end].tolist()])
                python = label_document(text, np.stack([np.cumsum(sizes) - sizes, np.cumsum(sizes)], axis=1))
            except NotPython:
                python = np.zeros((end - start, P), dtype=bool)
            np.testing.assert_array_equal(rows[start:end, :P], python)
        rates = info['splits'][split]['base_rates']
        assert rates == {n: round(rows[:, j].sum() / len(tokens), 6) for j, n in enumerate(names)}
    return info


@pytest.fixture(scope='module')
def folder_data(tmp_path_factory):
    base = tmp_path_factory.mktemp('folders')
    files = dict(FOLDERS)
    # a folder whose only document is in val: no column (the columns are the train documents' folders)
    val_only = next(f'valonly{i}/x.py' for i in range(200) if is_val_file(f'valonly{i}/x.py', 0.3))
    files[val_only] = GOOD['e.py']
    data = prepare_corpus(base, files)
    return data, run_script('label_concepts.py', f'--data_dir={data}'), val_only


def test_folder_concepts_of_a_prepared_folder_corpus(folder_data):
    data, p, val_only = folder_data
    info = check_folder_labels(data)
    paths = json.load(open(os.path.join(data, 'documents.json')))
    assert val_only in paths['val'] and 'pkg/sub/b.py' in paths['train'] + paths['val']
    names = [c['name'] for c in info['concepts'][len(CONCEPTS):]]
    assert names == ['folder:notes', 'folder:pkg', 'folder:tools']  # first-level: pkg/sub/b.py is in pkg
    assert info['folders_dropped'] == [] and info['folder_concept'].startswith('folder:X')
    # the Markdown and broken files are skipped for the Python columns only (counted), and keep their folder's label
    skipped = {(s['split'], s['document']) for s in info['skipped']}
    kept = [(split, i) for split in ('train', 'val') for i, path in enumerate(paths[split])
            if path.startswith('notes/') or path == 'pkg/bad.py']
    assert set(kept) == skipped and len(kept) == 4
    assert 'up to date' not in p.stdout and '+ 3 folders' in p.stdout


def test_folder_concepts_rerun_skips_and_relabels_moved_files(folder_data, tmp_path):
    data, _, _ = folder_data
    path = os.path.join(data, 'concepts_train.bin')
    before = os.stat(path).st_mtime_ns
    assert 'labels are up to date' in run_script('label_concepts.py', f'--data_dir={data}').stdout
    assert os.stat(path).st_mtime_ns == before
    # two documents trade folders (the same tokens, the same folders): their labels follow them
    copy = str(tmp_path / 'copy')
    shutil.copytree(data, copy)
    paths = json.load(open(os.path.join(copy, 'documents.json')))
    i, j = (paths['train'].index(n) for n in ('pkg/sub/b.py', 'tools/c.py'))
    paths['train'][i], paths['train'][j] = 'tools/b.py', 'pkg/c.py'
    with open(os.path.join(copy, 'documents.json'), 'w') as f:
        json.dump(paths, f)
    assert 'up to date' not in run_script('label_concepts.py', f'--data_dir={copy}').stdout
    check_folder_labels(copy)


def test_folder_concepts_relabel_when_the_columns_change(folder_data, tmp_path):
    copy = str(tmp_path / 'copy')
    shutil.copytree(folder_data[0], copy)
    info = json.load(open(os.path.join(copy, 'concepts.json')))
    info['concepts'] = info['concepts'][:-1]  # labels written with other folders
    with open(os.path.join(copy, 'concepts.json'), 'w') as f:
        json.dump(info, f)
    assert 'up to date' not in run_script('label_concepts.py', f'--data_dir={copy}').stdout
    assert len(json.load(open(os.path.join(copy, 'concepts.json')))['concepts']) == len(CONCEPTS) + 3


def test_no_recorded_paths_no_folders_and_paths_of_other_documents_are_one_line(folder_data, tmp_path):
    copy = str(tmp_path / 'copy')
    shutil.copytree(folder_data[0], copy)
    meta = json.load(open(os.path.join(copy, 'meta.json')))
    paths = json.load(open(os.path.join(copy, 'documents.json')))
    with open(os.path.join(copy, 'documents.json'), 'w') as f:
        json.dump({'train': paths['train'][1:], 'val': paths['val']}, f)
    code, lines, _ = run_failing('label_concepts.py', f'--data_dir={copy}')
    assert code == 2 and len(lines) == 1 and 'documents.json' in lines[0] and 'prepare' in lines[0], lines
    del meta['documents_file']  # a dataset prepared by a script that records no paths
    with open(os.path.join(copy, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    run_script('label_concepts.py', f'--data_dir={copy}')
    info = json.load(open(os.path.join(copy, 'concepts.json')))
    assert [c['name'] for c in info['concepts']] == [c.name for c in CONCEPTS]
    assert info['folder_concept'].startswith('none') and info['documents_sha256'] is None


def test_folder_cap_keeps_the_folders_of_most_train_tokens(tmp_path):
    n = FOLDER_CAP + 6
    files = {f'f{k:02d}/m.py': 'x = 1\n' * (k + 1) for k in range(n)}  # the later the name, the more tokens
    data = prepare_corpus(tmp_path, files, val_fraction=0.02)
    p = run_script('label_concepts.py', f'--data_dir={data}')
    info = check_folder_labels(data)
    paths = json.load(open(os.path.join(data, 'documents.json')))
    train = sorted(q.split('/')[0] for q in paths['train'])
    assert len(train) > FOLDER_CAP and info['folders_dropped'] == train[:-FOLDER_CAP]  # the first: fewest tokens
    assert [c['name'] for c in info['concepts'][len(CONCEPTS):]] == [f'folder:{f}' for f in train[-FOLDER_CAP:]]
    line = [x for x in p.stdout.splitlines() if 'get no column' in x]
    assert len(line) == 1 and line[0].endswith(', '.join(info['folders_dropped']))
