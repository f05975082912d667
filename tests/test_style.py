"""The architecture rules a reader relies on, checked on the source: short functions, and one place for each idea
(atomic writes, progress bars, errors)."""
import ast
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

MAX_FUNCTION_LINES = 80


def tracked_python_files() -> list[str]:
    out = subprocess.run(['git', 'ls-files', '*.py'], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if os.path.isfile(os.path.join(REPO, f))]


def source(path: str) -> str:
    with open(os.path.join(REPO, path), encoding='utf-8') as f:
        return f.read()


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in tracked_python_files():
        for node in ast.walk(ast.parse(source(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize('pattern, home, why', [
    (r'os\.fsync\(', 'monosemanticity/common.py', 'temp + fsync + rename lives in common.atomic_file'),
    (r'\btqdm\(', 'monosemanticity/common.py', 'progress bars come from common.progress (plain lines in a log)'),
    (r'(raise|except) SystemExit\b', 'monosemanticity/common.py', 'libraries raise UserError; scripts die()'),
])
def test_one_place_for(pattern, home, why):
    found = [f"{path}:{i}" for path in tracked_python_files() if path != home and not path.startswith('tests/')
             for i, line in enumerate(source(path).splitlines(), 1) if re.search(pattern, line)]
    assert not found, f"{why}; found elsewhere: {found}"


def test_progress_off_a_terminal_is_a_few_plain_lines():
    """A log (stderr not a terminal) gets a line every 5% of the bar, no carriage returns; a transient bar none."""
    code = ("from monosemanticity.common import progress\n"
            "for _ in progress(range(1000), desc='work'): pass\n"
            "for _ in progress(range(1000), desc='eval', leave=False): pass\n")
    p = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True)
    lines = p.stderr.splitlines()
    assert '\r' not in p.stderr and 15 <= len(lines) <= 22, p.stderr
    assert lines[-1].startswith('work: 100% 1000/1000') and not any(t.startswith('eval') for t in lines)
