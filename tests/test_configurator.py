"""The configurator: nanoGPT's semantics with its known faults fixed (issues #29, #156, #362, #412)."""
import sys

import pytest

import configurator
from configurator import ConfigError, configure

from conftest import run_script


def defaults() -> dict:
    return {'learning_rate': 6e-4, 'max_iters': 100, 'dataset': 'pystdlib', 'compile': False, 'init': None,
            'betas': (0.9, 0.95), 'sys': sys}


def test_overrides_and_types():
    g = defaults()
    cfg = configure(g, ['--learning_rate=1', '--max_iters=5', '--dataset=a=b', '--compile=True', '--init=3'])
    assert g['learning_rate'] == 1.0 and isinstance(g['learning_rate'], float)  # int accepted for float
    assert g['max_iters'] == 5
    assert g['dataset'] == 'a=b'  # split on the first '='
    assert g['compile'] is True
    assert g['init'] == 3  # a None default can be overridden
    assert 'sys' not in cfg and cfg['max_iters'] == 5


def test_string_key_keeps_digits_and_none_takes_string():
    g = defaults()
    configure(g, ['--dataset=123', '--init=resume'])
    assert g['dataset'] == '123' and g['init'] == 'resume'


@pytest.mark.parametrize('arg, msg', [
    ('--lerning_rate=1', "did you mean 'learning_rate'"),
    ('--max_iters=1.5', 'takes a int'),
    ('--compile=1', 'takes a bool'),
    ('--learning_rate=fast', 'takes a float'),
    ('--max_iters', '--key=value'),
    ('nonexistent_config.py', 'not found'),
])
def test_bad_overrides(arg, msg):
    with pytest.raises(ConfigError, match=msg):
        configure(defaults(), [arg])


def test_config_file(tmp_path):
    f = tmp_path / 'cfg.py'
    f.write_text("import math\nlearning_rate = 1\nmax_iters = 2 ** 3\n")
    g = defaults()
    configure(g, [str(f), '--max_iters=9'])  # command line after the file wins
    assert g['learning_rate'] == 1.0 and g['max_iters'] == 9
    f.write_text("max_iter = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_iter' in config file .*did you mean 'max_iters'"):
        configure(defaults(), [str(f)])
    f.write_text("max_iters = (\n")
    with pytest.raises(ConfigError, match='SyntaxError'):
        configure(defaults(), [str(f)])


def test_script_help_and_one_line_errors():
    p = run_script('train_transformer.py', '--help')
    assert p.returncode == 0 and '--learning_rate' in p.stdout and '0.0006' in p.stdout
    p = run_script('train_transformer.py', '--lerning_rate=1', check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'learning_rate'" in lines[0] and 'Traceback' not in p.stderr


def test_module_import_has_no_side_effects():
    """Importing the module (tests, tools) must not parse sys.argv; only exec'ing it from a script does."""
    assert configurator.__name__ == 'configurator' and not hasattr(configurator, 'config')
