// The Server tab: a plain ES module over the app origin's own routes (no build step).
import { call, withCredential } from "./session.js";
import { snippets } from "./snippets.js";

const $ = (id) => document.getElementById(id);
const form = $("settings");
let server = { serving: false };
let models = [];
let snippetKind = "curl";

function showError(message) {
  $("server-error").textContent = message || "";
  $("server-error").hidden = !message;
}

function uptime(startedAt) {
  if (!startedAt) return "–";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - startedAt));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return `${h ? h + "h " : ""}${m}m ${s % 60}s`;
}

function renderServer() {
  const on = server.serving;
  $("status-strip").dataset.serving = String(on);
  $("indicator").textContent = on ? "Running" : "Stopped";
  $("toggle-server").textContent = on ? "Stop Server" : "Start Server";
  $("base-url-box").hidden = !on;
  $("base-url").textContent = server.base_url || "";
  $("bind").textContent = on ? server.host : "–";
  $("port").textContent = on ? server.port : "–";
  $("uptime").textContent = on ? uptime(server.started_at) : "–";
  $("server-warning").textContent = server.warning || "";
  $("server-warning").hidden = !server.warning;
  renderSnippet();
}

function requestRow(r) {
  const tr = document.createElement("tr");
  tr.dataset.state = r.state;
  const cells = [
    new Date(r.started_at * 1000).toLocaleTimeString(), `${r.method} ${r.path}`, r.model,
    r.state, r.prompt_tokens, r.output_tokens,
    r.ttft_s === null ? "–" : `${r.ttft_s.toFixed(2)} s`,
    r.tokens_per_s === null ? "–" : r.tokens_per_s.toFixed(1),
  ];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = String(text); // model names and paths are data, never markup
    tr.append(td);
  }
  return tr;
}

async function refresh() {
  try {
    const table = await call("GET", "/app/api/requests");
    $("requests").tBodies[0].replaceChildren(...table.data.map(requestRow));
    server = await call("GET", "/app/api/server");
    models = server.models;
    $("in-flight").textContent = server.in_flight;
    $("queued").textContent = server.queued;
    const picker = $("snippet-model");
    if ([...picker.options].map((o) => o.value).join() !== models.join()) {
      const chosen = picker.value;
      picker.replaceChildren(...models.map((id) => new Option(id, id)));
      if (models.includes(chosen)) picker.value = chosen;
    }
    renderServer();
  } catch (err) {
    showError(`The app cannot reach lmserve: ${err.message}`);
  }
}

$("toggle-server").addEventListener("click", async () => {
  const button = $("toggle-server");
  button.disabled = true;
  try {
    server = await call("POST", server.serving ? "/app/api/server/stop" : "/app/api/server/start");
    showError("");
  } catch (err) {
    showError(err.message);
  } finally {
    button.disabled = false;
    renderServer();
    button.focus();
  }
});

$("copy-url").addEventListener("click", () => navigator.clipboard.writeText(server.base_url));
$("copy-snippet").addEventListener("click", () =>
  navigator.clipboard.writeText($("snippet").textContent));

// --- settings: the same config file the CLI uses ---------------------------------------

function fillSettings(settings) {
  for (const [key, value] of Object.entries(settings)) {
    const field = form.elements.namedItem(key);
    if (!field) continue;
    if (field.type === "checkbox") field.checked = value;
    else {
      if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value))
        field.add(new Option(value, value));
      field.value = value;
    }
  }
  $("bind-warning").hidden = form.elements.namedItem("server.host").value !== "0.0.0.0";
}

form.elements.namedItem("server.host").addEventListener("change", (e) => {
  $("bind-warning").hidden = e.target.value !== "0.0.0.0";
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  $("settings-note").textContent = "Saving…";
  const values = {};
  for (const field of form.elements) {
    if (!field.name) continue;
    values[field.name] = field.type === "checkbox" ? field.checked
      : field.type === "number" ? Number(field.value) : field.value;
  }
  try {
    const saved = await call("PUT", "/app/api/settings", values);
    fillSettings(saved.settings);
    const later = saved.applies_on_next_start.filter((k) => k.startsWith("server."));
    $("settings-note").textContent = `Saved to ${saved.path}.` +
      (server.serving && later.length ? " Server settings apply on the next Start." : "");
  } catch (err) {
    $("settings-note").textContent = `Not saved: ${err.message}`;
  }
});

// --- code snippets ----------------------------------------------------------------------

const tabs = $("snippet-tabs");
for (const kind of Object.keys(snippets)) {
  const tab = document.createElement("button");
  tab.type = "button";
  tab.setAttribute("role", "tab");
  tab.textContent = snippets[kind].label;
  tab.dataset.kind = kind;
  tab.addEventListener("click", () => { snippetKind = kind; renderSnippet(); });
  tabs.append(tab);
}
$("snippet-model").addEventListener("change", renderSnippet);

function renderSnippet() {
  for (const tab of tabs.children)
    tab.setAttribute("aria-selected", String(tab.dataset.kind === snippetKind));
  const url = server.base_url || "http://localhost:1234/v1";
  $("snippet").textContent = snippets[snippetKind].code(url, $("snippet-model").value || "MODEL");
}

// --- live log: the feed of `lmserve log stream` -----------------------------------------

const logLines = [];
let paused = false;

function renderLog() {
  const needle = $("log-filter").value.toLowerCase();
  const shown = logLines.filter((l) => !needle || l.toLowerCase().includes(needle));
  $("log").textContent = shown.join("\n");
  $("log").scrollTop = $("log").scrollHeight;
}

$("pause-log").addEventListener("click", (e) => {
  paused = !paused;
  e.target.setAttribute("aria-pressed", String(paused));
  e.target.textContent = paused ? "Resume" : "Pause";
  if (!paused) renderLog();
});
$("log-filter").addEventListener("input", renderLog);

function showLogEntry(entry) {
  const time = new Date(entry.time * 1000).toLocaleTimeString();
  logLines.push(`${time} ${entry.level.toUpperCase()} ${entry.message}`);
  if (logLines.length > 2000) logLines.shift();
  if (!paused) renderLog();
}

// fetch rather than EventSource: EventSource cannot send the app's credential
async function followLog() {
  const r = await fetch("/api/v1/logs/stream", { headers: withCredential() });
  if (!r.ok) throw new Error((await r.json()).error.message);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
      if (data) showLogEntry(JSON.parse(data));
    }
  }
}
followLog().catch((err) => showLogEntry({ time: Date.now() / 1000, level: "error", message: `log feed: ${err.message}` }));

// The llama.cpp runtime (GET /api/v1/runtime): backend, version, CPU features, GPUs.
async function showRuntime() {
  const r = await call("GET", "/api/v1/runtime");
  const gpus = r.gpus.map((g) => `${g.description || g.name} (${(g.memory_total / 1e9).toFixed(1)} GB)`)
    .join(", ");
  $("runtime").textContent = `${r.backend}, llama.cpp ${r.llama_cpp_version}, `
    + `${r.cpu_features.used.join(" ")}; GPUs: ${gpus || "none"}`;
}
showRuntime().catch((err) => { $("runtime").textContent = err.message; });

fillSettings((await call("GET", "/app/api/settings")).settings);
await refresh();
setInterval(refresh, 1000);
