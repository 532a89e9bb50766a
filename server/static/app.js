// msmine data-team gallery: plain JS, no build step. Every API call sends the data-team token.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "msmine.token";
// the colour table is msmine.palette on the server (GET /api/v1/palette), shared with report.html
const PALETTE = { branches: { fused: "#ffd23f", visible: "#3ddc84", thermal: "#3fc1ff" }, label: "#ffffff",
  classes: ["#1f77b4"], background_names: ["unlabelled", "background"], mask_alpha: 0.45 };
const COLORS = PALETTE.branches;
const BRANCHES = ["fused", "visible", "thermal"];
// which imported label set a panel shows: its own modality, else the fusion set (as msmine pull does)
const LABEL_SETS = { visible: ["visible", "fusion", "infrared"], thermal: ["infrared", "fusion", "visible"],
  fused: ["fusion", "visible", "infrared"] };
const $ = (id) => document.getElementById(id);

const state = { offset: 0, limit: 24, total: 0, urls: [], blobs: new Map(), scoped: false };

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
  add("task", $("f-task").value);
  add("min_score", $("f-min").value);
  add("max_score", $("f-max").value);
  if ($("f-since").value) add("since", new Date($("f-since").value).getTime() / 1000);
  if ($("f-until").value) add("until", new Date($("f-until").value).getTime() / 1000);
  return p;
}

function filterObject() {
  const out = {};
  for (const [k, v] of filterParams()) {
    out[k] = ["device", "model_version", "task"].includes(k) ? v : k === "labelled" ? v === "true" : Number(v);
  }
  return out;
}

async function loadPalette() {
  try {
    Object.assign(PALETTE, await (await api(API + "/palette")).json());
    Object.assign(COLORS, PALETTE.branches);
  } catch (e) {
    if (e.message === "unauthorised") throw e;
  }
  for (const b of BRANCHES) document.querySelectorAll(".sw." + b).forEach((el) => { el.style.background = COLORS[b]; });
  document.querySelectorAll(".sw.label").forEach((el) => { el.style.background = PALETTE.label; });
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

async function loadStats() {
  const s = await (await api(API + "/stats")).json();
  $("stats").textContent = `${plural(s.pairs, "pair")} · ${s.labelled} labelled · ${plural(s.devices.length, "device")}`;
  fillSelect($("f-device"), s.devices);
  const tasks = s.model_tasks || {};
  fillSelect($("f-model"), s.model_versions, (v) => (tasks[v] ? `${v} · ${tasks[v]}` : v));
  // scores of different tasks and models are not comparable: rank within the latest model by default
  if (!state.scoped && s.latest_model_version) $("f-model").value = s.latest_model_version;
  state.scoped = true;
}

function fillSelect(select, values, label = (v) => v) {
  const current = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const v of values) select.add(new Option(label(v), v));
  select.value = values.includes(current) ? current : "";
}

function classColour(id) { return PALETTE.classes[id % PALETTE.classes.length]; }

function isBackground(id, classNames) {
  return id === 0 && classNames.length > 0 && PALETTE.background_names.includes(classNames[0].trim().toLowerCase());
}

function rgb(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }

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

// imported labels (YOLO [class, cx, cy, w, h], normalised): solid boxes in the label colour
function drawLabels(svg, boxes, classNames, modality) {
  const ns = "http://www.w3.org/2000/svg";
  for (const [c, cx, cy, w, h] of boxes || []) {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", cx - w / 2); r.setAttribute("y", cy - h / 2);
    r.setAttribute("width", w); r.setAttribute("height", h);
    r.setAttribute("fill", "none"); r.setAttribute("stroke", PALETTE.label);
    r.setAttribute("stroke-width", "2"); r.setAttribute("vector-effect", "non-scaling-stroke");
    r.setAttribute("class", "lab");
    const title = document.createElementNS(ns, "title");
    title.textContent = `label (${modality}): ${classNames[c] || c}`;
    r.appendChild(title);
    svg.appendChild(r);
  }
}

function labelSet(pair, panelKind) {
  for (const m of LABEL_SETS[panelKind]) if ((pair.labels || {})[m]) return m;
  return null;
}

function labelMaskSet(pair, panelKind) {
  for (const m of LABEL_SETS[panelKind]) if ((pair.label_masks || {})[m]) return m;
  return null;
}

async function blobUrl(path) {
  if (!state.blobs.has(path)) {
    state.blobs.set(path, api(path).then((r) => r.blob()).then((b) => {
      const url = URL.createObjectURL(b);
      state.urls.push(url);
      return url;
    }));
  }
  return state.blobs.get(path);
}

// a class-id PNG (pixel value = class id) painted in the class colours on a canvas over the image;
// an imported label (outline) is drawn as the class outlines only, so it reads apart from predictions
async function loadMask(canvas, path, classNames, seen, outline = false) {
  try {
    const blob = await (await api(path)).blob();
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const img = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    const px = img.data;
    const w = bitmap.width, h = bitmap.height;
    const ids = new Uint8Array(w * h);
    for (let j = 0; j < ids.length; j++) ids[j] = px[4 * j];
    const lut = new Map();
    const alpha = outline ? 255 : Math.round(255 * PALETTE.mask_alpha);
    const r = Math.max(1, Math.round(w / 320));  // outline width in mask pixels
    const edge = (j, id) => {
      const x = j % w, y = (j - x) / w;
      if (x < r || y < r || x >= w - r || y >= h - r) return true;
      return ids[j - r] !== id || ids[j + r] !== id || ids[j - r * w] !== id || ids[j + r * w] !== id;
    };
    for (let j = 0; j < ids.length; j++) {
      const i = 4 * j, id = ids[j];
      let c = lut.get(id);
      if (c === undefined) {
        c = isBackground(id, classNames) ? null : [...rgb(classColour(id)), alpha];
        lut.set(id, c);
        seen.add(id);
      }
      if (c === null || (outline && !edge(j, id))) { px[i + 3] = 0; continue; }
      px[i] = c[0]; px[i + 1] = c[1]; px[i + 2] = c[2]; px[i + 3] = c[3];
    }
    ctx.putImageData(img, 0, 0);
    canvas.dataset.loaded = "1";
    canvas.dataset.classes = [...lut.keys()].sort((a, b) => a - b).join(",");
  } catch (e) {
    canvas.dataset.loaded = "error";
    if (e.message === "unauthorised") throw e;
  }
}

function classLegend(el, ids, classNames) {
  el.replaceChildren();
  for (const id of [...ids].sort((a, b) => a - b)) {
    if (isBackground(id, classNames)) continue;
    const item = document.createElement("span");
    item.className = "cls";
    item.dataset.classId = id;
    const sw = document.createElement("span");
    sw.className = "csw";
    sw.style.background = classColour(id);
    item.appendChild(sw);
    item.appendChild(document.createTextNode(classNames[id] || `class ${id}`));
    el.appendChild(item);
  }
}

async function loadImage(img, uid, part) {
  const url = await blobUrl(`${API}/pairs/${uid}/files/${part}`);
  await new Promise((resolve) => {
    img.onload = () => { img.dataset.loaded = "1"; resolve(); };
    img.onerror = () => { img.dataset.loaded = "error"; resolve(); };
    img.src = url;
  });
}

// one image with what belongs on it: a branch's boxes or mask, the imported labels of its modality
function panel(pair, part, kind, caption, branches, loads, seen) {
  const uid = pair.upload_id;
  const div = document.createElement("div");
  div.className = "panel panel-" + kind;
  const img = document.createElement("img");
  img.alt = `${part} ${uid}`;
  div.appendChild(img);
  loads.push(loadImage(img, uid, part));
  const masks = pair.masks || {};
  if (kind !== "heatmap" && masks[kind]) {  // the branch's predicted mask
    const c = document.createElement("canvas");
    c.className = "mask mask-" + kind;
    div.appendChild(c);
    loads.push(loadMask(c, `${API}/pairs/${uid}/masks/${kind}`, pair.class_names, seen));
  }
  const labelKind = kind === "heatmap" ? "fused" : kind;
  const lm = kind === "heatmap" ? null : labelMaskSet(pair, labelKind);  // the map stays readable
  if (lm) {  // an imported mask label
    const c = document.createElement("canvas");
    c.className = "mask mask-label";
    div.appendChild(c);
    loads.push(loadMask(c, `${API}/pairs/${uid}/labels/${lm}/mask`, pair.class_names, seen, true));
  }
  const svg = svgBoxes(pair.predictions || {}, branches, pair.class_names);
  const ls = labelSet(pair, labelKind);
  if (ls) drawLabels(svg, pair.labels[ls], pair.class_names, ls);
  div.appendChild(svg);
  const cap = document.createElement("span");
  cap.className = "cap";
  cap.textContent = caption;
  div.appendChild(cap);
  return div;
}

function panels(pair, loads, seen) {
  const box = document.createElement("div");
  const seg = Object.keys(pair.masks || {}).length > 0;
  box.className = seg ? "panels panels-4" : "panels";
  box.appendChild(panel(pair, "visible", "visible", "visible", ["fused", "visible"], loads, seen));
  box.appendChild(panel(pair, "thermal", "thermal", "thermal", ["fused", "thermal"], loads, seen));
  if (seg) box.appendChild(panel(pair, "visible", "fused", "fused", [], loads, seen));
  box.appendChild(panel(pair, "heatmap", "heatmap", "inconsistency", ["fused"], loads, seen));
  return box;
}

function metaLine(item) {
  // ranked on the selection score the device sent (schema 2), else on the inconsistency score
  const rank = item.rank_score ?? item.score;
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
  return meta;
}

async function renderCard(item, loads) {
  const pair = await (await api(`${API}/pairs/${item.upload_id}`)).json();
  const card = document.createElement("div");
  card.className = "card";
  card.dataset.uploadId = item.upload_id;
  // ranked on the selection score the device sent (schema 2), else on the inconsistency score
  card.dataset.score = item.rank_score ?? item.score;
  card.dataset.inconsistency = item.score;
  card.dataset.device = item.device_id;
  card.dataset.task = item.task;
  if (item.selection) card.dataset.policy = item.selection.policy;
  card.appendChild(metaLine(item));
  const seen = new Set();
  const mine = [];
  card.appendChild(panels(pair, mine, seen));
  const legend = document.createElement("div");
  legend.className = "classes";
  card.appendChild(legend);
  loads.push(Promise.all(mine).then(() => classLegend(legend, seen, pair.class_names)));
  card.title = "click to enlarge";
  card.addEventListener("click", () => openDetail(item, pair));
  return card;
}

// the pair detail view: the same panels, large, with the class legend, labels and predictions listed
async function openDetail(item, pair) {
  const box = $("detail");
  const body = $("detail-body");
  box.dataset.state = "loading";
  box.dataset.uploadId = item.upload_id;
  box.hidden = false;
  const head = metaLine(item);
  const seen = new Set();
  const loads = [];
  const legend = document.createElement("div");
  legend.className = "classes";
  const facts = document.createElement("div");
  facts.className = "facts";
  const p = pair.predictions || {};
  const counts = BRANCHES.map((b) => `${b} ${(p[b] || []).length}`).join(" · ");
  const masks = Object.keys(pair.masks || {});
  const labels = Object.keys(pair.labels || {});
  facts.textContent = (pair.task === "segment" ? `masks: ${masks.join(", ") || "none"}` : `detections: ${counts}`) +
    ` · labels: ${labels.length ? labels.join(", ") : "none"}` +
    (Object.keys(pair.label_masks || {}).length ? ` (masks: ${Object.keys(pair.label_masks).join(", ")})` : "") +
    ` · ${pair.image_size[0]}×${pair.image_size[1]} · ${item.upload_id}`;
  // the legend (branch colours, mask and label toggles) moves into the detail view while it is open
  body.replaceChildren(head, $("legend"), panels(pair, loads, seen), legend, facts);
  await Promise.all(loads);
  classLegend(legend, seen, pair.class_names);
  box.dataset.state = "ready";
}

function closeDetail() {
  $("main").insertBefore($("legend"), $("error"));
  $("detail").hidden = true;
  $("detail-body").replaceChildren();
}

// the legend's toggles: show or hide each branch's mask and the imported labels, everywhere
function applyToggles() {
  for (const el of [$("gallery"), $("detail")]) {
    for (const b of BRANCHES) el.classList.toggle("hide-mask-" + b, !$("t-mask-" + b).checked);
    el.classList.toggle("hide-labels", !$("t-labels").checked);
  }
}

async function loadPage() {
  $("error").textContent = "";
  const gallery = $("gallery");
  gallery.dataset.state = "loading";
  for (const u of state.urls) URL.revokeObjectURL(u);
  state.urls = [];
  state.blobs = new Map();
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
    await loadPalette();
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
  for (const id of ["t-mask-fused", "t-mask-visible", "t-mask-thermal", "t-labels"]) {
    $(id).addEventListener("change", applyToggles);
  }
  $("detail-close").addEventListener("click", closeDetail);
  $("detail").addEventListener("click", (ev) => { if (ev.target === $("detail")) closeDetail(); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("detail").hidden) closeDetail(); });
  if (token()) start(); else showLogin("");
}

init();
