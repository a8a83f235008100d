// The Discover tab: search the Hub for GGUF repositories (through the app's
// /app/api/discover/* routes), list a repo's quantizations with size and memory fit, and
// download one through the native download jobs, showing their progress; a cancelled
// download keeps its bytes, and downloading it again resumes from them.
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

// One quantization's download controls: Download, a progress bar with Cancel while it
// runs, and Discard for the bytes a cancelled download keeps for its resume.
function downloadControls(q) {
  const make = (tag, label, text) => {
    const el = document.createElement(tag);
    el.setAttribute("aria-label", label);
    if (tag === "button") { el.type = "button"; el.textContent = text; }
    return el;
  };
  const start = make("button", `Download ${q.name}`, "Download");
  const progress = make("progress", `Progress of ${q.name}`);
  const cancel = make("button", `Cancel the download of ${q.name}`, "Cancel");
  const discard = make("button", `Discard the partial download of ${q.name}`, "Discard");
  const note = document.createElement("span");
  note.className = "download-note";
  note.setAttribute("aria-live", "polite");
  progress.hidden = cancel.hidden = discard.hidden = true;
  let job = null;

  const show = () => {
    progress.max = job.total_size_bytes || 1;
    progress.value = job.downloaded_bytes;
    const resumed = job.resumed_from_bytes ? `Resumed from ${size(job.resumed_from_bytes)}: ` : "";
    const done = `${size(job.downloaded_bytes)} of ${size(job.total_size_bytes)}`;
    note.textContent = {
      downloading: resumed + done,
      completed: `Downloaded: ${job.model_key} is in My Models.`,
      cancelled: job.downloaded_bytes
        ? `Cancelled at ${done}; Download resumes from there.` : "Cancelled.",
      failed: `Download failed: ${job.error}`,
    }[job.status];
    if (job.status === "downloading") delete note.dataset.status;
    else note.dataset.status = job.status;
    note.dataset.resumedFrom = job.resumed_from_bytes;
    cancel.hidden = job.status !== "downloading";
    discard.hidden = !(job.status === "cancelled" && job.downloaded_bytes > 0);
  };

  start.addEventListener("click", async () => {
    showError("");
    start.disabled = true;
    discard.hidden = true;
    try {
      job = await call("POST", "/api/v1/models/download", { model: q.source });
      progress.hidden = false;
      show();
      while (job.status === "downloading") {
        await new Promise((done) => setTimeout(done, POLL_MS));
        job = await call("GET", `/api/v1/models/download/status/${job.job_id}`);
        show();
      }
    } catch (err) {
      showError(err.message);
    }
    start.disabled = false;
  });
  cancel.addEventListener("click", async () => {
    try { job = await call("POST", `/api/v1/models/download/cancel/${job.job_id}`); show(); }
    catch (err) { showError(err.message); }
  });
  discard.addEventListener("click", async () => {
    try {
      job = await call("POST", `/api/v1/models/download/cancel/${job.job_id}`, { discard: true });
      show();
      note.textContent = "Cancelled; the partial download was discarded.";
    } catch (err) { showError(err.message); }
  });
  return [start, progress, cancel, discard, note];
}

function quantRow(q) {
  const tr = document.createElement("tr");
  const fit = q.fits == null ? "unknown" : q.fits ? "fits" : "too large";
  tr.append(cell(q.name), cell(size(q.size_bytes)), cell(fit));
  const action = document.createElement("td");
  action.append(...downloadControls(q));
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
