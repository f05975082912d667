"""
Size and load time of built feature browsers, opened from disk in headless Chromium (as a user opens them).

    python -m bench.site                                               # out/demo/interface
    python -m bench.site --sites=out/demo/interface,out/demo131k/interface --repeats=5

Per site it prints the bytes on disk (total, the index's data files, the per-feature files: how many, median and
largest) and, best of `repeats` loads each: index.html until its table is drawn (wall seconds from the
navigation, through WebDriver) and its JS heap; one search typed into the index (the table filtered and redrawn,
ms inside the page); a sort by density; and feature.html of a feature in the middle of the site until drawn (it
reads data/index.js and the one features/NNNN.js file holding that feature). Needs chromium and chromium-driver
(tools/webdriver.py).
"""
import glob
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from monosemanticity.common import die, read_json  # noqa: E402
from configurator import configure  # noqa: E402
from tools import webdriver  # noqa: E402

sites = 'out/demo/interface'  # comma-separated site folders (build_interface.py's <out_dir>/interface)
repeats = 3  # loads per page; the best counts
query = 'the'  # the text typed into the index's search box
config = configure(globals())  # config files and --key=value overrides from the command line (configurator.py)

MB = 2 ** 20


def sizes(site: str) -> dict:
    """Bytes on disk: the whole site, data/*.js, and the per-feature files."""
    files = [f for f in glob.glob(os.path.join(site, '**'), recursive=True) if os.path.isfile(f)]
    feat = sorted(os.path.getsize(f) for f in glob.glob(os.path.join(site, 'features', '*.js')))
    data = {os.path.basename(f): os.path.getsize(f) for f in glob.glob(os.path.join(site, 'data', '*.js'))}
    return {'total': sum(os.path.getsize(f) for f in files), 'data': data, 'n_feature_files': len(feat),
            'feature_files': sum(feat), 'median_feature_file': statistics.median(feat) if feat else 0,
            'max_feature_file': feat[-1] if feat else 0}


def load_seconds(browser: webdriver.Browser, url: str) -> float:
    """Wall seconds from asking for url until the page has drawn itself (body[data-ready])."""
    browser.session('POST', '/url', {'url': 'about:blank'})
    t0 = time.perf_counter()
    browser.session('POST', '/url', {'url': url})
    browser.wait("return document.body && document.body.getAttribute('data-ready') === '1'", timeout=120)
    seconds = time.perf_counter() - t0
    if browser.errors():
        die(f"{url}: the page reported errors: {browser.errors()[:3]}")
    return seconds


def in_page_ms(browser: webdriver.Browser, script: str) -> float:
    """ms the page takes to run script (synchronous: the index redraws its table inside the event handlers)."""
    return browser.js(f"const t0 = performance.now(); {script}; return performance.now() - t0;")


def measure(browser: webdriver.Browser, site: str) -> dict:
    index = 'file://' + os.path.abspath(os.path.join(site, 'index.html'))
    n_feat = read_json(os.path.join(site, 'meta.json'))['n_features']
    out = {'index_s': [], 'heap_mb': [], 'search_ms': [], 'sort_ms': [], 'feature_s': []}
    for _ in range(repeats):
        out['index_s'].append(load_seconds(browser, index))
        out['heap_mb'].append(browser.js("return performance.memory ? performance.memory.usedJSHeapSize : 0") / MB)
        out['search_ms'].append(in_page_ms(browser, f"""const q = document.getElementById('q');
            q.value = {query!r}; q.dispatchEvent(new Event('input'))"""))
        out['matches'] = browser.js("return document.getElementById('count').textContent")
        out['sort_ms'].append(in_page_ms(browser, "document.querySelector('th[data-key=density]').click()"))
        out['feature_s'].append(load_seconds(browser, f"file://{os.path.abspath(site)}/feature.html?f={n_feat // 2}"))
    return {k: min(v) if isinstance(v, list) else v for k, v in out.items()} | {'n_features': n_feat}


def main() -> None:
    folders = [s for s in str(sites).split(',') if s]
    for s in folders:
        if not os.path.isfile(os.path.join(s, 'meta.json')):
            die(f"{s} is not a built site (no meta.json): run build_interface.py first (make demo builds "
                f"out/demo/interface)")
    if not webdriver.available():
        die("chromium/chromedriver not installed: apt-get install -y chromium chromium-driver")
    browser = webdriver.Browser(tempfile.mkdtemp(prefix='bench_site_'), ('--enable-precise-memory-info',))
    try:
        for s in folders:
            z, m = sizes(s), measure(browser, s)
            data = ', '.join(f"{k} {v / MB:.2f}" for k, v in sorted(z['data'].items()))
            print(f"{s}: {m['n_features']:,} features, {z['total'] / MB:.1f} MB on disk (data/: {data} MB; "
                  f"{z['n_feature_files']} feature files, {z['feature_files'] / MB:.1f} MB, median "
                  f"{z['median_feature_file'] / 1024:.0f} KB, largest {z['max_feature_file'] / 1024:.0f} KB)")
            print(f"  best of {repeats}: index.html drawn in {m['index_s']:.2f} s (JS heap {m['heap_mb']:.0f} MB); "
                  f"search {query!r}: {m['search_ms']:.0f} ms ({m['matches']}); sort by density: "
                  f"{m['sort_ms']:.0f} ms; feature.html?f={m['n_features'] // 2} drawn in {m['feature_s']:.2f} s",
                  flush=True)
    finally:
        browser.quit()


if __name__ == '__main__':
    main()
