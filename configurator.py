"""
nanoGPT-style configuration: a script defines its config as module globals, then runs

    config = configure(globals())

which reads sys.argv[1:]: config files (python files that assign keys, exec'd as nanoGPT does) and
`--key=value` overrides, applied left to right, into the script's globals. `config` holds every key's final
value (for checkpoints/logs). Unlike nanoGPT's exec'd configurator this is an import, so linters see every name.

Fixes nanoGPT's configurator faults: `--key=value` splits on the first `=`; an int is accepted for a float
key; a `None` default can be overridden with any value; an unknown key (config file or command line) is an
error naming the closest known key; `--help` lists every key with its default; every failure is one line
on stderr and exit code 2 (ConfigError is a common.UserError: see common.exit_on_user_error).

Keys whose value depends on another key (train_sae.py: each SAE kind's published lr, λ, schedules): the script
sets them to None and defines `_config_defaults(g) -> (label, {key: value})`; after all arguments, every key
still None takes its value from there (a value given in a config file or on the command line wins and is
checked against the type of that default). `--help`, given last, shows the values in effect.
"""
import ast
import builtins
import difflib
import os
import sys

from monosemanticity.common import UserError

_SIMPLE_TYPES = (int, float, bool, str, type(None), tuple, list)


class ConfigError(UserError):
    """A bad config file or override; its message is the one line shown to the user."""

    def __str__(self) -> str:
        return f"{super().__str__()} (--help lists all keys)"


def config_keys(g: dict) -> list[str]:
    """The configurable keys of a script: public globals with simple values (not modules/functions)."""
    return [k for k, v in g.items() if not k.startswith('_') and k != 'config' and isinstance(v, _SIMPLE_TYPES)]


def closest_key_hint(key: str, keys: list[str]) -> str:
    """"; did you mean '<the closest known key>'?" for an unknown key (empty when none is close)."""
    m = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    return f"; did you mean '{m[0]}'?" if m else ''


def coerce(key: str, value, default, where: str):
    """Check `value` against the type of `default`; returns the value to store."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, (tuple, list)):
        if isinstance(value, (tuple, list)):
            return type(default)(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(f"{key}={value!r} ({where}) is a {type(value).__name__}, "
                      f"but {key} takes a {type(default).__name__} (default {default!r})")


def parse_value(raw: str, default):
    """Turn the text of `--key=value` into a python value of the default's kind."""
    if isinstance(default, str):
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in '\'"':
            return raw[1:-1]
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if isinstance(default, bool) and raw.lower() in ('true', 'false'):
            return raw.lower() == 'true'
        return raw  # a bare string; coerce() rejects it for non-string keys


def fill_defaults(g: dict) -> tuple[str, list[str]]:
    """Give every None key the value of the script's `_config_defaults(g)`; returns (its label, the keys filled)."""
    hook = g.get('_config_defaults')
    if not callable(hook):
        return '', []
    label, values = hook(g)
    filled = []
    for k, v in values.items():
        if g.get(k) is None:
            g[k] = v
            filled.append(k)
        else:
            g[k] = coerce(k, g[k], v, 'config')
    return label, filled


def help_text(g: dict, script: str) -> str:
    g = dict(g)
    label, filled = fill_defaults(g)
    lines = [f"usage: python {script} [config/FILE.py ...] [--key=value ...]", "",
             "keys (values in effect with the arguments before --help):"]
    keys = config_keys(g)
    width = max((len(k) for k in keys), default=0)
    lines += [f"  --{k.ljust(width)} = {g[k]!r}" + (f"  ({label})" if k in filled else '') for k in keys]
    return "\n".join(lines)


def configure(g: dict, argv: list[str] | None = None, script: str | None = None) -> dict:
    """Apply config files and --key=value overrides in `argv` (default sys.argv[1:]) to the globals dict `g`;
    returns the config. --help prints the keys and exits."""
    argv = sys.argv[1:] if argv is None else argv
    script = script or os.path.basename(sys.argv[0])
    keys = config_keys(g)
    defaults = {k: g[k] for k in keys}
    for arg in argv:
        if arg in ('-h', '--help'):
            print(help_text(g, script))
            sys.exit(0)
        if not arg.startswith('--'):
            if not os.path.isfile(arg):
                raise ConfigError(f"config file '{arg}' not found (overrides are written --key=value)")
            scope: dict = {}
            try:
                with open(arg) as f:
                    exec(builtins.compile(f.read(), arg, 'exec'), scope)
            except Exception as e:  # noqa: BLE001 - any failure in a config file is reported in one line
                raise ConfigError(f"config file '{arg}' failed: {type(e).__name__}: {e}") from None
            for k, v in scope.items():
                if k.startswith('_') or not isinstance(v, _SIMPLE_TYPES):
                    continue
                if k not in defaults:
                    raise ConfigError(f"unknown key '{k}' in config file '{arg}'{closest_key_hint(k, keys)}")
                g[k] = coerce(k, v, defaults[k], arg)
        else:
            if '=' not in arg:
                raise ConfigError(f"'{arg}': overrides are written --key=value")
            key, raw = arg[2:].split('=', 1)
            if key not in defaults:
                raise ConfigError(f"unknown key '{key}' on the command line{closest_key_hint(key, keys)}")
            g[key] = coerce(key, parse_value(raw, defaults[key]), defaults[key], 'command line')
    fill_defaults(g)
    return {k: g[k] for k in keys}
