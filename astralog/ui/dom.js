// Small DOM helpers. Text always goes in as text nodes, never as HTML: nothing a log line or a
// field value contains can become markup.

export function h(tag, attrs, ...children) {
  const el = tag.includes(":")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.split(":")[1])
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && !(el instanceof SVGElement) && typeof value !== "string") {
      el[key] = value;
    } else if (key === "value" || key === "checked" || key === "disabled") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  return h(`svg:${tag}`, attrs, ...children);
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const ICONS = {
  search: "M11 19a8 8 0 1 1 0-16 8 8 0 0 1 0 16zM21 21l-4.3-4.3",
  clock: "M12 22a10 10 0 1 1 0-20 10 10 0 0 1 0 20zM12 6v6l4 2",
  database:
    "M12 8c4.4 0 8-1.3 8-3s-3.6-3-8-3-8 1.3-8 3 3.6 3 8 3zM4 5v14c0 1.7 3.6 3 8 3s8-1.3 8-3V5M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
  chevron: "M9 6l6 6-6 6",
  down: "M6 9l6 6 6-6",
  copy: "M9 9h11v11H9zM5 15H4V4h11v1",
  check: "M20 6L9 17l-5-5",
  x: "M18 6L6 18M6 6l12 12",
  plus: "M12 5v14M5 12h14",
  minus: "M5 12h14",
  filter: "M3 5h18l-7 8v6l-4 2v-8z",
  download: "M12 3v12M7 10l5 5 5-5M5 21h14",
  history: "M3 12a9 9 0 1 0 3-6.7L3 8M3 3v5h5M12 7v5l3 2",
  help: "M12 22a10 10 0 1 1 0-20 10 10 0 0 1 0 20zM9.1 9a3 3 0 0 1 5.8 1c0 2-3 3-3 3M12 17h.01",
  alert:
    "M12 9v4M12 17h.01M10.3 3.9L1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0z",
  inbox:
    "M22 12h-6l-2 3h-4l-2-3H2M5.5 5.1L2 12v6a2 2 0 0 0 2 2h16a2 2 0 0 0 2-2v-6l-3.5-6.9A2 2 0 0 0 16.8 4H7.2a2 2 0 0 0-1.7 1.1z",
  key: "M21 2l-2 2m-7.6 7.6a5.5 5.5 0 1 1-7.8 7.8 5.5 5.5 0 0 1 7.8-7.8zM15.5 7.5l3 3L22 7l-3-3",
  shield: "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM9 12l2 2 4-4",
  shieldX: "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10zM9.5 9.5l5 5M14.5 9.5l-5 5",
  zoomOut: "M11 19a8 8 0 1 1 0-16 8 8 0 0 1 0 16zM21 21l-4.3-4.3M8 11h6",
  refresh: "M21 12a9 9 0 1 1-2.6-6.4L21 8M21 3v5h-5",
  bucket: "M4 7h16l-1.5 12.5a2 2 0 0 1-2 1.5h-9a2 2 0 0 1-2-1.5zM3 7c0-1.7 4-3 9-3s9 1.3 9 3",
  link: "M10 13a5 5 0 0 0 7.5.5l3-3a5 5 0 0 0-7-7l-1.8 1.7M14 11a5 5 0 0 0-7.5-.5l-3 3a5 5 0 0 0 7 7l1.7-1.7",
  lock: "M5 11h14v10H5zM8 11V7a4 4 0 0 1 8 0v4",
  arrowUp: "M12 19V5M5 12l7-7 7 7",
  columns: "M4 4h16v16H4zM10 4v16M16 4v16",
  chart: "M4 20V12M10 20V5M16 20v-9M2 20h20",
};

export function icon(name, cls = "") {
  return svg(
    "svg",
    { viewBox: "0 0 24 24", class: `icon ${cls}`.trim(), "aria-hidden": "true" },
    svg("path", { d: ICONS[name] || "" }),
  );
}

// ------------------------------------------------------------------ formatting

const numberFormat = new Intl.NumberFormat();
export const fmtNumber = (n) => numberFormat.format(n ?? 0);

export function fmtCompact(n) {
  if (n < 1000) return String(n);
  const units = [
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "k"],
  ];
  for (const [size, suffix] of units) {
    if (n >= size) {
      const v = n / size;
      return (v >= 100 ? Math.round(v) : Math.round(v * 10) / 10) + suffix;
    }
  }
  return String(n);
}

export function fmtBytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// An ISO time with nanoseconds ("...T01:02:03.123456789Z") as a Date plus its sub-ms digits.
export function parseTime(iso) {
  if (!iso) return null;
  const match = /\.(\d+)Z?$/.exec(iso);
  const date = new Date(iso.replace(/\.(\d{3})\d*/, ".$1"));
  return Number.isNaN(date.getTime()) ? null : { date, fraction: match ? match[1] : "" };
}

// Times follow the person's UTC/local choice and always name their zone: see timefmt.js.
export { fmtDateTime, fmtEventTime } from "./timefmt.js";

export function fmtRelative(value) {
  const d = value instanceof Date ? value : new Date(value);
  const diff = (Date.now() - d.getTime()) / 1000;
  const abs = Math.abs(diff);
  const units = [
    [86400 * 365, "year"],
    [86400 * 30, "month"],
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  for (const [size, unit] of units) {
    if (abs >= size) return rtf.format(-Math.round(diff / size), unit);
  }
  return abs < 10 ? "just now" : rtf.format(-Math.round(diff), "second");
}

export function fmtDuration(minutes) {
  if (minutes === 0) return "no grace period";
  if (minutes % 1440 === 0) return `${minutes / 1440} day${minutes === 1440 ? "" : "s"}`;
  if (minutes % 60 === 0) return `${minutes / 60} hour${minutes === 60 ? "" : "s"}`;
  return `${minutes} minute${minutes === 1 ? "" : "s"}`;
}

// ------------------------------------------------------------------ feedback

export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick makes screen readers read a repeated message again.
  setTimeout(() => {
    region.textContent = text;
  }, 30);
}

export function toast(text, { error = false, timeout = 3200 } = {}) {
  const box = document.getElementById("toasts");
  const el = h(
    "div",
    { class: ["toast", error && "toast-error"] },
    icon(error ? "alert" : "check"),
    text,
  );
  box.append(el);
  setTimeout(() => el.remove(), timeout);
}

export async function copyText(text, what = "Copied") {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", { class: "sr-only", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast(`${what} to the clipboard`);
}

export function copyButton(getText, { label = "Copy", what = "Copied", cls = "btn btn-sm" } = {}) {
  const button = h(
    "button",
    { type: "button", class: cls },
    icon("copy", "icon-sm"),
    h("span", {}, label),
  );
  button.addEventListener("click", async () => {
    await copyText(typeof getText === "function" ? getText() : getText, what);
    const text = button.querySelector("span");
    text.textContent = "Copied";
    setTimeout(() => (text.textContent = label), 1400);
  });
  return button;
}

export function codeBlock(text, { label = "Code", what = "Copied" } = {}) {
  const pre = h("pre", { tabindex: "0", "aria-label": label }, h("code", {}, text));
  return h(
    "div",
    { class: "code" },
    pre,
    copyButton(() => pre.textContent, { what, cls: "btn btn-xs copy-btn" }),
  );
}

// ------------------------------------------------------------------ page layout

// A page's title and lede, with its actions to the right.
export function pageHead(title, lede, ...actions) {
  return h("div", { class: "page-head" }, h("div", {}, h("h1", {}, title), h("p", {}, lede)), actions);
}

// A titled card (optional lede and head action). `body` is the body's class, or an element (a
// form) that is the body itself.
export function card({ id, title, lede, action, body = "card-body stack" }, ...children) {
  return h(
    "section",
    { class: "card", "aria-labelledby": id },
    h("div", { class: "card-head" }, h("div", {}, h("h2", { id }, title), lede ? h("p", {}, lede) : null), action),
    typeof body === "string" ? h("div", { class: body }, children) : body,
  );
}

// A responsive table: one header a column, then an unlabelled one for the row's actions.
export function actionTable(id, columns, rows) {
  return h(
    "table",
    { class: "table responsive", id },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((name) => h("th", { scope: "col" }, name)),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
      ),
    ),
    h("tbody", {}, rows),
  );
}

// The primary "+ New …" button of a page or card.
export function addButton(id, label, onclick) {
  return h("button", { type: "button", class: "btn btn-primary", id, onclick }, icon("plus", "icon-sm"), label);
}

// Fills a page once its data has arrived: the head over the cards `build` makes of the data, or
// over the fetch's error with a retry.
export async function fillPage(page, head, fetch, build) {
  let data;
  try {
    data = await fetch();
  } catch (error) {
    replace(page, head(), errorState(error, () => fillPage(page, head, fetch, build)));
    return;
  }
  replace(page, head(), h("div", { class: "stack-lg" }, build(data)));
}

// ------------------------------------------------------------------ states

export function stateView({ kind = "empty", iconName = "inbox", title, text, actions = [] }) {
  return h(
    "div",
    {
      class: ["state", kind === "error" && "state-error"],
      role: kind === "error" ? "alert" : null,
    },
    h("div", { class: "state-icon" }, icon(kind === "error" ? "alert" : iconName)),
    h("h2", {}, title),
    text ? h("p", {}, text) : null,
    actions.length ? h("div", { class: "row" }, actions) : null,
  );
}

export function errorState(error, retry) {
  return stateView({
    kind: "error",
    title: error.title || "Something went wrong",
    text: error.detail || error.message,
    actions: retry
      ? [h("button", { class: "btn", type: "button", onclick: retry }, "Try again")]
      : [],
  });
}

// ------------------------------------------------------------------ dialogs and popovers

// A modal <dialog>: focus is trapped by the browser, Escape closes it, focus returns to the
// element that opened it.
export function openDialog({
  title,
  description,
  body = [],
  actions = [],
  dismissible = true,
  onClose,
}) {
  const opener = document.activeElement;
  const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
  const dialog = h(
    "dialog",
    { class: "dialog", "aria-labelledby": titleId },
    h(
      "div",
      { class: "dialog-head" },
      h("div", {}, h("h2", { id: titleId }, title), description ? h("p", {}, description) : null),
      dismissible
        ? h(
            "button",
            { type: "button", class: "icon-btn", "aria-label": "Close", onclick: () => close() },
            icon("x"),
          )
        : null,
    ),
    h("div", { class: "dialog-body" }, body),
    actions.length ? h("div", { class: "dialog-foot" }, actions) : null,
  );
  function close(value) {
    if (dialog.open) dialog.close(value);
  }
  dialog.addEventListener("cancel", (event) => {
    if (!dismissible) event.preventDefault();
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose(dialog.returnValue);
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

export function confirmDialog({ title, text, confirm = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    let confirmed = false;
    const yes = h(
      "button",
      { type: "button", class: ["btn", danger ? "btn-danger-solid" : "btn-primary"] },
      confirm,
    );
    const no = h("button", { type: "button", class: "btn" }, "Cancel");
    const { close } = openDialog({
      title,
      body: [h("p", {}, text)],
      actions: [no, yes],
      onClose: () => resolve(confirmed),
    });
    yes.addEventListener("click", () => {
      confirmed = true;
      close();
    });
    no.addEventListener("click", () => close());
    no.focus();
  });
}

// A destructive step after a yes: `act` runs only when confirmed, and its failure is a toast.
export async function confirmAndRun(question, act) {
  if (!(await confirmDialog({ danger: true, ...question }))) return;
  try {
    await act();
  } catch (err) {
    toast(err.detail || String(err), { error: true });
  }
}

// A dialog around one form. `check(error)` may refuse before sending (it reports why);
// `onSubmit(close)` sends, and what it throws shows under the form with the button usable again.
export function formDialog({ id, title, description, fields, submitLabel, check, onSubmit }) {
  const error = h("p", { class: "field-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", form: id }, submitLabel);
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h("form", { id, class: "stack", novalidate: true }, fields, error);
  const { close } = openDialog({ title, description, body: [form], actions: [cancel, submit] });
  cancel.addEventListener("click", () => close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (check && !check(error)) return;
    submit.disabled = true;
    try {
      await onSubmit(close);
    } catch (err) {
      error.textContent = err.detail || String(err);
      submit.disabled = false;
    }
  });
  const first = form.querySelector("input, select");
  if (first) first.focus();
}

// A popover anchored in `wrap` (position: relative). Closes on Escape and outside clicks.
export function popover(wrap, trigger, build, { cls = "", align = "left" } = {}) {
  let panel = null;
  function onDoc(event) {
    if (panel && !wrap.contains(event.target)) close();
  }
  function onKey(event) {
    if (event.key === "Escape" && panel) {
      event.stopPropagation();
      close();
      trigger.focus();
    }
  }
  function open() {
    if (panel) return;
    panel = h("div", { class: `popover popover-${align} ${cls}` });
    build(panel, close);
    wrap.append(panel);
    trigger.setAttribute("aria-expanded", "true");
    document.addEventListener("pointerdown", onDoc, true);
    wrap.addEventListener("keydown", onKey);
    const first = panel.querySelector("[autofocus], button, input, a, select");
    if (first) first.focus();
  }
  function close() {
    if (!panel) return;
    panel.remove();
    panel = null;
    trigger.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", onDoc, true);
    wrap.removeEventListener("keydown", onKey);
  }
  trigger.setAttribute("aria-haspopup", "dialog");
  trigger.setAttribute("aria-expanded", "false");
  trigger.addEventListener("click", () => (panel ? close() : open()));
  return { open, close, isOpen: () => Boolean(panel) };
}

// Accessible tabs: arrow keys move between tabs, each tab controls one panel.
export function tabs(items, { label = "Tabs", selected = 0, onSelect } = {}) {
  const prefix = `tab-${Math.random().toString(36).slice(2)}`;
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": label });
  const panels = [];
  const buttons = items.map((item, i) => {
    const button = h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `${prefix}-t${i}`,
        "aria-controls": `${prefix}-p${i}`,
        "aria-selected": String(i === selected),
        tabindex: i === selected ? "0" : "-1",
      },
      item.label,
    );
    const panel = h(
      "div",
      { class: "tabpanel", role: "tabpanel", id: `${prefix}-p${i}`, "aria-labelledby": button.id },
      typeof item.content === "function" ? null : item.content,
    );
    panel.hidden = i !== selected;
    panels.push(panel);
    button.addEventListener("click", () => select(i));
    button.addEventListener("keydown", (event) => {
      const delta = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!delta) return;
      event.preventDefault();
      const next = (i + delta + items.length) % items.length;
      select(next);
      buttons[next].focus();
    });
    return button;
  });
  function select(index) {
    buttons.forEach((b, i) => {
      b.setAttribute("aria-selected", String(i === index));
      b.tabIndex = i === index ? 0 : -1;
      panels[i].hidden = i !== index;
    });
    const item = items[index];
    if (typeof item.content === "function" && !panels[index].childElementCount) {
      replace(panels[index], item.content());
    }
    if (onSelect) onSelect(index);
  }
  list.append(...buttons);
  if (typeof items[selected].content === "function")
    replace(panels[selected], items[selected].content());
  return { el: h("div", {}, list, panels), select };
}
