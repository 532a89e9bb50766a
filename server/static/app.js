// msmine data-team gallery: plain JS, no build step. Every API call sends the data-team token.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "msmine.token";
const COLORS = { fused: "#ffd23f", visible: "#3ddc84", thermal: "#3fc1ff" };
const $ = (id) => document.getElementById(id);

const state = { offset: 0, limit: 24, total: 0, urls: [] };

function takeTokenFromUrl() {
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    localStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
}

function token() { return localStorage.getItem(TOKEN_KEY); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token() });
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { showLogin("token refused: " + (await detail(resp))); throw new Error("unauthorised"); }
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status + " " + (await detail(resp)));
  return resp;
}

async function detail(resp) {
  try { return (await resp.json()).detail; } catch (e) { return resp.statusText; }
}

function showLogin(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function filterParams() {
  const p = new URLSearchParams();
  const add = (name, value) => { if (value !== "" && value !== null && value !== undefined) p.set(name, value); };
  add("device", $("f-device").value);
  add("model_version", $("f-model").value);
  add("labelled", $("f-labelled").value);
  add("min_score", $("f-min").value);
  add("max_score", $("f-max").value);
  if ($("f-since").value) add("since", new Date($("f-since").value).getTime() / 1000);
  if ($("f-until").value) add("until", new Date($("f-until").value).getTime() / 1000);
  return p;
}

function filterObject() {
  const out = {};
  for (const [k, v] of filterParams()) {
    out[k] = k === "device" || k === "model_version" ? v : k === "labelled" ? v === "true" : Number(v);
  }
  return out;
}

async function loadStats() {
  const s = await (await api(API + "/stats")).json();
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  $("stats").textContent = `${plural(s.pairs, "pair")} · ${s.labelled} labelled · ${plural(s.devices.length, "device")}`;
  fillSelect($("f-device"), s.devices);
  fillSelect($("f-model"), s.model_versions);
}

function fillSelect(select, values) {
  const current = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const v of values) select.add(new Option(v, v));
  select.value = values.includes(current) ? current : "";
}

function svgBoxes(dets, branchOrder, classNames) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 1 1");
  svg.setAttribute("preserveAspectRatio", "none");
  for (const branch of branchOrder) {
    for (const d of dets[branch] || []) {
      const [x1, y1, x2, y2] = d.box;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", x1); r.setAttribute("y", y1);
      r.setAttribute("width", x2 - x1); r.setAttribute("height", y2 - y1);
      r.setAttribute("fill", "none"); r.setAttribute("stroke", COLORS[branch]);
      r.setAttribute("stroke-width", "2"); r.setAttribute("vector-effect", "non-scaling-stroke");
      if (branch === "fused") r.setAttribute("stroke-dasharray", "5 3");
      r.setAttribute("class", "det det-" + branch);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${branch}: ${classNames[d.class_id] || d.class_id} ${d.score.toFixed(2)}`;
      r.appendChild(title);
      svg.appendChild(r);
    }
  }
  return svg;
}

async function loadImage(img, uid, part) {
  const blob = await (await api(`${API}/pairs/${uid}/files/${part}`)).blob();
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  await new Promise((resolve) => {
    img.onload = () => { img.dataset.loaded = "1"; resolve(); };
    img.onerror = () => { img.dataset.loaded = "error"; resolve(); };
    img.src = url;
  });
}

function panel(uid, part, caption, dets, branches, classNames, loads) {
  const div = document.createElement("div");
  div.className = "panel panel-" + part;
  const img = document.createElement("img");
  img.alt = `${part} ${uid}`;
  div.appendChild(img);
  div.appendChild(svgBoxes(dets, branches, classNames));
  const cap = document.createElement("span");
  cap.className = "cap";
  cap.textContent = caption;
  div.appendChild(cap);
  loads.push(loadImage(img, uid, part));
  return div;
}

async function renderCard(item, loads) {
  const pair = await (await api(`${API}/pairs/${item.upload_id}`)).json();
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.uploadId = item.upload_id;
  // ranked on the selection score the device sent (schema 2), else on the inconsistency score
  const rank = item.rank_score ?? item.score;
  card.dataset.score = rank;
  card.dataset.inconsistency = item.score;
  card.dataset.device = item.device_id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const when = new Date(item.captured_at * 1000).toISOString().replace("T", " ").slice(0, 19);
  meta.innerHTML = `<span class="score"></span><span class="device"></span><span></span><span></span>` +
    `<span class="uid"></span>`;
  meta.children[0].textContent = rank.toFixed(4);
  meta.children[1].textContent = item.device_id;
  meta.children[2].textContent = when + " UTC";
  meta.children[3].textContent = "model " + item.model_version;
  meta.children[4].textContent = item.upload_id.slice(0, 12);
  if (item.selection) {
    card.dataset.policy = item.selection.policy;
    meta.children[0].title = `selected on ${item.selection.policy}`;
    const sel = document.createElement("span");
    sel.className = "selection";
    sel.textContent = `${item.selection.policy} ${item.selection.score.toFixed(4)} · inconsistency ${item.score.toFixed(4)}`;
    meta.insertBefore(sel, meta.children[1]);
  }
  if (item.labelled) {
    const b = document.createElement("span");
    b.className = "badge";
    b.textContent = "labelled";
    meta.appendChild(b);
  }
  card.appendChild(meta);
  const panels = document.createElement("div");
  panels.className = "panels";
  const p = pair.predictions;
  panels.appendChild(panel(item.upload_id, "visible", "visible", p, ["fused", "visible"], pair.class_names, loads));
  panels.appendChild(panel(item.upload_id, "thermal", "thermal", p, ["fused", "thermal"], pair.class_names, loads));
  panels.appendChild(panel(item.upload_id, "heatmap", "inconsistency", p, ["fused"], pair.class_names, loads));
  card.appendChild(panels);
  return card;
}

async function loadPage() {
  $("error").textContent = "";
  const gallery = $("gallery");
  gallery.dataset.state = "loading";
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls = [];
  try {
    const params = filterParams();
    params.set("limit", state.limit);
    params.set("offset", state.offset);
    const page = await (await api(`${API}/pairs?${params}`)).json();
    state.total = page.total;
    const loads = [];
    const cards = await Promise.all(page.items.map((item) => renderCard(item, loads)));
    gallery.replaceChildren(...cards);
    const pages = Math.max(1, Math.ceil(page.total / state.limit));
    const current = Math.floor(state.offset / state.limit) + 1;
    $("page-info").textContent = `page ${current} / ${pages}`;
    $("summary").textContent = `${page.total} matching pairs`;
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + state.limit >= page.total;
    await Promise.all(loads);
    gallery.dataset.state = "ready";
  } catch (e) {
    gallery.dataset.state = "error";
    $("error").textContent = e.message;
  }
}

async function makeBatch() {
  const k = parseInt($("batch-k").value, 10);
  $("batch-status").textContent = "selecting…";
  try {
    const resp = await api(API + "/batches", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ k, filters: filterObject() }),
    });
    const batch = await resp.json();
    $("batch-status").textContent =
      `${batch.upload_ids.length} pairs (${batch.skipped_duplicates} near-duplicates skipped); downloading…`;
    const zip = await (await api(batch.export_url)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(zip);
    a.download = `msmine-batch-${batch.batch_id}.zip`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    $("batch-status").textContent = `batch ${batch.batch_id}: ${batch.upload_ids.length} pairs exported`;
  } catch (e) {
    $("batch-status").textContent = e.message;
  }
}

async function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  state.limit = parseInt($("f-limit").value, 10);
  try {
    await loadStats();
  } catch (e) {
    if (e.message !== "unauthorised") $("error").textContent = e.message;
    return;
  }
  await loadPage();
}

function init() {
  takeTokenFromUrl();
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    start();
  });
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.offset = 0;
    state.limit = parseInt($("f-limit").value, 10);
    loadPage();
  });
  $("logout").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showLogin(""); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadPage(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; loadPage(); });
  $("make-batch").addEventListener("click", makeBatch);
  if (token()) start(); else showLogin("");
}

init();
