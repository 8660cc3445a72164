// The status page: reads /v1/status, /v1/vips, /v1/backends and
// /v1/counters every few seconds (?refresh=SECONDS, default 2) and redraws
// the tables; rates are the difference between two reads over the time
// between them. It only reads: no cookies, no writes, no other origin.
"use strict";

const params = new URLSearchParams(location.search);
const refresh = Math.max(0.5, Number(params.get("refresh")) || 2) * 1000;
// The last read: {at, backends: Map("vip/backend" -> {packets, bytes}),
// vips: Map(vip -> {packets, bytes}), drops: Map("element/reason" -> packets)}.
let prev = null;
let updates = 0;

async function get(path) {
  const resp = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  const body = await resp.json();
  if (!resp.ok) {
    throw new Error(path + ": " + (body.error || resp.status));
  }
  return body;
}

function cell(tr, field, text, cls) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(table, rows) {
  const tbody = document.querySelector("#" + table + " tbody");
  tbody.replaceChildren(...rows);
}

// rate is cur's per second since old, times scale, as shown; "-" without
// an old read.
function rate(cur, old, seconds, scale = 1) {
  if (old === undefined || seconds <= 0) return "-";
  // A count that went down is a restarted xlbd's: counted from zero.
  return ((cur >= old ? cur - old : cur) * scale / seconds).toFixed(1);
}

// trafficCells appends the packets and bytes of t and their rates since
// old (packets per second, bits per second).
function trafficCells(tr, t, old, seconds) {
  cell(tr, "packets", String(t.packets));
  cell(tr, "bytes", String(t.bytes));
  cell(tr, "pps", rate(t.packets, old.packets, seconds));
  cell(tr, "bps", rate(t.bytes, old.bytes, seconds, 8));
}

function duration(seconds) {
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return (d ? d + "d" : "") + (d || h ? h + "h" : "") + (d || h || m ? m + "m" : "") + s + "s";
}

function short(digest) {
  return (digest || "").slice(0, 12);
}

function override(o) {
  if (!o) return "-";
  const parts = [];
  if (o.drain !== undefined) parts.push("drain=" + o.drain);
  if (o.weight !== undefined) parts.push("weight=" + o.weight);
  return parts.join(",");
}

function renderStatus(st) {
  document.getElementById("node").textContent = st.node;
  document.title = "xlb " + st.node;
  const values = {
    node: st.node, generation: String(st.generation), version: (st.version || [""])[0], config_digest: short(st.config_digest),
    uptime: duration(st.uptime_seconds), applied_at: st.applied_at, workers: String(st.workers), config: st.config,
  };
  for (const td of document.querySelectorAll("#status td[data-field]")) {
    td.textContent = values[td.dataset.field];
  }
  const rej = document.getElementById("rejected");
  rej.hidden = !st.rejected;
  if (st.rejected) {
    rej.textContent = "latest change rejected (" + st.rejected.source + " " + (st.rejected.revision || "") + " at " + st.rejected.at +
      "); the running configuration stays:\n" + st.rejected.diagnostics;
  }
  const sources = st.sources || [];
  document.getElementById("sources").hidden = sources.length === 0;
  fill("sources", sources.map(s => {
    const tr = document.createElement("tr");
    tr.dataset.source = s.name;
    cell(tr, "name", s.name);
    cell(tr, "state", s.state);
    cell(tr, "revision", s.revision);
    cell(tr, "documents", String(s.documents));
    cell(tr, "since", s.since);
    cell(tr, "unavailable", s.unavailable || "");
    return tr;
  }));
}

function render(st, vips, backends, counters, at) {
  const seconds = prev ? (at - prev.at) / 1000 : 0;
  renderStatus(st);

  const cur = { at, backends: new Map(), vips: new Map(), drops: new Map() };
  fill("backends", backends.map(b => {
    const key = b.vip + "/" + b.backend;
    const old = prev && prev.backends.get(key) || {};
    cur.backends.set(key, { packets: b.packets, bytes: b.bytes });
    // A VIP's traffic is its backends'.
    const t = cur.vips.get(b.vip) || { packets: 0, bytes: 0 };
    cur.vips.set(b.vip, { packets: t.packets + b.packets, bytes: t.bytes + b.bytes });
    const tr = document.createElement("tr");
    tr.className = b.state;
    tr.dataset.vip = b.vip;
    tr.dataset.backend = b.backend;
    cell(tr, "vip", b.vip);
    cell(tr, "backend", b.backend);
    cell(tr, "address", b.address);
    cell(tr, "state", b.state);
    cell(tr, "health", b.health, "health-" + b.health);
    cell(tr, "weight", String(b.weight));
    cell(tr, "override", override(b.override));
    trafficCells(tr, b, old, seconds);
    return tr;
  }));

  fill("vips", vips.map(v => {
    const t = cur.vips.get(v.name) || { packets: 0, bytes: 0 };
    const old = prev && prev.vips.get(v.name) || {};
    const tr = document.createElement("tr");
    tr.dataset.vip = v.name;
    cell(tr, "name", v.name);
    cell(tr, "address", v.address);
    cell(tr, "protocol", v.protocol);
    cell(tr, "ports", v.ports.length ? v.ports.join(",") : "*");
    cell(tr, "pool", v.pool);
    cell(tr, "backends", String(v.backends));
    cell(tr, "table", short(v.table_digest) + " (" + v.table_size + ")");
    trafficCells(tr, t, old, seconds);
    return tr;
  }));

  fill("drops", counters.drops.map(d => {
    const key = d.element + "/" + d.reason;
    cur.drops.set(key, d.packets);
    const tr = document.createElement("tr");
    tr.dataset.element = d.element;
    tr.dataset.reason = d.reason;
    cell(tr, "element", d.element);
    cell(tr, "reason", d.reason);
    cell(tr, "packets", String(d.packets));
    cell(tr, "rate", rate(d.packets, prev && prev.drops.get(key), seconds));
    return tr;
  }));
  prev = cur;
}

async function update() {
  const live = document.getElementById("live");
  const error = document.getElementById("error");
  try {
    const [st, vips, backends, counters] = await Promise.all(["/v1/status", "/v1/vips", "/v1/backends", "/v1/counters"].map(get));
    const at = Date.now();
    render(st, vips, backends, counters, at);
    updates++;
    document.body.dataset.generation = st.generation;
    document.body.dataset.updates = updates;
    error.hidden = true;
    live.classList.remove("stale");
    live.textContent = "updated " + new Date(at).toLocaleTimeString() + ", every " + refresh / 1000 + "s";
  } catch (e) {
    error.hidden = false;
    error.textContent = "xlbd is not answering: " + e.message + ". The tables show the last answer; retrying every " + refresh / 1000 + "s.";
    live.classList.add("stale");
  }
  setTimeout(update, refresh);
}

update();
