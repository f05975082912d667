"""The repo's shape, checked on the source with ast: the top level is the pipeline, its parts live in the package
monosemanticity/, no script is imported, no import cycle, no project import hidden inside a function, and no
settings passed as module globals (library functions take them as arguments)."""
import ast
import os
import subprocess

from conftest import REPO
from tools.imports import (PACKAGE, TOP_CORE, TOP_SCRIPTS, cycles, globals_writes, import_graph, is_script,
                           project_imports, python_files, read)

MAX_SCRIPT_LINES = 500


def test_no_import_cycle():
    graph, _ = import_graph()
    assert not cycles(graph), f"import cycles: {[' -> '.join(c) for c in cycles(graph)]}"


def test_no_script_is_imported():
    graph, paths = import_graph()
    scripts = {m for m, p in paths.items() if is_script(p)}
    bad = {f"{paths[m]}:{line} imports the script {t}" for m, imports in graph.items() for t, line, _ in imports
           if t in scripts}
    test_paths = [p for p in python_files() if p.startswith('tests/')]
    bad |= {f"{p}:{line} imports the script {t}" for p in test_paths
            for t, line, _ in project_imports(p, set(paths)) if t in scripts}
    assert not bad, sorted(bad)


def test_no_project_import_inside_a_function():
    """An import inside a function is how a cycle hides; the package's and the scripts' imports are at the top."""
    graph, paths = import_graph()
    bad = [f"{paths[m]}:{line} imports {t} inside a function" for m, imports in graph.items()
           if not paths[m].startswith('bench/') for t, line, inner in imports if inner]
    assert not bad, bad


def test_no_settings_as_module_globals():
    """No function rewrites its module's globals from a config (`globals().update` in main(), `global x`): a library
    function called from elsewhere would silently read another script's defaults. The package and the core modules
    write no globals at all; a script's config block may declare keys (train_sae.py: the kinds' own keys)."""
    bad = [f"{path}:{line} {what}" for path in python_files() for line, what, in_function in
           globals_writes(ast.parse(read(path))) if in_function or path.startswith(f'{PACKAGE}/') or path in TOP_CORE]
    assert not bad, bad


def test_top_level_is_the_pipeline():
    top = {p for p in python_files() if '/' not in p}
    assert top == TOP_SCRIPTS | TOP_CORE, f"not the pipeline: {sorted(top - TOP_SCRIPTS - TOP_CORE)}"
    assert os.path.isfile(os.path.join(REPO, PACKAGE, '__init__.py'))
    long = {p: read(p).count('\n') for p in TOP_SCRIPTS if read(p).count('\n') > MAX_SCRIPT_LINES}
    assert not long, f"scripts over {MAX_SCRIPT_LINES} lines (their parts belong in {PACKAGE}/): {long}"


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checks above on a made-up tree: a cycle hidden by a function-level import, a script imported."""
    files = {'a.py': 'import b\n', 'b.py': 'def f():\n    import a\n', 'c.py': 'from a import x\n',
             'build_interface.py': "def main():\n    pass\n", 'd.py': 'import build_interface\n'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    subprocess.run(['git', 'init', '-q'], cwd=tmp_path, check=True)
    graph, paths = import_graph(str(tmp_path))
    assert cycles(graph) == [['a', 'b', 'a']]
    assert ('a', 2, True) in graph['b'] and ('build_interface', 1, False) in graph['d']
    assert is_script(paths['build_interface'])
    writes = globals_writes(ast.parse("globals().update(a=1)\ndef main():\n    globals().update(b)\n"
                                      "def f():\n    global x\n"))
    assert writes == [(1, 'globals().update(...)', False), (3, 'globals().update(...)', True), (5, 'global x', True)]
