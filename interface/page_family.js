'use strict';
// family.html?family=NAME[&root=ID | &sae=MEMBER&f=ID]: how the features of a family of SAEs (one kind, sizes
// only differ) split as the dictionary grows -- Bricken et al. 2023, "Towards Monosemanticity", feature
// splitting: every feature of a larger SAE is linked to its closest feature (its parent) in the next smaller one.
// Data: data/sweep.js (SWEEP.families) and data/family_NAME.js (FAMILY: per member, per feature {parent, cos,
// corr, children, density, max_act, top_tokens}); see docs/browser.md.
const MAX_CARDS = 30;  // per column of a tree (the most similar; the others listed as links); the asked path always
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
// rootOf[level][j]: the feature of the smallest member that feature j of member `level` descends from (-1: none)
function rootsOf(F) {
  const rootOf = [F.nodes[F.members[0]].map((_, j) => j)];
  for (let l = 1; l < F.members.length; l++) {
    rootOf.push(F.nodes[F.members[l]].map((n) => n.parent >= 0 ? rootOf[l - 1][n.parent] ?? -1 : -1));
  }
  return rootOf;
}

// counts[level][root]: how many features of member `level` descend from each feature of the smallest member
function descendantCounts(F) {
  const n0 = F.nodes[F.members[0]].length;
  return rootsOf(F).map((roots) => {
    const c = new Array(n0).fill(0);
    for (const r of roots) if (r >= 0) c[r]++;
    return c;
  });
}

// The asked feature's path from the tree's root: [[level, id], ...], root first; null when it does not exist.
function askedPath(F, q) {
  if (q.sae !== null || q.f !== null) {
    const level = F.members.indexOf(q.sae);
    if (level < 0 || q.f === null || !(q.f < F.nodes[q.sae].length)) return null;
    const path = [[level, q.f]];
    for (let l = level; l > 0; l--) {
      const p = F.nodes[F.members[l]][path[0][1]].parent;
      if (!(p >= 0)) break;  // no parent: the tree starts here
      path.unshift([l - 1, p]);
    }
    return path;
  }
  return q.root !== null && q.root < F.nodes[F.members[0]].length ? [[0, q.root]] : null;
}

// The tree's columns: cols[i] = ids of member (first level + i), children grouped under their parent (most
// similar first), at most MAX_CARDS per column, the asked path kept. Returns {first, cols, hidden: the ids left
// out per column}.
function treeColumns(F, path) {
  const [first, rootId] = path[0], onPath = new Set(path.map(([l, j]) => `${l}:${j}`));
  const cols = [[rootId]], hidden = [[]];
  for (let l = first + 1; l < F.members.length; l++) {
    const nodes = F.nodes[F.members[l]], prev = F.nodes[F.members[l - 1]];
    let ids = cols[cols.length - 1].flatMap((p) => [...prev[p].children].sort((a, b) => nodes[b].cos - nodes[a].cos));
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

function card(F, level, id, cls) {
  const el = IF.el, member = F.members[level], n = F.nodes[member][id];
  return el('div', {className: `card ${cls}`, 'data-member': member, 'data-id': id, 'data-parent': n.parent,
    id: `n-${level}-${id}`}, [
    el('div', {className: 'cardhead'}, [
      el('a', {href: featureHref(member, id), className: 'flink', title: `feature ${id} of ${member}`}, [`#${id}`]),
      el('span', {className: 'muted'}, [` ${member}`]),
      el('a', {href: pathHref(F, member, id), className: 'focus', title: 'highlight the path to this feature'},
        ['path'])]),
    el('div', {className: 'cardnums'}, [`density ${IF.fmtDensity(n.density)}`,
      level > 0 && n.parent >= 0 ? ` \u00B7 cos ${IF.fmt(n.cos, 2)} \u00B7 corr ${IF.fmt(n.corr, 2)}` : '',
      n.children.length && level < F.members.length - 1 ? ` \u00B7 ${n.children.length}\u00A0\u2192` : '']),
    el('div', {className: 'cardtoks'}, tokensOf(n))]);
}

function renderTree(F, path, counts) {
  const el = IF.el, {first, cols, hidden} = treeColumns(F, path);
  const onPath = new Set(path.map(([l, j]) => `${l}:${j}`)), asked = path[path.length - 1];
  const [l0, r0] = path[0], member0 = F.members[l0];
  document.title = `Family ${F.name}: feature ${r0} of ${member0}`;
  main.appendChild(el('div', {className: 'panel', id: 'treeinfo'}, [
    `Feature `, el('a', {href: featureHref(member0, r0)}, [`#${r0}`]), ` of ${member0} and its descendants: `,
    cols.map((ids, i) => `${(l0 === 0 ? counts[first + i][r0] : ids.length + hidden[i].length)} in ` +
      `${F.members[first + i]}`).join(', '), '. ',
    el('span', {className: 'muted'}, [`Each feature's parent is its closest feature in the next smaller SAE by ` +
      `${F.link === 'activation' ? 'activation correlation' : 'decoder cosine'}; cos = decoder cosine, corr = ` +
      `activation correlation over ${(F.n_tokens ?? 0).toLocaleString()} tokens. Highlighted: the path to ` +
      `feature #${asked[1]} of ${F.members[asked[0]]}. "path" on a card highlights the path to it.`])]));
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

// SVG curves from each card to its parent's card; on the highlighted path orange, else width by cosine
function drawLinks(tree) {
  tree.querySelector('svg.links')?.remove();
  const box = tree.getBoundingClientRect();
  const svg = IF.svgEl('svg', {class: 'links', width: tree.scrollWidth, height: tree.scrollHeight});
  for (const c of tree.querySelectorAll('.card')) {
    const level = +c.id.split('-')[1], parent = document.getElementById(`n-${level - 1}-${c.dataset.parent}`);
    if (!parent) continue;
    const a = parent.getBoundingClientRect(), b = c.getBoundingClientRect();
    const x1 = a.right - box.left, y1 = a.top + a.height / 2 - box.top;
    const x2 = b.left - box.left, y2 = b.top + b.height / 2 - box.top, mx = (x1 + x2) / 2;
    const hot = c.classList.contains('onpath') && parent.classList.contains('onpath');
    const cos = Math.max(0, +window.FAMILY.nodes[c.dataset.member][c.dataset.id].cos || 0);
    svg.appendChild(IF.svgEl('path', {d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: 'none',
      class: hot ? 'link onpath' : 'link', 'stroke-width': hot ? 3 : (0.5 + 2.5 * cos).toFixed(2)}));
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
