'use strict';
// index.html: all features in a sortable, searchable table, and the density histogram.
const PAGE_ROWS = 100;
// range: [lo, hi) of log10 density; concept: the index of the ground-truth concept the table is filtered by, or null
const tableState = {q: '', cls: 'all', key: 'id', dir: 1, page: 0, range: null, concept: null};
let featureRows = [], classCount = {dead: 0, ultralow: 0, alive: 0};

// one row per feature: its numbers, its class, and the text a search looks in (with analyze.py's report: also
// the explanation's token texts, and the row's f1, explain, match and match_r; with the report's concepts: the row's
// concepts [[concept, f1], ...], best first)
function makeRows() {
  const D = window.INDEX, M = D.meta, A = M.analysis;
  featureRows = D.n_fire.map((n, i) => {
    const density = n / M.n_tokens;
    const toks = D.top_tokens[i].map(IF.tokenLabel), logits = D.top_logits[i].map(IF.tokenLabel);
    const row = {id: i, n, density, max: D.max[i], mean: D.mean[i], toks: D.top_tokens[i], logits: D.top_logits[i],
      cls: n === 0 ? 'dead' : density < M.ultralow ? 'ultralow' : 'alive',
      hay: (toks.join('\u0001') + '\u0002' + logits.join('\u0001')).toLowerCase()};
    if (!A) return row;
    if (A.concepts) row.concepts = D.concepts[i];
    return Object.assign(row, {f1: D.f1[i], explain: D.explain[i], match: D.match[i][0], match_r: D.match[i][1],
      hay: row.hay + '\u0002' + D.explain[i].map(IF.patternText).join('\u0001').toLowerCase()});
  });
  for (const r of featureRows) classCount[r.cls]++;
}

function showStats() {
  const M = window.INDEX.meta, el = IF.el, stats = document.getElementById('stats');
  document.getElementById('meta').textContent = `${M.site} \u00B7 ${M.n_features} features \u00B7 ` +
    `${M.n_tokens.toLocaleString()} tokens of ${M.split}`;
  stats.appendChild(el('span', {}, [`${M.n_features} features: ${classCount.alive} alive, `]));
  stats.appendChild(el('a', {href: '#dead', id: 'deadlink'}, [`${classCount.dead} dead`]));
  stats.appendChild(el('span', {}, [', ']));
  stats.appendChild(el('a', {href: '#ultralow', id: 'ultralink'}, [`${classCount.ultralow} ultralow`]));
  stats.appendChild(el('span', {}, [` (density < ${IF.fmt(M.ultralow, 0)}) over ${M.n_tokens.toLocaleString()} ` +
    `tokens (${M.n_contexts} contexts \u00D7 ${M.context_length})`]));
}

// density histogram: log10 bins of width 0.25 from the rarest alive feature to 1, plus a bar for dead ones
function showDensityHistogram() {
  const M = window.INDEX.meta, alive = featureRows.filter((r) => r.n > 0);
  let lo = Math.min(Math.floor(Math.log10(Math.min(M.ultralow, 1 / M.n_tokens))), -1);
  for (const r of alive) lo = Math.min(lo, Math.floor(Math.log10(r.density)));
  const bw = 0.25, nb = Math.round((0 - lo) / bw) + 1;  // the first bar is "dead"
  const counts = new Array(nb).fill(0);
  counts[0] = classCount.dead;
  for (const r of alive) counts[Math.min(nb - 1, 1 + Math.floor((Math.log10(r.density) - lo) / bw))]++;
  const x0 = lo - bw;
  document.getElementById('dens').appendChild(IF.histogram(counts, {
    lo: x0, hi: 0, width: 720, height: 170, logy: false, xlabel: 'log10 density (first bar: dead)',
    color: (i) => i === 0 ? '#888' : (lo + (i - 1) * bw < Math.log10(M.ultralow) ? '#d9a400' : '#4a78c2'),
    titles: (i) => i === 0 ? `${classCount.dead} dead features` : `${counts[i]} features with log10 density in ` +
      `[${(lo + (i - 1) * bw).toFixed(2)}, ${(lo + i * bw).toFixed(2)})`,
    ticks: [x0, ...Array.from({length: -lo + 1}, (_, k) => lo + k)],
    tickLabel: (x) => x === x0 ? 'dead' : String(x),
    marks: [{x: Math.log10(M.ultralow), label: 'ultralow'}],
    onclick: (i) => {
      tableState.range = i === 0 ? null : [lo + (i - 1) * bw, lo + i * bw];
      tableState.cls = i === 0 ? 'dead' : 'all';
      tableState.page = 0;
      syncClassAndRender();
    },
  }));
}

// with analyze.py's report: the F1, explanation and match columns, and the run's summary under the statistics
function showAnalysis() {
  const A = window.INDEX.meta.analysis, el = IF.el;
  if (!A) return;
  const head = document.querySelector('#table thead tr');
  head.appendChild(el('th', {className: 'sortable', 'data-key': 'f1', title: 'held-out F1 of the offline explanation'},
    ['F1']));
  head.appendChild(el('th', {}, ['explanation (first patterns)']));
  head.appendChild(el('th', {className: 'sortable', 'data-key': 'match_r',
    title: 'activation correlation with its best match in the other run'}, ['match r']));
  document.getElementById('q').placeholder = 'search top tokens / logits / explanations, or #id';
  const F = A.summary.features, N = A.summary.neurons, UF = A.universality.features, UN = A.universality.neurons;
  const f2 = (x) => IF.fmt(x, 2), links = [];
  // a scored unit that never fires on the SCORE tokens counts as F1 0; the medians without those units too
  const FW = F.with_score_firings, NW = N.with_score_firings;
  const noScoreFiring = FW && NW ? `; of them ${F.n_no_score_firings} and ${N.n_no_score_firings} never fire on the ` +
    `SCORE tokens and count as F1 0 (without them: median ${f2(FW.median_f1)} vs ${f2(NW.median_f1)})` : '';
  for (const [name, href] of Object.entries(A.plots)) {
    if (href) links.push(links.length ? ', ' : ' ', el('a', {href, id: `plot_${name}`}, [name]));
  }
  document.getElementById('stats').after(el('div', {className: 'analysis-summary', id: 'analysis'}, [
    `Offline explanations scored on held-out tokens: median F1 ${f2(F.median_f1)} for the features (run ` +
    `${A.side.toUpperCase()}) vs ${f2(N.median_f1)} for the neurons of ${window.INDEX.meta.site} (run A) ` +
    `(${F.n_scored} of ${F.n_units} and ${N.n_scored} of ${N.n_units} scored${noScoreFiring}); ` +
    `F1 > 0.5: ${IF.pct(F['share_f1_above_0.5'])} vs ` +
    `${IF.pct(N['share_f1_above_0.5'])}. Universality (max activation correlation with the other run): median ` +
    `${f2(UF.median_max_corr)} for features vs ${f2(UN.median_max_corr)} for neurons.`,
    ...(links.length ? [' Plots:', ...links] : []),
    ' \u00B7 ', el('a', {href: `${A.other_site}index.html`, id: 'othersite'}, ['the other run\u2019s features']),
    ...(A.concepts ? [' \u00B7 ', el('a', {href: 'concepts.html', id: 'conceptslink'},
      [`ground-truth concepts (${A.concepts.concepts.length})`])] : [])]));
  if (A.concepts) showConceptFilter(A.concepts);
}

// with the report's concepts: a column of the concepts each feature detects (held-out F1 >= min_f1) and a select
// that keeps the features detecting one concept (also from the page's URL: index.html?concept=NAME); the column
// sorts by the chosen concept's F1 (none chosen: by the feature's best concept F1)
function showConceptFilter(C) {
  const el = IF.el, s = tableState, names = C.concepts.map((c) => c.name);
  const cut = C.min_f1 === null ? 'n/a' : C.min_f1;
  document.querySelector('#table thead tr').appendChild(el('th', {className: 'sortable', 'data-key': 'cf1',
    title: 'ground-truth concepts this feature detects: held-out F1 \u2265 ' + cut}, [`concepts (F1 \u2265 ${cut})`]));
  const select = el('select', {id: 'concept', title: 'only the features that detect this concept'},
    [el('option', {value: ''}, ['any concept']), ...C.concepts.map((c) => el('option', {value: c.name},
      [`${c.name}${c.n_detecting === null ? '' : ` (${c.n_detecting})`}`]))]);
  document.getElementById('cls').after(select);
  const asked = IF.param('concept');
  if (asked !== null && asked !== '') {
    const k = names.indexOf(asked);
    if (k < 0) {
      select.after(el('span', {className: 'error', id: 'noconcept'}, [`no concept "${asked}"`]));
    } else {
      Object.assign(s, {concept: k, key: 'cf1', dir: -1});
      select.value = asked;
    }
  }
  select.addEventListener('change', () => {
    const k = names.indexOf(select.value);
    Object.assign(s, k < 0 ? {concept: null} : {concept: k, key: 'cf1', dir: -1});
    s.page = 0;
    renderTable();
  });
}

function bindControls() {
  const q = document.getElementById('q'), cls = document.getElementById('cls'), s = tableState;
  q.addEventListener('input', () => { s.q = q.value.trim(); s.page = 0; renderTable(); });
  cls.addEventListener('change', () => { s.cls = cls.value; s.page = 0; s.range = null; renderTable(); });
  document.getElementById('prev').addEventListener('click', () => { s.page = Math.max(0, s.page - 1); renderTable(); });
  document.getElementById('next').addEventListener('click', () => { s.page++; renderTable(); });
  document.getElementById('random').addEventListener('click', () => {
    const alive = featureRows.filter((r) => r.n > 0), pick = alive.length ? alive : featureRows;
    location.href = `feature.html?f=${pick[Math.floor(Math.random() * pick.length)].id}`;
  });
  for (const th of document.querySelectorAll('th.sortable')) {
    th.addEventListener('click', () => {
      const k = th.dataset.key;
      s.dir = s.key === k ? -s.dir : (k === 'id' ? 1 : -1);
      s.key = k;
      s.page = 0;
      renderTable();
    });
  }
  window.addEventListener('hashchange', fromHash);
}

// #dead, #ultralow, #alive, #all: that whole class, no search
function fromHash() {
  const h = location.hash.replace('#', '');
  if (['dead', 'ultralow', 'alive', 'all'].includes(h)) {
    Object.assign(tableState, {cls: h, range: null, page: 0, q: ''});
    document.getElementById('q').value = '';
  }
  syncClassAndRender();
}

function syncClassAndRender() {
  document.getElementById('cls').value = tableState.cls;
  renderTable();
}

function filteredRows() {
  const s = tableState, q = s.q.toLowerCase(), idm = /^#?(\d+)$/.exec(q);
  if (IF.concepts()) {  // cf1: the chosen concept's F1, or the feature's best; null: none
    for (const r of featureRows) {
      const hit = s.concept === null ? r.concepts[0] : r.concepts.find(([c]) => c === s.concept);
      r.cf1 = hit ? hit[1] : null;
    }
  }
  return featureRows.filter((r) => {
    if (s.concept !== null && r.cf1 === null) return false;
    if (s.cls !== 'all' && r.cls !== s.cls) return false;
    if (s.range && !(r.n > 0 && Math.log10(r.density) >= s.range[0] && Math.log10(r.density) < s.range[1])) {
      return false;
    }
    if (!q) return true;
    if (idm && q[0] === '#') return r.id === +idm[1];
    return r.hay.includes(q) || (idm !== null && String(r.id) === idm[1]);
  });
}

function renderTable() {
  const el = IF.el, s = tableState, list = filteredRows(), k = s.key, d = s.dir;
  const v = (r) => r[k] ?? -Infinity;  // a feature without a value (not scored) sorts below every number
  list.sort((a, b) => v(a) === v(b) ? a.id - b.id : (v(a) < v(b) ? -d : d));
  const pages = Math.max(1, Math.ceil(list.length / PAGE_ROWS));
  s.page = Math.min(s.page, pages - 1);
  const shown = list.slice(s.page * PAGE_ROWS, (s.page + 1) * PAGE_ROWS);
  const tbody = document.querySelector('#table tbody');
  tbody.textContent = '';
  for (const r of shown) {
    tbody.appendChild(el('tr', {className: r.cls, 'data-id': r.id}, [
      el('td', {}, [IF.featureLink(r.id)]),
      el('td', {className: 'num', title: `${r.n} firings`}, [r.n ? IF.fmtDensity(r.density) : 'dead']),
      el('td', {className: 'num'}, [IF.fmt(r.max, 3)]),
      el('td', {className: 'num'}, [IF.fmt(r.mean, 3)]),
      el('td', {}, r.toks.map((t) => IF.chip(t))),
      el('td', {}, r.logits.map((t) => IF.chip(t))),
      ...(window.INDEX.meta.analysis ? analysisCells(r) : [])]));
  }
  for (const th of document.querySelectorAll('th.sortable')) {
    th.className = 'sortable' + (th.dataset.key === k ? (d > 0 ? ' asc' : ' desc') : '');
  }
  document.getElementById('range').textContent = s.range ?
    `log10 density in [${s.range[0].toFixed(2)}, ${s.range[1].toFixed(2)})` : '';
  document.getElementById('count').textContent = list.length ? `features ${s.page * PAGE_ROWS + 1}\u2013` +
    `${s.page * PAGE_ROWS + shown.length} of ${list.length}` : 'no feature matches';
}

// a row's F1, explanation and best match in the other run (a link into its site)
function analysisCells(r) {
  const el = IF.el, other = window.INDEX.meta.analysis.other_site, C = IF.concepts();
  return [el('td', {className: 'num', title: r.f1 === null ? 'not scored' : 'held-out F1'}, [IF.fmt(r.f1, 3)]),
    el('td', {className: 'explain'}, r.explain.map(IF.patternChips)),
    el('td', {className: 'num'}, [el('a', {href: `${other}feature.html?f=${r.match}`, className: 'mlink'},
      [`#${r.match}`]), ` ${IF.fmt(r.match_r, 3)}`]),
    ...(C ? [el('td', {className: 'clist'}, r.concepts.map(([c, f1]) => el('a', {href:
      IF.conceptHref(C.concepts[c].name), className: 'clink' + (c === tableState.concept ? ' on' : ''),
    title: `held-out F1 ${IF.fmt(f1, 3)}`}, [`${C.concepts[c].name} ${IF.fmt(f1, 2)}`])))] : [])];
}

if (IF.requireData(['VOCAB', 'INDEX'])) {
  makeRows();
  showStats();
  showAnalysis();
  showDensityHistogram();
  bindControls();
  fromHash();
  IF.ready();
}
