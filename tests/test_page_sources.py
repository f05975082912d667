"""The feature browser's scripts read as text, without a browser: tests/test_browser.py checks the pages in a real
Chromium and skips where it is not installed; what a reading of the sources can check runs everywhere.
"""
import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKUP_SINKS = ('innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write', 'createContextualFragment',
                'DOMParser')  # every way a string becomes markup in a page


def page_scripts() -> dict[str, str]:
    """{name: source} of every script the pages run: interface/*.js and the <script> blocks of interface/*.html."""
    out = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'interface', '*.js'))):
        out[os.path.basename(path)] = open(path, encoding='utf-8').read()
    for path in sorted(glob.glob(os.path.join(REPO, 'interface', '*.html'))):
        html = open(path, encoding='utf-8').read()
        out[os.path.basename(path)] = '\n'.join(re.findall(r'<script[^>]*>(.*?)</script>', html, re.S))
    return out


def test_no_page_script_turns_a_string_into_markup():
    """Token texts, explanations and labels are made visible as text nodes only: no script of any page (single
    SAE, sweep, family, examples) hands a string to a markup sink, so a token like '<img onerror=...>' stays text."""
    scripts = page_scripts()
    assert {'common.js', 'page_index.js', 'page_feature.js', 'page_examples.js', 'page_concepts.js', 'page_family.js',
            'page_sweep.js'} <= set(scripts)
    for name, src in scripts.items():
        for sink in MARKUP_SINKS:
            assert sink not in src, f"interface/{name} uses {sink}"
