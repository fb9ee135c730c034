// The chat page: asks the /v1/conversations API with streaming, renders the structured
// answer (sections, clickable citations, references, disclaimer), keeps the conversation.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  conversationId: sessionStorage.getItem("conversationId"),
  apiKey: localStorage.getItem("apiKey") || "",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  if (state.apiKey) h["Authorization"] = "Bearer " + state.apiKey;
  return h;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function failure(response) {
  let message = response.status + " " + response.statusText;
  try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
  if (response.status === 401) $("api-key-box").hidden = false;
  return new ApiError(response.status, message);
}

// -- rendering ---------------------------------------------------------------------

function statementNode(statement, answer, tag) {
  const node = el(tag, { class: "statement" }, statement.text + " ");
  statement.citations.forEach((number, i) => {
    const button = el("button", { type: "button", class: "cite",
      "data-ref": String(number), title: "Show the cited passage" }, "[" + number + "]");
    button.addEventListener("click", () => showCitation(answer, number, statement.passage_ids));
    node.append(button);
    if (i < statement.citations.length - 1) node.append(" ");
  });
  return node;
}

function sectionNode(section, answer) {
  const node = el("section", { class: "answer-section " + section.kind },
    el("h3", {}, section.heading));
  if (section.notice && !section.statements.length) {
    node.append(el("p", { class: "notice" }, section.notice));
  }
  if (section.statements.length) {
    if (section.kind === "guideline") {
      const p = el("p");
      section.statements.forEach((s) => p.append(statementNode(s, answer, "span"), " "));
      node.append(p);
    } else {
      node.append(el("ul", {}, ...section.statements.map((s) => statementNode(s, answer, "li"))));
    }
  }
  if (section.key_points.length) {
    node.append(el("h4", {}, "Key considerations for clinical practice"),
      el("ul", { class: "key-points" }, ...section.key_points.map((s) => statementNode(s, answer, "li"))));
  }
  return node;
}

function sourceLine(ref) {
  const parts = [ref.source, ref.year].filter(Boolean).join(", ");
  return [ref.kind === "guideline" ? "Guideline" : "Research", parts].filter(Boolean).join(" — ");
}

// "p. 12", "pp. 12–13", "pp. 3, 7–9": where the cited passages are in a PDF.
function pagesLabel(pages) {
  const ranges = [];
  for (const page of [...new Set(pages || [])].sort((a, b) => a - b)) {
    const last = ranges[ranges.length - 1];
    if (last && page === last[1] + 1) last[1] = page; else ranges.push([page, page]);
  }
  if (!ranges.length) return "";
  const parts = ranges.map(([a, b]) => (a === b ? String(a) : a + "\u2013" + b));
  return (parts.length === 1 && ranges[0][0] === ranges[0][1] ? "p. " : "pp. ") + parts.join(", ");
}

// A web page's section: its URL with the anchor of the cited heading.
function anchorLink(ref, anchor) {
  if (!anchor || !ref.url || !/^https?:\/\//.test(ref.url) || ref.url.includes("#")) return null;
  return ref.url + "#" + encodeURIComponent(anchor);
}

function locatorNodes(ref) {
  const nodes = [];
  if (ref.pages && ref.pages.length) nodes.push(el("span", { class: "pages" }, pagesLabel(ref.pages) + "."));
  if (ref.pmid) nodes.push(el("a", { href: "https://pubmed.ncbi.nlm.nih.gov/" + encodeURIComponent(ref.pmid) + "/", target: "_blank", rel: "noopener" }, "PMID: " + ref.pmid));
  if (ref.doi) nodes.push(el("a", { href: "https://doi.org/" + ref.doi, target: "_blank", rel: "noopener" }, "doi: " + ref.doi));
  const anchored = anchorLink(ref, ((ref.passages || []).find((p) => p.anchor) || {}).anchor);
  if (anchored) nodes.push(el("a", { href: anchored, target: "_blank", rel: "noopener" }, anchored));
  else if (ref.url && /^https?:\/\//.test(ref.url)) nodes.push(el("a", { href: ref.url, target: "_blank", rel: "noopener" }, ref.url));
  return nodes;
}

function answerNode(turn) {
  const answer = turn.answer;
  const node = el("li", { class: "turn", "data-position": String(turn.position) },
    el("p", { class: "question" }, answer.question));
  if (answer.standalone_query && answer.standalone_query !== answer.question) {
    node.append(el("p", { class: "searched" }, "Searched: " + answer.standalone_query));
  }
  node.append(sectionNode(answer.guidelines, answer), sectionNode(answer.research, answer));
  const refs = el("ol", { class: "references" });
  for (const ref of answer.references) {
    const open = el("button", { type: "button", class: "cite", "data-ref": String(ref.number) }, "[" + ref.number + "]");
    open.addEventListener("click", () => showCitation(answer, ref.number, []));
    const item = el("li", { value: String(ref.number) }, open, " ", el("span", { class: "title" }, ref.title), ". ", sourceLine(ref) + ". ");
    locatorNodes(ref).forEach((a) => item.append(a, " "));
    refs.append(item);
  }
  node.append(el("h3", {}, "References"),
    answer.references.length ? refs : el("p", { class: "notice" }, "No indexed passage was relevant enough to cite."));
  // What the assistant could not find, or why it fell back (e.g. "does not mention X").
  for (const note of answer.notes || []) node.append(el("p", { class: "note" }, note));
  node.append(el("div", { class: "disclaimer" },
    el("h3", {}, "Professional medical disclaimer"), el("p", {}, answer.disclaimer)));
  node.append(el("p", { class: "follow-up" }, answer.follow_up_prompt));
  return node;
}

function showCitation(answer, number, passageIds) {
  const ref = answer.references.find((r) => r.number === number);
  if (!ref) return;
  let passages = ref.passages.filter((p) => passageIds.includes(p.passage_id));
  if (!passages.length) passages = ref.passages;
  $("citation-title").textContent = "[" + ref.number + "] " + ref.title;
  const source = $("citation-source");
  source.replaceChildren(sourceLine(ref) + ". ");
  locatorNodes(ref).forEach((a) => source.append(a, " "));
  $("citation-passages").replaceChildren(...passages.map((p) => {
    // Where the passage is: its section (a link to its anchor on a web page) and pages.
    const link = anchorLink(ref, p.anchor);
    const where = el("p", { class: "section" });
    if (p.section) where.append(link ? el("a", { href: link, target: "_blank", rel: "noopener" }, p.section) : p.section);
    if (p.pages && p.pages.length) where.append((p.section ? " — " : "") + pagesLabel(p.pages));
    return el("blockquote", { class: "passage" }, where.childNodes.length ? where : null, el("p", {}, p.text));
  }));
  $("citation").hidden = false;
}

// -- asking ------------------------------------------------------------------------

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield { event, data: JSON.parse(data) };
    }
  }
}

async function ask(question) {
  const url = state.conversationId
    ? "/v1/conversations/" + encodeURIComponent(state.conversationId) + "/turns"
    : "/v1/conversations";
  const response = await fetch(url, { method: "POST", headers: headers(),
    body: JSON.stringify({ question, stream: true }) });
  if (!response.ok) throw await failure(response);
  const pending = el("li", { class: "turn pending" }, el("p", { class: "question" }, question),
    el("div", { class: "preview" }));
  $("conversation").append(pending);
  try {
    for await (const { event, data } of sseEvents(response)) {
      if (event === "delta") pending.querySelector(".preview").append(data.text);
      else if (event === "error") throw new ApiError(500, data.error.message);
      else if (event === "answer") {
        state.conversationId = data.conversation_id;
        sessionStorage.setItem("conversationId", data.conversation_id);
        pending.replaceWith(answerNode(data.turn));
        return;
      }
    }
    throw new ApiError(0, "the answer stream ended early: please ask again");
  } catch (e) {
    pending.remove();
    throw e;
  }
}

function setBusy(busy, text) {
  $("ask").disabled = busy;
  $("status").textContent = text || "";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) { showError("Type a clinical question first."); return; }
  showError("");
  setBusy(true, "Searching the indexed evidence…");
  try {
    await ask(question);
    $("question").value = "";
    $("question-label").textContent = "Have a follow-up question?";
    $("question").placeholder = "e.g. What about its toxicities?";
  } catch (e) {
    if (e.status === 404 && state.conversationId) startOver();
    showError(e.message);
  } finally {
    setBusy(false);
    $("question").focus();
  }
});

$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask-form").requestSubmit();
  }
});

function startOver() {
  state.conversationId = null;
  sessionStorage.removeItem("conversationId");
  $("conversation").replaceChildren();
  $("citation").hidden = true;
  showError("");
  $("question-label").textContent = "Ask a clinical question";
  $("question").value = "";
  $("question").focus();
}

$("new-conversation").addEventListener("click", startOver);
$("close-citation").addEventListener("click", () => { $("citation").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("citation").hidden = true; });
$("save-key").addEventListener("click", () => {
  state.apiKey = $("api-key").value.trim();
  localStorage.setItem("apiKey", state.apiKey);
  $("api-key-box").hidden = true;
  showError("");
  if (state.conversationId) restore();
});

// A reload keeps the conversation of this tab.
async function restore() {
  if (!state.conversationId) return;
  const response = await fetch("/v1/conversations/" + encodeURIComponent(state.conversationId), { headers: headers() });
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 404) startOver(); else showError(error.message);
    return;
  }
  const conversation = await response.json();
  $("conversation").replaceChildren(...conversation.turns.map(answerNode));
  if (conversation.turns.length) $("question-label").textContent = "Have a follow-up question?";
}

restore();
