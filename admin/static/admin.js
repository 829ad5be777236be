// Tern admin: refreshes the live parts of a page in place and asks before an action. The
// pages are complete without it: the server draws everything, this only saves reloads.
(function () {
  'use strict';

  var seconds = parseInt(document.body.getAttribute('data-refresh') || '0', 10);
  var status = document.getElementById('live');
  var busy = false;

  function setStatus(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = 'live' + (cls ? ' ' + cls : '');
  }

  // refresh fetches the page again and swaps every element marked data-live for its new
  // version. Everything else (forms being typed in, the scroll position) stays as it is.
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(location.href, { cache: 'no-store', credentials: 'same-origin', headers: { 'X-Tern-Live': '1' } })
      .then(function (resp) {
        if (!resp.ok) {
          setStatus(resp.status === 404 ? 'gone' : 'error ' + resp.status, 'stale');
          return null;
        }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, 'text/html');
        document.querySelectorAll('[data-live]').forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
        setStatus('live', '');
      })
      .catch(function () { setStatus('offline', 'offline'); })
      .finally(function () { busy = false; });
  }

  if (seconds > 0) {
    setInterval(refresh, seconds * 1000);
    document.addEventListener('visibilitychange', function () { if (!document.hidden) refresh(); });
  }

  // An action form carries its question in data-confirm. Asking here spares the round trip
  // to the server's confirmation page, which is what the form gets without this script.
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    var question = form.getAttribute('data-confirm');
    if (!question) return;
    if (!window.confirm(question)) {
      ev.preventDefault();
      return;
    }
    var confirmed = form.querySelector('input[name=confirmed]');
    if (confirmed) confirmed.value = '1';
  });
})();
