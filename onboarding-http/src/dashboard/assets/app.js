// bulk-onboarding dashboard: plain JavaScript, no build step, no library.
// Every action goes through the public API with the signed-in key.
// Data from the API is only ever put in the page as text (textContent).
"use strict";

const API = (document.querySelector('meta[name="api-base"]') || {}).content || "";
const KEY = "onboarding.key";
const ADMIN = "onboarding.admin";
const HOUR = 3600;

// ---------- small DOM helpers (text only) ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = String(v);
    // Through the CSSOM: a style attribute would be inline style, which the CSP forbids.
    else if (k === "style") el.style.cssText = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (id) => document.getElementById(id);
function fmtTime(t) { return t ? new Date(t).toLocaleString() : "–"; }
function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const hh = Math.floor(seconds / 3600), mm = Math.floor((seconds % 3600) / 60), ss = seconds % 60;
  return hh ? `${hh}h ${mm}m` : mm ? `${mm}m ${ss}s` : `${ss}s`;
}
function duration(b) {
  const end = b.completed_at || b.cancelled_at;
  return ((end ? Date.parse(end) : Date.now()) - Date.parse(b.created_at)) / 1000;
}
function progress(percent) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  return h("div", { class: "progress" },
    h("div", { class: "track", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": p.toFixed(0), "aria-label": "Progress" },
      h("div", { class: "fill", style: `width:${p}%` })),
    h("span", { class: "pct", text: `${p.toFixed(p % 1 ? 1 : 0)} %` }));
}
function stateBadge(state) { return h("span", { class: `state state-${state}`, text: state }); }

// ---------- session ----------
function key() { return sessionStorage.getItem(KEY); }
function signOut(message) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ADMIN);
  stopView();
  if (tenantStream) { tenantStream.abort(); tenantStream = null; }
  series.length = 0;
  historyFinished = null;
  $("nav").hidden = true;
  $("view").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("api-key").value = "";
  $("api-key").focus();
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function request(path, options = {}, token = key(), admin = false) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    credentials: "omit",
    cache: "no-store",
    signal: options.signal,
  });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (res.status === 401 && !admin && token === key()) {
    signOut("Your API key is no longer accepted (revoked or expired). Sign in again.");
    throw new ApiError(401, body);
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}
const api = (path, options) => request(path, options);

// Server-Sent Events over fetch (an EventSource cannot send the Authorization header).
function stream(path, onEvent, signal) {
  const run = async () => {
    while (!signal.aborted) {
      try {
        const res = await fetch(API + path, {
          headers: { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" },
          credentials: "omit", cache: "no-store", signal,
        });
        if (res.status === 401) { signOut("Your API key is no longer accepted (revoked or expired). Sign in again."); return; }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        setLive(true);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
            }
            if (!data) continue;
            if (name === "unauthorized") { signOut("Your API key is no longer accepted (revoked or expired). Sign in again."); return; }
            let parsed = data;
            try { parsed = JSON.parse(data); } catch (_) { /* a plain-text event */ }
            onEvent(name, parsed);
          }
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, 2000));
    }
  };
  run();
}
function setLive(on) {
  const el = document.querySelector(".live");
  if (el) { el.textContent = on ? "● live" : "○ reconnecting…"; el.classList.toggle("off", !on); }
}

// ---------- the tenant's event stream, one per signed-in tab ----------
// It runs on every page, so the throughput chart has samples from the whole session.
let tenantStream = null;
const batchListeners = new Set();
const series = []; // {t, rate, depth, running}: the server's history (depth null), then `stats` events; the last hour
const BUCKET = 10; // seconds per bucket of the history
let historyFinished = null; // organizations finished in the loaded history (null: not loaded)
function startTenantStream() {
  if (tenantStream) return;
  tenantStream = new AbortController();
  loadHistory(tenantStream.signal);
  stream("/api/v1/events", (name, data) => {
    if (name === "batch") for (const listener of batchListeners) listener(data);
    else if (name === "stats") {
      const rate = data.interval_seconds > 0 ? data.finished / data.interval_seconds : 0;
      series.push({ t: Date.parse(data.at), rate, depth: data.queue_depth, running: data.running_batches });
      const cutoff = Date.now() - HOUR * 1000;
      while (series.length && series[0].t < cutoff) series.shift();
      for (const listener of batchListeners) listener(null);
    }
  }, tenantStream.signal);
}

// The last hour's finished organizations per bucket, counted by the server
// (GET /api/v1/throughput), so the chart does not start empty at sign-in.
async function loadHistory(signal) {
  try {
    const res = await api(`/api/v1/throughput?window=${HOUR}&bucket=${BUCKET}`, { signal });
    const width = res.bucket_seconds * 1000, until = Date.parse(res.until);
    const counts = new Map(res.buckets.map((b) => [Date.parse(b.start), b.completed + b.failed]));
    const points = [];
    // Every bucket up to now, empty ones as zero, each at its end (the current one: now).
    for (let start = Math.floor(Date.parse(res.since) / width) * width; start <= until; start += width) {
      points.push({ t: Math.min(start + width, until), rate: (counts.get(start) || 0) / res.bucket_seconds, depth: null, running: null });
    }
    historyFinished = [...counts.values()].reduce((a, n) => a + n, 0);
    // Live samples from before the history's end are in it; the later ones follow it.
    const later = series.filter((p) => p.t > until);
    series.splice(0, series.length, ...points, ...later);
    for (const listener of batchListeners) listener(null);
  } catch (e) { /* the live samples still come */ }
}

// ---------- views ----------
let viewController = null;
function stopView() { if (viewController) viewController.abort(); viewController = null; batchListeners.clear(); }

function route() {
  if (!key()) { signOut(""); return; }
  stopView();
  viewController = new AbortController();
  const signal = viewController.signal;
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  startTenantStream();
  const hash = location.hash || "#/batches";
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", hash.startsWith(a.getAttribute("href")));
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  const view = $("view");
  view.replaceChildren();
  let m;
  if ((m = hash.match(/^#\/batches\/([0-9a-fA-F-]{36})\/failures$/))) failuresView(view, m[1], signal);
  else if ((m = hash.match(/^#\/batches\/([0-9a-fA-F-]{36})$/))) batchView(view, m[1], signal);
  else if (hash === "#/webhooks") webhooksView(view, signal);
  else if (hash === "#/keys") keysView(view, signal);
  else batchesView(view, signal);
}

function errorLine(e) { return h("p", { class: "error", role: "alert", text: e.message || String(e) }); }

// Batches list with filters, paging, live updates and the throughput chart.
function batchesView(view, signal) {
  const filters = { state: "", created_after: "", limit: "20" };
  const cursors = [""];
  let page = 0, rows = new Map(), reloadTimer = null;
  const tbody = h("tbody");
  const status = h("p", { class: "muted", role: "status" });
  const prev = h("button", { type: "button", class: "secondary", onclick: () => { page--; load(); } }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", onclick: () => { page++; load(); } }, "Next page");
  const stateSel = h("select", { id: "filter-state", onchange: (e) => { filters.state = e.target.value; reset(); } },
    h("option", { value: "" }, "Any"), h("option", { value: "running" }, "Running"),
    h("option", { value: "completed" }, "Completed"), h("option", { value: "cancelled" }, "Cancelled"));
  const after = h("input", { id: "filter-after", type: "datetime-local", onchange: (e) => { filters.created_after = e.target.value ? new Date(e.target.value).toISOString() : ""; reset(); } });
  const size = h("select", { id: "filter-limit", onchange: (e) => { filters.limit = e.target.value; reset(); } },
    ...["10", "20", "50", "100"].map((n) => h("option", { value: n, selected: n === filters.limit }, n)));
  const chart = h("div");
  const totals = h("div", { class: "stats" });
  view.append(
    h("div", { class: "row" },
      h("section", { class: "card", "aria-labelledby": "chart-title" },
        h("h2", { id: "chart-title" }, "Throughput (up to the last hour) ", h("span", { class: "live off", text: "○ connecting…" })),
        h("div", { class: "legend" }, h("span", { style: "--c:#0b57d0", text: "organizations finished per second" }), h("span", { style: "--c:#b3261e", text: "queue depth (pending + processing)" })),
        chart, totals)),
    h("section", { class: "card", "aria-labelledby": "batches-title" },
      h("h2", { id: "batches-title" }, "Batches"),
      h("div", { class: "filters" },
        h("div", {}, h("label", { for: "filter-state" }, "State"), stateSel),
        h("div", {}, h("label", { for: "filter-after" }, "Created after"), after),
        h("div", {}, h("label", { for: "filter-limit" }, "Per page"), size)),
      h("table", { class: "batches" },
        h("caption", { class: "muted", style: "text-align:left", text: "Newest first; updates live." }),
        h("thead", {}, h("tr", {}, ...["Batch", "State", "Progress", "Pending", "Processing", "Completed", "Failed", "Cancelled", "Created / updated / unchanged / skipped", "Created", "Duration"].map((t, i) => h("th", { scope: "col", class: i >= 3 && i <= 7 ? "num" : null, text: t })))),
        tbody),
      h("div", { class: "pager" }, prev, next), status));
  drawChart(chart, totals);

  function reset() { cursors.length = 1; page = 0; load(); }
  function row(b) {
    return h("tr", { "data-batch": b.batch_id },
      h("td", {}, h("a", { href: `#/batches/${b.batch_id}`, class: "mono", text: b.batch_id.slice(0, 13) + "…", "aria-label": `Batch ${b.batch_id}` })),
      h("td", {}, stateBadge(b.state)),
      h("td", {}, progress(b.percent)),
      ...["pending", "processing", "completed", "failed", "cancelled"].map((k) => h("td", { class: "num", text: b.counts[k] })),
      h("td", { text: `${b.changes.created} / ${b.changes.updated} / ${b.changes.unchanged} / ${b.changes.skipped}` }),
      h("td", { text: fmtTime(b.created_at) }),
      h("td", { text: fmtDuration(duration(b)) }));
  }
  async function load() {
    const q = new URLSearchParams({ limit: filters.limit });
    if (filters.state) q.set("state", filters.state);
    if (filters.created_after) q.set("created_after", filters.created_after);
    if (cursors[page]) q.set("cursor", cursors[page]);
    try {
      const res = await api(`/api/v1/batches?${q}`, { signal });
      cursors[page + 1] = res.next_cursor || null;
      rows = new Map();
      tbody.replaceChildren(...res.data.map((b) => { const r = row(b); rows.set(b.batch_id, r); return r; }));
      if (!res.data.length) tbody.append(h("tr", {}, h("td", { colspan: 11, class: "muted", text: "No batches match." })));
      prev.disabled = page === 0;
      next.disabled = !res.next_cursor;
      status.textContent = `Page ${page + 1}`;
    } catch (e) { if (!signal.aborted) status.replaceChildren(errorLine(e)); }
  }
  function matches(b) {
    return (!filters.state || b.state === filters.state) &&
      (!filters.created_after || Date.parse(b.created_at) > Date.parse(filters.created_after));
  }
  load();
  batchListeners.add((data) => {
    if (!data) { drawChart(chart, totals); return; }
    const old = rows.get(data.batch_id);
    if (old && matches(data)) { const r = row(data); old.replaceWith(r); rows.set(data.batch_id, r); }
    else if (old || (page === 0 && matches(data))) { clearTimeout(reloadTimer); reloadTimer = setTimeout(load, 300); }
  });
  setLive(true);
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs) { const el = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v)); return el; }
function drawChart(container, totals) {
  const W = 900, H = 180, P = 34, now = Date.now();
  // The samples' span (at most the last hour, at least a minute), so a short session is readable.
  const from = Math.max(now - HOUR * 1000, Math.min(now - 60000, series.length ? series[0].t : now));
  const span = now - from;
  const live = series.filter((p) => p.depth !== null);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Organizations finished per second and queue depth over the last hour", "data-history-finished": historyFinished === null ? "" : historyFinished });
  const maxRate = Math.max(1, ...series.map((p) => p.rate));
  const maxDepth = Math.max(1, ...live.map((p) => p.depth));
  const x = (t) => P + ((t - from) / span) * (W - 2 * P);
  const line = (points, key, max, color) => {
    if (!points.length) return;
    const pts = points.map((p) => `${x(p.t).toFixed(1)},${(H - P - (p[key] / max) * (H - 2 * P)).toFixed(1)}`).join(" ");
    svg.append(s("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 }));
  };
  svg.append(s("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#8a96a3" }));
  const ago = (ms) => (ms >= 120000 ? `-${Math.round(ms / 60000)} min` : `-${Math.round(ms / 1000)} s`);
  for (const [label, t] of [[ago(span), from], [ago(span / 2), from + span / 2], ["now", now]]) {
    const tx = s("text", { x: x(t), y: H - 12, "text-anchor": "middle" }); tx.textContent = label; svg.append(tx);
  }
  const l1 = s("text", { x: 4, y: 16 }); l1.textContent = `${maxRate.toFixed(1)}/s`; svg.append(l1);
  const l2 = s("text", { x: W - 4, y: 16, "text-anchor": "end" }); l2.textContent = `depth ${maxDepth}`; svg.append(l2);
  line(series, "rate", maxRate, "#0b57d0");
  line(live, "depth", maxDepth, "#b3261e");
  container.replaceChildren(svg);
  const last = live[live.length - 1];
  const recent = series.filter((p) => p.t > now - 60000);
  const perMin = recent.reduce((a, p) => a + p.rate, 0) / Math.max(1, recent.length);
  const since = live.length ? `live every second since ${fmtTime(live[0].t)}` : "live samples arrive every second";
  totals.replaceChildren(
    h("div", {}, h("b", { id: "stat-rate", text: perMin.toFixed(1) }), "finished/s (1 min avg)"),
    h("div", {}, h("b", { id: "stat-depth", text: last ? last.depth : 0 }), "queue depth"),
    h("div", {}, h("b", { text: last ? last.running : 0 }), "running batches"),
    h("p", { class: "muted", text: historyFinished === null ? `Loading the last hour… (${since})` : `Last hour from the server: ${historyFinished} finished (${BUCKET} s buckets); ${since}.` }));
}

// One batch: progress, ETA, actions, organizations with search and status filter.
function batchView(view, id, signal) {
  const head = h("section", { class: "card" });
  const notice = h("p", { role: "status", class: "notice" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", onclick: () => loadItems(false) }, "Load more");
  const search = h("input", { id: "item-search", type: "search", placeholder: "domain or name", oninput: () => renderItems() });
  const statusSel = h("select", { id: "item-status", onchange: () => loadItems(true) },
    h("option", { value: "" }, "Any"), ...["pending", "processing", "completed", "failed", "cancelled"].map((v) => h("option", { value: v }, v)));
  let items = [], cursor = null, last = null, refreshTimer = null;
  view.append(head, notice,
    h("section", { class: "card", "aria-labelledby": "items-title" },
      h("h2", { id: "items-title" }, "Organizations"),
      h("div", { class: "filters" },
        h("div", {}, h("label", { for: "item-search" }, "Search"), search),
        h("div", {}, h("label", { for: "item-status" }, "Status"), statusSel)),
      h("table", {}, h("thead", {}, h("tr", {}, ...["#", "Domain", "Name", "Status", "Change", "Attempts", "Last error", "Finished"].map((t) => h("th", { scope: "col", text: t })))), tbody),
      h("div", { class: "pager" }, more)));

  function renderHead(b) {
    last = b;
    head.replaceChildren(
      h("h2", {}, "Batch ", h("span", { class: "mono", text: b.batch_id }), " ", stateBadge(b.state), " ", h("span", { class: "live off", text: "○ connecting…" })),
      progress(b.percent),
      h("div", { class: "stats" },
        ...["pending", "processing", "completed", "failed", "cancelled"].map((k) => h("div", {}, h("b", { id: `count-${k}`, text: b.counts[k] }), k)),
        h("div", {}, h("b", { text: b.total }), "total"),
        h("div", {}, h("b", { id: "eta", text: b.eta_seconds !== null ? fmtDuration(b.eta_seconds) : "–" }), "ETA"),
        h("div", {}, h("b", { text: fmtDuration(duration(b)) }), "duration")),
      h("p", { class: "muted", text: `Created ${fmtTime(b.created_at)} · on conflict: ${b.on_conflict} · mode: ${b.mode}` + (b.completed_at ? ` · completed ${fmtTime(b.completed_at)}` : "") + (b.cancelled_at ? ` · cancelled ${fmtTime(b.cancelled_at)}` : "") }),
      h("div", { class: "actions" },
        h("button", { type: "button", id: "cancel", class: "danger", disabled: b.state !== "running", onclick: act("cancel") }, "Cancel batch"),
        h("button", { type: "button", id: "retry", disabled: !b.counts.failed, onclick: act("retry") }, "Retry failed"),
        h("a", { href: `#/batches/${b.batch_id}/failures`, id: "failures-link" }, `Failures by cause (${b.counts.failed})`),
        h("button", { type: "button", id: "download", class: "secondary", onclick: download }, "Download results (CSV)")));
    setLive(true);
  }
  function act(what) {
    return async (e) => {
      e.target.disabled = true;
      try {
        const res = await api(`/api/v1/batches/${id}/${what}`, { method: "POST", signal });
        notice.textContent = what === "retry" ? `${res.requeued} failed organizations queued again.` : "Batch cancelled: pending organizations stopped.";
        if (what === "cancel") renderHead(res);
        loadItems(true);
      } catch (err) { notice.replaceChildren(errorLine(err)); e.target.disabled = false; }
    };
  }
  function renderItems() {
    const q = search.value.trim().toLowerCase();
    const shown = items.filter((i) => !q || i.domain.toLowerCase().includes(q) || (i.name || "").toLowerCase().includes(q));
    tbody.replaceChildren(...shown.map((i) => {
      const err = i.error_code ? `${i.error_code}: ${i.error_detail || ""}` : i.error_detail || "";
      return h("tr", {},
        h("td", { class: "num", text: i.position }), h("td", { class: "mono", text: i.domain }), h("td", { text: i.name || "" }),
        h("td", {}, h("span", { class: `status-${i.status}`, text: i.status })), h("td", { text: i.change }),
        h("td", { class: "num", text: i.attempts }), h("td", { text: err }), h("td", { text: fmtTime(i.finished_at) }));
    }));
    if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No organizations match." })));
  }
  async function loadItems(fresh) {
    const q = new URLSearchParams({ limit: "100" });
    if (statusSel.value) q.set("status", statusSel.value);
    if (!fresh && cursor) q.set("cursor", cursor);
    try {
      const res = await api(`/api/v1/batches/${id}/organizations?${q}`, { signal });
      items = fresh ? res.items : items.concat(res.items);
      cursor = res.next_cursor;
      more.disabled = !cursor;
      renderItems();
    } catch (e) { if (!signal.aborted) notice.replaceChildren(errorLine(e)); }
  }
  // The server's streamed results file, fetched with the key (a link cannot send the header).
  async function download() {
    notice.textContent = "Preparing the CSV…";
    let blob;
    try {
      const res = await fetch(`${API}/api/v1/batches/${id}/results?format=csv`, {
        headers: { Authorization: `Bearer ${key()}`, Accept: "text/csv" }, credentials: "omit", cache: "no-store", signal,
      });
      if (res.status === 401) { signOut("Your API key is no longer accepted (revoked or expired). Sign in again."); return; }
      if (!res.ok) { let p = null; try { p = await res.json(); } catch (_) { p = null; } throw new ApiError(res.status, p); }
      blob = await res.blob();
    } catch (e) { if (!signal.aborted) notice.replaceChildren(errorLine(e)); return; }
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `batch-${id}-results.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    notice.textContent = "Downloaded the results as CSV.";
  }
  api(`/api/v1/batches/${id}`, { signal }).then(renderHead, (e) => { if (!signal.aborted) head.replaceChildren(errorLine(e)); });
  loadItems(true);
  stream(`/api/v1/batches/${id}/events`, (name, data) => {
    if (name === "batch") {
      const changed = !last || JSON.stringify(last.counts) !== JSON.stringify(data.counts);
      renderHead(data);
      if (changed) { clearTimeout(refreshTimer); refreshTimer = setTimeout(() => loadItems(true), 500); }
    } else if (name === "gone") head.replaceChildren(errorLine(new Error("This batch no longer exists.")));
  }, signal);
}

// Failures grouped by cause, each with "retry this group".
function failuresView(view, id, signal) {
  const notice = h("p", { role: "status", class: "notice" });
  const body = h("div");
  view.append(h("section", { class: "card" },
    h("h2", {}, "Failures by cause"),
    h("p", {}, h("a", { href: `#/batches/${id}` }, "← back to the batch "), h("span", { class: "mono", text: id })),
    notice, body));
  async function load() {
    try {
      const res = await api(`/api/v1/batches/${id}/failures`, { signal });
      const table = h("table", {},
        h("thead", {}, h("tr", {}, ...["Cause", "Count", "Example", "Example error", ""].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...res.groups.map((g) => {
          const ex = g.example, err = ex.errors.length ? ex.errors[ex.errors.length - 1].message : "";
          return h("tr", { "data-group": g.key },
            h("td", { class: "mono", text: g.cause }), h("td", { class: "num", text: g.count }),
            h("td", {}, h("span", { class: "mono", text: ex.domain }), h("br"), h("span", { class: "muted", text: `#${ex.position}${ex.name ? " · " + ex.name : ""}` })),
            h("td", { class: "example-error", text: err }),
            h("td", {}, h("button", { type: "button", class: "retry-group", "aria-label": `Retry the ${g.count} organizations failing with: ${g.cause}`, onclick: async (e) => {
              e.target.disabled = true;
              try {
                const r = await api(`/api/v1/batches/${id}/failures/${g.key}/retry`, { method: "POST", signal });
                notice.textContent = `${r.requeued} organizations queued again.`;
                load();
              } catch (err2) { notice.replaceChildren(errorLine(err2)); e.target.disabled = false; }
            } }, "Retry this group")));
        })));
      body.replaceChildren(
        h("p", { text: `${res.failed} failed organizations in ${res.groups.length} groups` + (res.ungrouped ? ` (${res.ungrouped} of further causes not grouped)` : "") + "." }),
        res.groups.length ? table : h("p", { class: "muted", text: "No failures." }));
    } catch (e) { if (!signal.aborted) body.replaceChildren(errorLine(e)); }
  }
  load();
}

// Webhook deliveries with status, response code and replay.
function webhooksView(view, signal) {
  const notice = h("p", { role: "status", class: "notice" });
  const body = h("div");
  view.append(h("section", { class: "card" }, h("h2", {}, "Webhook deliveries"), notice, body));
  async function load() {
    try {
      const res = await api("/api/v1/webhooks/deliveries?limit=100", { signal });
      if (!res.deliveries.length) { body.replaceChildren(h("p", { class: "muted", text: "No deliveries yet." })); return; }
      body.replaceChildren(h("table", {},
        h("thead", {}, h("tr", {}, ...["Created", "Event", "Batch", "URL", "Status", "Response", "Attempts", "Error", ""].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ...res.deliveries.map((d) => h("tr", {},
          h("td", { text: fmtTime(d.created_at) }), h("td", { text: d.event }),
          h("td", {}, d.batch_id ? h("a", { href: `#/batches/${d.batch_id}`, class: "mono", text: d.batch_id.slice(0, 13) + "…" }) : "–"),
          h("td", { class: "mono", text: d.url }), h("td", { text: d.status }),
          h("td", { class: "num", text: d.response_status === null || d.response_status === undefined ? "–" : d.response_status }),
          h("td", { class: "num", text: d.attempts }), h("td", { text: d.error || "" }),
          h("td", {}, h("button", { type: "button", class: "secondary", onclick: async (e) => {
            e.target.disabled = true;
            try { const r = await api(`/api/v1/webhooks/deliveries/${d.id}/replay`, { method: "POST", signal }); notice.textContent = `Replayed: ${r.status}${r.response_status ? " (" + r.response_status + ")" : ""}.`; load(); }
            catch (err) { notice.replaceChildren(errorLine(err)); e.target.disabled = false; }
          } }, "Replay")))))));
    } catch (e) { if (!signal.aborted) body.replaceChildren(errorLine(e)); }
  }
  load();
}

// API keys for the operator (admin routes, ADMIN_TOKEN kept in this tab's session only).
function keysView(view, signal) {
  const notice = h("p", { role: "status", class: "notice" });
  const body = h("div");
  const admin = () => sessionStorage.getItem(ADMIN);
  const call = (path, options) => request(path, options || {}, admin(), true);
  const tokenForm = h("form", { onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem(ADMIN, $("admin-token").value); $("admin-token").value = ""; load(); } },
    h("label", { for: "admin-token" }, "Operator token (ADMIN_TOKEN)"),
    h("input", { id: "admin-token", type: "password", autocomplete: "off", required: true }), " ",
    h("button", { type: "submit" }, "Use token"));
  view.append(h("section", { class: "card" }, h("h2", {}, "API keys"),
    h("p", { class: "muted", text: "Creating and revoking keys is for the operator: these routes take the server's ADMIN_TOKEN, kept in this tab only." }),
    tokenForm, notice, body));
  async function load() {
    if (!admin()) { body.replaceChildren(); return; }
    try {
      const res = await call("/api/v1/admin/keys", { signal });
      const tenant = h("input", { id: "new-key-tenant", required: true, pattern: "[A-Za-z0-9._-]{1,64}" });
      const label = h("input", { id: "new-key-label", maxlength: 100 });
      const shown = h("p", { id: "new-key", class: "mono", role: "status" });
      body.replaceChildren(
        h("form", { class: "filters", onsubmit: async (e) => {
          e.preventDefault();
          try {
            try { await call("/api/v1/admin/tenants", { method: "POST", body: { id: tenant.value }, signal }); }
            catch (err) { if (err.status !== 409) throw err; }
            const k = await call(`/api/v1/admin/tenants/${encodeURIComponent(tenant.value)}/keys`, { method: "POST", body: label.value ? { label: label.value } : {}, signal });
            await load();
            notice.replaceChildren("New key for ", h("b", { text: k.tenant }), " (shown once, copy it now): ", h("code", { text: k.key }));
          } catch (err) { notice.replaceChildren(errorLine(err)); }
        } },
          h("div", {}, h("label", { for: "new-key-tenant" }, "Tenant"), tenant),
          h("div", {}, h("label", { for: "new-key-label" }, "Label"), label),
          h("div", {}, h("button", { type: "submit" }, "Create key"))),
        shown,
        h("table", {},
          h("thead", {}, h("tr", {}, ...["Tenant", "Prefix", "Label", "Created", "Revoked", ""].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, ...res.keys.map((k) => h("tr", {},
            h("td", { text: k.tenant }), h("td", { class: "mono", text: k.prefix }), h("td", { text: k.label || "" }),
            h("td", { text: fmtTime(k.created_at) }), h("td", { text: k.revoked_at ? fmtTime(k.revoked_at) : "–" }),
            h("td", {}, k.revoked_at ? "" : h("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.prefix}`, onclick: async (e) => {
              e.target.disabled = true;
              try { await call(`/api/v1/admin/keys/${k.id}/revoke`, { method: "POST", signal }); notice.textContent = `Key ${k.prefix} revoked.`; load(); }
              catch (err) { notice.replaceChildren(errorLine(err)); e.target.disabled = false; }
            } }, "Revoke")))))));
    } catch (e) {
      if (signal.aborted) return;
      if (e.status === 401 || e.status === 404) { sessionStorage.removeItem(ADMIN); body.replaceChildren(errorLine(new Error(e.status === 401 ? "That operator token was not accepted." : "This server has no admin routes (no ADMIN_TOKEN) or keeps no keys."))); }
      else body.replaceChildren(errorLine(e));
    }
  }
  load();
}

// ---------- start ----------
document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = $("api-key").value.trim();
    $("sign-in-error").textContent = "";
    try {
      await request("/api/v1/batches?limit=1", {}, candidate, true);
      sessionStorage.setItem(KEY, candidate);
      $("api-key").value = "";
      if (!location.hash) location.hash = "#/batches";
      route();
    } catch (err) {
      $("sign-in-error").textContent = err.status === 401 ? "That API key was not accepted. Check it and try again." :
        err.status === 429 ? "Too many attempts; wait a little and try again." : `Cannot sign in: ${err.message}`;
    }
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  window.addEventListener("hashchange", route);
  route();
});
