// pollwatch console: the live board and its acknowledge/resolve buttons.
// Pages work without this script; it adds what needs one. No dependencies.
'use strict';
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : '';

  // State changes go through the JSON API; the session cookie authenticates and
  // the CSRF header proves the request came from our own page.
  async function act(id, what, note) {
    const r = await fetch('/api/v1/alerts/' + encodeURIComponent(id) + '/' + what, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ note: note }),
    });
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.json();
  }

  // A live region: #board or #overview, refetched from its data-src when the
  // event stream's mark changes (and every data-every seconds, if set).
  const board = document.getElementById('board');
  const region = board || document.getElementById('overview');
  let refresh = null;
  if (region) {
    const live = document.getElementById('live');
    let mark = region.dataset.mark;
    let busy = false;
    let again = false;
    refresh = async function () {
      if (busy) { again = true; return; }
      busy = true;
      try {
        const r = await fetch(region.dataset.src, { credentials: 'same-origin' });
        if (r.redirected || r.status === 401) { window.location.href = '/login'; return; }
        if (r.ok) {
          region.innerHTML = await r.text();
          region.dataset.refreshed = String(Date.now());
        }
      } catch (e) {
        live.textContent = '实时更新：刷新失败，稍后重试';
      } finally {
        busy = false;
        if (again) { again = false; refresh(); }
      }
    };
    const connected = function () {
      live.textContent = '实时更新：已连接';
      live.className = 'live ok';
    };
    const events = new EventSource('/console/events');
    events.onopen = connected;
    events.addEventListener('board', function (ev) {
      connected();
      if (ev.data !== mark) { mark = ev.data; refresh(); }
    });
    events.onerror = function () {
      live.textContent = '实时更新：连接中断，正在重连…';
      live.className = 'live down';
    };
    window.addEventListener('pagehide', function () { events.close(); });
    const every = Number(region.dataset.every || 0);
    if (every > 0) setInterval(refresh, every * 1000);
  }

  if (board) {
    board.addEventListener('click', async function (ev) {
      const b = ev.target.closest('button[data-act]');
      if (!b) return;
      const what = b.dataset.act;
      const note = window.prompt(what === 'ack' ? '确认备注（可留空）：' : '解除备注（处置情况）：', '');
      if (note === null) return;
      b.disabled = true;
      try {
        await act(b.dataset.id, what, note);
        await refresh();
      } catch (e) {
        window.alert('操作失败：' + e.message);
        b.disabled = false;
      }
    });

    const filters = document.getElementById('filters');
    if (filters) filters.addEventListener('change', function () { filters.submit(); });
  }

  // The alert page's form posts without help; only guard against double clicks.
  const form = document.getElementById('act-form');
  if (form) {
    form.addEventListener('submit', function () {
      setTimeout(function () { form.querySelectorAll('button').forEach(function (b) { b.disabled = true; }); }, 0);
    });
  }

  const chart = document.getElementById('chart');
  if (chart) {
    const failed = function () {
      const p = document.createElement('p');
      p.className = 'problem';
      p.textContent = '证据图暂时无法生成。';
      chart.replaceWith(p);
    };
    // It may have failed before this script ran.
    if (chart.complete && chart.naturalWidth === 0) failed();
    else chart.addEventListener('error', failed);
  }

  // Cluster mode: a footer naming the node that served the page and the
  // leader (who judges and notifies). A single node says {"cluster": false}: no footer.
  if (meta) {
    fetch('/api/v1/cluster', { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (c) {
        if (!c || c.cluster === false) return;
        const f = document.createElement('footer');
        f.className = 'cluster';
        const leader = c.leader
          ? '主节点 ' + c.leader.node + '（自 ' + new Date(c.leader.since).toLocaleString('zh-CN') + '）'
          : '暂无主节点';
        f.textContent = '本页由节点 ' + c.node + ' 提供 · ' + leader;
        document.body.appendChild(f);
      })
      .catch(function () { /* the footer is a courtesy */ });
  }
})();
