'use strict';
// feature.html?f=ID: loads features/NNNN.js (a <script src>, so it works from file://; NNNN = ID / 64), which
// calls loadFeatures([...]) with the records of 64 features, and draws every panel of feature ID.
const INTERVAL_COLORS = ['#fde0c5', '#fcd3ad', '#fbc695', '#fab97d', '#f9ac66', '#f89f4e', '#f69237', '#f0851f',
  '#e27712', '#d26a0c', '#c05d08', '#ad5005'];
const intervalColor = (j, n) => INTERVAL_COLORS[Math.min(INTERVAL_COLORS.length - 1,
  Math.floor(j * INTERVAL_COLORS.length / n))];

// a neighbour's name: the tokens it fires on most
function neighbourLabel(f) {
  const t = window.INDEX.top_tokens[f] || [];
  return t.length ? t.map(IF.tokenLabel).join(' ') : (window.INDEX.n_fire[f] ? '' : '(dead)');
}

const panel = (title, children, id) => IF.el('section', {className: 'panel', id}, [IF.el('h2', {}, [title]), ...children]);

// the feature id from ?f=ID (or #ID); the header links; then load its features/NNNN.js
function startFeaturePage() {
  const M = window.INDEX.meta, main = document.getElementById('main');
  let raw = IF.param('f');
  if (raw === null && /^#\d+$/.test(location.hash)) raw = location.hash.slice(1);
  const id = raw === null ? 0 : parseInt(raw, 10);
  if (!(id >= 0 && id < M.n_features)) {
    main.appendChild(IF.el('p', {className: 'error'}, [`No feature ${raw} (there are ${M.n_features}).`]));
    IF.ready();
    return;
  }
  document.title = `Feature ${id}`;
  document.getElementById('title').textContent = `Feature #${id}`;
  document.getElementById('prevf').href = `feature.html?f=${Math.max(0, id - 1)}`;
  document.getElementById('nextf').href = `feature.html?f=${Math.min(M.n_features - 1, id + 1)}`;
  document.getElementById('randf').addEventListener('click', (e) => {
    e.preventDefault();
    const alive = window.INDEX.n_fire.flatMap((n, i) => n > 0 ? [i] : []);
    location.href = `feature.html?f=${alive.length ? alive[Math.floor(Math.random() * alive.length)] : 0}`;
  });
  document.getElementById('go').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = document.getElementById('goid').value;
    if (v !== '') location.href = `feature.html?f=${v}`;
  });
  const file = `features/${String(Math.floor(id / M.features_per_file)).padStart(4, '0')}.js`;
  window.loadFeatures = (records) => {
    const d = records.find((x) => x.id === id);
    if (d) renderFeature(d);
    else main.appendChild(IF.el('p', {className: 'error'}, [`Feature ${id} is missing from ${file}.`]));
    IF.ready();
  };
  IF.loadScript(file, () => {
    main.appendChild(IF.el('p', {className: 'error'}, [`Could not load ${file}: rebuild with build_interface.py.`]));
    IF.ready();
  });
}

function renderFeature(d) {
  const M = window.INDEX.meta, el = IF.el, main = document.getElementById('main'), n = M.n_intervals;
  const shown = [...d.top, ...d.intervals.flatMap((iv) => iv.samples)];
  const effScale = Math.max(1e-9, ...shown.flatMap((w) => w.effects.map(Math.abs)));
  const cls = d.n_fire === 0 ? 'dead' : d.density < M.ultralow ? 'ultralow' : 'alive';

  main.appendChild(el('div', {className: 'panel stats', id: 'summary'}, [
    el('span', {}, [`density ${IF.fmtDensity(d.density)} (${d.n_fire} of ${M.n_tokens.toLocaleString()} tokens)`]),
    el('span', {}, [`max activation ${IF.fmt(d.max, 3)}`]),
    el('span', {}, [`mean activation ${IF.fmt(d.mean, 3)}`]),
    el('span', {className: cls === 'alive' ? '' : 'error'}, [cls]),
    el('span', {className: 'muted'}, [`${M.site}, ${M.architecture}`])]));
  if (d.analysis && M.analysis) main.appendChild(analysisPanel(d, M.analysis));
  if (d.analysis && IF.concepts()) main.appendChild(conceptsPanel(d, IF.concepts()));

  // activation histogram, bars coloured by interval
  const H = d.hist.length;
  const hist = IF.histogram(d.hist, {lo: 0, hi: d.max || 1, width: 520, height: 160, xlabel: 'activation',
    ylabel: 'tokens', color: (i) => intervalColor(Math.floor(i * n / H), n),
    titles: (i) => `${d.hist[i]} tokens with activation in [${IF.fmt(d.max * i / H, 3)}, ` +
      `${IF.fmt(d.max * (i + 1) / H, 3)})`});
  const logitHist = IF.histogram(d.logits.hist, {lo: d.logits.lo, hi: d.logits.hi, width: 420, height: 160,
    xlabel: 'logit weight', ylabel: 'tokens', logy: true, color: () => '#7a8fb8',
    titles: (i) => `${d.logits.hist[i]} tokens`});
  main.appendChild(el('div', {className: 'row'}, [
    panel('Activation histogram', [hist, el('div', {className: 'muted'}, [`Over the ${d.n_fire} tokens where the ` +
      `feature fires; colours mark the ${n} intervals below.`])], 'acthist'),
    panel('Logit weights', [logitTable(d.logits), logitHist, el('div', {className: 'muted'},
      ['Decoder direction \u2192 MLP output \u2192 final LayerNorm (linearised) \u2192 unembedding; log-scaled counts.'])],
    'logits')]));

  main.appendChild(panel('Fires most on', [el('div', {}, d.top_tokens.length ? d.top_tokens.map(([tok, count]) =>
    el('span', {}, [IF.chip(tok, `${count} firings`), el('span', {className: 'muted'}, [String(count)])]))
    : ['(never fired)'])], 'toptokens'));

  const ablated = M.ablation !== 'none';
  const legend = el('div', {className: 'legend'}, [
    `Background: activation (darker = higher, relative to the max ${IF.fmt(d.max, 3)}). `,
    ablated ? 'Underline: the feature\'s effect on the log-prob of that token (clean \u2212 feature ablated):'
      : 'Ablation effects were not computed.',
    ablated ? el('span', {className: 'sw', style: {background: IF.effColor(1, 1)}}) : null,
    ablated ? 'raises it' : null,
    ablated ? el('span', {className: 'sw', style: {background: IF.effColor(-1, 1)}}) : null,
    ablated ? `lowers it (largest shown: ${IF.fmt(effScale, 3)} nats). Hover a token for numbers.` : null]);
  const top = el('div', {}, d.top.length ? d.top.map((w) => IF.renderWindow(w, d.max, effScale))
    : [el('div', {className: 'muted'}, ['No activations.'])]);
  main.appendChild(panel('Top activations (one per context)', [legend, top], 'top'));
  main.appendChild(panel(`Random samples from ${n} equal-width activation intervals`, [intervalSamples(d, effScale)],
    'intervals'));

  main.appendChild(el('div', {className: 'row'}, [
    panel('Nearest features by decoder cosine', [neighbourTable(d.cos, ['cosine'])], 'cos'),
    panel('Most co-activating features', [d.coact.length ? neighbourTable(d.coact, ['score', 'P(j | this)']) :
      el('div', {className: 'muted'}, [`None in the ${M.coact_tokens.toLocaleString()} tokens counted.`]),
    el('div', {className: 'muted'}, ['score = n(both) / \u221A(n(this)\u00B7n(j)), over the first ' +
      `${M.coact_tokens.toLocaleString()} tokens.`])], 'coact')]));
  const sweep = IF.sweep();
  if (sweep && sweep.family) main.insertBefore(relativesPanel(d, sweep), main.children[1]);  // under the summary
}

// On a sweep site, a member of a family: the closest features of the family's other sizes (d.relatives:
// [{sae, n_features, feature, cos, corr, masked}], by size then by similarity), each a link into that SAE's site.
function relativesPanel(d, sweep) {
  const el = IF.el, rel = d.relatives || [];
  const tree = el('a', {href: IF.familyHref(sweep.root, sweep.family, {sae: sweep.member, f: d.id}), id: 'treelink'},
    [`family tree of this feature (${sweep.family}) \u2192`]);
  const table = el('table', {}, [el('thead', {}, [el('tr', {}, ['size', 'SAE', 'feature', 'decoder cos',
    'activation corr', 'masked cos'].map((h) => el('th', {}, [h])))]),
  el('tbody', {}, rel.map((r) => el('tr', {'data-sae': r.sae, 'data-feature': r.feature}, [
    el('td', {className: 'num'}, [r.n_features.toLocaleString()]),
    el('td', {}, [r.sae]),
    el('td', {}, [el('a', {href: IF.memberHref(sweep.root, r.sae, `feature.html?f=${r.feature}`),
      className: 'rlink'}, [`#${r.feature}`])]),
    el('td', {className: 'num'}, [IF.fmt(r.cos, 3)]),
    el('td', {className: 'num'}, [IF.fmt(r.corr, 3)]),
    el('td', {className: 'num'}, [IF.fmt(r.masked, 3)])])))]);
  return panel('Relatives in other sizes', [el('div', {}, [tree]), rel.length ? table
    : el('div', {className: 'muted'}, ['No relatives recorded (none of a positive score, or this feature is too ' +
      'rare on the family\'s tokens to be linked).']), el('div', {className: 'muted'}, [
    `The closest features of the other SAEs of family ${sweep.family} (same kind, other dictionary sizes), up to ` +
    '3 per size: decoder cosine, and over the family\'s validation tokens the correlation of the activations and ' +
    'the masked cosine of the decoded activations (activation × decoder direction; the cosine on the tokens where ' +
    'one of the two fires, the greater of the two).'])],
  'relatives');
}

// analyze.py's offline explanation (d.analysis; A = INDEX.meta.analysis): token patterns chosen on the EXPLAIN
// split, their score on the held-out SCORE split, the output tokens, and the best-correlated feature of the other run.
function analysisPanel(d, A) {
  const el = IF.el, a = d.analysis, T = A.tokens, num = (x) => el('td', {className: 'num'}, [x]);
  const head = ['pattern (this token last)', 'precision on EXPLAIN', 'firings covered'];
  const patterns = a.patterns.length ? el('table', {id: 'patterns'}, [
    el('thead', {}, [el('tr', {}, head.map((h) => el('th', {}, [h])))]),
    el('tbody', {}, a.patterns.map((p, i) => el('tr', {}, [el('td', {}, [IF.patternChips(p)]),
      num(IF.fmt(a.pattern_precision[i], 3)), num(String(a.pattern_fires[i]))])))])
    : el('div', {className: 'muted'}, ['No pattern explains its firings on the EXPLAIN tokens.']);
  const why = a.threshold === null ? 'never active on the EXPLAIN tokens'
    : `${a.n_fire_explain} firings on the EXPLAIN tokens, ${a.n_fire_score} on the SCORE tokens`;
  // fires on the EXPLAIN tokens but never on the SCORE tokens: scored F1 0 (A.rule.text), no precision/recall shown
  const noScoreFiring = a.f1 !== null && a.n_fire_score === 0;
  const score = el('div', {className: 'stats', id: 'score'}, a.f1 === null ? [`not scored: ${why}`] : [
    el('span', {}, [`held-out F1 ${IF.fmt(a.f1, 3)}`]),
    ...(noScoreFiring ? [el('span', {}, ['no firing on the SCORE tokens: counted as F1 0'])]
      : [el('span', {}, [`precision ${IF.fmt(a.precision, 3)}`]), el('span', {}, [`recall ${IF.fmt(a.recall, 3)}`])]),
    el('span', {className: 'muted'}, [`TP ${a.tp} \u00B7 FP ${a.fp} \u00B7 FN ${a.fn}`])]);
  const split = el('div', {className: 'muted', id: 'split'}, [`Fires where its activation > ` +
    `${a.threshold === null ? 'n/a' : IF.fmt(a.threshold, 4)} (${A.rule.fire_frac} \u00D7 its max on the EXPLAIN ` +
    `tokens). Patterns chosen on the EXPLAIN split (${T.n_explain_tokens.toLocaleString()} tokens, ` +
    `${a.n_fire_explain} firings), scored on the held-out SCORE split (${T.n_score_tokens.toLocaleString()} ` +
    `tokens, ${a.n_fire_score} firings).`]);
  const output = el('div', {id: 'output'}, [el('span', {className: 'muted'}, ['output (logits raised most): ']),
    ...a.output.map((t) => IF.chip(t))]);
  const m = a.match, other = A.side === 'a' ? 'B' : 'A';
  const match = el('div', {id: 'match'}, [`best match in the other run (${other}): `,
    el('a', {href: `${A.other_site}feature.html?f=${m.feature}`, id: 'matchlink'},
      [`#${m.feature} (r = ${IF.fmt(m.corr, 2)})`]),
    el('span', {className: 'muted'}, [' activation correlation over the same tokens'])]);
  return panel('Explanation (offline)', [patterns, score, split, output, match,
    el('div', {className: 'muted'}, [A.rule.text || ''])], 'explanation');
}

// The ground-truth concepts this feature detects (d.analysis.concepts: [[concept, f1, precision, recall], ...], best
// first; C = INDEX.meta.analysis.concepts): each a link to its row on concepts.html, and the concepts whose best
// single feature this one is.
function conceptsPanel(d, C) {
  const el = IF.el, rows = d.analysis.concepts, num = (x) => el('td', {className: 'num'}, [x]);
  const link = (c) => el('a', {href: IF.conceptHref(C.concepts[c].name), className: 'clink'}, [C.concepts[c].name]);
  const table = rows.length ? el('table', {id: 'detects'}, [
    el('thead', {}, [el('tr', {}, ['concept', 'kind', 'base rate', 'precision', 'recall', 'F1']
      .map((h) => el('th', {}, [h])))]),
    el('tbody', {}, rows.map(([c, f1, p, r]) => el('tr', {'data-concept': C.concepts[c].name}, [
      el('td', {}, [link(c)]), el('td', {}, [C.concepts[c].kind]), num(IF.baseRate(C.concepts[c])),
      num(IF.fmt(p, 3)), num(IF.fmt(r, 3)), num(IF.fmt(f1, 3))])))])
    : el('div', {className: 'muted', id: 'nodetects'}, [C.min_f1 === null
      ? 'This report does not list the concepts each feature detects (made before that list): rerun analyze.py.'
      : `Detects none of the ${C.concepts.length} concepts with held-out F1 \u2265 ${C.min_f1}.`]);
  const best = C.concepts.flatMap((c, k) => c.feature.id === d.id && c.feature.f1 > 0 ? [k] : []);  // F1 0: no best
  const bestLine = best.length ? el('div', {id: 'bestfor'}, ['the best single feature of all for: ',
    ...best.flatMap((c, k) => [k ? ', ' : '', link(c), ` (F1 ${IF.fmt(C.concepts[c].feature.f1, 3)})`])]) : null;
  return panel('Ground-truth concepts', [table, bestLine, el('div', {className: 'muted'}, [
    `Labelled concepts of the dataset (label_concepts.py). The feature detects a concept where its activation > a ` +
    `threshold chosen per concept on the EXPLAIN tokens (F1 over a grid of fractions of its max); precision, recall ` +
    `and F1 on the held-out SCORE tokens (${C.tokens.n_score_tokens.toLocaleString()}); base rate: share of SCORE ` +
    'tokens with the concept. ', el('a', {href: 'concepts.html', id: 'allconcepts'}, ['all concepts \u2192'])])],
  'concepts');
}

// the intervals from the highest down, each with its samples (strongest first)
function intervalSamples(d, effScale) {
  const n = window.INDEX.meta.n_intervals, box = IF.el('div', {});
  for (let j = n - 1; j >= 0; j--) {
    const iv = d.intervals[j];
    if (!iv.n) continue;
    box.appendChild(IF.el('h3', {}, [IF.el('span', {className: 'sw', style: {background: intervalColor(j, n),
      display: 'inline-block', width: '12px', height: '10px', marginRight: '6px'}}),
    `Interval ${j + 1}: activation in [${IF.fmt(iv.lo, 3)}, ${IF.fmt(iv.hi, 3)}${j === n - 1 ? ']' : ')'} \u2014 ` +
      `${IF.pct(iv.share)} of activations (${iv.n})`]));
    for (const w of [...iv.samples].sort((a, b) => b.act - a.act)) box.appendChild(IF.renderWindow(w, d.max, effScale));
  }
  return box;
}

function logitTable(L) {
  const el = IF.el, cells = (x) => [el('td', {}, x ? [IF.chip(x[0])] : []),
    el('td', {className: 'num'}, x ? [IF.fmt(x[1], 3)] : [])];
  const rows = Array.from({length: Math.max(L.pos.length, L.neg.length)},
    (_, i) => el('tr', {}, [...cells(L.neg[i]), ...cells(L.pos[i])]));
  return el('table', {}, [el('thead', {}, [el('tr', {}, [el('th', {}, ['negative']), el('th', {}, ['']),
    el('th', {}, ['positive']), el('th', {}, [''])])]), el('tbody', {}, rows)]);
}

// rows [feature, value...]: the feature's link, its values, its label
function neighbourTable(list, cols) {
  const el = IF.el;
  return el('table', {}, [el('thead', {}, [el('tr', {}, [el('th', {}, ['feature']),
    ...cols.map((c) => el('th', {}, [c])), el('th', {}, ['fires most on'])])]),
  el('tbody', {}, list.map(([f, ...values]) => el('tr', {}, [el('td', {}, [IF.featureLink(f)]),
    ...values.map((x) => el('td', {className: 'num'}, [IF.fmt(x, 3)])), el('td', {}, [neighbourLabel(f)])])))]);
}

if (IF.requireData(['VOCAB', 'INDEX'])) startFeaturePage();
