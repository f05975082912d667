'use strict';
// index.html: all features in a sortable, searchable table, and the density histogram.
(function () {
  if (!IF.requireData(['VOCAB', 'INDEX'])) return;
  var D = window.INDEX, M = D.meta, el = IF.el, PAGE = 100;
  var rows = D.n_fire.map(function (n, i) {
    var density = n / M.n_tokens;
    var toks = D.top_tokens[i].map(IF.tokenLabel), logits = D.top_logits[i].map(IF.tokenLabel);
    return {id: i, n: n, density: density, max: D.max[i], mean: D.mean[i], toks: D.top_tokens[i],
      logits: D.top_logits[i], cls: n === 0 ? 'dead' : density < M.ultralow ? 'ultralow' : 'alive',
      hay: (toks.join('\u0001') + '\u0002' + logits.join('\u0001')).toLowerCase()};
  });
  var count = {dead: 0, ultralow: 0, alive: 0};
  rows.forEach(function (r) { count[r.cls]++; });
  var state = {q: '', cls: 'all', key: 'id', dir: 1, page: 0, range: null};

  document.getElementById('meta').textContent = M.site + ' \u00B7 ' + M.n_features + ' features \u00B7 ' +
    M.n_tokens.toLocaleString() + ' tokens of ' + M.split;
  var stats = document.getElementById('stats');
  stats.appendChild(el('span', {}, [M.n_features + ' features: ' + count.alive + ' alive, ']));
  stats.appendChild(el('a', {href: '#dead', id: 'deadlink'}, [count.dead + ' dead']));
  stats.appendChild(el('span', {}, [', ']));
  stats.appendChild(el('a', {href: '#ultralow', id: 'ultralink'}, [count.ultralow + ' ultralow']));
  stats.appendChild(el('span', {}, [' (density < ' + IF.fmt(M.ultralow, 0) + ') over ' + M.n_tokens.toLocaleString() +
    ' tokens (' + M.n_contexts + ' contexts \u00D7 ' + M.context_length + ')']));

  // density histogram: log10 bins of width 0.25 from the rarest alive feature to 1, plus a bar for dead ones
  (function () {
    var alive = rows.filter(function (r) { return r.n > 0; });
    var lo = Math.min(Math.floor(Math.log10(Math.min(M.ultralow, 1 / M.n_tokens))), -1);
    alive.forEach(function (r) { lo = Math.min(lo, Math.floor(Math.log10(r.density))); });
    var bw = 0.25, nb = Math.round((0 - lo) / bw) + 1;  // the first bar is "dead"
    var counts = new Array(nb).fill(0);
    counts[0] = count.dead;
    alive.forEach(function (r) {
      counts[Math.min(nb - 1, 1 + Math.floor((Math.log10(r.density) - lo) / bw))]++;
    });
    var x0 = lo - bw, hist = IF.histogram(counts, {
      lo: x0, hi: 0, width: 720, height: 170, logy: false, xlabel: 'log10 density (first bar: dead)',
      color: function (i) { return i === 0 ? '#888' : (lo + (i - 1) * bw < Math.log10(M.ultralow) ? '#d9a400' : '#4a78c2'); },
      titles: function (i) {
        return i === 0 ? count.dead + ' dead features' : counts[i] + ' features with log10 density in [' +
          (lo + (i - 1) * bw).toFixed(2) + ', ' + (lo + i * bw).toFixed(2) + ')';
      },
      ticks: [x0].concat(Array.from({length: -lo + 1}, function (_, k) { return lo + k; })),
      tickLabel: function (x) { return x === x0 ? 'dead' : String(x); },
      marks: [{x: Math.log10(M.ultralow), label: 'ultralow'}],
      onclick: function (i) {
        state.range = i === 0 ? null : [lo + (i - 1) * bw, lo + i * bw];
        state.cls = i === 0 ? 'dead' : 'all';
        state.page = 0;
        sync();
      }
    });
    document.getElementById('dens').appendChild(hist);
  })();

  var q = document.getElementById('q'), cls = document.getElementById('cls');
  q.addEventListener('input', function () { state.q = q.value.trim(); state.page = 0; render(); });
  cls.addEventListener('change', function () { state.cls = cls.value; state.page = 0; state.range = null; render(); });
  document.getElementById('prev').addEventListener('click', function () { state.page = Math.max(0, state.page - 1); render(); });
  document.getElementById('next').addEventListener('click', function () { state.page++; render(); });
  document.getElementById('random').addEventListener('click', function () {
    var alive = rows.filter(function (r) { return r.n > 0; });
    var pick = alive.length ? alive : rows;
    location.href = 'feature.html?f=' + pick[Math.floor(Math.random() * pick.length)].id;
  });
  Array.prototype.forEach.call(document.querySelectorAll('th.sortable'), function (th) {
    th.addEventListener('click', function () {
      var k = th.getAttribute('data-key');
      state.dir = state.key === k ? -state.dir : (k === 'id' ? 1 : -1);
      state.key = k;
      state.page = 0;
      render();
    });
  });
  window.addEventListener('hashchange', fromHash);

  function fromHash() {
    var h = location.hash.replace('#', '');
    if (h === 'dead' || h === 'ultralow' || h === 'alive' || h === 'all') {  // a list: the whole class, no search
      state.cls = h;
      state.range = null;
      state.page = 0;
      state.q = q.value = '';
    }
    sync();
  }
  function sync() { cls.value = state.cls; render(); }

  function filtered() {
    var s = state.q.toLowerCase(), idm = /^#?(\d+)$/.exec(s);
    return rows.filter(function (r) {
      if (state.cls !== 'all' && r.cls !== state.cls) return false;
      if (state.range && !(r.n > 0 && Math.log10(r.density) >= state.range[0] && Math.log10(r.density) < state.range[1])) return false;
      if (!s) return true;
      if (idm && s[0] === '#') return r.id === +idm[1];
      return r.hay.indexOf(s) >= 0 || (idm !== null && String(r.id) === idm[1]);
    });
  }

  function render() {
    var list = filtered(), k = state.key, d = state.dir;
    list.sort(function (a, b) { return a[k] === b[k] ? a.id - b.id : (a[k] < b[k] ? -d : d); });
    var pages = Math.max(1, Math.ceil(list.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var shown = list.slice(state.page * PAGE, (state.page + 1) * PAGE);
    var tbody = document.querySelector('#table tbody');
    tbody.textContent = '';
    shown.forEach(function (r) {
      tbody.appendChild(el('tr', {className: r.cls, 'data-id': r.id}, [
        el('td', {}, [IF.featureLink(r.id)]),
        el('td', {className: 'num', title: r.n + ' firings'}, [r.n ? IF.fmtDensity(r.density) : 'dead']),
        el('td', {className: 'num'}, [IF.fmt(r.max, 3)]),
        el('td', {className: 'num'}, [IF.fmt(r.mean, 3)]),
        el('td', {}, r.toks.map(function (t) { return IF.chip(t); })),
        el('td', {}, r.logits.map(function (t) { return IF.chip(t); }))]));
    });
    Array.prototype.forEach.call(document.querySelectorAll('th.sortable'), function (th) {
      th.className = 'sortable' + (th.getAttribute('data-key') === k ? (d > 0 ? ' asc' : ' desc') : '');
    });
    document.getElementById('range').textContent = state.range ?
      'log10 density in [' + state.range[0].toFixed(2) + ', ' + state.range[1].toFixed(2) + ')' : '';
    document.getElementById('count').textContent = list.length ? 'features ' + (state.page * PAGE + 1) + '\u2013' +
      (state.page * PAGE + shown.length) + ' of ' + list.length : 'no feature matches';
  }

  fromHash();
  IF.ready();
})();
