// The Discover tab: search the Hub for GGUF repositories (through the app's
// /app/api/discover/* routes), list a repo's quantizations with size and memory fit, and
// download one through the native download jobs, showing their progress.
import { call } from "./session.js";

const $ = (id) => document.getElementById(id);
const size = (bytes) => bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : `${Math.round(bytes / 1e6)} MB`;
const POLL_MS = 500;

function showError(message) {
  $("discover-error").textContent = message || "";
  $("discover-error").hidden = !message;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text; // repo and file names are data, never markup
  return td;
}

async function follow(job, progress, note) {
  progress.max = job.total_size_bytes || 1;
  while (true) {
    progress.value = job.downloaded_bytes;
    note.textContent = `${size(job.downloaded_bytes)} of ${size(job.total_size_bytes)}`;
    if (job.status !== "downloading") break;
    await new Promise((done) => setTimeout(done, POLL_MS));
    job = await call("GET", `/api/v1/models/download/status/${job.job_id}`);
  }
  if (job.status === "completed") note.textContent = `Downloaded: ${job.model_key} is in My Models.`;
  else note.textContent = `Download failed: ${job.error}`;
  note.dataset.status = job.status;
}

function quantRow(q) {
  const tr = document.createElement("tr");
  const fit = q.fits == null ? "unknown" : q.fits ? "fits" : "too large";
  tr.append(cell(q.name), cell(size(q.size_bytes)), cell(fit));
  const action = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Download";
  button.setAttribute("aria-label", `Download ${q.name}`);
  const progress = document.createElement("progress");
  progress.setAttribute("aria-label", `Progress of ${q.name}`);
  progress.hidden = true;
  const note = document.createElement("span");
  note.className = "download-note";
  note.setAttribute("aria-live", "polite");
  button.addEventListener("click", async () => {
    showError("");
    button.disabled = true;
    try {
      const job = await call("POST", "/api/v1/models/download", { model: q.source });
      progress.hidden = false;
      await follow(job, progress, note);
    } catch (err) {
      showError(err.message);
    }
    button.disabled = false;
  });
  action.append(button, progress, note);
  tr.append(action);
  return tr;
}

async function openRepo(id) {
  showError("");
  $("repo-title").textContent = id;
  $("quantizations").tBodies[0].replaceChildren();
  $("repo-panel").hidden = false;
  try {
    const repo = await call("GET", "/app/api/discover/repo?" + new URLSearchParams({ id }));
    $("quantizations").tBodies[0].replaceChildren(...repo.quantizations.map(quantRow));
    $("repo-memory").textContent = repo.available == null ? ""
      : `${size(repo.available)} of memory available now.`;
  } catch (err) {
    showError(err.message);
  }
}

function resultRow(m) {
  const tr = document.createElement("tr");
  tr.append(cell(m.id), cell(m.downloads ?? "–"), cell(m.likes ?? "–"));
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Files";
  button.setAttribute("aria-label", `Files of ${m.id}`);
  button.addEventListener("click", () => openRepo(m.id));
  td.append(button);
  tr.append(td);
  return tr;
}

$("discover-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  $("discover-note").textContent = "Searching…";
  try {
    const { data } = await call("GET", "/app/api/discover/search?"
      + new URLSearchParams({ q: $("discover-query").value }));
    $("results").tBodies[0].replaceChildren(...data.map(resultRow));
    $("discover-note").textContent = `${data.length} GGUF repositories.`;
  } catch (err) {
    $("discover-note").textContent = "";
    showError(err.message);
  }
});
