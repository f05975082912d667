'use strict';
// examples.html: validation texts; click a token to list the features active on it, click a feature to colour
// every text by that feature's activation (Anthropic's "activations on example texts").
// EXAMPLES[i] = {start, tokens, features: per token the active feature ids (strongest first), acts: their values}.
const exampleSpans = [];  // exampleSpans[text][position]: the token's <span>
let selectedFeature = null, selectedToken = null;

function showExampleTexts() {
  const box = document.getElementById('texts');
  window.EXAMPLES.forEach((ex, ti) => {
    const texts = IF.tokenTexts(ex.tokens), div = IF.el('div', {className: 'ex-text', id: `text${ti}`});
    exampleSpans.push(ex.tokens.map((tok, j) => {
      const t = texts[j].text, s = IF.el('span', {className: 'tok' + (texts[j].partial ? ' partial' : ''),
        'data-text': ti, 'data-pos': j, title: `token ${tok} \u00B7 ${ex.features[j].length} features active`},
        [IF.visible(t, false)]);
      s.addEventListener('click', () => showToken(ti, j));
      div.appendChild(s);
      if (t.includes('\n')) div.appendChild(document.createTextNode('\n'));  // ⏎ and a real line break
      return s;
    }));
    box.appendChild(IF.el('div', {className: 'muted'}, [`text ${ti + 1} (tokens ${ex.start}\u2013` +
      `${ex.start + ex.tokens.length - 1} of ${window.INDEX.meta.split})`]));
    box.appendChild(div);
  });
}

const featureLabel = (f) => (window.INDEX.top_tokens[f] || []).map(IF.tokenLabel).join(' ');

// the side panel: the features active on token j of text ti, strongest first
function showToken(ti, j) {
  const ex = window.EXAMPLES[ti], side = document.getElementById('side'), el = IF.el;
  if (selectedToken) selectedToken.classList.remove('sel');
  selectedToken = exampleSpans[ti][j];
  selectedToken.classList.add('sel');
  const features = ex.features[j], acts = ex.acts[j];
  side.textContent = '';
  side.appendChild(el('h2', {}, ['Token ', IF.chip(ex.tokens[j]), ` (text ${ti + 1}, position ${j})`]));
  side.appendChild(el('div', {className: 'muted'}, [`${features.length} active feature` +
    `${features.length === 1 ? '' : 's'} (strongest first). Click one to colour the texts.`]));
  side.appendChild(el('table', {className: 'flist'}, [el('tbody', {}, features.map((f, k) => {
    const tr = el('tr', {className: f === selectedFeature ? 'on' : '', 'data-feature': f}, [
      el('td', {}, [IF.featureLink(f)]), el('td', {className: 'num'}, [IF.fmt(acts[k], 3)]),
      el('td', {}, [featureLabel(f)])]);
    tr.addEventListener('click', (e) => {
      if (e.target.tagName === 'A') return;
      colourByFeature(f);
      for (const row of side.querySelectorAll('tr')) row.className = +row.dataset.feature === f ? 'on' : '';
    });
    return tr;
  }))]));
}

// colour every text by feature f's activation
function colourByFeature(f) {
  selectedFeature = f;
  const acts = window.EXAMPLES.map((ex) => ex.features.map((ids, j) => {
    const k = ids.indexOf(f);
    return k >= 0 ? ex.acts[j][k] : 0;
  }));
  const max = Math.max(0, ...acts.flat());
  acts.forEach((a, ti) => a.forEach((v, j) => {
    const s = exampleSpans[ti][j];
    s.style.backgroundColor = IF.actColor(v, max);
    s.setAttribute('data-act', v);
    s.title = `token ${window.EXAMPLES[ti].tokens[j]} \u00B7 feature ${f} activation ${IF.fmt(v, 3)}`;
  }));
  const info = document.getElementById('selinfo');
  info.textContent = '';
  info.appendChild(IF.el('span', {}, ['coloured by ', IF.featureLink(f, `feature #${f}`),
    ` (max here ${IF.fmt(max, 3)})`]));
}

if (IF.requireData(['VOCAB', 'INDEX', 'EXAMPLES'])) {
  showExampleTexts();
  document.getElementById('go').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = parseInt(document.getElementById('goid').value, 10);
    if (v >= 0 && v < window.INDEX.meta.n_features) colourByFeature(v);
  });
  const f0 = IF.param('f');
  if (f0 !== null) colourByFeature(parseInt(f0, 10));
  IF.ready();
}
