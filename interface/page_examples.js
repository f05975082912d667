'use strict';
// examples.html: validation texts; click a token to list the features active on it, click a feature to colour
// every text by that feature's activation (Anthropic's "activations on example texts").
(function () {
  if (!IF.requireData(['VOCAB', 'INDEX', 'EXAMPLES'])) return;
  var el = IF.el, X = window.EXAMPLES, side = document.getElementById('side'), box = document.getElementById('texts');
  var spans = [], selected = null, selTok = null;

  X.forEach(function (ex, ti) {
    var texts = IF.tokenTexts(ex.toks), div = el('div', {className: 'ex-text', id: 'text' + ti});
    spans.push([]);
    ex.toks.forEach(function (tok, j) {
      var t = texts[j].text, s = el('span', {className: 'tok' + (texts[j].partial ? ' partial' : ''),
        'data-text': ti, 'data-pos': j, title: 'token ' + tok + ' \u00B7 ' + (ex.feats[j].length / 2) + ' features active'},
        [IF.visible(t, false)]);
      s.addEventListener('click', function () { showToken(ti, j); });
      div.appendChild(s);
      if (t.indexOf('\n') >= 0) div.appendChild(document.createTextNode('\n'));  // ⏎ and a real line break
      spans[ti].push(s);
    });
    box.appendChild(el('div', {className: 'muted'}, ['text ' + (ti + 1) + ' (tokens ' + ex.start + '\u2013' +
      (ex.start + ex.toks.length - 1) + ' of ' + window.INDEX.meta.split + ')']));
    box.appendChild(div);
  });

  function label(f) {
    return (window.INDEX.top_tokens[f] || []).map(IF.tokenLabel).join(' ');
  }

  function showToken(ti, j) {
    if (selTok) selTok.classList.remove('sel');
    selTok = spans[ti][j];
    selTok.classList.add('sel');
    var pairs = X[ti].feats[j], rows = [];
    for (var k = 0; k < pairs.length; k += 2) rows.push([pairs[k], pairs[k + 1]]);
    side.textContent = '';
    side.appendChild(el('h2', {}, ['Token ', IF.chip(X[ti].toks[j]), ' (text ' + (ti + 1) + ', position ' + j + ')']));
    side.appendChild(el('div', {className: 'muted'}, [rows.length + ' active feature' + (rows.length === 1 ? '' : 's') +
      ' (strongest first). Click one to colour the texts.']));
    side.appendChild(el('table', {className: 'flist'}, [el('tbody', {}, rows.map(function (r) {
      var tr = el('tr', {className: r[0] === selected ? 'on' : '', 'data-feature': r[0]}, [
        el('td', {}, [IF.featureLink(r[0])]), el('td', {className: 'num'}, [IF.fmt(r[1], 3)]),
        el('td', {}, [label(r[0])])]);
      tr.addEventListener('click', function (e) {
        if (e.target.tagName === 'A') return;
        select(r[0]);
        Array.prototype.forEach.call(side.querySelectorAll('tr'), function (x) {
          x.className = +x.getAttribute('data-feature') === selected ? 'on' : '';
        });
      });
      return tr;
    }))]));
  }

  function select(f) {
    selected = f;
    var max = 0, acts = X.map(function (ex) {
      return ex.feats.map(function (pairs) {
        for (var k = 0; k < pairs.length; k += 2) if (pairs[k] === f) return pairs[k + 1];
        return 0;
      });
    });
    acts.forEach(function (a) { a.forEach(function (v) { max = Math.max(max, v); }); });
    acts.forEach(function (a, ti) {
      a.forEach(function (v, j) {
        var s = spans[ti][j];
        s.style.backgroundColor = IF.actColor(v, max);
        s.setAttribute('data-act', v);
        s.title = 'token ' + X[ti].toks[j] + ' \u00B7 feature ' + f + ' activation ' + IF.fmt(v, 3);
      });
    });
    var info = document.getElementById('selinfo');
    info.textContent = '';
    info.appendChild(el('span', {}, ['coloured by ', IF.featureLink(f, 'feature #' + f), ' (max here ' + IF.fmt(max, 3) + ')']));
  }

  document.getElementById('go').addEventListener('submit', function (e) {
    e.preventDefault();
    var v = parseInt(document.getElementById('goid').value, 10);
    if (v >= 0 && v < window.INDEX.meta.n_features) select(v);
  });
  var f0 = IF.param('f');
  if (f0 !== null) select(parseInt(f0, 10));
  IF.ready();
})();
