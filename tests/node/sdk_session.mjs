// One session of the official openai Node SDK against a running lmserve.
// Usage: node sdk_session.mjs BASE_URL. Prints what it saw as one JSON object.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "not-needed", maxRetries: 0 });
const ask = [{ role: "user", content: "Write a long story about the sea." }];
const seen = {};

seen.models = (await client.models.list()).data.map((m) => m.id);

const reply = await client.chat.completions.create({
  model: "local-model", messages: ask, max_tokens: 8, temperature: 0,
});
seen.chat = { model: reply.model, finish: reply.choices[0].finish_reason,
  content: reply.choices[0].message.content, usage: reply.usage };

const stream = await client.chat.completions.create({
  model: "local-model", messages: ask, max_tokens: 8, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = "";
const finishes = [];
let usage = null;
for await (const chunk of stream) {
  for (const c of chunk.choices) {
    text += c.delta.content ?? "";
    if (c.finish_reason) finishes.push(c.finish_reason);
  }
  if (chunk.usage) usage = chunk.usage;
}
seen.stream = { text, finishes, usage };

// The SDK asks for base64 and decodes it into floats itself.
const emb = await client.embeddings.create({ model: "local-model", input: ["sea", "ocean"] });
seen.embeddings = emb.data.map((d) => d.embedding.length);

try {
  await client.chat.completions.create({ model: "local-model", messages: [] });
  seen.bad_request = null;
} catch (err) {
  seen.bad_request = { cls: err.constructor.name, status: err.status, param: err.param };
}

// Hang up mid-stream, then check the server still answers.
const controller = new AbortController();
const long = await client.chat.completions.create(
  { model: "local-model", messages: ask, max_tokens: 500, ignore_eos: true, stream: true },
  { signal: controller.signal });
let chunks = 0;
try {
  for await (const _ of long) {
    if (++chunks === 3) controller.abort();
  }
} catch {
  // Some SDK versions end the loop quietly on abort, others throw; both hang up.
}
seen.chunks_before_abort = chunks;
const after = await client.chat.completions.create({
  model: "local-model", messages: ask, max_tokens: 2,
});
seen.after_abort = after.choices[0].finish_reason;

console.log(JSON.stringify(seen));
