'use strict';
// Shared by index.html, feature.html and examples.html. Data comes from data/*.js and features/f*.js,
// loaded with <script src> (works from file://; fetch() of local files does not). Every token is put on the
// page with textContent, never as HTML.
var IF = (function () {
  var encoder = new TextEncoder();

  // ------------------------------------------------------------------ tokens
  // VOCAB[id] is the token's text when its bytes are valid UTF-8, else an array of its byte values.
  function tokBytes(id) {
    var v = window.VOCAB[id];
    if (v === undefined) return encoder.encode('\u27E8' + id + '\u27E9');
    return typeof v === 'string' ? encoder.encode(v) : Uint8Array.from(v);
  }

  function hex(b) { return '\\x' + (b < 16 ? '0' : '') + b.toString(16); }

  // Split UTF-8 bytes into characters {a, b (byte range), s (text)}; an invalid or cut-off byte becomes
  // its own character shown escaped, e.g. ‹\xe2›.
  function utf8Chars(bytes) {
    var out = [], i = 0, n = bytes.length;
    while (i < n) {
      var b = bytes[i];
      var len = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
      var ok = len > 0 && i + len <= n;
      for (var k = 1; ok && k < len; k++) ok = (bytes[i + k] & 0xC0) === 0x80;
      if (ok && len >= 3) {
        var c2 = bytes[i + 1];
        if ((b === 0xE0 && c2 < 0xA0) || (b === 0xED && c2 > 0x9F) || (b === 0xF0 && c2 < 0x90) || (b === 0xF4 && c2 > 0x8F)) ok = false;
      }
      if (ok) {
        var cp = len === 1 ? b : len === 2 ? b & 0x1F : len === 3 ? b & 0x0F : b & 0x07;
        for (k = 1; k < len; k++) cp = (cp << 6) | (bytes[i + k] & 0x3F);
        out.push({a: i, b: i + len, s: String.fromCodePoint(cp)});
        i += len;
      } else {
        out.push({a: i, b: i + 1, s: '\u2039' + hex(b) + '\u203A', bad: true});
        i += 1;
      }
    }
    return out;
  }

  // Texts of a run of tokens: a character split over several byte-level tokens is shown whole on the token
  // that completes it; the tokens holding only its first bytes show those bytes escaped (partial: true).
  function tokenTexts(ids) {
    var i, allStr = true;
    for (i = 0; i < ids.length; i++) if (typeof window.VOCAB[ids[i]] !== 'string') { allStr = false; break; }
    if (allStr) return ids.map(function (id) { return {text: window.VOCAB[id], partial: false}; });
    var parts = ids.map(tokBytes), starts = [], total = 0;
    parts.forEach(function (p) { starts.push(total); total += p.length; });
    var all = new Uint8Array(total);
    parts.forEach(function (p, j) { all.set(p, starts[j]); });
    var out = ids.map(function () { return {text: '', partial: false}; });
    var t = 0;
    utf8Chars(all).forEach(function (ch) {
      while (t + 1 < ids.length && starts[t + 1] <= ch.b - 1) t++;
      out[t].text += ch.s;
    });
    out.forEach(function (o, j) {
      if (o.text === '' && parts[j].length) {
        o.text = Array.prototype.map.call(parts[j], function (b) { return '\u2039' + hex(b) + '\u203A'; }).join('');
        o.partial = true;
      }
    });
    return out;
  }

  // Make whitespace and control characters visible: newline ⏎, tab ⇥, other control characters escaped
  // (‹\x0d›); spaces as · in chips (single tokens) and in tokens that are only spaces.
  function visible(s, chip) {
    var r = '', onlySpaces = /^ +$/.test(s);
    for (var ch of s) {
      var c = ch.codePointAt(0);
      if (ch === '\n') r += '\u23CE';
      else if (ch === '\t') r += '\u21E5';
      else if (ch === ' ' && (chip || onlySpaces)) r += '\u00B7';
      else if (c < 32 || c === 127 || (c >= 0x80 && c < 0xA0)) r += '\u2039' + hex(c) + '\u203A';
      else r += ch;
    }
    return r === '' ? '\u2205' : r;
  }

  function tokenLabel(id) { return visible(tokenTexts([id])[0].text, true); }

  // ------------------------------------------------------------------ DOM (textContent only)
  function el(tag, props, children) {
    var e = document.createElement(tag);
    props = props || {};
    Object.keys(props).forEach(function (k) {
      var v = props[k];
      if (k === 'text') e.textContent = v;
      else if (k === 'className') e.className = v;
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else if (k === 'style') Object.assign(e.style, v);
      else e.setAttribute(k, v);
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    });
    return e;
  }

  function chip(id, extra) {
    return el('span', {className: 'chip', title: 'token ' + id + (extra ? ' \u00B7 ' + extra : '')}, [tokenLabel(id)]);
  }

  function featureLink(f, label) {
    return el('a', {href: 'feature.html?f=' + f, className: 'flink'}, [label === undefined ? '#' + f : label]);
  }

  // ------------------------------------------------------------------ numbers, colours
  function fmt(x, d) {
    if (x === null || x === undefined || isNaN(x)) return '';
    if (x === 0) return '0';
    var a = Math.abs(x);
    if (a >= 1e4 || a < 1e-3) return x.toExponential(d === undefined ? 2 : d);
    return x.toFixed(d === undefined ? 3 : d);
  }
  function pct(x) { return fmt(100 * x, 2) + '%'; }
  function fmtDensity(x) { return x === 0 ? '0' : x >= 0.01 ? x.toFixed(3) : x.toExponential(2); }
  function actColor(a, max) {
    if (!(a > 0) || !(max > 0)) return '';
    return 'rgba(255,140,0,' + Math.min(1, 0.12 + 0.88 * a / max).toFixed(3) + ')';
  }
  function effColor(e, scale) {
    if (!e || !(scale > 0)) return '';
    var alpha = Math.min(1, 0.25 + 0.75 * Math.abs(e) / scale).toFixed(3);
    return e > 0 ? 'rgba(30,90,255,' + alpha + ')' : 'rgba(230,30,30,' + alpha + ')';
  }

  // ------------------------------------------------------------------ a context window
  // w = {c: context, p: position of the example token, a: its activation, s: position of the first token,
  //      t: token ids (positions s..s+len(v)), v: activations, e: effect of the feature at each position on
  //      the log-prob of the next token (clean - ablated)}
  function renderWindow(w, maxAct, effScale) {
    var texts = tokenTexts(w.t), row = el('div', {className: 'win'});
    row.appendChild(el('span', {className: 'wact', title: 'context ' + w.c + ', position ' + w.p}, [fmt(w.a, 3)]));
    var line = el('span', {className: 'wtoks'});
    for (var j = 0; j < w.t.length; j++) {
      var act = j < w.v.length ? w.v[j] : null, eff = j > 0 ? w.e[j - 1] : 0;
      var cls = 'tok' + (texts[j].partial ? ' partial' : '') + (w.s + j === w.p ? ' center' : '') +
        (act === null ? ' after' : '');
      var tip = 'position ' + (w.s + j) + (act === null ? ' (next token)' : ' \u00B7 activation ' + fmt(act, 3));
      if (j > 0) tip += ' \u00B7 feature effect on log p(this token): ' + (eff > 0 ? '+' : '') + fmt(eff, 4) +
        ' (\u0394 when ablated ' + (eff > 0 ? '' : '+') + fmt(-eff, 4) + ')';
      var span = el('span', {className: cls, title: tip, 'data-act': act === null ? '' : act, 'data-eff': eff},
        [visible(texts[j].text, false)]);
      var bg = act === null ? '' : actColor(act, maxAct);
      if (bg) span.style.backgroundColor = bg;
      var ec = effColor(eff, effScale);
      if (ec) span.style.borderBottom = '3px solid ' + ec;
      line.appendChild(span);
    }
    row.appendChild(line);
    return row;
  }

  // ------------------------------------------------------------------ SVG histograms
  var SVG = 'http://www.w3.org/2000/svg';
  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // counts: bar heights; opts: {lo, hi (x range), width, height, color(i), logy, xlabel, ylabel, ticks:[x],
  //        marks:[{x, label}], titles(i) -> tooltip, onclick(i)}
  function histogram(counts, opts) {
    var W = opts.width || 480, H = opts.height || 150, ml = 44, mr = 22, mt = 8, mb = 34;
    var iw = W - ml - mr, ih = H - mt - mb, n = counts.length;
    var svg = svgEl('svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, class: 'hist'});
    var tr = function (c) { return opts.logy ? (c > 0 ? Math.log10(c) + 1 : 0) : c; };
    var top = Math.max.apply(null, counts.map(tr).concat([1e-9]));
    var xOf = function (x) { return ml + iw * (x - opts.lo) / ((opts.hi - opts.lo) || 1); };
    counts.forEach(function (c, i) {
      var h = ih * tr(c) / top, bw = iw / n;
      var r = svgEl('rect', {x: ml + i * bw + 0.5, y: mt + ih - h, width: Math.max(bw - 1, 0.5), height: h,
        fill: opts.color ? opts.color(i) : '#4a78c2'});
      if (opts.titles) r.appendChild(svgEl('title', {}, opts.titles(i)));
      if (opts.onclick) { r.style.cursor = 'pointer'; r.addEventListener('click', function () { opts.onclick(i); }); }
      svg.appendChild(r);
    });
    svg.appendChild(svgEl('line', {x1: ml, y1: mt + ih, x2: ml + iw, y2: mt + ih, stroke: '#555'}));
    svg.appendChild(svgEl('line', {x1: ml, y1: mt, x2: ml, y2: mt + ih, stroke: '#555'}));
    (opts.ticks || [opts.lo, (opts.lo + opts.hi) / 2, opts.hi]).forEach(function (x) {
      svg.appendChild(svgEl('text', {x: xOf(x), y: mt + ih + 13, 'text-anchor': 'middle', class: 'tick'},
        opts.tickLabel ? opts.tickLabel(x) : fmt(x, 2)));
    });
    var maxCount = Math.max.apply(null, counts.concat([0]));
    svg.appendChild(svgEl('text', {x: ml - 4, y: mt + 8, 'text-anchor': 'end', class: 'tick'}, String(maxCount)));
    svg.appendChild(svgEl('text', {x: ml - 4, y: mt + ih, 'text-anchor': 'end', class: 'tick'}, '0'));
    if (opts.xlabel) svg.appendChild(svgEl('text', {x: ml + iw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis'}, opts.xlabel));
    if (opts.ylabel) svg.appendChild(svgEl('text', {x: 10, y: mt + ih / 2, 'text-anchor': 'middle', class: 'axis',
      transform: 'rotate(-90 10 ' + (mt + ih / 2) + ')'}, opts.ylabel));
    (opts.marks || []).forEach(function (m) {
      var x = xOf(m.x);
      svg.appendChild(svgEl('line', {x1: x, y1: mt, x2: x, y2: mt + ih, stroke: m.color || '#c00', 'stroke-dasharray': '4 3'}));
      svg.appendChild(svgEl('text', {x: x + 3, y: mt + 10, class: 'mark', fill: m.color || '#c00'}, m.label));
    });
    return svg;
  }

  // ------------------------------------------------------------------ loading
  function loadScript(src, onerror) {
    var s = document.createElement('script');
    s.src = src;
    s.onerror = function () {
      if (onerror) onerror(src);
    };
    document.head.appendChild(s);
  }

  function requireData(names) {
    var missing = names.filter(function (n) { return window[n] === undefined; });
    if (!missing.length) return true;
    document.body.appendChild(el('p', {className: 'error'}, ['Data files missing (' + missing.join(', ') +
      '): run build_interface.py to build this site.']));
    return false;
  }

  function param(name) {
    var m = new RegExp('[?&#]' + name + '=([^&#]*)').exec(location.search + location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function ready() { document.body.setAttribute('data-ready', '1'); }

  return {tokenTexts: tokenTexts, tokenLabel: tokenLabel, visible: visible, utf8Chars: utf8Chars, el: el,
    chip: chip, featureLink: featureLink, fmt: fmt, pct: pct, fmtDensity: fmtDensity, actColor: actColor, effColor: effColor,
    renderWindow: renderWindow, histogram: histogram, loadScript: loadScript, requireData: requireData,
    param: param, ready: ready};
})();
