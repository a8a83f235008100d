// The Chat tab: streams replies from the app origin's /v1/chat/completions (so it works
// with the API listener stopped) and saves conversations through /app/api/conversations.
import { call, withCredential } from "./session.js";
import { escapeHtml, renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
let conversation = null; // {id, title, messages, settings}
let running = null; // the AbortController of the reply being generated

// --- tabs ---------------------------------------------------------------------------------

for (const tab of document.querySelectorAll('[role="tab"].tab')) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll('[role="tab"].tab')) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      $(other.getAttribute("aria-controls")).hidden = !chosen;
    }
    if (tab.id === "tab-chat") refreshModels();
  });
}

function showError(message) {
  $("chat-error").textContent = message || "";
  $("chat-error").hidden = !message;
}

// --- models: loaded first; picking a library model loads it ------------------------------

async function refreshModels() {
  const { data } = await call("GET", "/api/v1/models");
  const picker = $("chat-model");
  const chosen = picker.value;
  const loaded = data.flatMap((m) => m.loaded_instances.map((i) => i.id || i.identifier));
  // remote models are served upstream: ready as they are, never loaded here
  const remote = data.filter((m) => m.type === "remote").map((m) => m.key);
  const library = data.filter((m) => m.type !== "remote" && !m.loaded_instances.length)
    .map((m) => m.key);
  const loadedGroup = document.createElement("optgroup");
  loadedGroup.label = "Loaded";
  loadedGroup.append(...loaded.map((id) => new Option(id, id)));
  const remoteGroup = document.createElement("optgroup");
  remoteGroup.label = "Remote";
  remoteGroup.append(...remote.map((key) => new Option(key, key)));
  const libraryGroup = document.createElement("optgroup");
  libraryGroup.label = "Library (loads when picked)";
  libraryGroup.append(...library.map((key) => new Option(key, key)));
  picker.replaceChildren(loadedGroup, ...(remote.length ? [remoteGroup] : []), libraryGroup);
  picker.value = [...loaded, ...remote, ...library].includes(chosen) ? chosen
    : loaded[0] || remote[0] || library[0] || "";
}

$("chat-model").addEventListener("change", async (e) => {
  const option = e.target.selectedOptions[0];
  if (!option || ["Loaded", "Remote"].includes(option.parentElement.label)) return;
  showError("");
  e.target.disabled = true;
  try {
    const context = Number($("chat-context").value);
    const loaded = await call("POST", "/api/v1/models/load",
      { model: option.value, ...(context ? { context_length: context } : {}) });
    await refreshModels();
    e.target.value = loaded.instance_id;
  } catch (err) {
    showError(`Cannot load ${option.value}: ${err.message}`);
  } finally {
    e.target.disabled = false;
  }
});

// --- conversations ------------------------------------------------------------------------

async function refreshList() {
  const { data } = await call("GET", "/app/api/conversations");
  $("conversation-list").replaceChildren(...data.map((c) => {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = c.title;
    open.setAttribute("aria-current", String(conversation?.id === c.id));
    open.addEventListener("click", () => openConversation(c.id));
    item.append(open);
    return item;
  }));
}

async function openConversation(id) {
  conversation = await call("GET", `/app/api/conversations/${id}`);
  const s = conversation.settings || {};
  $("system-prompt").value = s.system ?? "";
  if (s.temperature !== undefined) $("temperature").value = s.temperature;
  if (s.top_p !== undefined) $("top-p").value = s.top_p;
  if (s.max_tokens !== undefined) $("max-tokens").value = s.max_tokens;
  showConversation();
  await refreshList();
}

function showConversation() {
  $("chat-title").value = conversation ? conversation.title : "";
  $("export-chat").href = conversation ? `/app/api/conversations/${conversation.id}/export` : "#";
  $("messages").replaceChildren(...(conversation ? conversation.messages : []).map(messageView));
}

// fetched rather than followed: a plain link cannot send the app's credential
$("export-chat").addEventListener("click", async (event) => {
  event.preventDefault();
  if (!conversation || !conversation.id) return;
  const r = await fetch(`/app/api/conversations/${conversation.id}/export`, { headers: withCredential() });
  if (!r.ok) { showError((await r.json()).error.message); return; }
  const named = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await r.blob());
  link.download = named ? named[1] : "chat.json";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
});

function settings() {
  return {
    system: $("system-prompt").value,
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    max_tokens: Number($("max-tokens").value),
    model: $("chat-model").value,
  };
}

async function save() {
  const body = { messages: conversation.messages, settings: settings() };
  if (conversation.id) conversation = await call("PUT", `/app/api/conversations/${conversation.id}`, body);
  else conversation = await call("POST", "/app/api/conversations", { ...body, title: conversation.title });
  $("export-chat").href = `/app/api/conversations/${conversation.id}/export`;
  $("chat-title").value = conversation.title;
  await refreshList();
}

$("new-chat").addEventListener("click", () => {
  conversation = null;
  showConversation();
  refreshList();
  $("prompt").focus();
});

$("rename-chat").addEventListener("click", async () => {
  if (!conversation?.id) return;
  conversation = await call("PUT", `/app/api/conversations/${conversation.id}`,
    { title: $("chat-title").value.trim() || "New chat" });
  await refreshList();
});

$("delete-chat").addEventListener("click", async () => {
  if (!conversation?.id || !confirm(`Delete "${conversation.title}"?`)) return;
  await call("DELETE", `/app/api/conversations/${conversation.id}`);
  conversation = null;
  showConversation();
  await refreshList();
});

// --- messages -----------------------------------------------------------------------------

function messageView(message) {
  const view = document.createElement("article");
  view.className = "message";
  view.dataset.role = message.role;
  view.innerHTML = `<div class="role">${escapeHtml(message.role)}</div>`;
  if (message.reasoning) {
    const folded = document.createElement("details");
    folded.innerHTML = `<summary>Reasoning</summary>${renderMarkdown(message.reasoning)}`;
    view.append(folded);
  }
  const content = document.createElement("div");
  content.className = "content";
  content.innerHTML = renderMarkdown(message.content);
  view.append(content);
  if (message.role === "user") {
    const edit = document.createElement("button");
    edit.type = "button";
    edit.textContent = "Edit";
    edit.setAttribute("aria-label", "Edit this message and continue from it");
    edit.addEventListener("click", () => editFrom(message));
    view.append(edit);
  }
  if (message.stats) {
    const s = message.stats;
    const stats = document.createElement("div");
    stats.className = "stats";
    stats.textContent = [
      s.tokens_per_second != null ? `${s.tokens_per_second.toFixed(1)} tok/s` : null,
      s.ttft_ms != null ? `TTFT ${Math.round(s.ttft_ms)} ms` : null,
      s.tokens != null ? `${s.tokens} tokens` : null,
      `stop: ${s.stop_reason}`,
    ].filter(Boolean).join(" · ");
    view.append(stats);
  }
  return view;
}

function editFrom(message) {
  if (running) return;
  // the message and everything after it go; the composer holds its text to send again
  conversation.messages.splice(conversation.messages.indexOf(message));
  showConversation();
  $("prompt").value = message.content;
  $("prompt").focus();
}

function setRunning(controller) {
  running = controller;
  $("send").disabled = $("regenerate").disabled = Boolean(controller);
  $("stop").disabled = !controller;
}

async function generate() {
  const reply = { role: "assistant", content: "", reasoning: "" };
  conversation.messages.push(reply);
  let view = messageView(reply);
  $("messages").append(view);
  const redraw = () => { const next = messageView(reply); view.replaceWith(next); view = next; };
  const s = settings();
  const history = conversation.messages.slice(0, -1).map(({ role, content }) => ({ role, content }));
  const controller = new AbortController();
  setRunning(controller);
  const started = performance.now();
  let first = null, usage = null, stop = "stop", deltas = 0;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: withCredential({ "Content-Type": "application/json" }),
      signal: controller.signal,
      body: JSON.stringify({
        model: s.model, stream: true, stream_options: { include_usage: true },
        temperature: s.temperature, top_p: s.top_p, max_tokens: s.max_tokens,
        messages: s.system ? [{ role: "system", content: s.system }, ...history] : history,
      }),
    });
    if (!r.ok) throw new Error((await r.json()).error.message);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) { stop = "error"; showError(chunk.error.message); continue; }
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        const delta = choice.delta || {};
        if (delta.content || delta.reasoning_content) {
          if (first === null) first = performance.now();
          deltas += 1; // one token per chunk: the count when a cancelled stream has no usage
        }
        reply.content += delta.content || "";
        reply.reasoning += delta.reasoning_content || "";
        if (choice.finish_reason) stop = choice.finish_reason;
      }
      redraw();
      view.scrollIntoView({ block: "end" });
    }
  } catch (err) {
    if (err.name === "AbortError") stop = "cancelled";
    else { stop = "error"; showError(err.message); }
  }
  const ended = performance.now();
  const tokens = usage ? usage.completion_tokens : deltas;
  reply.stats = {
    ttft_ms: first !== null ? first - started : null,
    tokens,
    tokens_per_second: tokens && first !== null && ended > first ? tokens / ((ended - first) / 1000) : null,
    stop_reason: stop,
  };
  setRunning(null);
  redraw();
  await save();
}

$("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || running) return;
  showError("");
  $("prompt").value = "";
  if (!conversation) conversation = { id: null, title: text.slice(0, 60), messages: [] };
  conversation.messages.push({ role: "user", content: text });
  $("messages").append(messageView(conversation.messages.at(-1)));
  await generate();
});

$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});

$("stop").addEventListener("click", () => running && running.abort());

$("regenerate").addEventListener("click", async () => {
  if (!conversation || running) return;
  while (conversation.messages.length && conversation.messages.at(-1).role === "assistant")
    conversation.messages.pop();
  if (!conversation.messages.length) return;
  showConversation();
  await generate();
});

await refreshList();
await refreshModels();
