'use strict';
// concepts.html: every ground-truth concept of analyze.py's concept report (INDEX.meta.analysis.concepts, run A's
// site only): its best single feature and neuron with held-out precision, recall and F1, the features its spread
// needs, how many features detect it (a link to index.html?concept=NAME), and the report's concepts.png. A sortable
// table; ?concept=NAME marks that concept's row. Without a concept report: one line saying how to make one.
const conceptState = {key: 'order', dir: 1};

function noConcepts(main) {
  const A = window.INDEX.meta.analysis, el = IF.el;
  main.appendChild(el('p', {id: 'noconcepts'}, A && A.side === 'b'
    ? ['The concept report is of run A\u2019s features: see ',
      el('a', {href: `${A.other_site}concepts.html`}, ['run A\u2019s concepts']), '.']
    : ['This site\u2019s analysis has no concept report: label the dataset with ',
      el('code', {}, [`python label_concepts.py --data_dir=${window.INDEX.meta.dataset}`]),
      ', then rerun analyze.py and build_interface.py.']));
}

// one row per concept: what the table shows and sorts by
function conceptRows(C) {
  return C.concepts.map((c, k) => ({order: k, c, name: c.name, kind: c.kind, base_rate: c.base_rate,
    f_p: c.feature.precision, f_r: c.feature.recall, f_f1: c.feature.f1,
    n_p: c.neuron.precision, n_r: c.neuron.recall, n_f1: c.neuron.f1,
    // features to F1 0.9: not reached sorts after every count
    spread: c.spread === null ? null : (c.spread.n_features ?? c.spread.features.length + 1000),
    n_detecting: c.n_detecting}));
}

function summaryLine(C) {
  const S = C.summary, f2 = (x) => IF.fmt(x, 2), el = IF.el;
  const sp = S.features_spread;
  return el('div', {className: 'panel', id: 'csummary'}, [
    `${C.concepts.length} concepts (${S.features.n_concepts_scored} with a SCORE token). The best single feature's ` +
    `held-out F1: median ${f2(S.features.median_best_f1)}, \u2265 0.5 for ` +
    `${IF.pct(S.features['share_best_f1_at_least_0.5'])}` +
    `; the best single neuron's: median ${f2(S.neurons.median_best_f1)}, \u2265 0.5 for ` +
    `${IF.pct(S.neurons['share_best_f1_at_least_0.5'])}.` + (sp ? ` F1 ${C.spread.target_f1} on the EXPLAIN tokens is reached by one ` +
    `feature for ${sp.n_one} concepts, by at most ${C.spread.max_features} for ${sp.n_reached}, not for ` +
    `${sp.n_not_reached}.` : ''),
    el('div', {className: 'muted'}, [`EXPLAIN tokens ${C.tokens.n_explain_tokens.toLocaleString()}, SCORE tokens ` +
      `${C.tokens.n_score_tokens.toLocaleString()}. ${C.rule}.`])]);
}

function startConceptsPage() {
  const main = document.getElementById('main'), M = window.INDEX.meta, C = IF.concepts(), el = IF.el;
  document.getElementById('meta').textContent = `${M.site} \u00B7 ${M.n_features} features`;
  if (!C) {
    noConcepts(main);
    IF.ready();
    return;
  }
  const cut = C.min_f1 === null ? 'n/a' : C.min_f1, maxSpread = C.spread ? C.spread.max_features : 20;
  const head = [['concept', 'name', 'asc'], ['kind', 'kind', 'asc'], ['base rate', 'base_rate'],
    ['best feature', null], ['P', 'f_p'], ['R', 'f_r'], ['F1', 'f_f1'],
    ['best neuron', null], ['P', 'n_p'], ['R', 'n_r'], ['F1', 'n_f1'],
    [`features to F1 ${C.spread ? C.spread.target_f1 : 0.9}`, 'spread', 'asc'],
    [`features F1 \u2265 ${cut}`, 'n_detecting']];
  const table = el('table', {id: 'ctable'}, [el('thead', {}, [el('tr', {}, head.map(([h, key, first]) =>
    el('th', key ? {className: 'sortable', 'data-key': key, 'data-first': first || 'desc'} : {}, [h])))]),
  el('tbody')]);
  main.appendChild(summaryLine(C));
  main.appendChild(table);
  if (C.plot) {
    main.appendChild(el('div', {className: 'panel'}, [el('h2', {}, ['Best feature vs best neuron per concept']),
      el('img', {src: C.plot, id: 'cplot', className: 'cplot', alt: 'concepts.png'})]));
  }
  const rows = conceptRows(C), asked = IF.param('concept');
  if (asked && !rows.some((r) => r.name === asked)) {
    table.before(el('p', {className: 'error', id: 'noconcept'}, [`No concept "${asked}".`]));
  }
  const num = (x, d = 3) => el('td', {className: 'num'}, [IF.fmt(x, d)]);
  const render = () => {
    const tbody = table.querySelector('tbody');
    tbody.textContent = '';
    for (const r of IF.sortRows(rows, conceptState.key, conceptState.dir)) {
      const c = r.c, sp = c.spread;
      // reached: how many; not: at maxSpread features, or where no feature raises the EXPLAIN F1 (the greedy stops)
      const full = sp !== null && sp.features.length >= maxSpread;
      const spread = sp === null ? ['n/a'] : [sp.n_features !== null ? `${sp.n_features}`
        : full ? `not within ${maxSpread}` : 'not reached',
      el('span', {className: 'muted'}, [` (${sp.n_features === null && !full ? `no raise after ${sp.features.length}, `
        : ''}held-out F1 ${IF.fmt(sp.f1, 2)}): `]),
        ...sp.features.flatMap((f, k) => [k ? ' ' : '', IF.featureLink(f)])];
      tbody.appendChild(el('tr', {'data-concept': c.name, className: c.name === asked ? 'hl' : ''}, [
        el('td', {}, [c.name]), el('td', {}, [c.kind]), el('td', {className: 'num', title: `${c.n_positive} of ` +
          `${C.tokens.n_score_tokens.toLocaleString()} SCORE tokens`}, [IF.baseRate(c)]),
        el('td', {className: 'best'}, [el('a', {href: `feature.html?f=${c.feature.id}`, className: 'bestf'},
          [`#${c.feature.id}`])]), num(r.f_p), num(r.f_r), num(r.f_f1),
        el('td', {className: 'best bestn'}, [`neuron ${c.neuron.id}`]), num(r.n_p), num(r.n_r), num(r.n_f1),
        el('td', {className: 'spread'}, spread),
        el('td', {className: 'num'}, [c.n_detecting === null ? 'n/a' : c.n_detecting
          ? el('a', {href: IF.conceptIndexHref(c.name), className: 'ilink'}, [String(c.n_detecting)]) : '0'])]));
    }
  };
  IF.bindSort(table, conceptState, render);
  render();
  const hl = table.querySelector('tr.hl');
  if (hl) hl.scrollIntoView({block: 'center'});
  IF.ready();
}

if (IF.requireData(['INDEX'])) startConceptsPage();
