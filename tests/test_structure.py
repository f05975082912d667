"""The repo's shape, checked on the source with ast: the top level is the pipeline, its parts live in the package
monosemanticity/, no script is imported, no import cycle, no project import hidden inside a function, and no
settings passed as module globals (library functions take them as arguments)."""
import ast
import os
import subprocess

from conftest import REPO

PACKAGE = 'monosemanticity'
# what the top level holds: the pipeline's scripts, the core modules, and nothing else
TOP_SCRIPTS = {'train_transformer.py', 'generate_activations.py', 'train_sae.py', 'build_interface.py', 'analyze.py'}
TOP_CORE = {'model.py', 'autoencoder.py', 'configurator.py'}
MAX_SCRIPT_LINES = 500


def python_files(root: str = REPO) -> list[str]:
    """The repo's tracked and untracked-not-ignored .py files (paths relative to root)."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '*.py'], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    return sorted(f for f in out.split() if os.path.isfile(os.path.join(root, f)))


def module_name(path: str) -> str:
    """'monosemanticity/site.py' -> 'monosemanticity.site'; 'train_sae.py' -> 'train_sae'."""
    name = path[:-3].replace('/', '.')
    return name[:-len('.__init__')] if name.endswith('.__init__') else name


def is_script(path: str) -> bool:
    """A file a user runs: the top level's pipeline and data/<ds>/prepare.py. (bench/ and tools/ are the developers'
    commands; the tests import some of them to check their parts.)"""
    return path in TOP_SCRIPTS or path.startswith('data/')


def read(path: str, root: str = REPO) -> str:
    with open(os.path.join(root, path), encoding='utf-8') as f:
        return f.read()


def project_imports(path: str, modules: set[str], root: str = REPO) -> list[tuple[str, int, bool]]:
    """(project module imported, line, inside a function?) for every import statement of the file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # `from pkg import mod` imports the module pkg.mod when there is one
                names = [f"{child.module}.{a.name}" if f"{child.module}.{a.name}" in modules else child.module
                         for a in child.names]
            for name in names:
                target = next((m for m in (name, name.rsplit('.', 1)[0]) if m in modules), None)
                if target is not None and target != PACKAGE:
                    found.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(ast.parse(read(path, root)), False)
    return found


def import_graph(root: str = REPO) -> tuple[dict[str, list[tuple[str, int, bool]]], dict[str, str]]:
    """module -> its project imports; module -> its path. Tests import their fixtures' modules: they are left out."""
    paths = {module_name(p): p for p in python_files(root) if not p.startswith('tests/')}
    modules = set(paths)
    return {m: project_imports(p, modules, root) for m, p in paths.items()}, paths


def cycles(graph: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """The import cycles (each once, as the path that closes it), by depth-first search over every import."""
    found, state = [], {}

    def dfs(m: str, stack: list[str]) -> None:
        state[m] = 'open'
        for target in dict.fromkeys(t for t, _, _ in graph.get(m, [])):  # each imported module once, in order
            if state.get(target) == 'open':
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                dfs(target, stack + [target])
        state[m] = 'done'

    for m in sorted(graph):
        if m not in state:
            dfs(m, [m])
    return found


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


def globals_writes(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, what, inside a function?) for each `global x` and `globals().update(...)` of a module."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Global):
                found.append((child.lineno, f"global {', '.join(child.names)}", True))
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and child.func.attr == 'update'
                    and isinstance(child.func.value, ast.Call)
                    and getattr(child.func.value.func, 'id', '') == 'globals'):
                found.append((child.lineno, 'globals().update(...)', in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


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
