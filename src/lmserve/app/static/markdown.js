// A small Markdown renderer for model output. Everything is HTML-escaped first, so model
// text can never become markup; only the constructs below are turned into tags.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

function inline(text) {
  // `code` first, so emphasis markers inside code stay literal
  return text.split(/(`[^`\n]+`)/).map((part) => {
    if (part.length > 1 && part.startsWith("`") && part.endsWith("`"))
      return `<code>${part.slice(1, -1)}</code>`;
    return part
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>");
  }).join("");
}

function block(lines) {
  if (lines.every((l) => /^\s*[-*] /.test(l)))
    return `<ul>${lines.map((l) => `<li>${inline(l.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`;
  if (lines.every((l) => /^\s*\d+[.)] /.test(l)))
    return `<ol>${lines.map((l) => `<li>${inline(l.replace(/^\s*\d+[.)] /, ""))}</li>`).join("")}</ol>`;
  const heading = lines.length === 1 && lines[0].match(/^(#{1,6}) (.*)$/);
  if (heading) return `<h${heading[1].length + 2}>${inline(heading[2])}</h${heading[1].length + 2}>`;
  return `<p>${lines.map(inline).join("<br>")}</p>`;
}

export function renderMarkdown(source) {
  const out = [];
  let paragraph = [];
  let code = null; // lines of an open ``` block (an unclosed one, while streaming, too)
  const flush = () => { if (paragraph.length) out.push(block(paragraph)); paragraph = []; };
  for (const line of escapeHtml(source).split("\n")) {
    if (code !== null) {
      if (/^\s*```\s*$/.test(line)) { out.push(`<pre><code>${code.join("\n")}</code></pre>`); code = null; }
      else code.push(line);
    } else if (/^\s*```/.test(line)) { flush(); code = []; }
    else if (!line.trim()) flush();
    else paragraph.push(line);
  }
  flush();
  if (code !== null) out.push(`<pre><code>${code.join("\n")}</code></pre>`);
  return out.join("");
}
