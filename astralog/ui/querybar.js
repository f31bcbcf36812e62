// The query input: recent queries (localStorage), syntax help, and a syntax error shown where
// the parser stopped.

import { h, icon, replace } from "./dom.js";

const HISTORY_KEY = "astralog.queries";
const HISTORY_MAX = 20;

const EXAMPLES = [
  ["level:error", "a field has a value"],
  ['"upstream timeout"', "a phrase anywhere in the message"],
  ["timeout", "a word anywhere in the message"],
  ["-health", "exclude a word (or -field:value)"],
  ["http.status>=500", "compare: > >= < <="],
  ["http.status:[500 TO 599]", "a range, bounds included"],
  ["service:(api OR web)", "any of several values"],
  ["host:web-*", "wildcards * and ?"],
  ["_exists_:http.status", "the field is present"],
  ["level:error AND NOT service:db", "AND, OR, NOT, parentheses"],
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

export function createQueryBar({ value = "", onSubmit }) {
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
  let panel = null;
  let active = -1;
  let options = [];
  let mode = "history";

  function close() {
    if (!panel) return;
    panel.remove();
    panel = null;
    active = -1;
    options = [];
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function open(which) {
    close();
    mode = which;
    const text = input.value.trim().toLowerCase();
    const recent = loadHistory()
      .filter((q) => !text || q.toLowerCase().includes(text))
      .slice(0, 8);
    if (which === "history" && !recent.length) return;
    panel = h("div", {
      class: "popover suggest",
      id: listId,
      role: "listbox",
      "aria-label": "Recent queries",
    });
    if (recent.length) {
      panel.append(h("div", { class: "menu-label", role: "presentation" }, "Recent queries"));
      recent.forEach((q, i) => {
        const option = h(
          "div",
          { class: "menu-item", role: "option", id: `${listId}-${i}`, "aria-selected": "false" },
          icon("history"),
          h("span", {}, q),
        );
        option.addEventListener("pointerdown", (event) => {
          event.preventDefault();
          pick(q);
        });
        options.push({ el: option, value: q });
        panel.append(option);
      });
    }
    if (which === "help") {
      if (recent.length) panel.append(h("div", { class: "menu-sep", role: "presentation" }));
      panel.append(syntaxHelp());
    }
    wrap.append(panel);
    input.setAttribute("aria-expanded", "true");
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
      { role: "presentation" },
      h("div", { class: "menu-label" }, "Syntax"),
      grid,
      h(
        "p",
        { class: "field-hint", role: "presentation" },
        "\u00a0 Terms next to each other must all match. ",
        h("kbd", {}, "Enter"),
        " runs the search, ",
        h("kbd", {}, "/"),
        " jumps here.",
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
      if (!panel) open("history");
      if (options.length) highlight((active + 1) % options.length);
    } else if (event.key === "ArrowUp" && panel && options.length) {
      event.preventDefault();
      highlight(active <= 0 ? options.length - 1 : active - 1);
    } else if (event.key === "Enter" && panel && active >= 0) {
      event.preventDefault();
      pick(options[active].value);
    } else if (event.key === "Escape") {
      if (panel) {
        event.preventDefault();
        close();
      } else input.blur();
    }
  });
  input.addEventListener("input", () => {
    clearError();
    if (panel && mode === "history") open("history");
  });
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
    set value(v) {
      input.value = v;
    },
    close,
    showError,
    clearError,
  };
}
