"""The built feature browser in a real headless Chromium, opened from file:// (no server): a single SAE's site,
and a sweep's site (tests/sweep_site_fixture.py's made-up one, and one build_interface.py builds of a tiny sweep).

Driven by tools/webdriver.py (chromedriver's W3C HTTP API, no selenium). Needs Debian's chromium and
chromium-driver (`apt-get install -y chromium chromium-driver`; .ci/run installs them); skipped without them.
"""
import json
import os

import numpy as np
import pytest
import tiktoken
import torch
from safetensors.torch import save_file

from conftest import harvested_run, run_script, save_transformer, write_token_data
from monosemanticity.concept_axis import concept_splits
from model import GPT, GPTConfig
from sweep_site_fixture import write_sweep_site
from test_concept_axis import NAMES, write_labels
from test_interface import ARGS, D_IN, N_FEAT, SITE, T, XSS, build_site, read_features, read_js
from tools import webdriver
from tools.webdriver import Browser

pytestmark = pytest.mark.skipif(not webdriver.available(),
                                reason="chromium/chromedriver not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return build_site(str(tmp_path_factory.mktemp('browser_site')))


@pytest.fixture(scope='module')
def sweep_site(tmp_path_factory):
    return write_sweep_site(str(tmp_path_factory.mktemp('sweep_site') / 'interface'))


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
    n_tok = sum(len(w['tokens']) for w in d['top'])
    assert count('#top .tok') == n_tok
    # hover text: activation and the effect on the next token's log-prob; underlines where the feature fired
    title = browser.js("return document.querySelectorAll('#top .tok')[1].title")
    assert 'activation' in title and 'log p(this token)' in title
    assert browser.js("return Array.from(document.querySelectorAll('#top .tok')).filter(s => s.style.borderBottom)"
                      ".length") == sum(1 for w in d['top'] for e in w['effects'] if e != 0)
    shot(browser, tmp_path / 'feature.png')
    browser.open(os.path.join(site['site'], 'feature.html') + '?f=7')  # dead: still a page
    assert browser.errors() == [] and 'dead' in browser.js("return document.getElementById('summary').textContent")
    browser.open(os.path.join(site['site'], 'feature.html') + '?f=99999')
    assert 'No feature' in browser.js("return document.body.textContent")


def test_tokens_are_text_never_markup(site, browser):
    feats = read_features(site['site'])
    fid = next(i for i in range(N_FEAT) if any(256 in w['tokens'] or 257 in w['tokens'] for w in feats[i]['top']))
    browser.open(os.path.join(site['site'], 'feature.html') + f'?f={fid}')
    assert browser.errors() == []
    assert browser.js("return document.querySelectorAll('img, iframe, object').length") == 0
    assert browser.js("return Array.from(document.scripts).filter(s => !s.src).length") == 0  # no inline script
    text = browser.js("return Array.from(document.querySelectorAll('#top .tok')).map(s => s.textContent).join('')")
    assert any(x.decode().replace(' ', '') in text.replace(' ', '').replace('·', '') for x in XSS)
    # partial UTF-8: bytes e6 97 (token 258) + a5 show '日' on the completing token, escaped bytes before it
    parts = browser.js("return IF.tokenTexts([258, 0xA5])")
    assert parts == [{'text': '‹\\xe6›‹\\x97›', 'partial': True}, {'text': '日', 'partial': False}]
    assert browser.js("return IF.tokenLabel(0xC3)") == '‹\\xc3›'
    # a character cut off by a whole token, split over two byte tokens, or a byte never valid in UTF-8
    assert browser.js("return IF.tokenTexts([258, 0x41])") == [{'text': '‹\\xe6›‹\\x97›', 'partial': False},
                                                               {'text': 'A', 'partial': False}]
    assert browser.js("return IF.tokenTexts([0xC3, 0xA9, 0xFB])") == [
        {'text': '‹\\xc3›', 'partial': True}, {'text': 'é', 'partial': False}, {'text': '‹\\xfb›', 'partial': False}]
    assert browser.js("return IF.tokenLabel(10) + IF.tokenLabel(32) + IF.tokenLabel(9)") == '⏎·⇥'


def test_examples_page_lists_and_colours_features(site, browser, tmp_path):
    ex = read_js(os.path.join(site['site'], 'data', 'examples.js'))
    browser.open(os.path.join(site['site'], 'examples.html'))
    assert browser.errors() == []
    assert browser.js("return document.querySelectorAll('.ex-text').length") == len(ex)
    t = next(j for j, f in enumerate(ex[0]['features']) if f)
    browser.click(f'#text0 .tok[data-pos="{t}"]')
    assert browser.js("return document.querySelectorAll('#side tbody tr').length") == len(ex[0]['features'][t])
    first = ex[0]['features'][t][0]
    browser.click('#side tbody tr td:nth-child(2)')  # select the strongest feature: the texts are coloured by it
    assert f'feature #{first}' in browser.js("return document.getElementById('selinfo').textContent")
    coloured = browser.js("return Array.from(document.querySelectorAll('#text0 .tok'))"
                          ".map(s => !!s.style.backgroundColor)")
    assert coloured == [first in f for f in ex[0]['features']]
    assert browser.errors() == []
    shot(browser, tmp_path / 'examples.png')


# ----------------------------------------------------------------------------- every token is literal text
# A site whose whole vocabulary is markup: every place that puts a token on a page (index chips, the feature
# page's windows, logit tables, top tokens and neighbour labels, the example texts and their side panel) must
# show it as the literal string. One innerHTML (or insertAdjacentHTML) at any of those places changes the
# text (&amp; -> &, <b>x</b> -> x), creates elements, or runs the onerror handlers that set window.__pwned.
MARKUP = ['<b>x</b>', '<img/src="x"/onerror="window.__pwned=1">', '&amp;', '<script>window.__pwned=2</script>',
          '<i>', '&lt;i&gt;', '"><img src=y onerror="window.__pwned=3">', '<svg/onload="window.__pwned=4">',
          '</span><u>u</u>', '<a href="#x">a</a>', '&#60;&#x3c;', '<!--c-->', '<style>body{display:none}</style>',
          '<br>', '<td>t</td>', '<table>', '<p>p', '<em>e</em>', '&nbsp;', '<h1>h</h1>', '<iframe src=x>',
          '<object data=x>']
EOT_TEXT = '<|endoftext|>'
# elements none of the three pages makes itself: any of them on a page was parsed out of a token
INJECTED = ('img, iframe, object, b, i, u, em, br, style, table table, td td, main h1, a[href="#x"], '
            'body script:not([src]), [onerror], [onload]')


def chip_text(s: str) -> str:
    """What IF.tokenLabel shows for a single token of MARKUP (no control characters): spaces as ·."""
    return s.replace(' ', '\u00B7')


@pytest.fixture(scope='module')
def markup_site(tmp_path_factory):
    """build_interface.py on a dataset whose tokenizer's tokens are all HTML/JS-looking strings."""
    root = str(tmp_path_factory.mktemp('markup_site'))
    data, out = os.path.join(root, 'data'), os.path.join(root, 'out')
    os.makedirs(data)
    enc = tiktoken.Encoding('markup', pat_str=r"""\S+|\s+""",
                            mergeable_ranks={s.encode(): i for i, s in enumerate(MARKUP)},
                            special_tokens={EOT_TEXT: len(MARKUP)})
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(MARKUP), 6000)
    ids[rng.random(6000) < 0.03] = enc.eot_token
    arr = ids.astype(np.uint16)
    write_token_data(data, enc, arr, 'markup')
    torch.manual_seed(0)
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=T, bias=True, vocab_size=enc.n_vocab, dropout=0.0,
                activation='gelu')
    model = GPT(GPTConfig(**args))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.weight.mul_(20)
        model.lm_head.weight.mul_(10)
    save_transformer(out, model, args, data, enc.n_vocab)
    with torch.no_grad():
        idx = torch.from_numpy(arr[:T * 16].astype(np.int64)).view(16, T)
        x = model.run(idx, capture=[SITE], need_logits=False)[2][SITE].reshape(-1, D_IN)
    n_feat = 24
    W_dec = torch.randn(n_feat, D_IN)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    b_enc = -torch.rand(n_feat)
    b_enc[5] = -1e6  # dead: its neighbour label is '(dead)'
    os.makedirs(os.path.join(out, 'sae'))
    save_file({'W_enc': (torch.randn(D_IN, n_feat) / (x.std() * D_IN ** 0.5)).contiguous(), 'W_dec': W_dec,
               'b_enc': b_enc, 'b_dec': x.mean(0)}, os.path.join(out, 'sae', 'sae_weights.safetensors'))
    with open(os.path.join(out, 'sae', 'cfg.json'), 'w') as f:
        json.dump({'architecture': 'standard', 'd_in': D_IN, 'd_sae': n_feat, 'hook_name': SITE,
                   'apply_b_dec_to_input': True}, f)
    run_script('build_interface.py', f'--out_dir={out}', *ARGS)
    site = os.path.join(out, 'interface')
    return {'site': site, 'vocab': MARKUP + [EOT_TEXT], 'n_feat': n_feat,
            'index': read_js(os.path.join(site, 'data', 'index.js')), 'feats': read_features(site),
            'examples': read_js(os.path.join(site, 'data', 'examples.js'))}


def assert_nothing_injected(browser: Browser) -> None:
    """No element parsed out of a token, no token container holding an element, no handler run, no error."""
    assert browser.js(f"return Array.from(document.querySelectorAll('{INJECTED}')).map(e => e.outerHTML)") == []
    assert browser.js("return document.querySelectorAll('.chip *, .tok *').length") == 0
    browser.wait("return Array.from(document.images).every(i => i.complete)")  # (an onerror would have run)
    assert browser.js("return window.__pwned === undefined") and browser.errors() == []


def test_every_token_on_every_page_is_literal_text(markup_site, browser):
    s, V = markup_site, markup_site['vocab']
    index, feats = s['index'], s['feats']
    label = lambda f: ' '.join(chip_text(V[t]) for t in index['top_tokens'][f]) or (  # noqa: E731
        '' if index['n_fire'][f] else '(dead)')
    texts = lambda css: browser.js(  # noqa: E731
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)", css)

    # index: the "fires most on" and "top logits" chips of every feature
    browser.open(os.path.join(s['site'], 'index.html'))
    assert ids_shown(browser) == list(range(s['n_feat']))
    rows = browser.js("return Array.from(document.querySelectorAll('#table tbody tr')).map(r => "
                      "[5, 6].map(c => Array.from(r.querySelectorAll(`td:nth-child(${c}) .chip`))"
                      ".map(e => e.textContent)))")
    assert sum(len(r[0]) for r in rows) > 10
    assert rows == [[[chip_text(V[t]) for t in index['top_tokens'][f]],
                     [chip_text(V[t]) for t in index['top_logits'][f]]] for f in range(s['n_feat'])]
    assert_nothing_injected(browser)

    # feature page: windows (top and interval samples), logit tables, top tokens, neighbour labels
    fid = max((f for f in feats if feats[f]['coact']), key=lambda f: feats[f]['n_fire'])
    d = feats[fid]
    browser.open(os.path.join(s['site'], 'feature.html') + f'?f={fid}')
    assert texts('#top .tok') == [V[t] for w in d['top'] for t in w['tokens']] != []
    assert sorted(texts('#intervals .tok')) == sorted(V[t] for iv in d['intervals'] for w in iv['samples']
                                                      for t in w['tokens']) != []
    logit_rows = browser.js("return Array.from(document.querySelectorAll('#logits tbody tr')).map(r => "
                            "[1, 3].map(c => r.querySelector(`td:nth-child(${c})`).textContent))")
    assert logit_rows == [[chip_text(V[n[0]]), chip_text(V[p[0]])]
                          for n, p in zip(d['logits']['neg'], d['logits']['pos'])] != []
    assert texts('#toptokens .chip') == [chip_text(V[t]) for t, _ in d['top_tokens']] != []
    shown = texts('#top .tok') + texts('#intervals .tok') + [x.replace('\u00B7', ' ') for r in logit_rows for x in r]
    assert set(shown) == set(V)  # every markup string is on this page
    for panel in ('cos', 'coact'):
        cells = browser.js("return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`)).map(r => "
                           "[+r.querySelector('a.flink').textContent.slice(1), r.lastElementChild.textContent, "
                           "r.lastElementChild.childElementCount])", panel)
        assert cells == [[r[0], label(r[0]), 0] for r in d[panel]] != []
    assert_nothing_injected(browser)

    # examples: every text, then the side panel of a token (its chip, the labels of its features)
    ex = s['examples']
    browser.open(os.path.join(s['site'], 'examples.html'))
    assert [texts(f'#text{i} .tok') for i in range(len(ex))] == [[V[t] for t in e['tokens']] for e in ex]
    j = max(range(len(ex[0]['tokens'])), key=lambda j: len(ex[0]['features'][j]))
    browser.click(f'#text0 .tok[data-pos="{j}"]')
    assert texts('#side h2 .chip') == [chip_text(V[ex[0]['tokens'][j]])]
    side = browser.js("return Array.from(document.querySelectorAll('#side tbody tr')).map(r => "
                      "[+r.dataset.feature, r.lastElementChild.textContent, r.lastElementChild.childElementCount])")
    assert side == [[f, label(f), 0] for f in ex[0]['features'][j]] != []
    assert_nothing_injected(browser)


# ----------------------------------------------------------------------------- the sweep site
# index.html = every SAE of a sweep; family.html = how the features of one family split across sizes; every
# member a single-SAE site whose feature pages link to the feature's relatives in the other sizes.
def label_of(token) -> str:
    """What IF.textLabel shows for a token text of the sweep site's family data (a string or its bytes)."""
    if isinstance(token, list):
        return ''.join(f'‹\\x{b:02x}›' for b in token)
    return token.replace('\n', '⏎').replace(' ', '·')


def cards(browser: Browser, css: str = '.card') -> list:
    return browser.js("return Array.from(document.querySelectorAll(arguments[0])).map(c => "
                      "[c.dataset.member, +c.dataset.id])", css)


def descendants(nodes: dict, members: list, root: int) -> list[list[int]]:
    """Per member, the features descending from feature `root` of the smallest one through any parent (sorted)."""
    level = [root]
    out = [level]
    for m_prev, m in zip(members, members[1:]):
        level = sorted(j for j, n in enumerate(nodes[m]) if any(p['feature'] in level for p in n['parents']))
        out.append(level)
    return out


def best_parent_path(nodes: dict, members: list, level: int, j: int) -> list[list]:
    """[[member, id], ...] from where the chain of best parents of feature j of member `level` starts, to it."""
    path = [[members[level], j]]
    for m in members[level:0:-1]:
        parents = nodes[m][path[0][1]]['parents']
        if not parents:
            break
        path.insert(0, [members[members.index(m) - 1], parents[0]['feature']])
    return path


def wait_page(browser: Browser, path_end: str) -> None:
    browser.wait(f"return location.pathname.endsWith('{path_end}') && document.body "
                 "&& document.body.getAttribute('data-ready') === '1'")


def check_sweep_page(browser: Browser, site: str, records: list, family: str) -> None:
    """Every SAE with its numbers and its site's link; the family links; sorting; the Pareto plot."""
    browser.open(os.path.join(site, 'index.html'))
    assert browser.errors() == []
    rows = browser.js("return Array.from(document.querySelectorAll('#members tbody tr')).map(r => "
                      "[r.dataset.name, r.querySelector('a.member').getAttribute('href'), r.cells[2].textContent])")
    assert sorted(rows) == sorted([r['name'], f"{r['name']}/index.html", f"{r['n_features']:,}"] for r in records)
    browser.click('#members th[data-key="fvu"]')
    assert [r[0] for r in browser.js("return Array.from(document.querySelectorAll('#members tbody tr'))"
                                     ".map(r => [r.dataset.name])")] == [
        r['name'] for r in sorted(records, key=lambda r: (r['fvu'], r['name']))]
    if 'pareto.png' in os.listdir(site):
        browser.wait("return document.querySelector('img.pareto').complete")
        assert browser.js("return document.querySelector('img.pareto').naturalWidth") > 0
    assert browser.js("return document.querySelector('#familytable a.family').textContent") == family
    browser.click('#familytable a.family')
    wait_page(browser, 'family.html')
    assert browser.errors() == []


def walk_sweep_site(browser: Browser, s: dict, tmp_path) -> None:
    """Sweep page -> family page -> the tree of the feature that splits most -> a node's feature page -> its
    relative in the largest size -> that feature's tree, its path highlighted. s: site, records (SWEEP.members),
    family, members, sizes, nodes (FAMILY.nodes) of a family of >= 3 sizes."""
    nodes, members, site = s['nodes'], s['members'], s['site']
    check_sweep_page(browser, site, s['records'], s['family'])
    # the family page without a root: the smallest SAE's features, those that split most first
    n_desc = [len(descendants(nodes, members, j)[-1]) for j in range(s['sizes'][0])]
    order = sorted(range(s['sizes'][0]), key=lambda j: (-n_desc[j], -nodes[members[0]][j]['density'], j))
    roots = "return Array.from(document.querySelectorAll('#roots tbody tr'))"
    assert browser.js(roots + ".map(r => +r.dataset.id)") == order
    assert browser.js("return Array.from(document.querySelectorAll('#roots tbody tr')).map(r => "
                      "+r.lastElementChild.textContent)") == [n_desc[j] for j in order]
    assert_nothing_injected(browser)
    # the tree of the feature that splits most: one column per size, a card per descendant
    browser.click('#roots tbody tr a.treelink')
    wait_page(browser, 'family.html')
    root = order[0]
    tree = descendants(nodes, members, root)
    hidden = browser.js("return Array.from(document.querySelectorAll('.treecol')).flatMap(c => Array.from("
                        "c.querySelectorAll('.more a')).map(a => [c.dataset.member, +a.textContent.slice(1)]))")
    assert sorted(cards(browser) + hidden) == sorted([m, j] for m, ids in zip(members, tree) for j in ids)
    assert all(len([c for c in cards(browser) if c[0] == m]) == min(len(ids), 30) for m, ids in zip(members, tree))
    assert cards(browser, '.card.onpath') == [[members[0], root]]
    chips = browser.js("return Array.from(document.querySelectorAll('.card')).map(c => [c.dataset.member, "
                       "+c.dataset.id, Array.from(c.querySelectorAll('.chip')).map(e => e.textContent)])")
    assert chips == [[m, j, [label_of(t) for t in nodes[m][j]['top_tokens']]] for m, j, _ in chips]
    assert_nothing_injected(browser)
    shot(browser, tmp_path / 'family_tree.png')
    # a node's link: that member's feature page, which lists the feature's relatives in the other sizes
    mid = tree[1][-1]  # not feature 0: a path of zeros would pass by chance
    browser.click(f'.card[data-member="{members[1]}"][data-id="{mid}"] a.flink')
    wait_page(browser, f'{members[1]}/feature.html')
    assert browser.errors() == []
    assert browser.js("return document.getElementById('title').textContent") == f'Feature #{mid}'
    rel = browser.js("return Array.from(document.querySelectorAll('#relatives tbody tr')).map(r => "
                     "[r.dataset.sae, +r.dataset.feature, +r.cells[3].textContent, r.querySelector('a').href])")
    record = read_features(os.path.join(site, members[1]))[mid]['relatives']
    assert [r[:2] for r in rel] == [[x['sae'], x['feature']] for x in record] != []
    assert [r[2] for r in rel] == pytest.approx([x['cos'] for x in record], abs=5e-4)  # shown to 3 decimals
    assert all(r[3].endswith(f'/{r[0]}/feature.html?f={r[1]}') for r in rel)
    # the relative in the largest size, then its family tree: the path from its root highlighted
    big = next(x for x in record if x['sae'] == members[2])
    browser.click(f'#relatives tr[data-sae="{members[2]}"][data-feature="{big["feature"]}"] a')
    wait_page(browser, f'{members[2]}/feature.html')
    assert browser.js("return document.getElementById('title').textContent") == f'Feature #{big["feature"]}'
    browser.click('#treelink')
    wait_page(browser, 'family.html')
    path = best_parent_path(nodes, members, 2, big['feature'])
    assert cards(browser, '.card.onpath') == path
    assert cards(browser, '.card.asked') == [[members[2], big['feature']]]
    assert browser.js("return document.querySelectorAll('#tree path.link.onpath').length") == len(path) - 1
    assert browser.errors() == []
    # a feature asked by id whose chain of best parents passes a feature other than #0 (a chain of zeros, or a
    # feature with no parent, would pass by chance): its tree from that root, the whole chain highlighted
    deep = [best_parent_path(nodes, members, level, j) for level in range(len(members) - 1, 0, -1)
            for j in range(len(nodes[members[level]]))]
    deep = [p for p in deep if len(p) >= 2 and any(j != 0 for _, j in p[:-1])]
    assert deep  # the family links some features: the check has teeth
    (m_asked, j_asked), path = deep[0][-1], deep[0]
    browser.open(os.path.join(site, 'family.html') + f"?family={s['family']}&sae={m_asked}&f={j_asked}")
    assert cards(browser, '.card.onpath') == path and cards(browser, '.card.asked') == [[m_asked, j_asked]]


def test_sweep_site_from_family_to_relatives(sweep_site, browser, tmp_path):
    walk_sweep_site(browser, sweep_site, tmp_path)  # its tokens are markup: shown as text (checked on each page)


def test_sweep_site_pages_without_relatives_and_bad_queries(sweep_site, site, browser):
    s = sweep_site
    # a member of no family: the way back to the sweep, no relatives panel
    browser.open(os.path.join(s['site'], s['lone'], 'feature.html') + '?f=1')
    assert browser.errors() == [] and browser.js("return document.getElementById('relatives')") is None
    assert browser.js("return document.getElementById('sweepnav').textContent").endswith(s['lone'])
    # a single-SAE site: neither
    browser.open(os.path.join(site['site'], 'feature.html') + '?f=1')
    assert browser.js("return [document.getElementById('relatives'), document.getElementById('sweepnav')]") == [
        None, None]
    # the family page's search over the top tokens of the smallest SAE's features
    browser.open(os.path.join(s['site'], 'family.html') + f"?family={s['family']}")
    browser.type('#rootq', '<IMG')
    shown = browser.js("return Array.from(document.querySelectorAll('#roots tbody tr')).filter(r => !r.hidden)"
                       ".map(r => +r.dataset.id)")
    small = s['nodes'][s['members'][0]]
    assert sorted(shown) == [j for j, n in enumerate(small) if any('<img' in label_of(t) for t in n['top_tokens'])]
    assert 0 < len(shown) < len(small)
    # a family or feature that does not exist: said, no error
    for query, said in [('?family=%3Cb%3Enope', 'No family "<b>nope"'),
                        (f"?family={s['family']}&sae={s['members'][2]}&f=999", 'No feature 999'),
                        (f"?family={s['family']}&root=77", 'No feature root=77')]:
        browser.open(os.path.join(s['site'], 'family.html') + query)
        assert said in browser.js("return document.getElementById('main').textContent"), query
        assert_nothing_injected(browser)


def test_family_page_shows_several_parents_and_no_parent(sweep_site, browser):
    """A feature of two parents is a child of both (one card per tree, a link from each parent there); a feature
    with no parent and an ultralow one are listed on the family page and have trees of their own, said so."""
    s, nodes, members = sweep_site, sweep_site['nodes'], sweep_site['members']
    family = os.path.join(s['site'], 'family.html') + f"?family={s['family']}"
    browser.open(family)
    lists = browser.js("return Array.from(document.querySelectorAll('#unlinked details')).map(d => [d.dataset.member, "
                       "d.dataset.kind, parseInt(d.querySelector('summary').textContent), "
                       "Array.from(d.querySelectorAll('a')).map(a => a.textContent)])")
    want = []
    for level, m in enumerate(members):
        none = [f'#{j}' for j, n in enumerate(nodes[m]) if level and n['linked'] and not n['parents']]
        low = [f'#{j}' for j, n in enumerate(nodes[m]) if not n['linked']]
        want += ([[m, 'noparent', len(none), none]] if level else []) + [[m, 'ultralow', len(low), low]]
    assert lists == want and [x[3] for x in want if x[2]] == [['#14'], ['#15']]  # the fixture's: shown, not dropped
    # the merge: feature 2 of the middle member, in the trees of both its parents, linked to the one there
    merged = [j for j, n in enumerate(nodes[members[1]]) if len(n['parents']) > 1]
    assert merged == [2]
    for root in (0, 1):
        browser.open(family + f'&root={root}')
        tree = descendants(nodes, members, root)
        assert sorted(cards(browser)) == sorted([m, j] for m, ids in zip(members, tree) for j in ids)
        assert [members[1], 2] in cards(browser)
        n_links = sum(len([p for p in nodes[m][j]['parents'] if p['feature'] in tree[level - 1]])
                      for level, (m, ids) in enumerate(zip(members, tree)) if level for j in ids)
        assert browser.js("return document.querySelectorAll('#tree path.link').length") == n_links
        text = browser.js(f"return document.querySelector('.card[data-member=\"{members[1]}\"][data-id=\"2\"] "
                          ".cardnums').textContent")
        assert '2 parents: #0' in text and ', #1 (' in text
    # the feature without a parent, and the ultralow one: each its own tree, and why
    for (level, j), why, cls in (((2, 14), 'It has no parent', 'noparent'), ((2, 15), 'It is not linked', 'ultralow')):
        browser.open(family + f'&sae={members[level]}&f={j}')
        assert cards(browser) == [[members[level], j]] and cards(browser, f'.card.{cls}') == [[members[level], j]]
        assert why in browser.js("return document.getElementById('orphan').textContent")
        assert browser.errors() == []


@pytest.fixture(scope='module')
def built_sweep_site(tmp_path_factory) -> dict:
    """build_interface.py --sweep_dir on a real tiny sweep: a TopK family of 8 -> 16 -> 32 features and an SAE of
    another kind (in no family), trained for a few steps on a tiny harvest."""
    root = tmp_path_factory.mktemp('built_sweep')
    out = harvested_run(root, 20, 120)
    write_labels(str(root / 'data'))  # ground-truth concepts: the SAEs get the concept axis, the family page its splits
    conf = root / 'sweep_conf.py'
    conf.write_text("sweep = [dict(name='topk_8', n_features=8), dict(name='topk_16', n_features=16),\n"
                    "         dict(name='topk_32', n_features=32),\n"
                    "         dict(name='a23_16', kind='anthropic2023', n_features=16, l1_coeff=3e-3)]\n")
    run_script('train_sae.py', str(conf), f'--out_dir={out}', '--kind=topk', '--k=3', '--batch_size=128',
               '--max_steps=20', '--eval_interval=20', '--eval_contexts=4', '--final_eval_contexts=8',
               '--log_interval=10', '--ckpt_interval=20', '--resample_steps=()', '--geometric_median_rows=500',
               '--resample_rows=500', '--shuffle_buffer=512', '--device=cpu')
    sweep = os.path.join(out, 'sweep')
    run_script('build_interface.py', f'--out_dir={out}', f'--sweep_dir={sweep}', '--n_contexts=16',
               '--batch_size=8', '--top_k=3', '--window=3', '--n_intervals=4', '--interval_samples=2',
               '--n_example_texts=2', '--example_length=16', '--coact_tokens=256', '--device=cpu')
    site = os.path.join(sweep, 'interface')
    sweep_data = read_js(os.path.join(site, 'data', 'sweep.js'))
    family = next(f for f in sweep_data['families'] if len(f['members']) >= 3)
    fam = read_js(os.path.join(site, 'data', f"family_{family['name']}.js"))
    return {'site': site, 'records': sweep_data['members'], 'family': family['name'], 'members': family['members'],
            'sizes': family['sizes'], 'nodes': fam['nodes'], 'lone': 'a23_16', 'concepts': fam['concepts'],
            'sweep_dir': sweep}


def test_built_sweep_site_shows_the_concept_axis_and_splits(built_sweep_site, browser):
    """The family page's concept table is concept_splits of families.json and the members' metrics.json, each row
    linking its root's tree; the sweep page's concept F1 column shows pareto.json's."""
    s = built_sweep_site
    families = json.load(open(os.path.join(s['sweep_dir'], 'families.json')))['families']
    family = next(f for f in families if f['name'] == s['family'])
    axes = {m: json.load(open(os.path.join(s['sweep_dir'], m, 'metrics.json')))['concepts'] for m in s['members']}
    want = json.loads(json.dumps(concept_splits(family, axes)))
    assert s['concepts'] == want and len(want) == len(NAMES) - 1  # 'never' is not scored
    browser.open(os.path.join(s['site'], 'family.html') + f"?family={s['family']}")
    rows = browser.js("return Array.from(document.querySelectorAll('#concepttable tbody tr')).map((tr) => "
                      "[tr.dataset.concept, tr.querySelector('a.treelink').getAttribute('href'), tr.cells.length])")
    assert browser.errors() == [] and sorted(r[0] for r in rows) == sorted(c['concept'] for c in want)
    for concept, href, n_cells in rows:
        root = next(c['root'][0] for c in want if c['concept'] == concept)
        assert f"root={root}" in href and n_cells == 2 + 2 * (len(s['members']) - 1) + 1
    browser.open(os.path.join(s['site'], 'index.html'))
    cells = browser.js("const i = Array.from(document.querySelectorAll('#members th')).findIndex((th) => "
                       "th.dataset.key === 'concept_f1'); return Array.from(document.querySelectorAll("
                       "'#members tbody tr')).map((tr) => [tr.dataset.name, tr.cells[i].textContent])")
    f1 = {r['name']: r['concept_f1'] for r in s['records']}
    assert cells and all(text == f"{f1[name]:.3f}" for name, text in cells)


def test_built_sweep_site_from_family_to_relatives(built_sweep_site, browser, tmp_path):
    s = built_sweep_site
    assert s['members'] == ['topk_8', 'topk_16', 'topk_32'] and sorted(r['name'] for r in s['records']) == [
        'a23_16', 'topk_16', 'topk_32', 'topk_8']
    walk_sweep_site(browser, s, tmp_path)
    browser.open(os.path.join(s['site'], s['lone'], 'feature.html') + '?f=0')
    assert browser.errors() == [] and browser.js("return document.getElementById('relatives')") is None
    assert browser.js("return document.getElementById('sweepnav').textContent").endswith(s['lone'])
