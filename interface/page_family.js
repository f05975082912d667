'use strict';
// family.html?family=NAME[&root=ID | &sae=MEMBER&f=ID]: how the features of a family of SAEs (one kind, sizes
// only differ) split and merge as the dictionary grows -- Bricken et al. 2023, "Towards Monosemanticity", feature
// splitting: a feature of a larger SAE is linked to every feature of the next smaller one scoring >= the family's
// threshold with it (its parents: none, one or several).
// Data: data/sweep.js (SWEEP.families) and data/family_NAME.js (FAMILY: per member, per feature {parents,
// children, linked, density, max_act, top_tokens}); see docs/browser.md.
const MAX_CARDS = 30;  // per column of a tree (the most similar; the others listed as links); the asked path always
const MAX_PARENTS_SHOWN = 3;  // on a card of several parents, the best ones named (the others counted)
const main = document.getElementById('main');
const error = (text) => main.appendChild(IF.el('p', {className: 'error'}, [text]));

// Which family and what to show, from the query string: {family, sae, f} or {family, root} or {family}.
function readQuery() {
  const fams = window.SWEEP.families;
  let name = IF.param('family');
  if (name === null && fams.length === 1) name = fams[0].name;
  if (name === null) return {list: true};
  const fam = fams.find((x) => x.name === name);  // only a listed name becomes a script path
  if (!fam) return {error: `No family ${JSON.stringify(name)} in this sweep (there are: ` +
    `${fams.map((x) => x.name).join(', ') || 'none'}).`};
  const int = (v) => v === null || !/^\d+$/.test(v) ? null : parseInt(v, 10);
  return {fam, root: int(IF.param('root')), sae: IF.param('sae'), f: int(IF.param('f')),
    asked: IF.param('root') !== null || IF.param('f') !== null};
}

function listFamilies() {
  const el = IF.el, fams = window.SWEEP.families;
  main.appendChild(el('section', {className: 'panel'}, [el('h2', {}, ['Families of this sweep']),
    fams.length ? el('ul', {}, fams.map((f) => el('li', {}, [el('a', {href: IF.familyHref('', f.name),
      className: 'family'}, [f.name]), ` (${f.kind}: ${f.sizes.join(' \u2192 ')} features)`])))
      : el('div', {className: 'muted'}, ['None.'])]));
}

// ----------------------------------------------------------------------------- the tree's structure
// rootsOf(F)[level][j]: the features of the smallest member that feature j of member `level` descends from,
// through any of its parents, as a bit set (a feature may have tens of parents: sets of ids would be slow)
function rootsOf(F) {
  const words = (F.nodes[F.members[0]].length + 31) >> 5;
  const rootOf = [F.nodes[F.members[0]].map((_, j) => {
    const b = new Uint32Array(words);
    b[j >> 5] = 1 << (j & 31);
    return b;
  })];
  for (let l = 1; l < F.members.length; l++) {
    rootOf.push(F.nodes[F.members[l]].map((n) => {
      const b = new Uint32Array(words);
      for (const p of n.parents) rootOf[l - 1][p.feature].forEach((w, i) => { b[i] |= w; });
      return b;
    }));
  }
  return rootOf;
}

// counts[level][root]: how many features of member `level` descend from each feature of the smallest member
function descendantCounts(F) {
  const n0 = F.nodes[F.members[0]].length;
  return rootsOf(F).map((roots) => {
    const c = new Array(n0).fill(0);
    for (const b of roots) for (let r = 0; r < n0; r++) if (b[r >> 5] & (1 << (r & 31))) c[r]++;
    return c;
  });
}

// the link of feature j of member `level` to feature p of the member before ({feature, cos, corr, masked}), or null
const linkTo = (F, level, j, p) => F.nodes[F.members[level]][j].parents.find((x) => x.feature === p) || null;
const scoreKey = (F) => IF.familyScore(F.link)[0];

// The asked feature's path from the tree's root: [[level, id], ...], root first; null when it does not exist.
function askedPath(F, q) {
  if (q.sae !== null || q.f !== null) {
    const level = F.members.indexOf(q.sae);
    if (level < 0 || q.f === null || !(q.f < F.nodes[q.sae].length)) return null;
    const path = [[level, q.f]];
    for (let l = level; l > 0; l--) {
      const p = F.nodes[F.members[l]][path[0][1]].parents[0]?.feature;  // its best parent
      if (p === undefined) break;  // no parent: the tree starts here
      path.unshift([l - 1, p]);
    }
    return path;
  }
  return q.root !== null && q.root < F.nodes[F.members[0]].length ? [[0, q.root]] : null;
}

// The tree's columns: cols[i] = ids of member (first level + i), children grouped under their first parent in
// the column before (most similar first; a child of several parents once), at most MAX_CARDS per column, the asked
// path kept. Returns {first, cols, hidden: the ids left out per column}.
function treeColumns(F, path) {
  const [first, rootId] = path[0], onPath = new Set(path.map(([l, j]) => `${l}:${j}`)), key = scoreKey(F);
  const cols = [[rootId]], hidden = [[]];
  for (let l = first + 1; l < F.members.length; l++) {
    const prev = F.nodes[F.members[l - 1]], score = (j, p) => linkTo(F, l, j, p)[key];
    const ids = [...new Set(cols[cols.length - 1].flatMap((p) => [...prev[p].children].sort((a, b) =>
      score(b, p) - score(a, p))))];
    const keep = new Set(ids.slice(0, MAX_CARDS).concat(ids.filter((j) => onPath.has(`${l}:${j}`))));
    cols.push(ids.filter((j) => keep.has(j)));
    hidden.push(ids.filter((j) => !keep.has(j)));
  }
  return {first, cols, hidden};
}

// ----------------------------------------------------------------------------- rendering
const featureHref = (member, id) => IF.memberHref('', member, `feature.html?f=${id}`);
const pathHref = (F, member, id) => IF.familyHref('', F.name, {sae: member, f: id});
const tokensOf = (n) => n.top_tokens.length ? n.top_tokens.map(IF.textChip)
  : [IF.el('span', {className: 'muted'}, [n.density > 0 ? '' : '(dead)'])];

// what a card says of its feature's parents: their scores, or that it has none (and why)
function parentText(F, level, n) {
  if (level === 0) return '';
  if (!n.linked) return ' \u00B7 ultralow: not linked';
  if (!n.parents.length) return ` \u00B7 no parent (none \u2265 ${F.threshold})`;
  if (n.parents.length === 1) {
    const p = n.parents[0];
    return ` \u00B7 masked ${IF.fmt(p.masked, 2)} \u00B7 cos ${IF.fmt(p.cos, 2)} \u00B7 corr ${IF.fmt(p.corr, 2)}`;
  }
  const shown = n.parents.slice(0, MAX_PARENTS_SHOWN).map((p) => `#${p.feature} (${IF.fmt(p[scoreKey(F)], 2)})`);
  const more = n.parents.length - shown.length;
  return ` \u00B7 ${n.parents.length} parents: ${shown.join(', ')}${more > 0 ? `, +${more}` : ''}`;
}

function card(F, level, id, cls) {
  const el = IF.el, member = F.members[level], n = F.nodes[member][id];
  const state = level > 0 && !n.parents.length ? (n.linked ? ' noparent' : ' ultralow') : '';
  return el('div', {className: `card ${cls}${state}`, 'data-member': member, 'data-id': id,
    'data-parents': n.parents.map((p) => p.feature).join(' '), id: `n-${level}-${id}`}, [
    el('div', {className: 'cardhead'}, [
      el('a', {href: featureHref(member, id), className: 'flink', title: `feature ${id} of ${member}`}, [`#${id}`]),
      el('span', {className: 'muted'}, [` ${member}`]),
      el('a', {href: pathHref(F, member, id), className: 'focus', title: 'highlight the path to this feature'},
        ['path'])]),
    el('div', {className: 'cardnums'}, [`density ${IF.fmtDensity(n.density)}`, parentText(F, level, n),
      n.children.length && level < F.members.length - 1 ? ` \u00B7 ${n.children.length}\u00A0\u2192` : '']),
    el('div', {className: 'cardtoks'}, tokensOf(n))]);
}

function renderTree(F, path, counts) {
  const el = IF.el, {first, cols, hidden} = treeColumns(F, path);
  const onPath = new Set(path.map(([l, j]) => `${l}:${j}`)), asked = path[path.length - 1];
  const [l0, r0] = path[0], member0 = F.members[l0], root = F.nodes[member0][r0];
  document.title = `Family ${F.name}: feature ${r0} of ${member0}`;
  const orphan = l0 === 0 ? '' : root.linked ? `It has no parent: no feature of ${F.members[l0 - 1]} scores ` +
    `\u2265 ${F.threshold} with it. ` : `It is not linked: it fires on fewer than ${F.min_density} of the tokens. `;
  main.appendChild(el('div', {className: 'panel', id: 'treeinfo'}, [
    `Feature `, el('a', {href: featureHref(member0, r0)}, [`#${r0}`]), ` of ${member0} and its descendants: `,
    cols.map((ids, i) => `${(l0 === 0 ? counts[first + i][r0] : ids.length + hidden[i].length)} in ` +
      `${F.members[first + i]}`).join(', '), '. ', el('span', {id: 'orphan'}, [orphan]),
    el('span', {className: 'muted'}, [linkText(F) + ` Highlighted: the path to feature #${asked[1]} of ` +
      `${F.members[asked[0]]} through best parents. "path" on a card highlights the path to it.`])]));
  const tree = el('div', {className: 'tree', id: 'tree'});
  cols.forEach((ids, i) => {
    const level = first + i, member = F.members[level];
    tree.appendChild(el('div', {className: 'treecol', 'data-member': member}, [
      el('div', {className: 'colhead'}, [el('a', {href: IF.memberHref('', member, 'index.html')}, [member]),
        el('div', {className: 'muted'}, [`${F.sizes[level].toLocaleString()} features`])]),
      el('div', {className: 'colcards'}, [...ids.map((j) => card(F, level, j,
        (onPath.has(`${level}:${j}`) ? 'onpath' : '') + (level === asked[0] && j === asked[1] ? ' asked' : ''))),
      hidden[i].length ? el('div', {className: 'muted more'}, [`+ ${hidden[i].length} less similar: `,
        ...hidden[i].flatMap((j) => [el('a', {href: pathHref(F, member, j)}, [`#${j}`]), ' '])]) : null])]));
  });
  main.appendChild(tree);
  drawLinks(tree);
  document.querySelector('.card.asked')?.scrollIntoView({block: 'center', inline: 'nearest'});
  window.addEventListener('resize', () => drawLinks(tree));
  document.fonts?.ready.then(() => drawLinks(tree));  // cards change size when the fonts arrive
}

// The sentence saying how parents are chosen and what the numbers are.
function linkText(F) {
  return `A feature's parents are the features of the next smaller SAE whose ${IF.familyScore(F.link)[1]} with it ` +
    `is \u2265 ${F.threshold}: none, one or several (features split and merge); features firing on fewer than ` +
    `${F.min_density} of the ${(F.n_tokens ?? 0).toLocaleString()} tokens compared are not linked (ultralow). ` +
    'masked = the cosine of the two activations on the tokens where one fires (the greater of the two), cos = ' +
    'decoder cosine, corr = activation correlation.';
}

// SVG curves from each card to its parents' cards in the tree; on the highlighted path orange, else width by score
function drawLinks(tree) {
  tree.querySelector('svg.links')?.remove();
  const box = tree.getBoundingClientRect(), key = scoreKey(window.FAMILY);
  const svg = IF.svgEl('svg', {class: 'links', width: tree.scrollWidth, height: tree.scrollHeight});
  for (const c of tree.querySelectorAll('.card')) {
    const level = +c.id.split('-')[1];
    for (const p of window.FAMILY.nodes[c.dataset.member][c.dataset.id].parents) {
      const parent = document.getElementById(`n-${level - 1}-${p.feature}`);
      if (!parent) continue;
      const a = parent.getBoundingClientRect(), b = c.getBoundingClientRect();
      const x1 = a.right - box.left, y1 = a.top + a.height / 2 - box.top;
      const x2 = b.left - box.left, y2 = b.top + b.height / 2 - box.top, mx = (x1 + x2) / 2;
      const hot = c.classList.contains('onpath') && parent.classList.contains('onpath');
      const score = Math.max(0, +p[key] || 0);
      svg.appendChild(IF.svgEl('path', {d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: 'none',
        class: hot ? 'link onpath' : 'link', 'stroke-width': hot ? 3 : (0.5 + 2.5 * score).toFixed(2)}));
    }
  }
  tree.prepend(svg);
}

// without a root: every feature of the smallest member, those that split most first
function renderRoots(F, counts) {
  const el = IF.el, small = F.members[0], L = F.members.length, nodes = F.nodes[small];
  const order = nodes.map((_, j) => j).sort((a, b) => counts[L - 1][b] - counts[L - 1][a] ||
    nodes[b].density - nodes[a].density || a - b);
  document.title = `Family ${F.name}`;
  const search = el('input', {type: 'search', id: 'rootq', placeholder: 'search top tokens, or #id', size: 30});
  if (F.concepts) main.appendChild(conceptsPanel(F));
  main.appendChild(el('div', {className: 'controls'}, [search, el('span', {className: 'muted'}, [`The ` +
    `${nodes.length} features of ${small}, those with the most descendants in ${F.members[L - 1]} first. ` +
    `"tree" shows how one splits.`])]));
  search.addEventListener('input', () => filterRoots(search.value.trim().toLowerCase()));
  main.appendChild(el('table', {id: 'roots'}, [el('thead', {}, [el('tr', {}, [el('th', {}, [`${small} feature`]),
    el('th', {}, ['tree']), el('th', {}, ['density']), el('th', {}, ['fires most on']),
    ...F.members.slice(1).map((m, i) => el('th', {title: m}, [`in ${F.sizes[i + 1].toLocaleString()}`]))])]),
  el('tbody', {}, order.map((j) => el('tr', {'data-id': j}, [
    el('td', {}, [el('a', {href: featureHref(small, j), className: 'flink'}, [`#${j}`])]),
    el('td', {}, [el('a', {href: IF.familyHref('', F.name, {root: j}), className: 'treelink'}, ['tree \u2192'])]),
    el('td', {className: 'num'}, [IF.fmtDensity(nodes[j].density)]),
    el('td', {}, tokensOf(nodes[j])),
    ...F.members.slice(1).map((_, i) => el('td', {className: 'num'}, [String(counts[i + 1][j])]))])))]));
  main.appendChild(unlinkedPanel(F));
}

// Ground-truth concepts (FAMILY.concepts, concept_axis.concept_splits): per concept the smallest SAE's best feature,
// and in each larger SAE its descendants that detect a part of the concept (precision >= 0.5), with their recall
const unitText = (u) => `F1 ${IF.fmt(u[4], 2)} (P ${IF.fmt(u[2], 2)}, R ${IF.fmt(u[3], 2)})`;

function conceptsPanel(F) {
  const el = IF.el, small = F.members[0];
  const rows = [...F.concepts].sort((a, b) => (b.split - a.split) || (b.root[4] - a.root[4]));
  const parts = (F_, member, ps) => ps.length ? ps.flatMap((c, i) => [i ? ', ' : '',
    el('a', {href: pathHref(F_, member, c[0]), title: unitText(c)}, [`#${c[0]}`]), ` R ${IF.fmt(c[3], 2)}`])
    : [el('span', {className: 'muted'}, ['none'])];
  const n = F.concepts.filter((r) => r.split).length;
  return el('details', {className: 'panel', id: 'concepts'}, [el('summary', {}, [el('strong', {}, ['Ground-truth ' +
    `concepts: ${n} of ${F.concepts.length} split`]), ` \u2014 their best feature in ${small} has two or more ` +
    `descendants in ${F.members[F.members.length - 1]} that each detect a part of the concept (open)`]),
  el('div', {className: 'muted'}, [`Per concept, ${small}'s best feature (held-out F1) and, in each larger SAE, ` +
    `its descendants that detect a part of the concept (among the concept's 8 best features there, held-out ` +
    `precision \u2265 0.5; R = the part of the concept's tokens each one finds), beside that SAE's best feature. ` +
    `"splits": two or more parts in the largest SAE.`]),
  el('table', {id: 'concepttable'}, [el('thead', {}, [el('tr', {}, [el('th', {}, ['concept']),
    el('th', {}, [`${small} best`]), ...F.members.slice(1).flatMap((m) => [el('th', {title: m}, [`parts in ` +
      `${m}`]), el('th', {title: m}, ['best there'])]), el('th', {}, ['splits'])])]),
  el('tbody', {}, rows.map((r) => el('tr', {'data-concept': r.concept, className: r.split ? 'split' : ''}, [
    el('td', {}, [r.concept]),
    el('td', {}, [el('a', {href: IF.familyHref('', F.name, {root: r.root[0]}), className: 'treelink',
      title: unitText(r.root)}, [`#${r.root[0]}`]), ` ${IF.fmt(r.root[4], 2)}`]),
    ...r.sizes.flatMap((s) => [el('td', {}, parts(F, s.member, s.parts)),
      el('td', {}, [el('a', {href: featureHref(s.member, s.best[0]), title: unitText(s.best)}, [`#${s.best[0]}`]),
        ` ${IF.fmt(s.best[4], 2)}`])]),
    el('td', {}, [r.split ? 'yes' : ''])])))])]);
}

// The features no tree holds: per member those without a parent and those not linked (ultralow), each a link to
// its own tree -- shown, not left out
function unlinkedPanel(F) {
  const el = IF.el;
  const list = (member, ids, kind, what) => el('details', {className: 'unlinked', 'data-member': member,
    'data-kind': kind}, [el('summary', {}, [`${ids.length} ${what}`]),
  ...ids.flatMap((j) => [el('a', {href: pathHref(F, member, j)}, [`#${j}`]), ' '])]);
  return el('section', {className: 'panel', id: 'unlinked'}, [el('h2', {}, ['Features in no tree of the smallest ' +
    'SAE']), el('ul', {}, F.members.map((m, l) => {
    const nodes = F.nodes[m];
    const none = nodes.flatMap((n, j) => l > 0 && n.linked && !n.parents.length ? [j] : []);
    const low = nodes.flatMap((n, j) => n.linked ? [] : [j]);
    return el('li', {}, [`${m}: `, ...(l > 0 ? [list(m, none, 'noparent', `without a parent (none \u2265 ` +
      `${F.threshold} in ${F.members[l - 1]})`)] : []), list(m, low, 'ultralow', 'not linked (ultralow)')]);
  })), el('div', {className: 'muted'}, [linkText(F) + ' A feature whose parents have no parent either is in no ' +
    'tree of the smallest SAE too: its "path" starts where its best parents stop.'])]);
}

// keep the rows whose top tokens contain q, or feature #q
function filterRoots(q) {
  const idq = /^#(\d+)$/.exec(q);
  for (const tr of document.querySelectorAll('#roots tbody tr')) {
    const hay = Array.from(tr.querySelectorAll('.chip')).map((c) => c.textContent).join('\u0001').toLowerCase();
    tr.hidden = !(q === '' || (idq ? tr.dataset.id === idq[1] : hay.includes(q)));
  }
}

function renderFamily(q) {
  const F = window.FAMILY;
  if (!F || F.name !== q.fam.name) {
    error(`data/family_${q.fam.name}.js did not define this family: rebuild with build_interface.py.`);
    return;
  }
  const counts = descendantCounts(F);
  if (!q.asked) {
    renderRoots(F, counts);
    return;
  }
  const path = askedPath(F, q);
  if (path) renderTree(F, path, counts);
  else error(`No feature ${q.sae === null ? `root=${q.root}` : `${q.f} of ${q.sae}`} in family ${F.name}.`);
}

function startFamilyPage() {
  const q = readQuery();
  if (q.list || q.error) {
    if (q.error) error(q.error);
    listFamilies();
    IF.ready();
    return;
  }
  const fam = q.fam;
  document.getElementById('title').textContent = `Family ${fam.name}`;
  document.getElementById('allroots').href = IF.familyHref('', fam.name);
  document.getElementById('meta').textContent = `${fam.kind} \u00B7 ${fam.sizes.join(' \u2192 ')} features`;
  const file = `data/family_${encodeURIComponent(fam.name)}.js`;
  IF.loadScript(file, () => {
    error(`Could not load ${file}: rebuild with build_interface.py.`);
    IF.ready();
  }, () => {
    renderFamily(q);
    IF.ready();
  });
}

if (IF.requireData(['SWEEP'])) startFamilyPage();
