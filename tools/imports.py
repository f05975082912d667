"""
The repo's import graph, read from the source with ast (nothing is imported): which project modules each file
imports, where (top level or inside a function), the import cycles, and the lines a reader follows from each
pipeline script (the script plus every project module it reaches). tests/test_structure.py checks the rules on it.

    python -m tools.imports              # the pipeline scripts' reach, the top level, the package, the cycles
"""
import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'monosemanticity'
# what the top level holds: the pipeline's scripts, the core modules, and nothing else
TOP_SCRIPTS = {'train_transformer.py', 'generate_activations.py', 'train_sae.py', 'build_interface.py', 'analyze.py',
               'label_concepts.py'}
TOP_CORE = {'model.py', 'autoencoder.py', 'configurator.py'}


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


def reach(graph: dict[str, list[tuple[str, int, bool]]], start: str) -> set[str]:
    """The modules a reader of `start` meets: itself and every project module it imports, transitively."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += [t for t, _, _ in graph.get(m, [])]
    return seen


def lines(path: str, root: str = REPO) -> int:
    return read(path, root).count('\n')


def main(root: str = REPO) -> None:
    graph, paths = import_graph(root)
    print('script                    lines it reaches (files)')
    for script in sorted(TOP_SCRIPTS):
        mods = reach(graph, module_name(script))
        print(f"{script:25s} {sum(lines(paths[m], root) for m in mods):>6,} ({len(mods)})")
    top = [p for p in paths.values() if '/' not in p]
    package = [p for p in paths.values() if p.startswith(f'{PACKAGE}/')]
    longest = max(top + package, key=lambda p: lines(p, root))
    print(f"top level: {len(top)} .py files, {sum(lines(p, root) for p in top):,} lines; {PACKAGE}/: {len(package)} "
          f"files, {sum(lines(p, root) for p in package):,} lines; longest: {longest} ({lines(longest, root):,})")
    found = cycles(graph)
    print(f"import cycles: {len(found)}" + ''.join(f"\n  {' -> '.join(c)}" for c in found))


if __name__ == '__main__':
    main(os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else REPO)
