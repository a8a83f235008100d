// The My Models tab: the library with its loaded instances; Load (with its options, the
// memory estimate and the model's saved defaults), Unload, Delete and Import through the
// native /api/v1/models routes and the app's /app/api/models/* routes.
import { call } from "./session.js";

const $ = (id) => document.getElementById(id);

function showError(message) {
  $("models-error").textContent = message || "";
  $("models-error").hidden = !message;
}

const size = (bytes) => bytes == null ? "–" : bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB`
  : `${Math.round(bytes / 1e6)} MB`;
const count = (n) => n == null ? "–" : n >= 1e9 ? `${(n / 1e9).toFixed(1)}B` : `${Math.round(n / 1e6)}M`;

function button(label, name, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.setAttribute("aria-label", `${label} ${name}`);
  b.addEventListener("click", async () => {
    showError("");
    b.disabled = true;
    try { await action(); } catch (err) { showError(err.message); }
    b.disabled = false;
    await refresh();
  });
  return b;
}

function row(model) {
  const tr = document.createElement("tr");
  const cells = [model.key, model.type, model.architecture, count(model.params),
    model.quantization, size(model.size_bytes), model.max_context_length ?? "–",
    (model.capabilities || []).join(", ")];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text ?? "–";
    tr.append(td);
  }
  const loaded = document.createElement("td");
  if (model.type === "remote") { // served upstream: its health instead of instances, no actions
    loaded.textContent = model.upstreams.map((u) =>
      `${u.url}: ${u.health}, ${u.outstanding} in flight`).join("; ");
    tr.append(loaded, document.createElement("td"));
    return tr;
  }
  for (const instance of model.loaded_instances) {
    const line = document.createElement("div");
    line.textContent = `${instance.id}: ${instance.status}, ${instance.queued} queued `;
    line.append(button("Unload", instance.id, () =>
      call("POST", "/api/v1/models/unload", { instance_id: instance.id })));
    loaded.append(line);
  }
  tr.append(loaded);
  const actions = document.createElement("td");
  actions.append(button("Load", model.key, () => openLoadPanel(model.key)));
  actions.append(button("Delete", model.key, async () => {
    if (confirm(`Delete the files of ${model.key}?`))
      await call("DELETE", `/api/v1/models/${encodeURIComponent(model.key)}`);
  }));
  tr.append(actions);
  return tr;
}

async function refresh() {
  try {
    const { data } = await call("GET", "/api/v1/models");
    document.querySelector("#library tbody").replaceChildren(...data.map(row));
  } catch (err) {
    showError(err.message);
  }
}

// -- the load panel ------------------------------------------------------------------
let loading = null; // the model key the panel is for
const fields = { context_length: "load-context", parallel: "load-parallel", ttl: "load-ttl" };
const query = (params) => new URLSearchParams(
  Object.entries(params).filter(([, v]) => v !== "")).toString();

// the llama.cpp load options (models/load_options.py): text choices, numbers, switches
const choices = { gpu: "load-gpu", flash_attention: "load-flash", kv_cache_type_k: "load-kv-k",
  kv_cache_type_v: "load-kv-v" };
const numbers = { eval_batch_size: "load-batch", rope_freq_base: "load-rope-base",
  rope_freq_scale: "load-rope-scale" };
const switches = { use_mmap: "load-mmap", keep_in_memory: "load-mlock" };

let shown = {}; // the llama.cpp options as the panel opened: only changes are sent
let saved = {}; // and those saved for the model, which a save must keep

function options() {
  const out = {};
  for (const [name, id] of Object.entries(fields)) if ($(id).value !== "") out[name] = Number($(id).value);
  const llama = {};
  for (const [name, id] of Object.entries(numbers)) if ($(id).value !== "") llama[name] = Number($(id).value);
  for (const [name, id] of Object.entries(choices)) {
    const value = $(id).value;
    if (value !== "") llama[name] = Number.isNaN(Number(value)) ? value : Number(value);
  }
  for (const [name, id] of Object.entries(switches)) llama[name] = $(id).checked;
  for (const [name, value] of Object.entries(llama)) {
    if (name in saved || value !== shown[name]) out[name] = value;
  }
  return out;
}

function showOptions(settings) {
  for (const [name, id] of Object.entries({ ...fields, ...numbers, ...choices })) {
    $(id).value = settings.effective[name] ?? "";
  }
  for (const [name, id] of Object.entries(switches)) $(id).checked = settings.effective[name];
  shown = settings.effective;
  saved = settings.saved;
}

let estimateSeq = 0;  // answers can arrive out of order: only the newest is shown

async function showEstimate() {
  const o = options();
  const seq = ++estimateSeq;
  try {
    const e = await call("GET", "/app/api/models/estimate?" + query({
      model: loading, context_length: o.context_length ?? "", parallel: o.parallel ?? "",
      kv_cache_type_k: o.kv_cache_type_k ?? "", kv_cache_type_v: o.kv_cache_type_v ?? "",
      flash_attention: o.flash_attention ?? "", gpu: o.gpu ?? "" }));
    if (seq !== estimateSeq) return;
    const free = e.available == null ? "" : `, ${size(e.available)} available now`;
    const gpu = e.gpu ? `, ${size(e.gpu)} on the GPU` : "";
    $("load-estimate").textContent = `Needs about ${size(e.total)} (weights ${size(e.weights)}, `
      + `KV cache ${size(e.kv_cache)} for ${e.parallel} × ${e.context_length} tokens in `
      + `${e.kv_cache_type_k}/${e.kv_cache_type_v}, compute ${size(e.compute)}${gpu})${free}.`;
    $("load-estimate").dataset.total = e.total;
  } catch (err) {
    if (seq === estimateSeq) $("load-estimate").textContent = err.message;
  }
}

async function openLoadPanel(key) {
  const settings = await call("GET", "/app/api/models/load-settings?" + query({ model: key }));
  loading = settings.model;
  $("load-model").textContent = loading;
  showOptions(settings);
  $("load-identifier").value = "";
  $("load-identifier").placeholder = loading;
  $("load-note").textContent = Object.keys(settings.saved).length ? "Saved defaults of this model." : "";
  $("load-panel").hidden = false;
  await showEstimate();
  $("load-context").focus();
}

for (const id of [...Object.values(fields), ...Object.values(choices)]) {
  $(id).addEventListener("input", showEstimate);
}

$("load-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const identifier = $("load-identifier").value.trim();
  $("load-note").textContent = "Loading…";
  try {
    await call("POST", "/api/v1/models/load",
      { model: loading, ...options(), ...(identifier ? { identifier } : {}) });
    $("load-note").textContent = "Loaded.";
  } catch (err) {
    $("load-note").textContent = "";
    showError(err.message);
  }
  await refresh();
});

$("save-load-defaults").addEventListener("click", async () => {
  try {
    ({ saved, effective: shown } = await call("PUT", "/app/api/models/load-settings",
      { model: loading, ...options() }));
    $("load-note").textContent = `Saved: ${loading} loads with these settings when a load names none.`;
  } catch (err) {
    showError(err.message);
  }
});

$("close-load").addEventListener("click", () => { $("load-panel").hidden = true; });

// -- import: a file or folder on this machine, as `lmserve import` takes it ----------
$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const userRepo = $("import-user-repo").value.trim();
  $("import-note").textContent = "Importing…";
  try {
    const done = await call("POST", "/api/v1/models/import", {
      path: $("import-path").value.trim(), mode: $("import-mode").value,
      ...(userRepo ? { user_repo: userRepo } : {}) });
    $("import-note").textContent = `Imported: ${done.key} (${done.action}).`;
    $("import-path").value = "";
  } catch (err) {
    $("import-note").textContent = "";
    showError(err.message);
  }
  await refresh();
});

$("tab-models").addEventListener("click", refresh);
