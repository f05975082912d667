"""The README's front door: which Python `make` uses, seen with `make -n` (nothing is installed or run; ~1 s).

Outside any virtual env (e.g. with Debian's externally managed python3) make must make and use the project's
.venv; inside an activated env or a conda env, or with PYTHON=..., it must use that and leave .venv alone.
"""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which('make') is None, reason='make not installed')


def make_n(repo, bin_dir, *args: str, **env: str) -> str:
    """`make -n test ARGS` in repo with bin_dir first on PATH and no virtual env, conda env or PYTHON of ours."""
    clean = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHON', 'MAKEFLAGS')}
    clean['PATH'] = f'{bin_dir}{os.pathsep}{clean.get("PATH", "")}'
    p = subprocess.run(['make', '-n', 'test', *args], cwd=repo, capture_output=True, text=True,
                       env={**clean, **env}, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.fixture
def repo(tmp_path):
    """A copy of the Makefile, and bin/python3: a Python outside any virtual env (the one ours was made from)."""
    shutil.copy(os.path.join(REPO, 'Makefile'), tmp_path / 'Makefile')
    (tmp_path / 'bin').mkdir()
    base = os.path.realpath(getattr(sys, '_base_executable', sys.executable))
    os.symlink(base, tmp_path / 'bin' / 'python3')
    out = subprocess.run([tmp_path / 'bin' / 'python3', '-c', 'import sys; print(sys.prefix == sys.base_prefix)'],
                         capture_output=True, text=True)
    if out.stdout.strip() != 'True':
        pytest.skip(f'no Python outside a virtual env found ({base})')
    return tmp_path


def test_outside_an_env_make_uses_the_project_venv(repo):
    out = make_n(repo, repo / 'bin')
    assert '-m venv .venv' in out                       # made (or mended) with python3 -m venv
    assert '.venv/bin/python -m pip install -q -r requirements.txt' in out
    assert '.venv/bin/python -m pytest -q tests' in out
    assert not (repo / '.venv').exists()                # -n made nothing


def test_in_an_env_or_with_PYTHON_make_uses_that(repo):
    subprocess.run([repo / 'bin' / 'python3', '-m', 'venv', '--without-pip', repo / 'env'], check=True)
    for out in (make_n(repo, repo / 'env' / 'bin', VIRTUAL_ENV=str(repo / 'env')),   # activated
                make_n(repo, repo / 'env' / 'bin'),                                  # its bin first on PATH only
                make_n(repo, repo / 'bin', CONDA_PREFIX='/opt/conda'),
                make_n(repo, repo / 'bin', 'PYTHON=/opt/py/bin/python')):
        assert '.venv' not in out
        assert '-m pytest -q tests' in out
    assert '/opt/py/bin/python -m pytest -q tests' in out
