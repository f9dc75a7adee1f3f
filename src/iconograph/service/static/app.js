// iconograph review page: browse, search, and review a collection. Plain JS, no build step, no CDN.
"use strict";

const PAGE = 60;
const state = {
  collection: null,
  offset: 0,
  total: 0,
  items: [],        // what the grid shows: items of a page, or search hits
  mode: "browse",   // browse | search | similar | queue
  query: "",
  similarTo: null,
  current: -1,      // index into items of the open detail view
  selected: 0,      // selected label row in the detail view
};

const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { window.location = "/"; throw new Error("not signed in"); }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((body && body.detail) || response.statusText);
  return body;
}

const base = () => `/api/collections/${encodeURIComponent(state.collection)}`;
const q = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
const thumbUrl = (path, size = 256) => `${base()}/thumb?${q({ path, size })}`;

function filters() {
  return {
    label: $("label-filter").value,
    min_score: $("min-score").value,
    max_score: $("max-score").value,
    reviewed: $("unreviewed").checked ? "false" : "",
  };
}

// ---- loading ----------------------------------------------------------------------------------

async function loadCollections() {
  const list = await api("/api/collections");
  const select = $("collection");
  select.innerHTML = "";
  for (const c of list) select.add(new Option(`${c.name} (${c.images})`, c.name));
  if (!list.length) { $("status").textContent = "No collection yet: run 'iconograph index SOURCE' first."; return; }
  const wanted = new URLSearchParams(location.search).get("collection");
  state.collection = list.some((c) => c.name === wanted) ? wanted : list[0].name;
  select.value = state.collection;
  await loadLabels();
  const queue = new URLSearchParams(location.search).get("queue");
  if (queue && [...$("queue").options].some((o) => o.value === queue)) $("queue").value = queue;
  await ($("queue").value ? showQueue(0) : browse(0));
  await showLearned();
}

async function loadLabels() {
  const info = await api(base());
  const select = $("label-filter");
  const keep = select.value;
  select.innerHTML = '<option value="">any</option>';
  for (const name of info.labels) select.add(new Option(name, name));
  select.value = info.labels.includes(keep) ? keep : "";
  state.index = info.index;
}

async function browse(offset) {
  state.mode = "browse";
  const f = filters();
  const page = await api(`${base()}/items?${q({ offset, limit: PAGE, ...f })}`);
  state.offset = page.offset;
  state.total = page.total;
  state.items = page.items;
  render(`${page.total} images` + (f.label ? ` labelled “${f.label}”` : ""));
}

async function showQueue(offset) {
  state.mode = "queue";
  const kind = $("queue").value;
  const page = await api(`${base()}/queues/${kind}?${q({ offset, limit: PAGE })}`);
  state.offset = page.offset;
  state.total = page.total;
  state.items = page.items;
  render(`${page.total} in the queue “${$("queue").selectedOptions[0].text}”`);
}

function describeFinding(f) {
  if (!f) return "";
  if (f.margin !== undefined) return `margin ${f.margin.toFixed(3)} (${f.by})` + (f.suggested ? ` · best: ${f.suggested}` : "");
  if (f.duplicate_of) return `duplicate of ${basename(f.duplicate_of)} (${f.tier}, ${f.score.toFixed(3)})`;
  if (f.reasons) return f.reasons.join(", ") + (f.knn_distance !== null && f.knn_distance !== undefined ? ` · kNN distance ${f.knn_distance.toFixed(3)}` : "");
  if (f.quality !== undefined) return `label ${[].concat(f.label).join(", ")} · suggested ${[].concat(f.suggested).join(", ")} · quality ${f.quality.toFixed(3)}`;
  return "";
}

async function showLearned() {
  const status = await api(`${base()}/learn`);
  const last = status.last;
  let text = status.running ? "learning…" : "";
  if (!status.running && last) {
    text = `head accuracy ${last.accuracy === null ? "n/a" : last.accuracy.toFixed(2)} (${last.folds}-fold CV on ${last.reviews} reviews)`;
  }
  if (!status.running && status.error) text = `learn: ${status.error}`;
  $("accuracy").textContent = text;
  return status;
}

async function learnNow() {
  await api(`${base()}/learn`, { method: "POST" });
  let status = await showLearned();
  while (status.running) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    status = await showLearned();
  }
  if (state.mode === "queue") await showQueue(0);
}

async function search(text) {
  state.mode = "search";
  state.query = text;
  const f = filters();
  const result = await api(`${base()}/search?${q({ q: text, k: PAGE, label: f.label })}`);
  state.items = applyScoreFilter(result.hits, f);
  render(`${state.items.length} results for “${text}” · ${result.index}`);
}

async function similar(path) {
  state.mode = "similar";
  state.similarTo = path;
  const f = filters();
  const result = await api(`${base()}/similar?${q({ path, k: PAGE, label: f.label })}`);
  state.items = applyScoreFilter(result.hits, f);
  render(`${state.items.length} images like ${basename(path)} · ${result.index}`);
}

function applyScoreFilter(hits, f) {
  // search hits are ranked by similarity; the score filter still applies to their label scores
  return hits.filter((h) => {
    const s = topScore(h, f.label);
    if (f.min_score !== "" && (s === null || s < +f.min_score)) return false;
    if (f.max_score !== "" && (s === null || s > +f.max_score)) return false;
    if (f.reviewed === "false" && h.reviewed) return false;
    return true;
  });
}

function topScore(item, label) {
  const scores = item.labels.filter((l) => l.score !== null && (!label || l.label === label)).map((l) => l.score);
  return scores.length ? Math.max(...scores) : null;
}

async function reload() {
  if (state.mode === "queue") return showQueue(state.offset);
  if (state.mode === "search") return search(state.query);
  if (state.mode === "similar") return similar(state.similarTo);
  return browse(state.offset);
}

// ---- the grid ---------------------------------------------------------------------------------

function basename(path) { return path.split(/[\\/]/).pop(); }
function fmt(score) { return score === null || score === undefined ? "—" : score.toFixed(2); }

function render(status) {
  $("status").textContent = status;
  const grid = $("grid");
  grid.innerHTML = "";
  state.items.forEach((item, i) => grid.appendChild(card(item, i)));
  const paging = state.mode === "browse" || state.mode === "queue";
  $("pager").hidden = !paging || state.total <= PAGE;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= state.total;
  $("page-info").textContent = paging ? `${state.offset + 1}–${Math.min(state.offset + PAGE, state.total)} of ${state.total}` : "";
}

function card(item, i) {
  const el = document.createElement("div");
  el.className = "card";
  el.tabIndex = 0;
  el.dataset.testid = "card";
  el.dataset.path = item.path;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = basename(item.path);
  img.src = thumbUrl(item.path);
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = basename(item.path);
  name.title = item.path;
  const tags = document.createElement("div");
  tags.className = "tags";
  for (const l of item.labels.slice(0, 3)) {
    const tag = document.createElement("span");
    tag.className = `tag ${l.decision || ""}`;
    tag.textContent = `${l.label} ${fmt(l.score)}`;
    tags.appendChild(tag);
  }
  const row = document.createElement("div");
  row.className = "row";
  const info = document.createElement("span");
  info.className = "badge";
  info.textContent = (item.score !== undefined ? `sim ${item.score.toFixed(3)} ` : "") + (item.reviewed ? "✓ reviewed" : "");
  if (item.finding) { info.textContent = describeFinding(item.finding); info.className = "badge finding-badge"; info.dataset.testid = "finding-badge"; }
  const more = document.createElement("button");
  more.className = "similar";
  more.type = "button";
  more.textContent = "More like this";
  more.dataset.testid = "more-like-this";
  more.addEventListener("click", (event) => { event.stopPropagation(); similar(item.path).catch(showError); });
  row.append(info, more);
  meta.append(name, tags, row);
  el.append(img, meta);
  el.addEventListener("click", () => openDetail(i));
  el.addEventListener("keydown", (event) => { if (event.key === "Enter") openDetail(i); });
  return el;
}

// ---- the detail view --------------------------------------------------------------------------

async function openDetail(i) {
  if (i < 0 || i >= state.items.length) return;
  state.current = i;
  const item = await api(`${base()}/item?${q({ path: state.items[i].path })}`);
  state.items[i] = { ...state.items[i], ...item };
  $("detail").hidden = false;
  $("detail-path").textContent = item.path;
  const finding = state.items[i].finding;
  $("finding").hidden = !finding;
  $("finding").textContent = describeFinding(finding);
  const img = $("detail-image");
  img.onload = () => drawBoxes(item);
  img.src = `${base()}/image?${q({ path: item.path })}`;
  state.selected = Math.min(state.selected, Math.max(0, item.labels.length - 1));
  renderLabels(item);
  document.querySelectorAll(".card").forEach((c, j) => c.classList.toggle("current", j === i));
}

function renderLabels(item) {
  const body = $("detail-labels").tBodies[0];
  body.innerHTML = "";
  item.labels.forEach((l, row) => {
    const tr = document.createElement("tr");
    tr.dataset.label = l.label;
    tr.dataset.testid = "label-row";
    tr.className = row === state.selected ? "selected" : "";
    const cells = [l.label, fmt(l.score), l.decision || ""];
    cells.forEach((text, c) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (c === 2) { td.className = `decision ${l.decision || ""}`; td.dataset.testid = "decision"; }
      tr.appendChild(td);
    });
    const buttons = document.createElement("td");
    for (const [action, key] of [["accept", "a"], ["reject", "r"], ["remove", "x"]]) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = action;
      b.title = key;
      b.dataset.action = action;
      b.addEventListener("click", () => { state.selected = row; decide(action, l.label); });
      buttons.appendChild(b);
    }
    tr.appendChild(buttons);
    tr.addEventListener("click", () => { state.selected = row; renderLabels(item); });
    body.appendChild(tr);
  });
  drawBoxes(item);
}

function drawBoxes(item) {
  const img = $("detail-image");
  const svg = $("boxes");
  svg.innerHTML = "";
  if (!img.naturalWidth) return;
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  drawRegions(item, svg, img);
  for (const l of item.labels) {
    if (!l.box || l.decision === "reject" || l.decision === "remove") continue;
    const [x1, y1, x2, y2] = l.box;
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 }).forEach(([k, v]) => rect.setAttribute(k, v));
    const text = document.createElementNS("http://www.w3.org/2000/svg", "text");
    text.setAttribute("x", x1 + 2);
    sizeText(text, img);
    text.setAttribute("y", y1 + parseFloat(text.style.fontSize));
    text.textContent = l.label;
    svg.append(rect, text);
  }
}

// Captions in the SVG's user units (image pixels): about 1/16 of the image, so a 32-pixel thumbnail and a
// 4000-pixel photo read alike.
function sizeText(text, img) {
  const size = Math.max(img.naturalWidth, img.naturalHeight) / 16;
  text.style.fontSize = `${size}px`;
  text.style.strokeWidth = `${size / 6}px`;
}

// Regions attached with `index --regions`: masks as one server-drawn PNG, boxes as dashed outlines.
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324"];

function drawRegions(item, svg, img) {
  const regions = item.regions || [];
  if (regions.some((r) => r.mask)) {
    const overlay = document.createElementNS("http://www.w3.org/2000/svg", "image");
    overlay.setAttribute("href", `${base()}/overlay?${q({ path: item.path })}`);
    Object.entries({ x: 0, y: 0, width: img.naturalWidth, height: img.naturalHeight }).forEach(([k, v]) => overlay.setAttribute(k, v));
    overlay.dataset.testid = "mask-overlay";
    svg.appendChild(overlay);
  }
  const classes = [...new Set(regions.map((r) => r.label))];
  for (const r of regions) {
    const [x1, y1, x2, y2] = r.xyxy;
    const colour = PALETTE[classes.indexOf(r.label) % PALETTE.length];
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 }).forEach(([k, v]) => rect.setAttribute(k, v));
    rect.setAttribute("class", "region");
    rect.style.stroke = colour;  // CSSOM, which the security policy allows (a style attribute it would not)
    rect.dataset.testid = "region";
    const text = document.createElementNS("http://www.w3.org/2000/svg", "text");
    text.setAttribute("x", x1 + 2);
    text.setAttribute("y", y2 - 4);
    text.setAttribute("class", "region");
    sizeText(text, img);
    text.textContent = r.score == null ? r.label : `${r.label} ${fmt(r.score)}`;
    svg.append(rect, text);
  }
}

function closeDetail() {
  $("detail").hidden = true;
  state.current = -1;
  reload().catch(showError);
}

async function decide(action, label) {
  const item = state.items[state.current];
  if (!item || !label) return;
  try {
    await api(`${base()}/reviews`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: item.path, label, action }),
    });
    message(`${action}: ${label}`);
    await openDetail(state.current);
  } catch (error) { message(error.message, true); }
}

async function queueDecision(decision) {
  const item = state.items[state.current];
  if (!item) return;
  const f = item.finding || {};
  const body = { path: item.path, decision };
  if (decision === "keep") body.label = f.label !== undefined && !Array.isArray(f.label) ? f.label : (f.suggested && f.by ? f.suggested : selectedLabel());
  if (decision === "relabel") {
    const guess = f.quality !== undefined ? [].concat(f.suggested)[0] : (f.suggested || "");
    const label = window.prompt("New label", guess || "");
    if (!label) return;
    body.label = label.trim();
  }
  if (decision === "duplicate") {
    if (!f.duplicate_of) { message("no duplicate known for this image: open it from the duplicate queue", true); return; }
    body.duplicate_of = f.duplicate_of;
  }
  if (!body.label) delete body.label;
  try {
    await api(`${base()}/decisions`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    message(`${decision}${body.label ? ": " + body.label : ""}`);
    if (state.current + 1 < state.items.length) await openDetail(state.current + 1);
    else closeDetail();
  } catch (error) { message(error.message, true); }
}

function selectedLabel() {
  const item = state.items[state.current];
  return item && item.labels[state.selected] ? item.labels[state.selected].label : null;
}

function message(text, error = false) {
  const el = $("detail-message");
  el.textContent = text;
  el.className = error ? "error" : "";
}

function showError(error) { $("status").textContent = `error: ${error.message}`; }

// ---- keys and controls ------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (!$("detail").hidden) {
    if (event.key === "Escape") { if (typing) document.activeElement.blur(); else closeDetail(); return; }
    if (typing) return;
    const item = state.items[state.current];
    const keys = {
      a: () => decide("accept", selectedLabel()),
      r: () => decide("reject", selectedLabel()),
      x: () => decide("remove", selectedLabel()),
      n: () => $("add-label").focus(),
      m: () => { const p = item.path; $("detail").hidden = true; similar(p).catch(showError); },
      y: () => queueDecision("keep"),
      l: () => queueDecision("relabel"),
      d: () => queueDecision("duplicate"),
      e: () => queueDecision("exclude"),
      ArrowDown: () => { state.selected = Math.min(state.selected + 1, item.labels.length - 1); renderLabels(item); },
      ArrowUp: () => { state.selected = Math.max(state.selected - 1, 0); renderLabels(item); },
      ArrowRight: () => openDetail(state.current + 1),
      ArrowLeft: () => openDetail(state.current - 1),
    };
    keys.j = keys.ArrowDown;
    keys.k = keys.ArrowUp;
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
    return;
  }
  if (event.key === "/" && !typing) { event.preventDefault(); $("query").focus(); }
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("query").value.trim();
  (text ? search(text) : browse(0)).catch(showError);
});
$("clear").addEventListener("click", () => { $("query").value = ""; browse(0).catch(showError); });
$("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const label = $("add-label").value.trim();
  if (!label) return;
  $("add-label").value = "";
  $("add-label").blur();
  decide("add", label);
});
$("similar").addEventListener("click", () => {
  const p = state.items[state.current].path;
  $("detail").hidden = true;
  similar(p).catch(showError);
});
$("close").addEventListener("click", closeDetail);
$("detail").addEventListener("click", (event) => { if (event.target.id === "detail") closeDetail(); });
const page = (offset) => (state.mode === "queue" ? showQueue(offset) : browse(offset));
$("prev").addEventListener("click", () => page(Math.max(0, state.offset - PAGE)).catch(showError));
$("next").addEventListener("click", () => page(state.offset + PAGE).catch(showError));
$("queue").addEventListener("change", () => ($("queue").value ? showQueue(0) : browse(0)).catch(showError));
$("learn").addEventListener("click", () => learnNow().catch(showError));
$("collection").addEventListener("change", async (event) => {
  state.collection = event.target.value;
  await loadLabels();
  await browse(0);
});
for (const id of ["label-filter", "min-score", "max-score", "unreviewed"]) {
  $(id).addEventListener("change", () => (state.mode === "browse" ? browse(0) : reload()).catch(showError));
}

loadCollections().catch(showError);
