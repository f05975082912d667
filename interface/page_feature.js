'use strict';
// feature.html?f=ID: loads features/NNNN.js (a <script src>, so it works from file://; NNNN = ID / 64), which
// calls loadFeatures([...]) with the data of 64 features, and draws every panel of feature ID.
(function () {
  if (!IF.requireData(['VOCAB', 'INDEX'])) return;
  var M = window.INDEX.meta, el = IF.el, main = document.getElementById('main');
  var raw = IF.param('f');
  if (raw === null && /^#\d+$/.test(location.hash)) raw = location.hash.slice(1);
  var id = raw === null ? 0 : parseInt(raw, 10);
  if (!(id >= 0 && id < M.n_features)) {
    main.appendChild(el('p', {className: 'error'}, ['No feature ' + raw + ' (there are ' + M.n_features + ').']));
    IF.ready();
    return;
  }
  document.title = 'Feature ' + id;
  document.getElementById('title').textContent = 'Feature #' + id;
  document.getElementById('prevf').href = 'feature.html?f=' + Math.max(0, id - 1);
  document.getElementById('nextf').href = 'feature.html?f=' + Math.min(M.n_features - 1, id + 1);
  document.getElementById('randf').addEventListener('click', function (e) {
    e.preventDefault();
    var alive = [];
    window.INDEX.n_fire.forEach(function (n, i) { if (n > 0) alive.push(i); });
    location.href = 'feature.html?f=' + (alive.length ? alive[Math.floor(Math.random() * alive.length)] : 0);
  });
  document.getElementById('go').addEventListener('submit', function (e) {
    e.preventDefault();
    var v = document.getElementById('goid').value;
    if (v !== '') location.href = 'feature.html?f=' + v;
  });

  function label(f) {  // a neighbour's name: its id and the tokens it fires on most
    var t = window.INDEX.top_tokens[f] || [];
    return t.length ? t.map(IF.tokenLabel).join(' ') : (window.INDEX.n_fire[f] ? '' : '(dead)');
  }

  function panel(title, children, id) {
    return el('section', {className: 'panel', id: id}, [el('h2', {}, [title])].concat(children));
  }

  var COLORS = ['#fde0c5', '#fcd3ad', '#fbc695', '#fab97d', '#f9ac66', '#f89f4e', '#f69237', '#f0851f', '#e27712',
    '#d26a0c', '#c05d08', '#ad5005'];
  function intervalColor(j, n) { return COLORS[Math.min(COLORS.length - 1, Math.floor(j * COLORS.length / n))]; }

  window.loadFeatures = function (list) {
    var d = list.filter(function (x) { return x.id === id; })[0];
    if (!d) {
      main.appendChild(el('p', {className: 'error'}, ['Feature ' + id + ' is missing from ' + file + '.']));
      IF.ready();
      return;
    }
    render(d);
  };

  function render(d) {
    var n = M.n_intervals, maxAct = d.max;
    var effScale = 1e-9;
    var shown = d.top.slice();
    d.intervals.forEach(function (iv) { shown = shown.concat(iv.samples); });
    shown.forEach(function (w) { w.e.forEach(function (x) { effScale = Math.max(effScale, Math.abs(x)); }); });
    var cls = d.n_fire === 0 ? 'dead' : d.density < M.ultralow ? 'ultralow' : 'alive';

    main.appendChild(el('div', {className: 'panel stats', id: 'summary'}, [
      el('span', {}, ['density ' + IF.fmtDensity(d.density) + ' (' + d.n_fire + ' of ' +
        M.n_tokens.toLocaleString() + ' tokens)']),
      el('span', {}, ['max activation ' + IF.fmt(d.max, 3)]),
      el('span', {}, ['mean activation ' + IF.fmt(d.mean, 3)]),
      el('span', {className: cls === 'alive' ? '' : 'error'}, [cls]),
      el('span', {className: 'muted'}, [M.site + ', ' + M.architecture])]));

    // activation histogram, bars coloured by interval
    var H = d.hist.length;
    var hist = IF.histogram(d.hist, {lo: 0, hi: d.max || 1, width: 520, height: 160, xlabel: 'activation',
      ylabel: 'tokens', color: function (i) { return intervalColor(Math.floor(i * n / H), n); },
      titles: function (i) { return d.hist[i] + ' tokens with activation in [' + IF.fmt(d.max * i / H, 3) + ', ' +
        IF.fmt(d.max * (i + 1) / H, 3) + ')'; }});
    var logitHist = IF.histogram(d.logits.hist, {lo: d.logits.lo, hi: d.logits.hi, width: 420, height: 160,
      xlabel: 'logit weight', ylabel: 'tokens', logy: true, color: function () { return '#7a8fb8'; },
      titles: function (i) { return d.logits.hist[i] + ' tokens'; }});
    main.appendChild(el('div', {className: 'row'}, [
      panel('Activation histogram', [hist, el('div', {className: 'muted'}, ['Over the ' + d.n_fire +
        ' tokens where the feature fires; colours mark the ' + n + ' intervals below.'])], 'acthist'),
      panel('Logit weights', [logitTable(d.logits), logitHist, el('div', {className: 'muted'},
        ['Decoder direction \u2192 MLP output \u2192 final LayerNorm (linearised) \u2192 unembedding; log-scaled counts.'])],
        'logits')]));

    main.appendChild(panel('Fires most on', [el('div', {}, d.top_tokens.length ? d.top_tokens.map(function (tc) {
      return el('span', {}, [IF.chip(tc[0], tc[1] + ' firings'), el('span', {className: 'muted'}, [String(tc[1])])]);
    }) : ['(never fired)'])], 'toptokens'));

    var legend = el('div', {className: 'legend'}, [
      'Background: activation (darker = higher, relative to the max ' + IF.fmt(d.max, 3) + '). ',
      M.ablation === 'none' ? 'Ablation effects were not computed.' : 'Underline: the feature\'s effect on the log-prob of that token (clean \u2212 feature ablated):',
      M.ablation === 'none' ? null : el('span', {className: 'sw', style: {background: IF.effColor(1, 1)}}),
      M.ablation === 'none' ? null : 'raises it',
      M.ablation === 'none' ? null : el('span', {className: 'sw', style: {background: IF.effColor(-1, 1)}}),
      M.ablation === 'none' ? null : 'lowers it (largest shown: ' + IF.fmt(effScale, 3) + ' nats). Hover a token for numbers.']);

    var top = el('div', {}, d.top.length ? d.top.map(function (w) { return IF.renderWindow(w, maxAct, effScale); })
      : [el('div', {className: 'muted'}, ['No activations.'])]);
    main.appendChild(panel('Top activations (one per context)', [legend, top], 'top'));

    var ivs = el('div', {});
    for (var j = n - 1; j >= 0; j--) {
      var iv = d.intervals[j];
      if (!iv.n) continue;
      var samples = iv.samples.slice().sort(function (a, b) { return b.a - a.a; });
      ivs.appendChild(el('h3', {}, [el('span', {className: 'sw', style: {background: intervalColor(j, n), display: 'inline-block',
        width: '12px', height: '10px', marginRight: '6px'}}), 'Interval ' + (j + 1) + ': activation in [' + IF.fmt(iv.lo, 3) +
        ', ' + IF.fmt(iv.hi, 3) + (j === n - 1 ? ']' : ')') + ' \u2014 ' + IF.pct(iv.share) + ' of activations (' + iv.n + ')']));
      samples.forEach(function (w) { ivs.appendChild(IF.renderWindow(w, maxAct, effScale)); });
    }
    main.appendChild(panel('Random samples from ' + n + ' equal-width activation intervals', [ivs], 'intervals'));

    main.appendChild(el('div', {className: 'row'}, [
      panel('Nearest features by decoder cosine', [neighbourTable(d.cos, ['cosine'])], 'cos'),
      panel('Most co-activating features', [d.coact.length ? neighbourTable(d.coact, ['score', 'P(j | this)']) :
        el('div', {className: 'muted'}, ['None in the ' + M.coact_tokens.toLocaleString() + ' tokens counted.']),
        el('div', {className: 'muted'}, ['score = n(both) / \u221A(n(this)\u00B7n(j)), over the first ' +
          M.coact_tokens.toLocaleString() + ' tokens.'])], 'coact')]));
    IF.ready();
  }

  function logitTable(L) {
    var rows = [];
    for (var i = 0; i < Math.max(L.pos.length, L.neg.length); i++) {
      rows.push(el('tr', {}, [
        el('td', {}, L.neg[i] ? [IF.chip(L.neg[i][0])] : []), el('td', {className: 'num'}, L.neg[i] ? [IF.fmt(L.neg[i][1], 3)] : []),
        el('td', {}, L.pos[i] ? [IF.chip(L.pos[i][0])] : []), el('td', {className: 'num'}, L.pos[i] ? [IF.fmt(L.pos[i][1], 3)] : [])]));
    }
    return el('table', {}, [el('thead', {}, [el('tr', {}, [el('th', {}, ['negative']), el('th', {}, ['']),
      el('th', {}, ['positive']), el('th', {}, [''])])]), el('tbody', {}, rows)]);
  }

  function neighbourTable(list, cols) {
    return el('table', {}, [el('thead', {}, [el('tr', {}, [el('th', {}, ['feature'])].concat(cols.map(function (c) {
      return el('th', {}, [c]);
    })).concat([el('th', {}, ['fires most on'])]))]), el('tbody', {}, list.map(function (r) {
      return el('tr', {}, [el('td', {}, [IF.featureLink(r[0])])].concat(r.slice(1).map(function (x) {
        return el('td', {className: 'num'}, [IF.fmt(x, 3)]);
      })).concat([el('td', {}, [label(r[0])])]));
    }))]);
  }

  var file = 'features/' + String(Math.floor(id / M.features_per_file)).padStart(4, '0') + '.js';
  IF.loadScript(file, function () {
    main.appendChild(el('p', {className: 'error'}, ['Could not load ' + file + ': rebuild with build_interface.py.']));
    IF.ready();
  });
})();
