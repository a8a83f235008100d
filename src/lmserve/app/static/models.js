// The My Models tab: the library with its loaded instances; Load (with a context length),
// Unload and Delete through the native /api/v1/models routes.
import { withCredential } from "./session.js";

const $ = (id) => document.getElementById(id);

async function call(method, path, body) {
  const r = await fetch(path, {
    method,
    headers: withCredential(body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json();
  if (!r.ok) throw new Error(data.error ? data.error.message : r.statusText);
  return data;
}

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
  for (const instance of model.loaded_instances) {
    const line = document.createElement("div");
    line.textContent = `${instance.id}: ${instance.status}, ${instance.queued} queued `;
    line.append(button("Unload", instance.id, () =>
      call("POST", "/api/v1/models/unload", { instance_id: instance.id })));
    loaded.append(line);
  }
  tr.append(loaded);
  const actions = document.createElement("td");
  const context = document.createElement("input");
  context.type = "number";
  context.min = "64";
  context.placeholder = "context";
  context.setAttribute("aria-label", `Context length for ${model.key}`);
  actions.append(context, button("Load", model.key, () => call("POST", "/api/v1/models/load", {
    model: model.key, ...(context.value ? { context_length: Number(context.value) } : {}),
  })));
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

$("tab-models").addEventListener("click", refresh);
