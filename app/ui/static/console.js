// The LELP Distill console: a few views over the JSON API, switched by the URL hash.
// The API key is kept in sessionStorage and sent as the Authorization header, never in a URL.
// Every value from the API is put in the page with textContent (never innerHTML): texts and
// names come from users. Reports are fetched with the header and shown in a sandboxed iframe
// (srcdoc, no scripts allowed).
"use strict";

const KEY = "lelp_api_key";
const POLL_MS = 2000;
const REPORT_POLL_MS = 5000;
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
let timer = null;
let reportTimer = null;

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "") },
    options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let code = "http_" + response.status, message = response.statusText || "request failed";
    try {
      const body = await response.json();
      if (body && body.error) { code = body.error.code; message = body.error.message; }
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, code, message);
  }
  return response;
}

const json = async (path, options) => (await api(path, options)).json();

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function pct(x, digits = 1) {
  return x == null ? "\u2013" : (x * 100).toFixed(digits) + "%";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function progressBar(fraction) {
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.style.width = Math.round((fraction || 0) * 100) + "%";
  bar.appendChild(fill);
  return bar;
}

function jobFraction(job) {
  if (job.status === "succeeded") return 1;
  return job.progress && job.progress.fraction != null ? job.progress.fraction : 0;
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

// --- views ----------------------------------------------------------------------------------

function show(view) {
  for (const id of ["login-view", "jobs-view", "job-view", "models-view", "model-view"]) {
    $(id).hidden = id !== view;
  }
  $("nav").hidden = view === "login-view";
  $("error").hidden = true;
}

async function loadJobs() {
  const page = await json("/v1/jobs?limit=50");
  const body = $("jobs-table").querySelector("tbody");
  body.replaceChildren();
  for (const job of page.data) {
    const row = document.createElement("tr");
    row.dataset.jobId = job.id;
    cell(row, "").appendChild(link("#/jobs/" + job.id, job.id));
    cell(row, job.status, "status-cell").classList.add("status", job.status);
    cell(row, job.status === "succeeded" ? "done" : (job.progress && job.progress.stage) || "");
    const progressCell = cell(row, "");
    progressCell.appendChild(progressBar(jobFraction(job)));
    progressCell.appendChild(document.createTextNode(pct(jobFraction(job), 0)));
    cell(row, job.method);
    cell(row, (job.student && job.student.kind) || "ngram");
    cell(row, when(job.created_at));
    body.appendChild(row);
  }
  $("jobs-empty").hidden = page.data.length > 0;
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

async function loadJob(id) {
  const job = await json("/v1/jobs/" + encodeURIComponent(id));
  $("job-id").textContent = job.id;
  const status = $("job-status");
  status.textContent = job.status;
  status.className = "status " + job.status;
  const p = job.progress || {};
  $("job-summary").textContent = job.method + " \u00b7 " + ((job.student && job.student.kind) || "ngram")
    + " student \u00b7 attempt " + job.attempts + " \u00b7 submitted " + when(job.created_at);
  const fraction = jobFraction(job);
  $("job-bar").style.width = Math.round(fraction * 100) + "%";
  let line = FINISHED.has(job.status) ? "finished " + when(job.finished_at)
    : "stage " + (job.status === "queued" ? "waiting for a worker" : p.stage) + (p.epoch ? ", epoch " + p.epoch : "")
      + (p.loss != null ? ", loss " + p.loss.toFixed(4) : "") + " \u00b7 " + pct(fraction, 0) + " of the stage"
      + (p.eta_s != null && fraction >= 0.01 ? " \u00b7 about " + Math.round(p.eta_s) + " s left in it" : "");
  if (job.error) line += " \u00b7 " + job.error.code + ": " + job.error.message;
  $("job-progress").textContent = line;
  $("job-model").hidden = !job.model_id;
  if (job.model_id) {
    $("job-model-link").href = "#/models/" + job.model_id;
    $("job-model-link").textContent = job.model_id;
  }
  const events = await json("/v1/jobs/" + encodeURIComponent(id) + "/events?limit=200");
  const body = $("events-table").querySelector("tbody");
  body.replaceChildren();
  for (const e of events.data) {
    const row = document.createElement("tr");
    cell(row, when(e.at));
    cell(row, e.type);
    cell(row, e.message);
    body.appendChild(row);
  }
  const frame = $("job-report");
  const due = !reportTimer || FINISHED.has(job.status);
  if (due) {
    await loadReport(frame, "/v1/jobs/" + encodeURIComponent(id) + "/report");
    if (!FINISHED.has(job.status)) reportTimer = setTimeout(() => { reportTimer = null; }, REPORT_POLL_MS);
  }
  return !FINISHED.has(job.status);  // stop polling a finished job
}

async function loadModels() {
  const page = await json("/v1/models?limit=50");
  const body = $("models-table").querySelector("tbody");
  body.replaceChildren();
  for (const model of page.data) {
    const row = document.createElement("tr");
    cell(row, "").appendChild(link("#/models/" + model.id, model.id));
    cell(row, model.method);
    cell(row, model.kind);
    cell(row, pct(model.metrics && model.metrics.student && model.metrics.student.accuracy));
    cell(row, pct(model.metrics && model.metrics.agreement));
    cell(row, when(model.created_at));
    body.appendChild(row);
  }
  $("models-empty").hidden = page.data.length > 0;
  return false;
}

async function loadModel(id) {
  const model = await json("/v1/models/" + encodeURIComponent(id));
  $("model-id").textContent = model.id;
  const m = model.metrics || {};
  $("model-summary").textContent = model.method + " \u00b7 " + model.kind + " student \u00b7 labels "
    + (model.labels || []).join(", ") + " \u00b7 accuracy " + pct(m.student && m.student.accuracy)
    + " (teacher " + pct(m.teacher && m.teacher.accuracy) + ")";
  $("predict-form").dataset.modelId = model.id;
  $("predict-table").hidden = true;
  $("predict-error").hidden = true;
  await loadReport($("model-report"), "/v1/models/" + encodeURIComponent(id) + "/report");
  return false;
}

async function predict(event) {
  event.preventDefault();
  const id = $("predict-form").dataset.modelId;
  const inputs = $("predict-input").value.split("\n").map((s) => s.trim()).filter((s) => s);
  $("predict-error").hidden = true;
  try {
    const answer = await json("/v1/models/" + encodeURIComponent(id) + "/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs }),
    });
    const body = $("predict-table").querySelector("tbody");
    body.replaceChildren();
    answer.predictions.forEach((prediction, i) => {
      const row = document.createElement("tr");
      cell(row, inputs[i]);
      cell(row, prediction.label, "label");
      cell(row, prediction.score.toFixed(3));
      body.appendChild(row);
    });
    $("predict-table").hidden = false;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return showError(err);
    $("predict-error").textContent = err.message + (err.code ? " (" + err.code + ")" : "");
    $("predict-error").hidden = false;
  }
}

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
  if (!sessionStorage.getItem(KEY)) {
    show("login-view");
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) {
    show("job-view");
    $("job-report").dataset.html = "";
    poll(() => loadJob(parts[1]));
  } else if (parts[0] === "models" && parts[1]) {
    show("model-view");
    poll(() => loadModel(parts[1]));
  } else if (parts[0] === "models") {
    show("models-view");
    poll(loadModels);
  } else {
    show("jobs-view");
    poll(loadJobs);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("predict-form").addEventListener("submit", predict);
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.hash = "#/login";
    route();
  });
  window.addEventListener("hashchange", route);
  route();
});
