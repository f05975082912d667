'use strict';
// Loaded first by every page: uncaught errors, failed loads (a missing data file) and console.error calls are
// collected in window.__errors, which tests/test_browser.py reads.
window.__errors = [];
window.addEventListener('error', (e) => {
  const src = e.target && (e.target.src || e.target.href);
  window.__errors.push(e.message || (src ? `failed to load ${src}` : String(e)));
}, true);  // capture: load errors of <script> and <link> elements do not bubble
const consoleError = console.error;
console.error = (...args) => {
  window.__errors.push(args.join(' '));
  consoleError.apply(console, args);
};
