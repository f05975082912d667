"""
Ground-truth concepts of Python source: for each BPE token of a document, which of a fixed list of concepts
contain it, read from Python's own `tokenize` (lexical concepts, bracket depth, indentation) and `ast` (structural).

    labels = label_document(text, spans)   # (n_tokens, len(CONCEPTS)) bool, columns in CONCEPTS order
    label_split(tokens, docs, enc, token_bytes, path)   # a split's packed label file (label_concepts.py's parts)

A dataset whose prepare.py records each document's path (documents.json) gets one more column per first-level
folder of its train documents, after CONCEPTS: 'folder:<name>' (kind 'folder') on every token of a document in
that folder, parsed as Python or not (choose_folders, document_folders).

`spans` (n_tokens, 2) are the tokens' [start, end) UTF-8 byte offsets in `text`. Everything is done in UTF-8 bytes:
ast's col_offset already is a byte offset within its line; tokenize's columns are characters and are converted.

The token rule: a token takes the labels of its first byte that is not a space or tab (its first byte if it has no
other). The BPE glues a word to the space before it (' len', ' return', ' #'); by its very first byte such a token
would be "between two words" and carry none of the word's labels. So ' len' is a builtin, ' #' starts a comment;
a token that straddles two labels ('")' ending a string and closing a call) takes the label of that one byte only.

Choices (docs/concepts.md): the keywords are keyword.kwlist of the running Python, one concept each; 'builtin' is a
NAME token spelling a name of dir(builtins) that is not a keyword (lexical: attribute names such as `x.type` count);
the insides of f-strings are only 'string' and 'fstring' (3.11's tokenize gives an f-string as one STRING token,
3.12+ gives FSTRING_START..FSTRING_END: both are read as one span, and the structural walk does not enter f-strings,
so the labels do not depend on the Python version); call arguments and subscripts are the bytes strictly between the
brackets; bracket depth counts the bytes strictly between an opener and its closer; a logical line's indentation
level covers it from the start of its first physical line to its NEWLINE; statements (bodies, loops, try, import,
a method within its class) include their indentation. A document that `ast` or `tokenize`
rejects raises NotPython and gets no labels.
"""
import ast
import builtins
import keyword
import os
import platform
import re
import tokenize
import warnings
from typing import NamedTuple

import numpy as np

from monosemanticity.common import UserError, atomic_file, progress, read_json


class Concept(NamedTuple):
    name: str
    kind: str  # 'lexical' (tokenize), 'structural' (ast; bracket depth and indentation from tokenize) or 'folder'


_LEXICAL = ['comment', 'string', 'docstring', 'fstring', 'number', 'builtin', 'line_start']
_STRUCTURAL = ['function_body', 'class_body', 'loop', 'try', 'import', 'call_args', 'subscript', 'comprehension',
               'decorator', 'bracket_depth>=1', 'bracket_depth>=2', 'indent_1', 'indent_2', 'indent_3+']
CONCEPTS: list[Concept] = ([Concept(n, 'lexical') for n in _LEXICAL]
                           + [Concept(f'keyword:{k}', 'lexical') for k in keyword.kwlist]
                           + [Concept(n, 'structural') for n in _STRUCTURAL])
COLUMN = {c.name: i for i, c in enumerate(CONCEPTS)}
FOLDER_CAP = 64  # folder columns at most: the first-level folders of most train tokens
_BUILTINS = frozenset(dir(builtins)) - frozenset(keyword.kwlist)
_FSTRING_START = getattr(tokenize, 'FSTRING_START', None)  # Python 3.12+
_FSTRING_END = getattr(tokenize, 'FSTRING_END', None)
_LINES = re.compile(r'[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+')  # physical lines as Python counts them (\r\n, \r, \n)


_BOM = '\ufeff'


class NotPython(ValueError):
    """The document does not parse (ast) or tokenize; str(e) is the reason, one line."""


class _Source:
    """A document's text as lines, with the UTF-8 byte offset of every (line, column) position."""

    def __init__(self, text: str):
        self.lines = _LINES.findall(text)
        self.ascii = [line.isascii() for line in self.lines]
        sizes = [len(line) if a else len(line.encode('utf-8')) for line, a in zip(self.lines, self.ascii)]
        self.line_start = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()  # (n_lines + 1,)
        self.data = text.encode('utf-8')

    def char_pos(self, row: int, col: int) -> int:
        """tokenize's (1-based row, character column) -> byte offset."""
        i = row - 1
        if i >= len(self.lines) or self.ascii[i]:
            return self.line_start[min(i, len(self.lines))] + col
        return self.line_start[i] + len(self.lines[i][:col].encode('utf-8'))

    def line_begin(self, pos: int) -> int:
        """`pos`, or the start of its line when only spaces and tabs precede it there (a statement's indentation)."""
        at = pos
        while at > 0 and self.data[at - 1] in b' \t':
            at -= 1
        return at if at == 0 or self.data[at - 1] in b'\r\n' else pos

    def stmt_span(self, node: ast.AST) -> tuple[int, int]:
        """A statement's [start, end) bytes, its indentation included."""
        start, end = self.node_span(node)
        return self.line_begin(start), end

    def node_span(self, node: ast.AST) -> tuple[int, int]:
        """ast node -> [start, end) byte offsets (ast's columns are UTF-8 byte offsets)."""
        return (self.line_start[node.lineno - 1] + node.col_offset,
                self.line_start[node.end_lineno - 1] + node.end_col_offset)


def token_anchors(data: bytes, spans: np.ndarray) -> np.ndarray:
    """(n, 2) [start, end) byte spans -> (n,) the byte each token is labelled by: its first byte that is not a space
    or tab, or its first byte when it has none."""
    b = np.frombuffer(data, dtype=np.uint8)
    nonblank = np.where((b != 32) & (b != 9), np.arange(len(b)), len(b))  # (n_bytes,)
    next_nonblank = np.append(np.minimum.accumulate(nonblank[::-1])[::-1], len(b))  # (n_bytes + 1,)
    first = next_nonblank[spans[:, 0]]
    return np.where(first < spans[:, 1], first, spans[:, 0])


class _Marker:
    """Sets a concept on every token whose anchor byte falls in a [start, end) byte range."""

    def __init__(self, anchors: np.ndarray):
        self.anchors = anchors  # (n,) nondecreasing
        self.labels = np.zeros((len(anchors), len(CONCEPTS)), dtype=bool)  # (n, C)

    def rows(self, start: int, end: int) -> slice:
        return slice(int(np.searchsorted(self.anchors, start)), int(np.searchsorted(self.anchors, end)))

    def mark(self, name: str, start: int, end: int) -> None:
        if end > start:
            self.labels[self.rows(start, end), COLUMN[name]] = True


def _parse(text: str) -> ast.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # invalid escape sequences and the like: not our business
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        line = f" (line {e.lineno})" if isinstance(e, SyntaxError) and e.lineno else ''
        raise NotPython(f"ast: {type(e).__name__}: {str(getattr(e, 'msg', e)).splitlines()[0][:120]}{line}") from None


def _mark_lexical(src: _Source, m: _Marker) -> None:
    """Comments, strings, f-strings, numbers, keywords, builtins, first tokens of logical lines, bracket depth and
    indentation, from one pass of tokenize."""
    brackets: list[int] = []  # byte offset just after each open bracket
    fstrings: list[int] = []  # start of each open f-string (3.12+)
    indent, line_begin = 0, None  # indentation depth; byte offset where the current logical line began
    readline = iter(src.lines).__next__
    try:
        for tok in tokenize.generate_tokens(readline):
            t = tok.type
            if t in (tokenize.INDENT, tokenize.DEDENT):
                indent += 1 if t == tokenize.INDENT else -1
                continue
            if t in (tokenize.NL, tokenize.ENDMARKER):
                continue
            start, end = src.char_pos(*tok.start), src.char_pos(*tok.end)
            if t == _FSTRING_START:
                fstrings.append(start)
            elif t == _FSTRING_END:
                f_start = fstrings.pop()
                if not fstrings:
                    m.mark('string', f_start, end)
                    m.mark('fstring', f_start, end)
                continue
            if fstrings:  # inside a 3.12+ f-string: its parts are only 'string' and 'fstring'
                continue
            if t == tokenize.COMMENT:
                m.mark('comment', start, end)
                continue
            if t == tokenize.NEWLINE:
                if line_begin is not None and indent > 0:
                    m.mark('indent_1' if indent == 1 else 'indent_2' if indent == 2 else 'indent_3+', line_begin, end)
                line_begin = None
                continue
            if line_begin is None:  # the first token of a logical line
                line_begin = src.line_start[tok.start[0] - 1]
                m.mark('line_start', start, start + 1)
            if t == tokenize.STRING:
                m.mark('string', start, end)
                if 'f' in re.match(r'[A-Za-z]*', tok.string).group().lower():
                    m.mark('fstring', start, end)
            elif t == tokenize.NUMBER:
                m.mark('number', start, end)
            elif t == tokenize.NAME:
                if keyword.iskeyword(tok.string):
                    m.mark(f'keyword:{tok.string}', start, end)
                elif tok.string in _BUILTINS:
                    m.mark('builtin', start, end)
            elif t == tokenize.OP and tok.string in '([{':
                brackets.append(end)
            elif t == tokenize.OP and tok.string in ')]}':
                level, opened = len(brackets), brackets.pop()
                if level <= 2:
                    m.mark(f'bracket_depth>={level}', opened, start)
    except (tokenize.TokenError, IndentationError, SyntaxError, IndexError) as e:
        raise NotPython(f"tokenize: {type(e).__name__}: {str(e).splitlines()[0][:120]}") from None


def _walk(tree: ast.AST):
    """ast.walk, parents before their children, not entering f-strings (JoinedStr)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.JoinedStr):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_TRIES = (ast.Try,) + ((ast.TryStar,) if hasattr(ast, 'TryStar') else ())
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _inside_brackets(src: _Source, before: ast.AST, node: ast.AST, opener: bytes) -> tuple[int, int]:
    """The bytes strictly between the first `opener` after `before` ends and the last byte of `node` (its closer)."""
    _, after = src.node_span(before)
    _, end = src.node_span(node)
    return src.data.index(opener, after, end) + 1, end - 1


def _decorator_at(src: _Source, deco: ast.AST) -> int:
    """The byte offset of a decorator's '@' (ast's position is its expression's)."""
    start = at = src.node_span(deco)[0]
    at -= 1
    while at > 0 and src.data[at] in b' \t':
        at -= 1
    return at if src.data[at:at + 1] == b'@' else start


def _mark_structural(src: _Source, tree: ast.Module, m: _Marker) -> None:
    """Docstrings, function and class bodies, loops, try, import, call arguments, subscripts, comprehensions and
    decorators, from the ast."""
    scope = np.zeros(len(m.anchors), dtype=np.int8)  # innermost enclosing scope: 0 module, 1 class body, 2 def
    for node in _walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef) + _DEFS) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                    isinstance(first.value.value, str):
                m.mark('docstring', *src.node_span(first))
        if isinstance(node, ast.ClassDef):
            scope[m.rows(src.stmt_span(node.body[0])[0], src.node_span(node.body[-1])[1])] = 1
        if isinstance(node, _DEFS):
            m.mark('function_body', src.stmt_span(node.body[0])[0], src.node_span(node.body[-1])[1])
            whole = _decorator_at(src, node.decorator_list[0]) if node.decorator_list else src.node_span(node)[0]
            scope[m.rows(src.line_begin(whole), src.node_span(node)[1])] = 2
        if isinstance(node, (ast.ClassDef,) + _DEFS):
            for deco in node.decorator_list:
                m.mark('decorator', _decorator_at(src, deco), src.node_span(deco)[1])
        if isinstance(node, _LOOPS):
            m.mark('loop', *src.stmt_span(node))
        elif isinstance(node, _TRIES):
            m.mark('try', *src.stmt_span(node))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            m.mark('import', *src.stmt_span(node))
        elif isinstance(node, ast.Call):
            m.mark('call_args', *_inside_brackets(src, node.func, node, b'('))
        elif isinstance(node, ast.Subscript):
            m.mark('subscript', *_inside_brackets(src, node.value, node, b'['))
        elif isinstance(node, _COMPREHENSIONS):
            m.mark('comprehension', *src.node_span(node))
    m.labels[:, COLUMN['class_body']] = scope == 1


def label_document(text: str, spans: np.ndarray) -> np.ndarray:
    """A Python document's text and its tokens' (n, 2) [start, end) UTF-8 byte spans -> (n, len(CONCEPTS)) bool
    labels (module docstring: the token rule). Raises NotPython when ast or tokenize reject the text."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    if text.startswith(_BOM):  # a UTF-8 byte order mark, which ast rejects inside a str: label the text after it
        text, spans = text[1:], np.maximum(spans - len(_BOM.encode('utf-8')), 0)
    src = _Source(text)
    if len(spans) and (spans[0, 0] < 0 or spans[-1, 1] > len(src.data) or np.any(np.diff(spans[:, 0]) < 0)):
        raise ValueError(f"token spans must be sorted byte ranges within the text's {len(src.data)} bytes")
    tree = _parse(text)
    m = _Marker(token_anchors(src.data, spans))
    _mark_lexical(src, m)
    _mark_structural(src, tree, m)
    return m.labels


# ------------------------------------------------------------------ a dataset's label files (label_concepts.py)

def folder_of(path: str) -> str | None:
    """A document's first-level folder: the first part of its '/'-separated path relative to the input; None for a
    file at the top level."""
    head, sep, _ = path.partition('/')
    return head if sep else None


class Folders(NamedTuple):
    kept: list[str]  # the folders with a column, sorted by name (columns len(CONCEPTS) ... in this order)
    dropped: list[str]  # the folders of train documents beyond FOLDER_CAP (fewest train tokens), sorted: no column


def choose_folders(doc_folders: list[str | None], doc_tokens: list[int]) -> Folders:
    """The train documents' folders (D,) (None: none) and token counts (D,) -> the FOLDER_CAP folders of most train
    tokens (ties by name), and the rest."""
    totals: dict[str, int] = {}
    for folder, n in zip(doc_folders, doc_tokens):
        if folder is not None:
            totals[folder] = totals.get(folder, 0) + n
    ranked = sorted(totals, key=lambda f: (-totals[f], f))
    return Folders(sorted(ranked[:FOLDER_CAP]), sorted(ranked[FOLDER_CAP:]))


def dataset_concepts(folders: list[str]) -> list[Concept]:
    """A dataset's columns: CONCEPTS, then one 'folder:<name>' per kept folder."""
    return CONCEPTS + [Concept(f'folder:{f}', 'folder') for f in folders]


def row_bytes(n_columns: int) -> int:
    """Bytes of a token's packed labels (np.packbits along the concept axis)."""
    return (n_columns + 7) // 8


def documents(tokens: np.ndarray, eot: int) -> list[tuple[int, int]]:
    """(start, end) token ranges of the documents of a split: the runs between end-of-text tokens."""
    ranges, start = [], 0
    for end in np.flatnonzero(tokens == eot).tolist() + [len(tokens)]:
        if end > start:
            ranges.append((start, end))
        start = end + 1
    return ranges


def document_folders(paths: list[str] | None, docs: list[tuple[int, int]], where: str) -> list[str | None]:
    """Each document's first-level folder (D,): of its recorded path (paths (D,), None: the dataset records none, so
    no folders); UserError when `where` (documents.json's split) does not list one path per document."""
    if paths is None:
        return [None] * len(docs)
    if len(paths) != len(docs):
        raise UserError(f"{where} lists {len(paths)} paths but the split holds {len(docs)} documents: prepare the "
                        f"dataset again")
    return [folder_of(p) for p in paths]


class SplitDocuments(NamedTuple):
    ranges: list[tuple[int, int]]  # (D,) each document's [start, end) tokens (documents())
    columns: np.ndarray  # (D,) int64 each document's folder column, -1: none (top level, or a folder without one)
    n_columns: int  # the dataset's columns: len(CONCEPTS) + its folder columns


def split_documents(docs: list[tuple[int, int]], doc_folders: list[str | None], folders: list[str]) -> SplitDocuments:
    """A split's documents (D,), their folders (D,) and the dataset's kept folders -> what label_split labels."""
    column = {f: len(CONCEPTS) + j for j, f in enumerate(folders)}
    columns = np.array([column.get(f, -1) for f in doc_folders], dtype=np.int64)
    return SplitDocuments(docs, columns, len(CONCEPTS) + len(folders))


class SplitLabels(NamedTuple):
    tokens: int
    files: int
    skipped: list[dict]  # {document, first_token, reason} of each document that does not parse
    counts: np.ndarray  # (C,) tokens carrying each concept


def label_split(tokens: np.ndarray, docs: SplitDocuments, enc, token_bytes: np.ndarray, path: str) -> SplitLabels:
    """Label each document of `tokens` (n,) and write the packed (n, row_bytes(C)) uint8 rows to `path` (atomic): the
    Python concepts of a document that parses, the folder column of every document in a kept folder."""
    C, n_python = docs.n_columns, len(CONCEPTS)
    counts, skipped, files = np.zeros(C, dtype=np.int64), [], 0
    with atomic_file(path, 'wb+') as f:
        if len(tokens):  # np.memmap cannot map an empty file
            f.truncate(len(tokens) * row_bytes(C))  # all-zero rows: end-of-text tokens stay so
            out = np.memmap(f, dtype=np.uint8, mode='r+', shape=(len(tokens), row_bytes(C)))
            bar = progress(docs.ranges, unit='doc', desc=f"labelling {os.path.basename(path)}")
            for i, (start, end) in enumerate(bar):
                ids = np.asarray(tokens[start:end], dtype=np.int64)
                ends = np.cumsum(token_bytes[ids])
                spans = np.stack([ends - token_bytes[ids], ends], axis=1)  # (n_doc, 2) byte ranges
                labels = np.zeros((end - start, C), dtype=bool)  # (n_doc, C)
                files += 1
                try:
                    text = enc.decode_bytes(ids.tolist()).decode('utf-8')
                    labels[:, :n_python] = label_document(text, spans)
                except (NotPython, UnicodeDecodeError) as e:  # no Python labels; its folder's label still holds
                    reason = str(e) if isinstance(e, NotPython) else f"not UTF-8: {e}"
                    skipped.append(dict(document=i, first_token=start, reason=reason))
                if docs.columns[i] >= 0:
                    labels[:, docs.columns[i]] = True
                out[start:end] = np.packbits(labels, axis=1)
                counts += labels.sum(axis=0)
            out.flush()
            del out
    return SplitLabels(len(tokens), files, skipped, counts)


def up_to_date(json_path: str, fingerprints: dict, names: list[str]) -> bool:
    """True when concepts.json describes these splits' tokens, their documents' paths, this labeller (concepts.py),
    this Python and these columns (`names`: the folder columns change with the corpus), and its files exist."""
    if not os.path.isfile(json_path):
        return False
    old = read_json(json_path)
    same = (old.get('python') == platform.python_version() and old.get('labeller_sha256') == fingerprints['labeller']
            and old.get('documents_sha256') == fingerprints['documents']
            and [c['name'] for c in old.get('concepts', [])] == names)
    for split in ('train', 'val'):
        sha, entry = fingerprints[split], old.get('splits', {}).get(split, {})
        path = os.path.join(os.path.dirname(json_path), f'concepts_{split}.bin')
        same = same and entry.get('tokens_sha256') == sha and os.path.isfile(path) and \
            os.path.getsize(path) == entry.get('tokens', -1) * row_bytes(len(names))
    return same
