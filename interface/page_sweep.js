'use strict';
// The sweep site's index.html (interface/sweep.html renamed): every SAE of the sweep with its numbers from
// pareto.json, the feature families, the Pareto plot. SWEEP = {members, families, pareto_png}
// (docs/browser.md).
const sweepSort = {key: 'order', dir: 1};  // 'order': as in pareto.json

// k for kinds without an L1 penalty, λ for the others (pareto.json sets one of the two)
const sparsityValue = (m) => m.k ?? m.l1_coeff ?? null;

const known = (x) => x !== null && x !== undefined;
const sparsityLabel = (m) => m.sparsity ?? (known(m.k) ? `k=${m.k}` : known(m.l1_coeff) ? `\u03BB=${m.l1_coeff}` : '');

function familyOf(name) {
  return window.SWEEP.families.find((f) => f.members.includes(name)) || null;
}

function renderMembers() {
  const el = IF.el, {key, dir} = sweepSort, tbody = document.querySelector('#members tbody');
  const rows = window.SWEEP.members.map((m, order) => ({...m, order, sparsity_value: sparsityValue(m)}));
  rows.sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return a.name < b.name ? -1 : 1;
    if (!known(x)) return 1;  // unknowns last either way
    if (!known(y)) return -1;
    return x < y ? -dir : dir;
  });
  tbody.textContent = '';
  for (const m of rows) {
    const fam = familyOf(m.name);
    tbody.appendChild(el('tr', {'data-name': m.name}, [
      el('td', {}, [el('a', {href: m.href, className: 'member'}, [m.name])]),
      el('td', {}, [m.kind]),
      el('td', {className: 'num'}, [m.n_features.toLocaleString()]),
      el('td', {className: 'num'}, [sparsityLabel(m)]),
      el('td', {className: 'num'}, [IF.fmt(m.l0, 1)]),
      el('td', {className: 'num'}, [IF.fmt(m.fvu, 4)]),
      el('td', {className: 'num'}, [IF.fmt(m.loss_recovered, 4)]),
      el('td', {className: 'num'}, [known(m.alive_frac) ? IF.pct(m.alive_frac) : '']),
      el('td', {className: 'num', title: known(m.concept_f1_neurons) ?
        `the best single neurons' median: ${IF.fmt(m.concept_f1_neurons, 3)}` : ''}, [IF.fmt(m.concept_f1, 3)]),
      el('td', {}, fam ? [el('a', {href: IF.familyHref('', fam.name)}, [fam.name])] : [])]));
  }
  for (const th of document.querySelectorAll('#members th.sortable')) {
    th.className = 'sortable' + (th.dataset.key === key ? (dir > 0 ? ' asc' : ' desc') : '');
  }
}

function bindSort() {
  for (const th of document.querySelectorAll('#members th.sortable')) {
    th.addEventListener('click', () => {
      const k = th.dataset.key;
      sweepSort.dir = sweepSort.key === k ? -sweepSort.dir : 1;
      sweepSort.key = k;
      renderMembers();
    });
  }
}

function renderFamilies() {
  const el = IF.el, box = document.getElementById('familylist'), fams = window.SWEEP.families;
  if (!fams.length) {
    box.appendChild(el('div', {className: 'muted'}, ['No family here: a family needs SAEs of >= 2 sizes that ' +
      'differ in nothing else.']));
    return;
  }
  box.appendChild(el('table', {id: 'familytable'}, [el('thead', {}, [el('tr', {}, ['family', 'kind', 'sizes',
    'members', 'linked by', 'tokens compared'].map((h) => el('th', {}, [h])))]),
  el('tbody', {}, fams.map((f) => el('tr', {'data-family': f.name}, [
    el('td', {}, [el('a', {href: IF.familyHref('', f.name), className: 'family'}, [f.name])]),
    el('td', {}, [f.kind]),
    el('td', {}, [f.sizes.map((n) => n.toLocaleString()).join(' \u2192 ')]),
    el('td', {}, f.members.flatMap((m, i) => [i ? ', ' : '',
      el('a', {href: IF.memberHref('', m, 'index.html')}, [m])])),
    el('td', {}, [IF.familyScore(f.link)[1] + (f.threshold === undefined ? '' : ` \u2265 ${f.threshold}`)]),
    el('td', {className: 'num'}, [f.n_tokens === undefined ? '' : f.n_tokens.toLocaleString()])])))]));
}

function renderPareto() {
  const box = document.getElementById('paretobox'), png = window.SWEEP.pareto_png;
  if (png) {
    box.appendChild(IF.el('img', {src: png, alt: 'L0 against loss recovered and against FVU, one line per kind',
      className: 'pareto'}));
  } else {
    box.appendChild(IF.el('div', {className: 'muted'}, ['No pareto.png in the sweep folder (train_sae.py draws ' +
      'it at the end of the sweep: run its sweep config again with --init_from=resume).']));
  }
}

if (IF.requireData(['SWEEP'])) {
  const S = window.SWEEP;
  document.getElementById('meta').textContent = `${S.members.length} SAEs \u00B7 ${S.families.length} ` +
    `famil${S.families.length === 1 ? 'y' : 'ies'}`;
  renderMembers();
  bindSort();
  renderFamilies();
  renderPareto();
  IF.ready();
}
