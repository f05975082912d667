"""The built feature browser in a real headless Chromium, opened from file:// (no server).

Driven through chromedriver's W3C WebDriver HTTP API with urllib (no selenium). Needs Debian's chromium and
chromium-driver (`apt-get install -y chromium chromium-driver`; .ci/run installs them); skipped without them.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from test_interface import N_FEAT, XSS, build_site, read_features, read_js

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
pytestmark = pytest.mark.skipif(not (os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)),
                                reason="chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'  # the W3C key of an element reference


class Browser:
    """A minimal WebDriver client: one headless Chromium session through a chromedriver on a free port."""

    def __init__(self, tmp: str):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        self.base = f'http://127.0.0.1:{port}'
        self.driver = subprocess.Popen([CHROMEDRIVER, f'--port={port}'], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(self.base + '/status', timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        args = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1300,1000',
                f'--user-data-dir={tempfile.mkdtemp(dir=tmp)}']
        caps = {'browserName': 'chrome', 'goog:loggingPrefs': {'browser': 'ALL'},
                'goog:chromeOptions': {'binary': CHROMIUM, 'args': args}}
        try:
            self.sid = self.call('POST', '/session', {'capabilities': {'alwaysMatch': caps}})['sessionId']
        except Exception:
            self.driver.kill()
            raise

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())['value']
        except urllib.error.HTTPError as e:
            raise AssertionError(f"WebDriver {method} {path}: {e.read()[:600]!r}") from None

    def session(self, method: str, path: str, body: dict | None = None):
        return self.call(method, f'/session/{self.sid}{path}', body)

    def open(self, path: str) -> None:
        """Load a page of the site from disk and wait until its script has rendered (body[data-ready])."""
        self.session('POST', '/url', {'url': 'file://' + path})
        self.wait("return document.body && document.body.getAttribute('data-ready') === '1'")

    def wait(self, script: str, timeout: float = 15) -> None:
        t0 = time.time()
        while not self.js(script):
            assert time.time() - t0 < timeout, f"timed out waiting for: {script}"
            time.sleep(0.05)

    def js(self, script: str, *args):
        return self.session('POST', '/execute/sync', {'script': script, 'args': list(args)})

    def find(self, css: str) -> dict:
        return self.session('POST', '/element', {'using': 'css selector', 'value': css})

    def click(self, css: str) -> None:
        self.session('POST', f"/element/{self.find(css)[ELEMENT]}/click", {})

    def type(self, css: str, text: str) -> None:
        self.session('POST', f"/element/{self.find(css)[ELEMENT]}/value", {'text': text})

    def errors(self) -> list:
        """Errors collected by the page (window.onerror, failed loads, console.error) and SEVERE console logs."""
        errs = list(self.js('return window.__errors || ["no error collector on the page"]'))
        try:
            logs = self.session('POST', '/se/log', {'type': 'browser'})
            errs += [e['message'] for e in logs if e['level'] == 'SEVERE']
        except AssertionError:
            pass  # a chromedriver without the log endpoint: the page's own collector still counts
        return errs

    def screenshot(self, path: str) -> None:
        with open(path, 'wb') as f:
            f.write(base64.b64decode(self.session('GET', '/screenshot')))

    def quit(self) -> None:
        try:
            self.session('DELETE', '')
        finally:
            self.driver.terminate()
            self.driver.wait(10)


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return build_site(str(tmp_path_factory.mktemp('browser_site')))


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    b = Browser(str(tmp_path_factory.mktemp('chromium')))
    yield b
    b.quit()


def shot(browser: Browser, path) -> None:
    browser.screenshot(str(path))
    assert open(path, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def ids_shown(browser: Browser) -> list[int]:
    return browser.js("return Array.from(document.querySelectorAll('#table tbody tr')).map(r => +r.dataset.id)")


def test_index_sorts_filters_and_links(site, browser, tmp_path):
    index = read_js(os.path.join(site['site'], 'data', 'index.js'))
    browser.open(os.path.join(site['site'], 'index.html'))
    assert browser.errors() == []
    assert ids_shown(browser) == list(range(N_FEAT))
    assert browser.js("return document.querySelectorAll('#dens svg rect').length") > 2
    assert 'ultralow' in browser.js("return document.querySelector('#dens svg').textContent")
    browser.click('th[data-key="density"]')  # most frequent first
    shown = ids_shown(browser)
    assert [index['n_fire'][i] for i in shown] == sorted(index['n_fire'], reverse=True)
    browser.click('th[data-key="density"]')  # and reversed
    assert [index['n_fire'][i] for i in ids_shown(browser)] == sorted(index['n_fire'])
    shot(browser, tmp_path / 'index.png')
    # search over the tokens a feature fires on most: every row left shows the query in a chip
    query = browser.js("return document.querySelector('#table tbody tr td:nth-child(5) .chip').textContent")
    browser.type('#q', query)
    rows = browser.js("return Array.from(document.querySelectorAll('#table tbody tr')).map(r => "
                      "Array.from(r.querySelectorAll('.chip')).map(c => c.textContent).join(' '))")
    assert 0 < len(rows) <= N_FEAT and all(query.lower() in r.lower() for r in rows)
    browser.open(os.path.join(site['site'], 'index.html') + '#dead')  # the dead list
    assert 7 in ids_shown(browser) and ids_shown(browser) == [i for i, n in enumerate(index['n_fire']) if n == 0]
    browser.click('#random')
    browser.wait("return location.pathname.endsWith('feature.html') && document.body.getAttribute('data-ready')")
    assert browser.errors() == []


def test_feature_page_renders_every_panel(site, browser, tmp_path):
    feats = read_features(site['site'])
    fid = max(range(N_FEAT), key=lambda i: feats[i]['n_fire'])
    d = feats[fid]
    browser.open(os.path.join(site['site'], 'feature.html') + f'?f={fid}')
    assert browser.errors() == []
    count = lambda css: browser.js(f"return document.querySelectorAll('{css}').length")  # noqa: E731
    assert browser.js("return document.getElementById('title').textContent") == f'Feature #{fid}'
    assert count('#acthist svg rect') == len(d['hist'])
    assert count('#logits tbody tr') == 10 and count('#logits svg rect') == len(d['logits']['hist'])
    assert count('#toptokens .chip') == len(d['top_tokens'])
    assert count('#top .win') == len(d['top'])
    assert count('#intervals .win') == sum(len(iv['samples']) for iv in d['intervals'])
    assert count('#cos tbody tr') == 10 and count('#cos a.flink') == 10
    assert count('#coact tbody tr') == len(d['coact'])
    n_tok = sum(len(w['t']) for w in d['top'])
    assert count('#top .tok') == n_tok
    # hover text: activation and the effect on the next token's log-prob; underlines where the feature fired
    title = browser.js("return document.querySelectorAll('#top .tok')[1].title")
    assert 'activation' in title and 'log p(this token)' in title
    assert browser.js("return Array.from(document.querySelectorAll('#top .tok')).filter(s => s.style.borderBottom)"
                      ".length") == sum(1 for w in d['top'] for e in w['e'] if e != 0)
    shot(browser, tmp_path / 'feature.png')
    browser.open(os.path.join(site['site'], 'feature.html') + '?f=7')  # dead: still a page
    assert browser.errors() == [] and 'dead' in browser.js("return document.getElementById('summary').textContent")
    browser.open(os.path.join(site['site'], 'feature.html') + '?f=99999')
    assert 'No feature' in browser.js("return document.body.textContent")


def test_tokens_are_text_never_markup(site, browser):
    feats = read_features(site['site'])
    fid = next(i for i in range(N_FEAT) if any(256 in w['t'] or 257 in w['t'] for w in feats[i]['top']))
    browser.open(os.path.join(site['site'], 'feature.html') + f'?f={fid}')
    assert browser.errors() == []
    assert browser.js("return document.querySelectorAll('img, iframe, object').length") == 0
    assert browser.js("return Array.from(document.scripts).filter(s => !s.src)"
                      ".every(s => !s.textContent.includes('alert'))")  # only the page's own inline error collector
    text = browser.js("return Array.from(document.querySelectorAll('#top .tok')).map(s => s.textContent).join('')")
    assert any(x.decode().replace(' ', '') in text.replace(' ', '').replace('·', '') for x in XSS)
    # partial UTF-8: bytes e6 97 (token 258) + a5 show '日' on the completing token, escaped bytes before it
    parts = browser.js("return IF.tokenTexts([258, 0xA5])")
    assert parts == [{'text': '‹\\xe6›‹\\x97›', 'partial': True}, {'text': '日', 'partial': False}]
    assert browser.js("return IF.tokenLabel(0xC3)") == '‹\\xc3›'
    assert browser.js("return IF.tokenLabel(10) + IF.tokenLabel(32) + IF.tokenLabel(9)") == '⏎·⇥'


def test_examples_page_lists_and_colours_features(site, browser, tmp_path):
    ex = read_js(os.path.join(site['site'], 'data', 'examples.js'))
    browser.open(os.path.join(site['site'], 'examples.html'))
    assert browser.errors() == []
    assert browser.js("return document.querySelectorAll('.ex-text').length") == len(ex)
    t = next(j for j, f in enumerate(ex[0]['feats']) if f)
    browser.click(f'#text0 .tok[data-pos="{t}"]')
    assert browser.js("return document.querySelectorAll('#side tbody tr').length") == len(ex[0]['feats'][t]) // 2
    first = ex[0]['feats'][t][0]
    browser.click('#side tbody tr td:nth-child(2)')  # select the strongest feature: the texts are coloured by it
    assert f'feature #{first}' in browser.js("return document.getElementById('selinfo').textContent")
    coloured = browser.js("return Array.from(document.querySelectorAll('#text0 .tok'))"
                          ".map(s => !!s.style.backgroundColor)")
    assert coloured == [first in f[0::2] for f in ex[0]['feats']]
    assert browser.errors() == []
    shot(browser, tmp_path / 'examples.png')
