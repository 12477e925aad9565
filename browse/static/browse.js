// ifa browse: the grid (facets + thumbnails from the JSON API) and the image page's actions.
// Every request carries the token; every change is a POST.
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const taxonomy = JSON.parse(document.getElementById("taxonomy").textContent);
const TOKEN = config.token;
const byId = new Map(taxonomy.labels.map(l => [l.id, l]));
const byName = new Map(taxonomy.labels.map(l => [l.name.toLowerCase(), l]));

function withToken(url) {
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}
async function api(url, body) {
  const init = { headers: { "Authorization": "Bearer " + TOKEN } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  const data = await resp.json();
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
function fillDatalist() {
  const list = document.getElementById("label-names");
  if (!list) return;
  for (const l of taxonomy.labels) list.append(el("option", { value: l.name }, l.group));
}

// ---- the grid -----------------------------------------------------------------------------
const FILTERS = ["split", "status", "rule", "label", "group", "source", "flagged", "cluster", "problem", "round", "decision"];
function currentFilter() {
  const params = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const [k, v] of params) if (FILTERS.includes(k) && v !== "") out.append(k, v);
  return out;
}
function go(filter) {
  const q = new URLSearchParams(filter);
  q.set("token", TOKEN);
  history.pushState(null, "", "/?" + q.toString());
  loadGrid();
}
function toggle(name, value) {
  const f = currentFilter();
  if (name === "label") {
    const labels = f.getAll("label");
    f.delete("label");
    const next = labels.includes(value) ? labels.filter(v => v !== value) : [...labels, value];
    for (const v of next) f.append("label", v);
  } else if (f.get(name) === value) f.delete(name); else f.set(name, value);
  go(f);
}
function facetList(title, name, counts, labelOf) {
  const f = currentFilter();
  const box = el("div", { class: "facet", "data-facet": name }, el("h3", {}, title));
  const entries = Array.isArray(counts) ? counts : Object.entries(counts || {});
  if (!entries.length) box.append(el("p", { class: "none" }, "none"));
  for (const [value, n] of entries) {
    const on = name === "label" ? f.getAll("label").includes(String(value)) : f.get(name) === String(value);
    box.append(el("a", { href: "#", class: "facet-value" + (on ? " on" : ""), "data-value": value,
                         onclick: e => { e.preventDefault(); toggle(name, String(value)); } },
                  el("span", {}, labelOf ? labelOf(value) : String(value)), el("b", {}, n.toLocaleString())));
  }
  return box;
}
function renderFacets(c) {
  const lists = document.getElementById("facet-lists");
  lists.replaceChildren();
  const flags = {};
  for (const k of ["flagged", "cluster", "problem"]) if (c[k]) flags[k] = c[k];
  const flagBox = facetList("Flags", "flags", [], null);
  for (const [k, n] of Object.entries(flags)) {
    const on = currentFilter().get(k) === "1";
    flagBox.append(el("a", { href: "#", class: "facet-value" + (on ? " on" : ""), "data-value": k,
                             onclick: e => { e.preventDefault(); toggle(k, "1"); } },
                      el("span", {}, { flagged: "flagged by flag-noise", cluster: "in a dedup cluster",
                                       problem: "file problem" }[k]), el("b", {}, n.toLocaleString())));
  }
  if (Object.keys(flags).length) flagBox.querySelector(".none")?.remove();
  const groups = {};
  for (const l of c.label || []) (groups[l.group] ||= []).push([l.label_id, l.images]);
  const groupCounts = taxonomy.groups.filter(g => c.group[g]).map(g => [g, c.group[g]]);
  lists.append(facetList("Split", "split", c.split), facetList("Status", "status", c.status),
               facetList("Rule", "rule", c.rule), flagBox, facetList("Label source", "source", c.source),
               facetList("Review round", "round", c.round), facetList("Review decision", "decision", c.decision),
               facetList("Has a label of group", "group", groupCounts));
  for (const g of taxonomy.groups) {
    if (groups[g]) lists.append(facetList("Labels: " + g, "label", groups[g].slice(0, 12), v => byId.get(Number(v)).name));
  }
}
function renderChosen() {
  const box = document.getElementById("chosen");
  box.replaceChildren();
  for (const [k, v] of currentFilter()) {
    const shown = k === "label" && byId.has(Number(v)) ? byId.get(Number(v)).name : v;
    box.append(el("a", { href: "#", class: "chip", onclick: e => { e.preventDefault(); toggle(k, v); } }, `${k}: ${shown} ✕`));
  }
}
let nextCursor = null;
let loading = null;  // the page request in flight: a reset waits for it, a scroll does not start a second one
function card(img) {
  const href = withToken("/image/" + encodeURIComponent(img.image_id));
  return el("a", { class: "card " + img.status, href, "data-image": img.image_id },
            el("img", { loading: "lazy", src: withToken("/thumb/" + encodeURIComponent(img.image_id)), alt: img.image_id }),
            el("span", { class: "caption" }, `${img.image_id} · ${img.split}${img.status === "active" ? "" : " · " + img.status}`),
            el("span", { class: "labels" }, img.labels.join(", ")));
}
async function loadPage(reset) {
  if (loading) { if (!reset) return; await loading.catch(() => {}); }
  loading = fetchPage(reset);
  try { await loading; } finally { loading = null; }
}
async function fetchPage(reset) {
  const q = currentFilter();
  q.set("limit", "60");
  if (!reset && nextCursor) q.set("after", nextCursor);
  const data = await api("/api/images?" + q.toString());
  const grid = document.getElementById("grid");
  if (reset) grid.replaceChildren();
  for (const img of data.images) grid.append(card(img));
  nextCursor = data.next;
  document.getElementById("more").hidden = !nextCursor;
}
async function loadGrid() {
  renderChosen();
  const status = document.getElementById("status");
  status.textContent = "";
  try {
    await loadPage(true);
    const counts = await api("/api/facets?" + currentFilter().toString());
    document.getElementById("summary").textContent =
      `${counts.total.toLocaleString()} images in this selection`;
    renderFacets(counts);
  } catch (err) { status.textContent = err.message; }
}
function initGrid() {
  fillDatalist();
  const input = document.getElementById("label-input");
  input.addEventListener("change", () => {
    const lab = byName.get(input.value.trim().toLowerCase());
    if (lab) { input.value = ""; toggle("label", String(lab.id)); }
  });
  document.getElementById("more").addEventListener("click", () => loadPage(false));
  new IntersectionObserver(es => { if (es.some(e => e.isIntersecting) && nextCursor) loadPage(false); })
    .observe(document.getElementById("more"));
  document.getElementById("review-send").addEventListener("click", async () => {
    const out = document.getElementById("review-result");
    const filter = {};
    for (const [k, v] of currentFilter()) (filter[k] ||= []).push(v);
    try {
      const r = await api("/api/review", { filter,
        annotators: document.getElementById("review-annotators").value.split(/[\s,]+/).filter(Boolean),
        tiebreaker: document.getElementById("review-tiebreaker").value.split(/[\s,]+/).filter(Boolean),
        name: document.getElementById("review-name").value.trim() || null });
      out.textContent = `round ${r.round} created: ${r.images} images`;
    } catch (err) { out.textContent = err.message; }
  });
  window.addEventListener("popstate", loadGrid);
  loadGrid();
}

// ---- the image page -------------------------------------------------------------------------
function initImage() {
  fillDatalist();
  const id = config.image;
  const base = "/api/images/" + encodeURIComponent(id);
  const result = document.getElementById("action-result");
  const reason = () => document.getElementById("reason").value;
  async function act(path, body) {
    try {
      const r = await api(base + path, body);
      result.textContent = Object.entries(r.changed).map(([k, n]) => `${k}: ${n}`).join(", ");
      location.reload();
    } catch (err) { result.textContent = err.message; }
  }
  document.getElementById("set-aside")?.addEventListener("click", () => act("/set-aside", { reason: reason() }));
  document.getElementById("restore")?.addEventListener("click", () => act("/restore", { reason: reason() }));
  document.getElementById("add").addEventListener("click", () => {
    const name = document.getElementById("add-label").value.trim();
    if (name) act("/labels", { add: [name], reason: reason() });
  });
  for (const b of document.querySelectorAll("button.drop"))
    b.addEventListener("click", () => act("/labels", { drop: [Number(b.dataset.label)], reason: reason() }));
  for (const b of document.querySelectorAll("button.readd"))
    b.addEventListener("click", () => act("/labels", { add: [Number(b.dataset.label)], reason: reason() }));
}

if (document.body.classList.contains("grid-page")) initGrid(); else initImage();
