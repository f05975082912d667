"""The mutation list of tools/guards.py stays true to the code: each snippet it breaks is once in the def its anchor
names, and each names a test that exists (the mutations themselves run with `python -m tools.guards`, not here).
A def moved to another file fails here with the one line of `python -m tools.guards --check` that says where."""
import subprocess

import pytest

from tools import guards
from tools.guards import GUARDS, Guard


@pytest.mark.parametrize('guard', GUARDS, ids=[g.element[:60] for g in GUARDS])
def test_guard_anchor_snippet_and_test_exist(guard):
    found = guards.problems(guard)
    assert not found, '\n'.join(found)


def test_anchors_are_found_where_the_def_is_now(tmp_path):
    """A snippet is found once in the def its anchor names (nested: 'Class.method'), at the top level only outside
    every def; a def moved to another file is found there (reported as moved); a snippet gone is stale."""
    (tmp_path / 'pkg').mkdir()
    (tmp_path / 'a.py').write_text("X = 1\n\n\nclass C:\n    @staticmethod\n    def m():\n        return 2\n\n\n"
                                   "def f():\n    def g():\n        return 3\n    return g\n")
    (tmp_path / 'pkg' / 'b.py').write_text("def h():\n    return 4\n")
    subprocess.run(['git', 'init', '-q'], cwd=tmp_path, check=True)  # the moved search reads `git ls-files`

    def where(anchor: str, old: str) -> str:
        try:
            return guards.locate(Guard('e', anchor, old, '', 't'), str(tmp_path))
        except guards.Stale as e:
            return f'stale: {e}'

    assert where('a.py::C.m', 'return 2') == where('a.py::C', 'return 2') == 'a.py'
    assert where('a.py::C.m', '    @staticmethod\n') == 'a.py'  # a decorator is part of its def
    assert where('a.py::f.g', 'return 3') == where('a.py', 'X = 1') == 'a.py'
    assert where('a.py::h', 'return 4') == 'pkg/b.py'  # moved
    assert where('a.py::f', 'return 4').startswith('stale: the snippet is not once in a.py::f; it is in pkg/b.py::h')
    assert where('a.py', 'return 2').startswith('stale:')  # inside a def, not at the top level
    assert where('a.py::C.m', 'return 5') == 'stale: the snippet is not once in a.py::C.m; it is nowhere in the repo'
    assert where('a.py::f', 'return 2\n\n\ndef f').startswith('stale:')  # straddles two defs
