// The LELP Distill console: views over the JSON API, switched by the URL hash.
// The API key is kept in sessionStorage and sent as the Authorization header, never in a URL
// (downloads too: they are fetched with the header and handed to the browser as a blob).
// Every value from the API is put in the page with textContent or as an attribute value
// (never innerHTML): names, labels and texts come from users. Reports are fetched with the
// header and shown in a sandboxed iframe (srcdoc, no scripts allowed), sized to their content.
"use strict";

const KEY = "lelp_api_key";
const POLL_MS = 2000;
const REPORT_POLL_MS = 5000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const ACTIVE = new Set(["queued", "running"]);
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f"];
const VIEWS = ["login-view", "jobs-view", "job-view", "new-view", "teachers-view", "teacher-view", "datasets-view",
  "dataset-view", "models-view", "model-view"];
let timer = null;
let reportTimer = null;
const names = { teachers: new Map(), datasets: new Map() };

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "") },
    options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let code = "http_" + response.status, message = response.statusText || "request failed", param = null;
    try {
      const body = await response.json();
      if (body && body.error) { code = body.error.code; message = body.error.message; param = body.error.param; }
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, code, message, param);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();
const post = (path, body) => json(path, body === undefined ? { method: "POST" } : {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
});

// --- small DOM helpers (text only: nothing from the API is parsed as HTML) -------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return node;
}

function cell(row, content, className) {
  const td = el("td", { className });
  if (content != null) td.appendChild(typeof content === "object" ? content : document.createTextNode(String(content)));
  row.appendChild(td);
  return td;
}

const link = (href, text) => el("a", { href }, text);
const enc = encodeURIComponent;

function pct(x, digits = 1) {
  return x == null || Number.isNaN(x) ? "\u2013" : (x * 100).toFixed(digits) + "%";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function seconds(s) {
  if (s == null || s < 0) return "";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function duration(job) {
  if (!job.started_at) return "";
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  return seconds((end - new Date(job.started_at)) / 1000);
}

function count(n) {
  return n == null ? "" : Number(n).toLocaleString("en-US");
}

function statusPill(status) {
  return el("span", { className: "status " + status }, status);
}

function progressBar(fraction) {
  const fill = el("div");
  fill.style.width = Math.round((fraction || 0) * 100) + "%";
  return el("div", { className: "bar" }, fill);
}

function jobFraction(job) {
  if (job.status === "succeeded") return 1;
  return job.progress && job.progress.fraction != null ? job.progress.fraction : 0;
}

// The headline figures of a finished job or a model: accuracy against the labels and its share
// of the teacher's; without labelled eval data only agreement with the teacher exists.
function quality(metrics) {
  const m = metrics || {};
  const student = m.student && m.student.accuracy, teacher = m.teacher && m.teacher.accuracy;
  return {
    accuracy: student, teacher, agreement: m.agreement,
    ofTeacher: student != null && teacher ? student / teacher : null,
  };
}

function teacherName(id) {
  return id ? names.teachers.get(id) || id : "(deleted)";
}

function datasetName(id) {
  return id ? names.datasets.get(id) || id : "(deleted)";
}

async function loadNames() {
  const [teachers, datasets] = await Promise.all([json("/v1/teachers?limit=100"), json("/v1/datasets?limit=100")]);
  for (const t of teachers.data) names.teachers.set(t.id, t.name);
  for (const d of datasets.data) names.datasets.set(d.id, d.name);
  return { teachers: teachers.data, datasets: datasets.data };
}

function showError(err) {
  const box = $("error");
  if (err instanceof ApiError && err.status === 401) {
    sessionStorage.removeItem(KEY);
    route();
    showLoginError(err);
    return;
  }
  box.textContent = err instanceof ApiError ? err.message + " (" + err.code + ")" : String(err);
  box.hidden = false;
}

function showIn(box, err) {
  if (err instanceof ApiError && err.status === 401) return showError(err);
  box.textContent = err instanceof ApiError
    ? err.message + " (" + err.code + (err.param ? ", " + err.param : "") + ")" : String(err);
  box.hidden = false;
}

function showLoginError(err) {
  const box = $("login-error");
  box.textContent = err.status === 401
    ? "That API key was not accepted (" + err.code + "): " + err.message + ". Check it and try again."
    : "Could not reach the API: " + err.message;
  box.hidden = false;
}

function stopPolling() {
  clearTimeout(timer);
  clearTimeout(reportTimer);
  timer = reportTimer = null;
}

function poll(fn, ms = POLL_MS) {
  const tick = async () => {
    let again = true;
    try { again = (await fn()) !== false; } catch (err) { showError(err); again = false; }
    if (again) timer = setTimeout(tick, ms);
  };
  tick();
}

function show(view) {
  for (const id of VIEWS) $(id).hidden = id !== view;
  $("nav").hidden = view === "login-view";
  $("error").hidden = true;
}

// --- reports: a sandboxed iframe as tall as its page ------------------------------------------

function fitFrame(frame) {
  try {
    const doc = frame.contentDocument;
    if (!doc || !doc.documentElement) return;
    const height = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
    if (height > 0) frame.style.height = (height + 24) + "px";
  } catch (_) { /* not readable: keep the CSS height */ }
}

function setReport(frame, html) {
  if (frame.dataset.html !== html) {  // an unchanged page is not reloaded (keeps the scroll position)
    frame.dataset.html = html;
    frame.srcdoc = html;
  }
}

async function loadReport(frame, path) {
  try {
    setReport(frame, await (await api(path)).text());
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) throw err;
    setReport(frame, "<p style='font-family:sans-serif'>No report: " + escapeHtml(err.message) + "</p>");
  }
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

// --- charts: SVG line charts with axes, drawn from numbers only -------------------------------

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || 10 * mag;
  const ticks = [];
  for (let t = Math.floor(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  if (ticks[ticks.length - 1] < hi) ticks.push(+(ticks[ticks.length - 1] + step).toPrecision(12));
  return ticks;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text != null) node.textContent = String(text);
  return node;
}

// series: [{name, points: [[x, y], ...]}]; axes titled xLabel and yLabel.
function lineChart(container, series, { xLabel, yLabel, empty }) {
  container.replaceChildren();
  const all = series.flatMap((s) => s.points);
  if (!all.length) {
    container.appendChild(el("p", { className: "hint" }, empty));
    return;
  }
  const W = 440, H = 230, L = 70, R = 12, T = 12, B = 44;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(1, ...xs), Math.max(...xs, 2), Math.min(6, Math.max(...xs, 2)))
    .filter((t) => Number.isInteger(t));
  const yTicks = niceTicks(Math.min(...ys), Math.max(...ys));
  const x0 = xTicks[0], x1 = xTicks[xTicks.length - 1], y0 = yTicks[0], y1 = yTicks[yTicks.length - 1];
  const px = (x) => L + (W - L - R) * (x - x0) / ((x1 - x0) || 1);
  const py = (y) => H - B - (H - T - B) * (y - y0) / ((y1 - y0) || 1);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": yLabel + " by " + xLabel,
    class: "plot" });
  const axes = svg("g", { class: "axes" });
  axes.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis x-axis" }));
  axes.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis y-axis" }));
  const digits = Math.max(0, Math.min(4, -Math.floor(Math.log10((y1 - y0) / 5 || 1)) + 1));
  for (const t of yTicks) {
    axes.appendChild(svg("line", { x1: L, y1: py(t), x2: W - R, y2: py(t), class: "grid" }));
    axes.appendChild(svg("text", { x: L - 6, y: py(t) + 4, "text-anchor": "end", class: "tick y-tick" },
      t.toFixed(digits)));
  }
  for (const t of xTicks) {
    axes.appendChild(svg("line", { x1: px(t), y1: H - B, x2: px(t), y2: H - B + 4, class: "axis" }));
    axes.appendChild(svg("text", { x: px(t), y: H - B + 17, "text-anchor": "middle", class: "tick x-tick" }, t));
  }
  axes.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-title" },
    xLabel));
  axes.appendChild(svg("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis-title",
    transform: `rotate(-90 14 ${(T + H - B) / 2})` }, yLabel));
  chart.appendChild(axes);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => (j ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1)).join(" ");
    chart.appendChild(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, class: "series" }));
    for (const p of s.points) {
      const dot = svg("circle", { cx: px(p[0]), cy: py(p[1]), r: 3, fill: color });
      dot.appendChild(svg("title", {}, s.name + ": epoch " + p[0] + ", " + p[1]));
      chart.appendChild(dot);
    }
  });
  container.appendChild(chart);
  if (series.length > 1 || series[0].name) {
    const legend = el("p", { className: "legend" });
    series.forEach((s, i) => {
      const swatch = el("span", { className: "swatch" });
      swatch.style.background = COLORS[i % COLORS.length];
      legend.appendChild(el("span", {}, swatch, s.name || "student"));
    });
    container.appendChild(legend);
  }
}

function historySeries(history, key) {
  const byCandidate = new Map();
  for (const point of history || []) {
    if (point[key] == null) continue;
    const name = point.candidate || "";
    if (!byCandidate.has(name)) byCandidate.set(name, []);
    byCandidate.get(name).push([point.epoch, point[key]]);
  }
  return [...byCandidate].map(([name, points]) => ({ name, points }));
}

function drawCharts(job) {
  const history = (job.progress && job.progress.history) || [];
  lineChart($("chart-loss"), historySeries(history, "train_loss"),
    { xLabel: "epoch", yLabel: "train loss", empty: "No finished epoch yet." });
  lineChart($("chart-score"), historySeries(history, "val_score"),
    { xLabel: "epoch", yLabel: "validation score", empty: "No epoch scored on the held-out split yet." });
}

// --- jobs -------------------------------------------------------------------------------------

function progressCell(job) {
  const p = job.progress || {};
  if (job.status === "succeeded") return el("span", {}, "done");
  if (job.status === "failed") return el("span", { className: "hint" }, job.error ? job.error.code : "failed");
  if (job.status === "cancelled") return el("span", { className: "hint" }, "cancelled" + (p.stage && p.stage !== "queued"
    ? " during " + p.stage : ""));
  if (job.status === "queued") return el("span", { className: "hint" }, "waiting for a worker");
  const fraction = jobFraction(job);
  return el("span", { className: "progress" }, progressBar(fraction),
    el("span", { className: "stage" }, p.stage || ""), " " + pct(fraction, 0));
}

function actionButtons(job) {
  const box = el("span", { className: "actions" });
  if (ACTIVE.has(job.status) && !job.cancel_requested) {
    box.appendChild(el("button", { type: "button", className: "small", dataset: { action: "cancel", jobId: job.id } },
      "Cancel"));
  }
  if (job.status === "failed" || job.status === "cancelled") {
    box.appendChild(el("button", { type: "button", className: "small", dataset: { action: "retry", jobId: job.id } },
      "Retry"));
  }
  return box;
}

// One page of the list: ``limit`` rows (1-100, default 50) after the cursor ``after``, both in the
// URL hash so that the browser's back button pages back.
async function loadJobs(query = new URLSearchParams()) {
  const limit = Math.min(100, Math.max(1, parseInt(query.get("limit"), 10) || 50));
  const after = query.get("after");
  const [page] = await Promise.all([json("/v1/jobs?limit=" + limit + (after ? "&after=" + enc(after) : "")),
    loadNames()]);
  $("jobs-newest").hidden = !after;
  $("jobs-newest").href = "#/jobs?limit=" + limit;
  $("jobs-older").hidden = !page.has_more;
  if (page.next_cursor) $("jobs-older").href = "#/jobs?limit=" + limit + "&after=" + enc(page.next_cursor);
  const body = $("jobs-table").querySelector("tbody");
  body.replaceChildren();
  for (const job of page.data) {
    const q = quality(job.metrics);
    const row = el("tr", { dataset: { jobId: job.id, status: job.status } });
    const shortId = job.id.length > 14 ? job.id.slice(0, 12) + "\u2026" : job.id;
    const idLink = link("#/jobs/" + enc(job.id), job.name || shortId);
    idLink.title = job.id;
    const nameCell = cell(row, idLink, "job");
    if (job.name) nameCell.append(el("br"), el("code", { className: "hint" }, shortId));
    cell(row, job.teacher_id ? link("#/teachers/" + enc(job.teacher_id), teacherName(job.teacher_id))
      : "(deleted)", "teacher");
    const data = cell(row, job.train_dataset_id ? link("#/datasets/" + enc(job.train_dataset_id),
      datasetName(job.train_dataset_id)) : "(deleted)", "dataset");
    if (job.eval_dataset_id) {
      data.append(el("br"), el("span", { className: "hint" }, "eval: "),
        link("#/datasets/" + enc(job.eval_dataset_id), datasetName(job.eval_dataset_id)));
    }
    cell(row, job.method + " \u00b7 " + ((job.student && job.student.kind) || ""), "method");
    cell(row, statusPill(job.status), "status-cell");
    cell(row, progressCell(job), "progress-cell");
    cell(row, q.accuracy != null ? pct(q.accuracy) : (q.agreement != null ? pct(q.agreement) + " agreement" : "\u2013"),
      "accuracy");
    cell(row, pct(q.ofTeacher), "of-teacher");
    cell(row, duration(job), "duration");
    cell(row, when(job.created_at), "created");
    cell(row, actionButtons(job), "action-cell");
    body.appendChild(row);
  }
  $("jobs-empty").hidden = page.data.length > 0;
}

async function jobAction(action, id) {
  if (action === "cancel") {
    await post("/v1/jobs/" + enc(id) + "/cancel");
    route();
  } else if (action === "retry") {
    const job = await post("/v1/jobs/" + enc(id) + "/retry");
    location.hash = "#/jobs/" + enc(job.id);
  }
}

function definition(list, term, ...value) {
  list.appendChild(el("dt", {}, term));
  list.appendChild(el("dd", {}, ...value));
}

async function loadJob(id) {
  const job = await json("/v1/jobs/" + enc(id));
  if (!names.teachers.has(job.teacher_id) || !names.datasets.has(job.train_dataset_id)) await loadNames();
  $("job-id").textContent = job.id;
  $("job-name").textContent = job.name || "Job";
  const status = $("job-status");
  status.textContent = job.status;
  status.className = "status " + job.status;
  $("job-cancel").hidden = !ACTIVE.has(job.status) || job.cancel_requested;
  $("job-retry").hidden = !(job.status === "failed" || job.status === "cancelled");
  $("job-cancel").dataset.jobId = $("job-retry").dataset.jobId = job.id;
  const p = job.progress || {};
  const q = quality(job.metrics);
  $("job-summary").textContent = job.method + " \u00b7 " + ((job.student && job.student.kind) || "")
    + " student \u00b7 device " + job.device + " \u00b7 attempt " + job.attempts + " \u00b7 submitted "
    + when(job.created_at) + (job.started_at ? " \u00b7 ran " + duration(job) : "")
    + (q.accuracy != null ? " \u00b7 accuracy " + pct(q.accuracy) + " (" + pct(q.ofTeacher) + " of the teacher's "
      + pct(q.teacher) + ")" : "") + (q.agreement != null ? " \u00b7 agreement with the teacher " + pct(q.agreement) : "");
  const inputs = $("job-inputs");
  inputs.replaceChildren("Teacher ", job.teacher_id ? link("#/teachers/" + enc(job.teacher_id), teacherName(job.teacher_id))
    : "(deleted)", " \u00b7 train ", job.train_dataset_id ? link("#/datasets/" + enc(job.train_dataset_id),
    datasetName(job.train_dataset_id)) : "(deleted)");
  if (job.eval_dataset_id) {
    inputs.append(" \u00b7 eval ", link("#/datasets/" + enc(job.eval_dataset_id), datasetName(job.eval_dataset_id)));
  }
  const hp = Object.entries(job.hyperparameters || {}).map(([k, v]) => k + "=" + v).join(", ");
  inputs.append(" \u00b7 hyperparameters: " + (hp || "defaults"));
  const fraction = jobFraction(job);
  $("job-bar").style.width = Math.round(fraction * 100) + "%";
  let line = FINISHED.has(job.status) ? "finished " + when(job.finished_at)
    : "stage " + (job.status === "queued" ? "waiting for a worker" : p.stage) + (p.epoch ? ", epoch " + p.epoch : "")
      + (p.loss != null ? ", loss " + p.loss.toFixed(4) : "") + " \u00b7 " + pct(fraction, 0) + " of the stage"
      + (p.eta_s != null && fraction >= 0.01 ? " \u00b7 about " + Math.round(p.eta_s) + " s left in it" : "");
  if (job.cancel_requested && ACTIVE.has(job.status)) line += " \u00b7 cancel requested";
  $("job-progress").textContent = line;
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error ? job.error.code + ": " + job.error.message : "";
  $("job-model").hidden = !job.model_id;
  if (job.model_id) {
    $("job-model-link").href = "#/models/" + enc(job.model_id);
    $("job-model-link").textContent = job.model_id;
  }
  drawCharts(job);
  const events = await json("/v1/jobs/" + enc(id) + "/events?limit=200");
  const body = $("events-table").querySelector("tbody");
  body.replaceChildren();
  for (const e of events.data) {
    const row = el("tr");
    cell(row, when(e.at));
    cell(row, e.type);
    cell(row, e.message);
    body.appendChild(row);
  }
  const frame = $("job-report");
  const due = !reportTimer || FINISHED.has(job.status);
  if (due) {
    await loadReport(frame, "/v1/jobs/" + enc(id) + "/report");
    if (!FINISHED.has(job.status)) reportTimer = setTimeout(() => { reportTimer = null; }, REPORT_POLL_MS);
  }
  return !FINISHED.has(job.status);  // stop polling a finished job
}

// --- the submit form --------------------------------------------------------------------------

const SPEC = () => JSON.parse($("form-spec").textContent);

function fillSelect(select, items, label, { none, chosen } = {}) {
  const keep = chosen || select.value;
  select.replaceChildren();
  if (none) select.appendChild(el("option", { value: "" }, none));
  for (const item of items) select.appendChild(el("option", { value: item.id }, label(item)));
  if (keep && items.some((i) => i.id === keep)) select.value = keep;
}

function datasetLabel(d) {
  return d.name + " \u00b7 " + count(d.rows) + " rows" + (d.labelled_rows ? ", " + count(d.labelled_rows) + " labelled"
    : ", unlabelled") + " \u00b7 " + d.id;
}

async function loadNewJob(query) {
  const { teachers, datasets } = await loadNames();
  const bases = await json("/v1/base-models?limit=100");
  fillSelect($("f-teacher"), teachers, (t) => t.name + " \u00b7 " + t.labels.join("/") + " \u00b7 " + t.id,
    { chosen: query.get("teacher") });
  fillSelect($("f-train"), datasets, datasetLabel, { chosen: query.get("train") });
  fillSelect($("f-eval"), datasets.filter((d) => d.labelled_rows > 0), datasetLabel,
    { none: "none: hold out part of the train set", chosen: query.get("eval") });
  fillSelect($("f-validation"), datasets, datasetLabel,
    { none: "none: hold out part of the train set", chosen: query.get("validation") });
  const list = $("base-choices");
  list.replaceChildren();
  for (const b of bases.data) list.appendChild(el("option", { value: b.id }, "base model " + b.name));
  for (const t of teachers) list.appendChild(el("option", { value: t.id }, "teacher " + t.name));
  const missing = [];
  if (!teachers.length) missing.push(link("#/teachers", "upload a teacher"));
  if (!datasets.length) missing.push(link("#/datasets", "upload a dataset"));
  const box = $("new-error");
  if (missing.length) {
    box.replaceChildren("Nothing to submit yet: ", ...missing.flatMap((a, i) => (i ? [" and ", a] : [a])), ".");
    box.hidden = false;
  }
  return false;
}

// A student kind has its own defaults: a field still at the old kind's default takes the new one.
function applyKindDefaults() {
  const defaults = SPEC().kind_defaults[$("f-kind").value] || {};
  for (const [name, value] of Object.entries(defaults)) {
    const input = $("hp-" + name);
    if (!input) continue;
    if (input.value === input.dataset.default) input.value = String(value);
    input.dataset.default = String(value);
  }
}

function parseField(input) {
  const raw = input.value.trim();
  if (input.dataset.type === "subclasses" && raw === "auto") return raw;
  const number = Number(raw);
  return raw !== "" && Number.isFinite(number) ? number : raw;  // not a number: the API names the field
}

function jobBody() {
  const body = { teacher_id: $("f-teacher").value, train_dataset_id: $("f-train").value,
    method: $("f-method").value, device: $("f-device").value, student: { kind: $("f-kind").value },
    hyperparameters: {} };
  if ($("f-eval").value) body.eval_dataset_id = $("f-eval").value;
  if ($("f-validation").value) body.validation_dataset_id = $("f-validation").value;
  if ($("f-name").value.trim()) body.name = $("f-name").value.trim();
  if ($("f-base").value.trim()) body.student.base = $("f-base").value.trim();
  if ($("f-min-speedup").value.trim()) body.student.min_speedup = parseField($("f-min-speedup"));
  if ($("f-webhook").value.trim()) body.webhook_url = $("f-webhook").value.trim();
  for (const input of document.querySelectorAll("#job-form input[data-hp]")) {
    // a field left at the default shown is not sent: the library applies its own rule (e.g. patience)
    if (input.value.trim() === "" || input.value.trim() === input.dataset.default) continue;
    body.hyperparameters[input.dataset.hp] = parseField(input);
  }
  return body;
}

async function submitJob(event) {
  event.preventDefault();
  $("new-error").hidden = true;
  const button = $("job-form").querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const job = await post("/v1/jobs", jobBody());
    location.hash = "#/jobs/" + enc(job.id);
  } catch (err) {
    showIn($("new-error"), err);
  } finally {
    button.disabled = false;
  }
}

// --- teachers and datasets --------------------------------------------------------------------

async function loadTeachers() {
  const page = await json("/v1/teachers?limit=100");
  const body = $("teachers-table").querySelector("tbody");
  body.replaceChildren();
  for (const t of page.data) {
    names.teachers.set(t.id, t.name);
    const row = el("tr", { dataset: { teacherId: t.id } });
    cell(row, link("#/teachers/" + enc(t.id), t.name), "name");
    cell(row, t.architecture);
    cell(row, t.labels.join(", "), "labels");
    cell(row, count(t.parameters));
    cell(row, t.id, "id");
    cell(row, when(t.created_at));
    body.appendChild(row);
  }
  $("teachers-empty").hidden = page.data.length > 0;
  return false;
}

async function loadTeacher(id) {
  const t = await json("/v1/teachers/" + enc(id));
  $("teacher-title").textContent = t.name;
  const list = $("teacher-details");
  list.replaceChildren();
  definition(list, "id", t.id);
  definition(list, "architecture", t.architecture + " (" + t.model_type + ")");
  definition(list, "labels", t.labels.join(", ") + " (" + t.num_labels + ")");
  definition(list, "parameters", count(t.parameters));
  definition(list, "hidden size", t.hidden_size);
  definition(list, "inputs", t.text_pairs ? "(text, text_pair) pairs" : "single texts");
  definition(list, "sha256", el("code", {}, t.sha256));
  definition(list, "uploaded", when(t.created_at));
  $("teacher-submit").href = "#/new?teacher=" + enc(t.id);
  return false;
}

async function loadDatasets() {
  const page = await json("/v1/datasets?limit=100");
  const body = $("datasets-table").querySelector("tbody");
  body.replaceChildren();
  for (const d of page.data) {
    names.datasets.set(d.id, d.name);
    const row = el("tr", { dataset: { datasetId: d.id } });
    cell(row, link("#/datasets/" + enc(d.id), d.name), "name");
    cell(row, count(d.rows), "rows");
    cell(row, count(d.labelled_rows), "labelled");
    cell(row, Object.entries(d.label_counts || {}).map(([k, v]) => k + ": " + count(v)).join(", "), "labels");
    cell(row, d.format);
    cell(row, d.id, "id");
    cell(row, when(d.created_at));
    body.appendChild(row);
  }
  $("datasets-empty").hidden = page.data.length > 0;
  return false;
}

async function loadDataset(id) {
  const d = await json("/v1/datasets/" + enc(id));
  $("dataset-title").textContent = d.name;
  const list = $("dataset-details");
  list.replaceChildren();
  definition(list, "id", d.id);
  definition(list, "format", d.format + " \u00b7 " + count(d.size_bytes) + " bytes");
  definition(list, "rows", count(d.rows) + " (" + count(d.labelled_rows) + " labelled)");
  definition(list, "text column", d.text_column + (d.text_pair_column ? " + " + d.text_pair_column : ""));
  definition(list, "label column", d.label_column || "none (a transfer set)");
  definition(list, "label counts", Object.entries(d.label_counts || {}).map(([k, v]) => k + ": " + count(v))
    .join(", ") || "\u2013");
  definition(list, "columns", d.columns.join(", "));
  definition(list, "sha256", el("code", {}, d.sha256));
  definition(list, "uploaded", when(d.created_at));
  $("dataset-submit").href = "#/new?train=" + enc(d.id);
  return false;
}

// Uploads go as multipart/form-data (the browser sets the boundary); empty optional fields are left out.
async function upload(event, path, formId, statusId, errorId, after) {
  event.preventDefault();
  const form = $(formId), status = $(statusId), error = $(errorId);
  const data = new FormData();
  for (const input of form.querySelectorAll("input, select")) {
    if (input.type === "file") {
      if (input.files[0]) data.append("file", input.files[0], input.files[0].name);
    } else if (input.type === "checkbox") {
      data.append(input.name, input.checked ? "true" : "false");
    } else if (input.value !== "" || input.name === "label_column") {
      data.append(input.name, input.value);  // an empty label column means "unlabelled": it is sent
    }
  }
  error.hidden = true;
  status.textContent = "Uploading\u2026";
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const created = await json(path, { method: "POST", body: data });
    form.reset();
    after(created, status);
  } catch (err) {
    status.textContent = "";
    showIn(error, err);
  } finally {
    button.disabled = false;
  }
}

function uploaded(kind, query) {
  return (created, status) => {
    status.replaceChildren("Uploaded ", link("#/" + kind + "/" + enc(created.id), created.name), " (" + created.id
      + "). ", link("#/new?" + query + "=" + enc(created.id), "Submit a job with it"), ".");
    status.dataset.createdId = created.id;
    (kind === "teachers" ? loadTeachers : loadDatasets)().catch(showError);
  };
}

// --- models -----------------------------------------------------------------------------------

async function loadModels() {
  const [page] = await Promise.all([json("/v1/models?limit=50"), loadNames()]);
  const body = $("models-table").querySelector("tbody");
  body.replaceChildren();
  for (const model of page.data) {
    const q = quality(model.metrics);
    const row = el("tr", { dataset: { modelId: model.id } });
    cell(row, link("#/models/" + enc(model.id), model.id));
    cell(row, model.teacher_id ? link("#/teachers/" + enc(model.teacher_id), teacherName(model.teacher_id))
      : "(deleted)");
    cell(row, model.method);
    cell(row, model.kind);
    cell(row, pct(q.accuracy));
    cell(row, pct(q.ofTeacher));
    cell(row, pct(q.agreement));
    cell(row, when(model.created_at));
    body.appendChild(row);
  }
  $("models-empty").hidden = page.data.length > 0;
  return false;
}

async function loadModel(id) {
  const model = await json("/v1/models/" + enc(id));
  if (model.teacher_id && !names.teachers.has(model.teacher_id)) await loadNames();
  $("model-id").textContent = model.id;
  const q = quality(model.metrics);
  $("model-summary").textContent = model.method + " \u00b7 " + model.kind + " student \u00b7 "
    + count(model.parameters) + " parameters \u00b7 labels " + (model.labels || []).join(", ")
    + " \u00b7 accuracy " + pct(q.accuracy) + " (teacher " + pct(q.teacher) + ", " + pct(q.ofTeacher)
    + " of it) \u00b7 agreement with the teacher " + pct(q.agreement) + (model.runtime ? " \u00b7 served on "
      + model.runtime : "");
  $("model-inputs").replaceChildren("From job ", link("#/jobs/" + enc(model.job_id), model.job_id), " \u00b7 teacher ",
    model.teacher_id ? link("#/teachers/" + enc(model.teacher_id), teacherName(model.teacher_id)) : "(deleted)");
  $("predict-form").dataset.modelId = model.id;
  $("download-artifact").dataset.modelId = model.id;
  $("predict-table").hidden = true;
  $("predict-error").hidden = true;
  $("download-error").hidden = true;
  $("download-status").textContent = "";
  await loadReport($("model-report"), "/v1/models/" + enc(id) + "/report");
  return false;
}

function filename(disposition, fallback) {
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || "");
  return match ? decodeURIComponent(match[1]) : fallback;
}

// The download is fetched with the Authorization header, then saved from a blob: URL.
async function download(query, fallback) {
  const id = $("download-artifact").dataset.modelId;
  const status = $("download-status");
  $("download-error").hidden = true;
  status.textContent = "Preparing " + fallback + "\u2026";
  try {
    const response = await api("/v1/models/" + enc(id) + "/artifact" + query);
    const blob = await response.blob();
    const name = filename(response.headers.get("Content-Disposition"), id + "-" + fallback);
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = "Downloaded " + name + " (" + count(blob.size) + " bytes).";
  } catch (err) {
    status.textContent = "";
    showIn($("download-error"), err);
  }
}

async function predict(event) {
  event.preventDefault();
  const id = $("predict-form").dataset.modelId;
  const inputs = $("predict-input").value.split("\n").map((s) => s.trim()).filter((s) => s);
  $("predict-error").hidden = true;
  try {
    const answer = await post("/v1/models/" + enc(id) + "/predict", { inputs });
    const body = $("predict-table").querySelector("tbody");
    body.replaceChildren();
    answer.predictions.forEach((prediction, i) => {
      const row = el("tr");
      cell(row, inputs[i]);
      cell(row, prediction.label, "label");
      cell(row, prediction.score.toFixed(3), "score");
      const probs = el("div", { className: "probs" });
      const entries = Object.entries(prediction.probabilities || {}).sort((a, b) => b[1] - a[1]);
      for (const [label, p] of entries) {
        const fill = el("div");
        fill.style.width = Math.round(p * 100) + "%";
        probs.appendChild(el("div", { className: "prob", dataset: { label } }, el("span", { className: "prob-label" },
          label), el("div", { className: "bar" }, fill), el("span", { className: "prob-value" }, p.toFixed(3))));
      }
      cell(row, probs, "probabilities");
      body.appendChild(row);
    });
    $("predict-table").hidden = false;
  } catch (err) {
    showIn($("predict-error"), err);
  }
}

// --- sign-in and routing ----------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("login-error").hidden = true;
  sessionStorage.setItem(KEY, key);
  try {
    await api("/v1/jobs?limit=1");  // the cheapest call that needs a valid key
  } catch (err) {
    sessionStorage.removeItem(KEY);
    showLoginError(err);
    return;
  }
  $("api-key").value = "";
  if (!location.hash || location.hash === "#/login") location.hash = "#/jobs";
  else route();
}

function route() {
  stopPolling();
  window.scrollTo(0, 0);
  if (!sessionStorage.getItem(KEY)) {
    show("login-view");
    return;
  }
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const query = new URLSearchParams(search || "");
  const one = { jobs: ["job-view", loadJob], teachers: ["teacher-view", loadTeacher],
    datasets: ["dataset-view", loadDataset], models: ["model-view", loadModel] };
  const many = { new: ["new-view", () => loadNewJob(query)], jobs: ["jobs-view", () => loadJobs(query)], teachers: ["teachers-view", loadTeachers],
    datasets: ["datasets-view", loadDatasets], models: ["models-view", loadModels] };
  if (parts[1] && one[parts[0]]) {
    const [view, load] = one[parts[0]];
    show(view);
    if (view === "job-view") $("job-report").dataset.html = "";
    poll(() => load(parts[1]));
  } else if (many[parts[0]]) {
    const [view, load] = many[parts[0]];
    show(view);
    if (view === "new-view") $("new-error").hidden = true;
    poll(load);
  } else {
    show("jobs-view");
    poll(() => loadJobs(query));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("predict-form").addEventListener("submit", predict);
  $("job-form").addEventListener("submit", submitJob);
  $("f-kind").addEventListener("change", applyKindDefaults);
  $("teacher-form").addEventListener("submit", (e) => upload(e, "/v1/teachers", "teacher-form", "teacher-status",
    "teacher-error", uploaded("teachers", "teacher")));
  $("dataset-form").addEventListener("submit", (e) => upload(e, "/v1/datasets", "dataset-form", "dataset-status",
    "dataset-error", uploaded("datasets", "train")));
  $("download-artifact").addEventListener("click", () => download("", "student.tar.gz"));
  $("download-onnx").addEventListener("click", () => download("?format=onnx", "onnx-fp32.zip"));
  $("download-onnx-int8").addEventListener("click", () => download("?format=onnx&quantize=int8", "onnx-int8.zip"));
  const frames = document.querySelectorAll("iframe.report");
  for (const frame of frames) frame.addEventListener("load", () => fitFrame(frame));
  window.addEventListener("resize", () => frames.forEach(fitFrame));  // a narrower page is a taller report
  // job actions: the list's buttons and the job page's
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    jobAction(button.dataset.action, button.dataset.jobId).catch(showError).finally(() => { button.disabled = false; });
  });
  $("job-cancel").dataset.action = "cancel";
  $("job-retry").dataset.action = "retry";
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.hash = "#/login";
    route();
  });
  window.addEventListener("hashchange", route);
  route();
});
