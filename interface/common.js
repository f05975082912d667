'use strict';
// Shared by index.html, feature.html and examples.html (and a sweep site's index.html and family.html), as IF.*.
// The data come from data/*.js and features/NNNN.js, loaded with <script src> (works from file://; fetch() of
// local files does not); their keys are described in the repo's docs/browser.md. Every token is put on the page with textContent, never as HTML.
const IF = {
  // ------------------------------------------------------------------ tokens
  // VOCAB[id] is the token's text, or the list of its bytes when they are not valid UTF-8 on their own (a
  // character split over several byte-level tokens).
  hexByte: (b) => `\u2039\\x${b.toString(16).padStart(2, '0')}\u203A`,  // ‹\xe6›

  // Texts of a run of tokens, [{text, partial}]. One TextDecoder streams over consecutive byte tokens, so a
  // character split over several of them is shown whole on the token that completes it; the tokens holding only
  // its first bytes show those bytes escaped (partial: true). A token with bytes that form no character (cut off,
  // or never valid UTF-8) shows all its bytes escaped.
  tokenTexts(ids) {
    const out = [];
    let decoder = null, waiting = [];  // the open decoder; the tokens whose bytes it holds, waiting for more
    const escaped = (bytes) => bytes.map(IF.hexByte).join('');
    const cutOff = () => {  // the waiting bytes will not form a character
      for (const t of waiting) t.partial = false;
      waiting = [];
    };
    for (const id of ids) {
      const v = window.VOCAB[id];
      if (!Array.isArray(v)) {  // a whole token: no character continues across it
        if (decoder && decoder.decode()) cutOff();
        decoder = null;
        waiting = [];
        out.push({text: v === undefined ? `\u27E8${id}\u27E9` : v, partial: false});
        continue;
      }
      decoder ??= new TextDecoder('utf-8', {fatal: false});
      let text = decoder.decode(Uint8Array.from(v), {stream: true});
      if (waiting.length && text.startsWith('\uFFFD')) {  // one U+FFFD stands for the waiting bytes
        text = text.slice(1);
        cutOff();
      }
      if (text) waiting = [];  // completed
      const token = {text: text.includes('\uFFFD') ? escaped(v) : text || escaped(v), partial: !text};
      if (!text) waiting.push(token);
      out.push(token);
    }
    if (decoder && decoder.decode()) cutOff();
    return out;
  },

  // Make whitespace and control characters visible: newline ⏎, tab ⇥, other control characters escaped
  // (‹\x0d›); spaces as · in chips (single tokens) and in tokens that are only spaces.
  visible(s, chip) {
    const onlySpaces = /^ +$/.test(s);
    let r = '';
    for (const ch of s) {
      const c = ch.codePointAt(0);
      if (ch === '\n') r += '\u23CE';
      else if (ch === '\t') r += '\u21E5';
      else if (ch === ' ' && (chip || onlySpaces)) r += '\u00B7';
      else if (c < 32 || c === 127 || (c >= 0x80 && c < 0xA0)) r += IF.hexByte(c);
      else r += ch;
    }
    return r === '' ? '\u2205' : r;
  },

  tokenLabel: (id) => IF.visible(IF.tokenTexts([id])[0].text, true),

  // A token given as its text (a string, or the list of its bytes when they are not valid UTF-8), as on the sweep
  // site's pages, which have no VOCAB: the chip's label.
  textLabel: (t) => Array.isArray(t) ? t.map(IF.hexByte).join('') || '\u2205' : IF.visible(String(t), true),
  textChip: (t) => IF.el('span', {className: 'chip', title: IF.textLabel(t)}, [IF.textLabel(t)]),

  // ------------------------------------------------------------------ DOM (textContent only)
  el(tag, props = {}, children = []) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === 'text') e.textContent = v;
      else if (k === 'className') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'style') Object.assign(e.style, v);
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return e;
  },

  chip: (id, extra) => IF.el('span', {className: 'chip', title: `token ${id}${extra ? ' \u00B7 ' + extra : ''}`},
    [IF.tokenLabel(id)]),

  // A pattern of an offline explanation (analyze.py): consecutive tokens, the unit's own token last, as one group
  // of chips (their texts decoded as a run, so a character split over byte tokens is whole); patternText: the
  // same labels joined by spaces (what a search looks in).
  patternChips: (ids) => IF.el('span', {className: 'pattern'}, IF.tokenTexts(ids).map((t, k) =>
    IF.el('span', {className: 'chip' + (k === ids.length - 1 ? ' unit' : ''), title: `token ${ids[k]}`},
      [IF.visible(t.text, true)]))),
  patternText: (ids) => IF.tokenTexts(ids).map((t) => IF.visible(t.text, true)).join(' '),

  featureLink: (f, label) => IF.el('a', {href: `feature.html?f=${f}`, className: 'flink'},
    [label === undefined ? `#${f}` : label]),

  // ------------------------------------------------------------------ numbers, colours
  fmt(x, d) {
    if (x === null || x === undefined || isNaN(x)) return '';
    if (x === 0) return '0';
    const a = Math.abs(x);
    if (a >= 1e4 || a < 1e-3) return x.toExponential(d === undefined ? 2 : d);
    return x.toFixed(d === undefined ? 3 : d);
  },
  pct: (x) => IF.fmt(100 * x, 2) + '%',
  fmtDensity: (x) => x === 0 ? '0' : x >= 0.01 ? x.toFixed(3) : x.toExponential(2),
  actColor(a, max) {
    if (!(a > 0) || !(max > 0)) return '';
    return `rgba(255,140,0,${Math.min(1, 0.12 + 0.88 * a / max).toFixed(3)})`;
  },
  effColor(e, scale) {
    if (!e || !(scale > 0)) return '';
    const alpha = Math.min(1, 0.25 + 0.75 * Math.abs(e) / scale).toFixed(3);
    return e > 0 ? `rgba(30,90,255,${alpha})` : `rgba(230,30,30,${alpha})`;
  },

  // ------------------------------------------------------------------ a context window
  // w: a window of a feature record (docs/browser.md): {context, pos, act, start, tokens, acts, effects}
  renderWindow(w, maxAct, effScale) {
    const {el, fmt} = IF;
    const texts = IF.tokenTexts(w.tokens), row = el('div', {className: 'win'});
    row.appendChild(el('span', {className: 'wact', title: `context ${w.context}, position ${w.pos}`}, [fmt(w.act, 3)]));
    const line = el('span', {className: 'wtoks'});
    w.tokens.forEach((tok, j) => {
      const act = j < w.acts.length ? w.acts[j] : null, eff = j > 0 ? w.effects[j - 1] : 0;
      const cls = 'tok' + (texts[j].partial ? ' partial' : '') + (w.start + j === w.pos ? ' center' : '') +
        (act === null ? ' after' : '');
      let tip = `position ${w.start + j}` + (act === null ? ' (next token)' : ` \u00B7 activation ${fmt(act, 3)}`);
      if (j > 0) tip += ` \u00B7 feature effect on log p(this token): ${eff > 0 ? '+' : ''}${fmt(eff, 4)}` +
        ` (\u0394 when ablated ${eff > 0 ? '' : '+'}${fmt(-eff, 4)})`;
      const span = el('span', {className: cls, title: tip, 'data-act': act === null ? '' : act, 'data-eff': eff},
        [IF.visible(texts[j].text, false)]);
      const bg = act === null ? '' : IF.actColor(act, maxAct);
      if (bg) span.style.backgroundColor = bg;
      const ec = IF.effColor(eff, effScale);
      if (ec) span.style.borderBottom = `3px solid ${ec}`;
      line.appendChild(span);
    });
    row.appendChild(line);
    return row;
  },

  // ------------------------------------------------------------------ SVG histograms
  svgEl(tag, attrs = {}, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  },

  // counts: bar heights; opts: {lo, hi (x range), width, height, color(i), logy, xlabel, ylabel, ticks:[x],
  //        tickLabel(x), marks:[{x, label, color}], titles(i) -> tooltip, onclick(i)}
  histogram(counts, opts) {
    const svgEl = IF.svgEl;
    const W = opts.width || 480, H = opts.height || 150, ml = 44, mr = 22, mt = 8, mb = 34;
    const iw = W - ml - mr, ih = H - mt - mb, n = counts.length;
    const svg = svgEl('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'hist'});
    const tr = (c) => opts.logy ? (c > 0 ? Math.log10(c) + 1 : 0) : c;
    const top = Math.max(...counts.map(tr), 1e-9);
    const xOf = (x) => ml + iw * (x - opts.lo) / ((opts.hi - opts.lo) || 1);
    counts.forEach((c, i) => {
      const h = ih * tr(c) / top, bw = iw / n;
      const r = svgEl('rect', {x: ml + i * bw + 0.5, y: mt + ih - h, width: Math.max(bw - 1, 0.5), height: h,
        fill: opts.color ? opts.color(i) : '#4a78c2'});
      if (opts.titles) r.appendChild(svgEl('title', {}, opts.titles(i)));
      if (opts.onclick) {
        r.style.cursor = 'pointer';
        r.addEventListener('click', () => opts.onclick(i));
      }
      svg.appendChild(r);
    });
    svg.appendChild(svgEl('line', {x1: ml, y1: mt + ih, x2: ml + iw, y2: mt + ih, stroke: '#555'}));
    svg.appendChild(svgEl('line', {x1: ml, y1: mt, x2: ml, y2: mt + ih, stroke: '#555'}));
    for (const x of opts.ticks || [opts.lo, (opts.lo + opts.hi) / 2, opts.hi]) {
      svg.appendChild(svgEl('text', {x: xOf(x), y: mt + ih + 13, 'text-anchor': 'middle', class: 'tick'},
        opts.tickLabel ? opts.tickLabel(x) : IF.fmt(x, 2)));
    }
    svg.appendChild(svgEl('text', {x: ml - 4, y: mt + 8, 'text-anchor': 'end', class: 'tick'},
      String(Math.max(...counts, 0))));
    svg.appendChild(svgEl('text', {x: ml - 4, y: mt + ih, 'text-anchor': 'end', class: 'tick'}, '0'));
    if (opts.xlabel) {
      svg.appendChild(svgEl('text', {x: ml + iw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis'}, opts.xlabel));
    }
    if (opts.ylabel) {
      svg.appendChild(svgEl('text', {x: 10, y: mt + ih / 2, 'text-anchor': 'middle', class: 'axis',
        transform: `rotate(-90 10 ${mt + ih / 2})`}, opts.ylabel));
    }
    for (const m of opts.marks || []) {
      const x = xOf(m.x), color = m.color || '#c00';
      svg.appendChild(svgEl('line', {x1: x, y1: mt, x2: x, y2: mt + ih, stroke: color, 'stroke-dasharray': '4 3'}));
      svg.appendChild(svgEl('text', {x: x + 3, y: mt + 10, class: 'mark', fill: color}, m.label));
    }
    return svg;
  },

  // ------------------------------------------------------------------ loading, the query string
  loadScript(src, onerror, onload) {
    const s = document.createElement('script');
    s.src = src;
    s.onerror = () => onerror && onerror(src);
    if (onload) s.onload = () => onload(src);
    document.head.appendChild(s);
  },

  requireData(names) {
    const missing = names.filter((n) => window[n] === undefined);
    if (!missing.length) return true;
    document.body.appendChild(IF.el('p', {className: 'error'},
      [`Data files missing (${missing.join(', ')}): run build_interface.py to build this site.`]));
    return false;
  },

  // ?name=value, or #name=value
  param: (name) => new URLSearchParams(location.search).get(name) ??
    new URLSearchParams(location.hash.slice(1)).get(name),

  ready: () => document.body.setAttribute('data-ready', '1'),

  // ------------------------------------------------------------------ a sortable table (concepts.html)
  // Sort rows by r[key] (dir 1 ascending, -1 descending): numbers, or strings by localeCompare; a row without a value
  // (null) sorts below every number, as in the index table; ties keep the order of r.order.
  sortRows(rows, key, dir) {
    const v = (r) => r[key] ?? -Infinity;
    return rows.sort((a, b) => {
      const x = v(a), y = v(b);
      const c = typeof x === 'string' && typeof y === 'string' ? x.localeCompare(y) : (x < y ? -1 : x > y ? 1 : 0);
      return c === 0 ? a.order - b.order : c * dir;
    });
  },
  // Clicking a th.sortable of table (its data-key) sorts by it, again reverses; state {key, dir}; then render().
  // The sorted column's th gets the class asc or desc.
  bindSort(table, state, render) {
    const ths = table.querySelectorAll('th.sortable');
    const mark = () => ths.forEach((th) =>
      th.className = 'sortable' + (th.dataset.key === state.key ? (state.dir > 0 ? ' asc' : ' desc') : ''));
    ths.forEach((th) => th.addEventListener('click', () => {
      const k = th.dataset.key;
      state.dir = state.key === k ? -state.dir : (th.dataset.first === 'asc' ? 1 : -1);
      state.key = k;
      mark();
      render();
    }));
    mark();
  },

  // ------------------------------------------------------------------ ground-truth concepts (analyze.py's report)
  // INDEX.meta.analysis.concepts (docs/browser.md) on run A's site with a concept report, else null
  concepts: () => (window.INDEX && window.INDEX.meta && window.INDEX.meta.analysis &&
    window.INDEX.meta.analysis.concepts) || null,
  // a concept's share of the SCORE tokens (the report rounds it to 4 digits: a rare concept's 0 shows as < 0.01%)
  baseRate: (c) => c.base_rate === 0 && c.n_positive > 0 ? '< 0.01%' : IF.pct(c.base_rate),
  conceptHref: (name) => `concepts.html?${new URLSearchParams({concept: name}).toString()}`,
  conceptIndexHref: (name) => `index.html?${new URLSearchParams({concept: name}).toString()}`,

  // ------------------------------------------------------------------ a member of a sweep site
  // INDEX.meta.sweep = {member, family, root} when this site is one SAE of a sweep site (root: the sweep site's
  // folder, relative to this one, e.g. '../'); null for a single-SAE site.
  sweep: () => (window.INDEX && window.INDEX.meta && window.INDEX.meta.sweep) || null,
  memberHref: (root, member, page) => `${root}${encodeURIComponent(member)}/${page}`,
  familyHref: (root, family, query = {}) =>
    `${root}family.html?${new URLSearchParams({family, ...query}).toString()}`,
  // a family's link (SWEEP.families[].link): [its score's key in a parent or relative record, the score's name]
  familyScore: (link) => ({masked: ['masked', 'masked activation cosine'], decoder: ['cos', 'decoder cosine'],
    activation: ['corr', 'activation correlation']})[link] || ['cos', String(link)],

  // the header of every page of a member: which SAE this is, and the way back to all SAEs of the sweep
  addSweepLinks() {
    const s = IF.sweep(), header = document.querySelector('header');
    if (!s || !header) return;
    header.appendChild(IF.el('span', {className: 'sweepnav', id: 'sweepnav'}, [
      IF.el('a', {href: `${s.root}index.html`}, ['\u2191 all SAEs of the sweep']),
      ' \u00B7 this SAE: ', IF.el('span', {className: 'member'}, [s.member]),
      ...(s.family ? [' \u00B7 family ', IF.el('a', {href: IF.familyHref(s.root, s.family)}, [s.family])] : [])]));
  },
};
IF.addSweepLinks();
