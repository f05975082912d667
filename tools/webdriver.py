"""
A minimal WebDriver client for the feature browser's tests and bench/site.py: one headless Chromium session
through Debian's chromedriver, driven by its W3C HTTP API with urllib (no selenium; Playwright's download fails
here). Needs `apt-get install -y chromium chromium-driver`; `available()` says whether they are installed.
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

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
ELEMENT = 'element-6066-11e4-a52e-4f735466cecf'  # the W3C key of an element reference


class WebDriverError(AssertionError):
    """A WebDriver command failed (an AssertionError, so a test that hits it fails with the driver's message)."""


def available() -> bool:
    """chromium and chromedriver are installed."""
    return os.path.isfile(CHROMIUM) and os.path.isfile(CHROMEDRIVER)


class Browser:
    """A minimal WebDriver client: one headless Chromium session through a chromedriver on a free port."""

    def __init__(self, tmp: str, extra_args: tuple[str, ...] = ()):
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
                f'--user-data-dir={tempfile.mkdtemp(dir=tmp)}', *extra_args]
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
            raise WebDriverError(f"WebDriver {method} {path}: {e.read()[:600]!r}") from None

    def session(self, method: str, path: str, body: dict | None = None):
        return self.call(method, f'/session/{self.sid}{path}', body)

    def open(self, path: str) -> None:
        """Load a page of the site from disk and wait until its script has rendered (body[data-ready])."""
        self.session('POST', '/url', {'url': 'file://' + path})
        self.wait("return document.body && document.body.getAttribute('data-ready') === '1'")

    def wait(self, script: str, timeout: float = 15) -> None:
        t0 = time.time()
        while not self.js(script):
            if time.time() - t0 > timeout:
                raise TimeoutError(f"timed out waiting for: {script}")
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
        except WebDriverError:
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
