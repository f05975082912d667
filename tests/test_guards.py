"""The mutation list of tools/guards.py stays true to the code: each snippet it breaks is in its file exactly once,
and each names a test that exists (the mutations themselves run with `python -m tools.guards`, not here)."""
import os
import re

import pytest

from conftest import REPO
from tools.guards import GUARDS


@pytest.mark.parametrize('guard', GUARDS, ids=[g.element[:60] for g in GUARDS])
def test_guard_snippet_and_test_exist(guard):
    src = open(os.path.join(REPO, guard.file)).read()
    assert src.count(guard.old) == 1, f"{guard.file} holds the snippet {src.count(guard.old)} times"
    assert guard.old != guard.new
    path, _, name = guard.test.partition('::')
    test_src = open(os.path.join(REPO, path)).read()
    assert not name or re.search(rf"def {re.escape(name.split('[')[0])}\(", test_src), guard.test
