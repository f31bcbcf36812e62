// The query input: suggestions as you type (field names, a field's top values, operators and
// syntax), recent queries (localStorage), syntax help, and a syntax error shown where the parser
// stopped. An ARIA combobox driven by the keyboard: arrows move, Enter or Tab accepts, Esc
// closes. Accepting only edits the text: the query stays plain text, parsed by the server.

import { get, post, qs } from "./api.js";
import { fmtNumber, h, icon, replace } from "./dom.js";

const SYNTAX_DOCS = "/docs#/search/search_v1_search_post";
const HISTORY_KEY = "astralog.queries";
const HISTORY_MAX = 20;

const EXAMPLES = [
  ["level:error", "a field has a value"],
  ['"upstream timeout"', "a phrase anywhere in the message"],
  ["timeout", "a whole word in the message (time* for part of one)"],
  ["*:timeout", "a word in the message or any attribute"],
  ["-health", "exclude a word (or -field:value)"],
  ["http.status>=500", "compare: > >= < <="],
  ["http.status:[500 TO 599]", "a range, bounds included"],
  ["service:(api OR web)", "any of several values"],
  ["host:web-*", "wildcards * and ?"],
  ["_exists_:http.status", "the field is present"],
  ["level:error AND NOT service:db", "AND, OR, NOT (any case; && || !), parentheses"],
];

export function loadHistory() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(list) ? list.filter((q) => typeof q === "string") : [];
  } catch {
    return [];
  }
}

export function remember(query) {
  const text = query.trim();
  if (!text) return;
  const list = [text, ...loadHistory().filter((q) => q !== text)].slice(0, HISTORY_MAX);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(list));
  } catch {
    /* private mode: no history */
  }
}

function quote(value) {
  const text = String(value);
  if (/^[A-Za-z0-9_.@/][A-Za-z0-9_.\-@/]*$/.test(text) && !/^(AND|OR|NOT|TO)$/.test(text))
    return text;
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function term(field, value, negate = false) {
  return `${negate ? "-" : ""}${field}:${quote(value)}`;
}

// Adds `field:value` (or its negation) to a query, replacing the opposite term if present.
export function addTerm(query, field, value, negate = false) {
  const wanted = term(field, value, negate);
  const opposite = term(field, value, !negate);
  const parts = query.trim() ? [query.trim()] : [];
  if (parts.length && ` ${parts[0]} `.includes(` ${wanted} `)) return parts[0];
  if (parts.length && ` ${parts[0]} `.includes(` ${opposite} `)) {
    return ` ${parts[0]} `.replace(` ${opposite} `, ` ${wanted} `).trim();
  }
  if (parts.length && /\bOR\b/.test(parts[0]) && !/^\(.*\)$/.test(parts[0])) {
    parts[0] = `(${parts[0]})`; // keep "a OR b" together: AND binds tighter than OR
  }
  return [...parts, wanted].join(" ");
}

// ------------------------------------------------------------------ what the caret is in

// The fields the language reads itself (astralog/query/language.py), most used first.
export const WELL_KNOWN_FIELDS = [
  ["level", "severity: trace … fatal"],
  ["service", "service name"],
  ["host", "host name"],
  ["source", "source id"],
  ["body", "the message (whole words)"],
  ["trace_id", "W3C trace id"],
  ["span_id", "span id"],
  ["scope", "instrumentation scope"],
  ["event_id", "one event"],
];
const SEVERITIES = ["trace", "debug", "info", "warn", "error", "fatal"];
const KEYWORDS = [
  ["AND", "both sides match (the default between terms)"],
  ["OR", "either side matches"],
  ["NOT", "the next term must not match"],
];
const FIELD_CHARS = /^[\p{L}\p{N}_.\-@/]*$/u;
const FIELD_TERM = /^([\p{L}\p{N}_.\-@/]+)(:|>=|<=|>|<)(.*)$/su;
const CACHE_MS = 30_000;

// Where the caret is, as the parser will read it:
//   { kind: "field", prefix, from, to }          a field name (or a word) is being typed
//   { kind: "value", field, op, prefix, quoted, from, to }   after field: (or field>=)
//   { kind: "keyword", prefix, from, to }        an upper-case AND/OR/NOT is being typed
//   null                                          inside a free-text phrase, a range, …
// [from, to) is the text an accepted suggestion replaces.
export function contextAt(text, caret) {
  const before = text.slice(0, caret);
  let quoteAt = -1;
  for (let i = 0; i < before.length; i += 1) {
    if (before[i] === "\\") i += 1;
    else if (before[i] === '"') quoteAt = quoteAt < 0 ? i : -1;
  }
  let from = quoteAt < 0 ? caret : quoteAt;
  while (from > 0 && !/[\s(]/.test(text[from - 1])) from -= 1;
  let to = caret;
  if (quoteAt < 0) while (to < text.length && !/[\s()]/.test(text[to])) to += 1;
  else to = text.indexOf('"', caret) < 0 ? text.length : text.indexOf('"', caret) + 1;
  let token = text.slice(from, caret);
  const previous = before.slice(0, from).trim();
  if (token.startsWith("-")) {
    token = token.slice(1);
    from += 1;
  }
  const term = FIELD_TERM.exec(token);
  if (term) {
    const [, field, op, rest] = term;
    const valueFrom = from + field.length + op.length;
    if (field === "_exists_" && op === ":") {
      if (!FIELD_CHARS.test(rest)) return null;
      return { kind: "field", prefix: rest, from: valueFrom, to, exists: true };
    }
    if (rest.startsWith("[") || rest.startsWith("{") || rest.startsWith("(")) return null;
    const quoted = rest.startsWith('"');
    if (quoted && quoteAt < 0) return null; // a closed phrase: the value is complete
    const prefix = quoted ? rest.slice(1) : rest;
    if (/[*?\\]/.test(prefix)) return null;
    return { kind: "value", field, op, prefix, quoted, from: valueFrom, to };
  }
  if (quoteAt >= 0 || !FIELD_CHARS.test(token)) return null;
  if (token && /^[A-Z]+$/.test(token) && KEYWORDS.some(([k]) => k.startsWith(token))) {
    return { kind: "keyword", prefix: token, from, to, previous };
  }
  return { kind: "field", prefix: token, from, to, previous };
}

function startsWithAnyCase(text, prefix) {
  return String(text).toLowerCase().startsWith(prefix.toLowerCase());
}

// ------------------------------------------------------------------ where suggestions come from

// Field names and values for a scope (range and sources), kept for half a minute.
function createSuggestSource(getScope) {
  const cache = new Map();
  function remembered(key, load) {
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit;
    const entry = { at: Date.now(), data: null, error: null };
    entry.promise = load().then(
      (data) => (entry.data = data),
      (error) => {
        entry.error = error;
        cache.delete(key); // try again next time
      },
    );
    cache.set(key, entry);
    if (cache.size > 50) cache.delete(cache.keys().next().value);
    return entry;
  }
  function scope() {
    const { start, end, sources } = getScope();
    return { start, end, sources: sources && sources.length ? sources : null };
  }
  return {
    // { data: { fields, truncated } | null, promise, error }
    fields(prefix = "") {
      const s = scope();
      const params = { start: s.start, end: s.end, sources: s.sources, prefix, limit: 200 };
      return remembered(`f${JSON.stringify(params)}`, () =>
        get(`/v1/search/fields${qs(params)}`),
      );
    },
    // A field's top values over the range (the facets API), whatever the query says so far.
    values(field) {
      const s = scope();
      const body = { query: "", ...s, fields: [field], size: 20 };
      return remembered(`v${JSON.stringify(body)}`, () =>
        post("/v1/search/facets", body).then((r) => r.facets?.[field] || []),
      );
    },
  };
}

// ------------------------------------------------------------------ what to suggest

// Groups of items for a context: [{ title, items: [{ key, text, desc, count, insert }] }].
// insert: { text, caret } replaces [ctx.from, ctx.to); caret is an offset into text.
// Also returns the loads still under way, to suggest again when they end.
function suggestions(ctx, source, describeValue) {
  if (ctx.kind === "keyword") return { groups: [keywordGroup(ctx.prefix)], loading: [] };
  if (ctx.kind === "value") return valueSuggestions(ctx, source, describeValue);
  return fieldSuggestions(ctx, source);
}

function keywordGroup(prefix = "") {
  return {
    title: "Operators",
    items: KEYWORDS.filter(([k]) => k.startsWith(prefix)).map(([k, desc]) => ({
      key: `k:${k}`,
      text: k,
      desc,
      insert: { text: `${k} ` },
    })),
  };
}

function fieldSuggestions(ctx, source) {
  let load = source.fields();
  if (load.data?.truncated && ctx.prefix) load = source.fields(ctx.prefix);
  const counts = new Map((load.data?.fields || []).map((f) => [f.name, f.count]));
  const sampled = load.data ? ` in ${fmtNumber(load.data.sampled)} sampled events` : "";
  const suffix = ctx.exists ? " " : ":";
  const known = WELL_KNOWN_FIELDS.filter(([name]) => startsWithAnyCase(name, ctx.prefix)).map(
    ([name, desc]) => ({
      key: `f:${name}`,
      text: `${name}${suffix.trim()}`,
      desc,
      count: counts.get(name),
      insert: { text: `${name}${suffix}` },
    }),
  );
  const attributes = (load.data?.fields || [])
    .filter((f) => !f.well_known && startsWithAnyCase(f.name, ctx.prefix))
    .slice(0, 15)
    .map((f) => ({
      key: `f:${f.name}`,
      text: `${f.name}${suffix.trim()}`,
      desc: "",
      count: f.count,
      insert: { text: `${f.name}${suffix}` },
    }));
  const groups = [{ title: "Fields", items: known }];
  groups.push({
    title: `Attributes${sampled}`,
    items: attributes,
    note: load.error
      ? "Attributes could not be loaded."
      : load.data
        ? attributes.length
          ? ""
          : "No attribute starts so."
        : "Loading attributes…",
  });
  if (!ctx.exists && !ctx.prefix) groups.push(syntaxGroup(ctx));
  return { groups, loading: load.data || load.error ? [] : [load.promise] };
}

function syntax(key, text, desc, insert, caret = undefined) {
  return { key, text, desc, insert: { text: insert, caret } };
}

function syntaxGroup(ctx) {
  const items = [
    syntax("s:phrase", '"…"', "a phrase anywhere in the message", '""', 1),
    syntax("s:not", "-", "leave out what the next term matches", "-"),
    syntax("s:group", "( … )", "group terms: (a OR b) c", "()", 1),
    syntax("s:exists", "_exists_:", "the field is present", "_exists_:"),
  ];
  // Between two terms any operator fits; after AND or OR only NOT does; after NOT none.
  const last = /(?:^|[\s(])(AND|OR|NOT)$/.exec(ctx.previous || "")?.[1];
  let fits = ["AND", "OR", "NOT"];
  if (!ctx.previous || ctx.previous.endsWith("(") || last === "NOT") fits = [];
  else if (last) fits = ["NOT"];
  const operators = keywordGroup().items.filter((item) => fits.includes(item.text));
  return { title: "Syntax", items: [...operators, ...items] };
}

function valueSuggestions(ctx, source, describeValue) {
  const { field, op, prefix } = ctx;
  const level = field === "level" || field === "severity";
  if (op !== ":" && !level) return { groups: [], loading: [] };
  const load = op === ":" ? source.values(field) : { data: [] };
  const seen = new Set();
  const items = [];
  for (const item of level ? byLowerCase(load.data || []) : load.data || []) {
    if (!String(item.value).toLowerCase().includes(prefix.toLowerCase())) continue;
    seen.add(String(item.value).toLowerCase());
    items.push({
      key: `v:${item.value}`,
      text: item.value,
      desc: describeValue ? describeValue(field, item.value) : "",
      count: item.count,
      insert: { text: `${quote(item.value)} ` },
    });
  }
  if (level) {
    for (const name of SEVERITIES) {
      if (seen.has(name) || !name.startsWith(prefix.toLowerCase())) continue;
      items.push({ key: `v:${name}`, text: name, desc: "", insert: { text: `${name} ` } });
    }
  }
  const groups = [
    {
      title: op === ":" ? `Top values of ${field}` : `Severities (${op} compares)`,
      items: items.slice(0, 20),
      note: load.error
        ? "Values could not be loaded."
        : load.data
          ? items.length
            ? ""
            : "No value in this range starts so."
          : "Loading values…",
    },
  ];
  if (!prefix && op === ":") groups.push(valueSyntax(field));
  return { groups, loading: load.data || load.error ? [] : [load.promise] };
}

// Severity words match in any case: INFO and info are one suggestion, counted together.
function byLowerCase(values) {
  const merged = new Map();
  for (const { value, count } of values) {
    const key = String(value).toLowerCase();
    merged.set(key, (merged.get(key) || 0) + count);
  }
  return [...merged].map(([value, count]) => ({ value, count })).sort((a, b) => b.count - a.count);
}

// Replacing what follows "field:" (the field is kept); a comparison replaces the colon too.
function valueSyntax(field) {
  return {
    title: "Syntax",
    items: [
      syntax("s:any", `${field}:*`, "the field is present", "* "),
      syntax("s:range", `${field}:[a TO b]`, "a range, bounds included", "[ TO ]", 1),
      // replaces the colon too: field>= rather than field:>=
      { ...syntax("s:gte", `${field}>=`, "compare: > >= < <="), insert: { text: ">=", back: 1 } },
      syntax("s:or", `${field}:(a OR b)`, "any of several values", "()", 1),
      syntax("s:quote", `${field}:"…"`, "a value with spaces or symbols", '""', 1),
    ],
  };
}

export function createQueryBar({ value = "", onSubmit, getScope = null, describeValue = null }) {
  const listId = "query-suggest";
  const input = h("input", {
    class: "query-input",
    id: "query",
    name: "q",
    type: "search",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": listId,
    "aria-describedby": "query-error",
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    enterkeyhint: "search",
    placeholder: 'Search, e.g. level:error service:api "timeout"',
    value,
  });
  const helpButton = h(
    "button",
    {
      type: "button",
      class: "icon-btn icon-btn-sm",
      "aria-label": "Query syntax help",
      title: "Syntax help",
    },
    icon("help"),
  );
  const box = h(
    "div",
    { class: "query-box" },
    icon("search", "q-icon"),
    h("label", { for: "query", class: "sr-only" }, "Search query"),
    input,
    h(
      "kbd",
      { class: "kbd-slash", title: "Press / to focus the search box", "aria-hidden": "true" },
      "/",
    ),
    helpButton,
  );
  const errorBox = h("div", {
    class: "query-error",
    id: "query-error",
    role: "alert",
    hidden: true,
  });
  const wrap = h("div", { class: "query-wrap" }, box, errorBox);
  const source = getScope ? createSuggestSource(getScope) : null;
  let panel = null;
  let active = -1;
  let options = [];
  let mode = "history";
  let context = null; // the suggest context the panel shows

  function close() {
    if (!panel) return;
    panel.remove();
    panel = null;
    active = -1;
    options = [];
    context = null;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function newPanel(label, cls = "popover suggest") {
    return h("div", { class: cls, id: listId, role: "listbox", "aria-label": label });
  }

  function option(index, children, accept, key) {
    const el = h(
      "div",
      { class: "menu-item", role: "option", id: `${listId}-${index}`, "aria-selected": "false" },
      children,
    );
    el.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      accept();
    });
    options.push({ el, accept, key });
    return el;
  }

  // expanded: whether a listbox of options is showing (the help alone is not one).
  function show(list, which, expanded = true) {
    if (panel) panel.replaceWith(list);
    else wrap.append(list);
    panel = list;
    mode = which;
    input.setAttribute("aria-expanded", String(expanded));
  }

  function open(which) {
    close();
    const text = input.value.trim().toLowerCase();
    const recent = loadHistory()
      .filter((q) => !text || q.toLowerCase().includes(text))
      .slice(0, 8);
    if (which === "history" && !recent.length) return;
    const help = which === "help";
    const list = newPanel("Recent queries", help ? "suggest-list" : undefined);
    if (recent.length) {
      list.append(h("div", { class: "menu-label", role: "presentation" }, "Recent queries"));
      recent.forEach((q, i) => {
        list.append(option(i, [icon("history"), h("span", {}, q)], () => pick(q), `h:${q}`));
      });
    }
    if (!help) return show(list, which);
    // The help holds buttons and a link, which a listbox may not: it sits beside the list.
    const sep = recent.length ? h("div", { class: "menu-sep" }) : null;
    const box = h(
      "div",
      { class: "popover suggest", id: "query-help", role: "group", "aria-label": "Query syntax help" },
      recent.length ? list : null,
      sep,
      syntaxHelp(),
    );
    show(box, which, recent.length > 0);
  }

  // Suggestions for where the caret is; called on every keystroke and when a load ends.
  function suggest() {
    const text = input.value;
    const ctx = source && text.trim() ? contextAt(text, input.selectionStart ?? text.length) : null;
    if (!ctx) {
      if (panel && mode === "history") open("history");
      else if (mode === "suggest") close();
      return;
    }
    const { groups, loading } = suggestions(ctx, source, describeValue);
    const shown = groups.filter((g) => g.items.length || g.note);
    if (!shown.some((g) => g.items.length) && !loading.length) {
      close();
      return;
    }
    const keepKey = panel && mode === "suggest" ? options[active]?.key : null;
    options = [];
    active = -1;
    const list = newPanel("Suggestions");
    shown.forEach((group, g) => {
      const labelId = `${listId}-g${g}`;
      const items = group.items.map((item) =>
        option(
          options.length,
          [
            h("span", { class: "sg-text" }, item.text),
            item.desc ? h("span", { class: "sg-desc" }, item.desc) : null,
            item.count === undefined
              ? null
              : h("span", { class: "sg-count" }, fmtNumber(item.count)),
          ],
          () => accept(ctx, item.insert),
          item.key,
        ),
      );
      list.append(
        h(
          "div",
          { role: "group", "aria-labelledby": labelId },
          h("div", { class: "menu-label", id: labelId, role: "presentation" }, group.title),
          items,
          group.note && !items.length
            ? h("div", { class: "sg-note", role: "presentation" }, group.note)
            : null,
        ),
      );
    });
    show(list, "suggest");
    context = ctx;
    input.removeAttribute("aria-activedescendant");
    const again = options.findIndex((o) => o.key === keepKey);
    if (again >= 0) highlight(again);
    for (const promise of loading) promise.then(() => refreshIfSame(ctx));
  }

  function refreshIfSame(ctx) {
    if (!panel || mode !== "suggest" || document.activeElement !== input) return;
    const now = contextAt(input.value, input.selectionStart ?? input.value.length);
    if (now && context && now.kind === ctx.kind && now.from === ctx.from) suggest();
  }

  // Replaces [from, to) with the suggestion and puts the caret where typing goes on.
  function accept(ctx, insert) {
    const from = ctx.from - (insert.back || 0);
    const text = input.value;
    input.value = text.slice(0, from) + insert.text + text.slice(ctx.to);
    const caret = from + (insert.caret ?? insert.text.length);
    input.focus();
    input.setSelectionRange(caret, caret);
    clearError();
    close();
    suggest();
  }

  function syntaxHelp() {
    const grid = h("div", { class: "syntax-help", role: "presentation" });
    for (const [example, meaning] of EXAMPLES) {
      const button = h("button", { type: "button", tabindex: "-1" }, example);
      button.addEventListener("pointerdown", (event) => {
        event.preventDefault();
        insert(example);
      });
      grid.append(button, h("span", {}, meaning));
    }
    return h(
      "div",
      {},
      h("div", { class: "menu-label" }, "Syntax"),
      grid,
      h(
        "p",
        { class: "field-hint syntax-default" },
        "\u00a0 Default operator: ",
        h("strong", {}, "AND"),
        " (terms next to each other must all match). ",
        h("kbd", {}, "Enter"),
        " runs the search, ",
        h("kbd", {}, "/"),
        " jumps here. ",
        // The API reference of this server documents the language on POST /v1/search.
        h(
          "a",
          { href: SYNTAX_DOCS, target: "_blank", rel: "noopener", class: "syntax-docs" },
          "Full syntax",
        ),
      ),
    );
  }

  function insert(example) {
    const current = input.value.trim();
    input.value = current ? `${current} ${example}` : example;
    close();
    input.focus();
  }

  function pick(q) {
    input.value = q;
    close();
    onSubmit(q);
  }

  function highlight(index) {
    options.forEach((o, i) => o.el.setAttribute("aria-selected", String(i === index)));
    active = index;
    if (index >= 0) {
      input.setAttribute("aria-activedescendant", options[index].el.id);
      options[index].el.scrollIntoView({ block: "nearest" });
    } else input.removeAttribute("aria-activedescendant");
  }

  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      if (!panel) {
        if (input.value.trim()) suggest();
        else open("history");
      }
      if (options.length) highlight((active + 1) % options.length);
    } else if (event.key === "ArrowUp" && panel && options.length) {
      event.preventDefault();
      highlight(active <= 0 ? options.length - 1 : active - 1);
    } else if ((event.key === "Enter" || event.key === "Tab") && panel && active >= 0) {
      if (event.shiftKey && event.key === "Tab") return;
      event.preventDefault();
      options[active].accept();
    } else if (event.key === "Escape") {
      if (panel) {
        event.preventDefault();
        close();
      } else input.blur();
    }
  });
  let edited = false; // typed into since the search's query was last shown
  input.addEventListener("input", () => {
    edited = true;
    clearError();
    if (input.value.trim()) suggest();
    else if (panel && mode === "history") open("history");
    else if (mode === "suggest") close();
  });
  // The caret moved without typing: what to suggest may have changed.
  for (const type of ["click", "keyup"]) {
    input.addEventListener(type, (event) => {
      const moved = type === "click" || /^(ArrowLeft|ArrowRight|Home|End)$/.test(event.key);
      if (moved && input.value.trim() && (panel || type === "click")) suggest();
    });
  }
  input.addEventListener("blur", () =>
    setTimeout(() => {
      if (!wrap.contains(document.activeElement)) close();
    }, 100),
  );
  input.addEventListener("focus", () => {
    if (!input.value) open("history");
  });
  helpButton.addEventListener("click", () => {
    if (panel && mode === "help") close();
    else {
      input.focus();
      open("help");
    }
  });

  function showError(error) {
    const text = input.value;
    const position = Number.isInteger(error.problem?.position)
      ? Math.max(0, Math.min(error.problem.position, text.length))
      : null;
    box.dataset.invalid = "true";
    input.setAttribute("aria-invalid", "true");
    const parts = [h("strong", {}, error.detail)];
    if (position !== null) {
      const at = text.slice(position, position + 1) || " ";
      parts.push(
        h(
          "pre",
          { "aria-hidden": "true" },
          text.slice(0, position),
          h("mark", {}, at),
          text.slice(position + 1),
          "\n",
          " ".repeat(position),
          h("span", { class: "caret" }, "^"),
        ),
      );
      parts[0] = h("strong", {}, `${error.detail} (at character ${position + 1})`);
    }
    if (error.problem?.hint) parts.push(h("div", { class: "hint" }, `Hint: ${error.problem.hint}`));
    replace(errorBox, parts);
    errorBox.hidden = false;
    if (position !== null) {
      input.focus();
      input.setSelectionRange(position, Math.min(position + 1, text.length));
    }
  }

  function clearError() {
    if (errorBox.hidden) return;
    errorBox.hidden = true;
    replace(errorBox);
    delete box.dataset.invalid;
    input.removeAttribute("aria-invalid");
  }

  return {
    el: wrap,
    input,
    get value() {
      return input.value.trim();
    },
    // Shows the search's query, unless the person is typing another one: a search that starts
    // meanwhile (the page's first, once its sources arrive) must not eat what they typed.
    sync(text) {
      if (edited && document.activeElement === input && input.value.trim() !== text) return;
      input.value = text;
      edited = false;
    },
    close,
    showError,
    clearError,
  };
}
