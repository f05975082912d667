"""
Regenerate the README's results from a finished demo run (`make demo`), so that they are never hand-edited:
the results table between the `<!-- results:start -->` / `<!-- results:end -->` markers of README.md, the
table of tools/guards.py between `<!-- guards:start -->` / `<!-- guards:end -->`, and
screenshots of the feature browser (assets/index.png, assets/feature.png) taken with headless Chromium.

    python tools/readme_assets.py [--out_dir=out/demo] [--feature=ID]      (or: make readme)
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root, for common.py
from common import REPO_ROOT, atomic_write_bytes, die, results_table  # noqa: E402
from configurator import configure  # noqa: E402
from tools.guards import markdown  # noqa: E402

out_dir = 'out/demo'  # the run folder
feature = 0  # the feature page to show
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

site = os.path.abspath(os.path.join(out_dir, 'interface'))
if not os.path.isfile(os.path.join(site, 'index.html')):
    die(f"{site}/index.html not found: run `make demo` first")
chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
if chromium is None:
    die("chromium not found: apt-get install -y chromium")


def screenshot(url: str, path: str, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
                        '--disable-background-networking', '--disable-component-update', '--disable-sync',
                        '--hide-scrollbars', f'--user-data-dir={profile}', f'--window-size={width},{height}',
                        '--virtual-time-budget=5000', f'--screenshot={path}', url],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {path}")


os.makedirs(os.path.join(REPO_ROOT, 'assets'), exist_ok=True)
screenshot(f"file://{site}/index.html", os.path.join(REPO_ROOT, 'assets', 'index.png'), 1200, 430)
screenshot(f"file://{site}/feature.html?f={feature}", os.path.join(REPO_ROOT, 'assets', 'feature.png'), 1400, 1400)

readme = os.path.join(REPO_ROOT, 'README.md')
text = open(readme).read()
start, end = '<!-- results:start -->', '<!-- results:end -->'
if start not in text or end not in text:
    die(f"README.md has no {start} ... {end} markers")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
block = (f"{start}\n<!-- written by tools/readme_assets.py from {out_dir}: do not edit by hand -->\n"
         f"{results_table(out_dir)}\n\nThe feature shown below is #{feature}.\n{end}")
text = head + block + tail
start, end = '<!-- guards:start -->', '<!-- guards:end -->'  # the mutation-check table of tools/guards.py
if start not in text or end not in text:
    die(f"README.md has no {start} ... {end} markers")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
note = '<!-- written from tools/guards.py by make readme: do not edit by hand -->'
text = f"{head}{start}\n{note}\n{markdown()}\n{end}{tail}"
atomic_write_bytes(readme, text.encode())
print(f"updated the results and the guards table in {readme}")
