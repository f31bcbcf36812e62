// The shell: session, sign-in, navigation between pages, theme, global keys.

import { ApiError, cached, del, get, invalidate, onSignedOut, post, setCsrf } from "./api.js";
import { announce, h, icon, replace, toast } from "./dom.js";

const PAGES = {
  "/": { name: "search", title: "Search", load: () => import("./search.js") },
  "/sources": { name: "sources", title: "Sources & keys", load: () => import("./sources.js") },
  "/storage": { name: "storage", title: "Storage", load: () => import("./storage.js") },
  "/retention": { name: "retention", title: "Retention", load: () => import("./retention.js") },
  "/audit": { name: "audit", title: "Audit", load: () => import("./audit.js") },
};

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
let session = null;
let current = null; // { path, view }
let renderSeq = 0;

export const app = {
  get session() {
    return session;
  },
  navigate,
  setTitle(title) {
    document.title = title ? `${title} · Astralog` : "Astralog";
  },
};

function navigate(url, { replace: replaceState = false } = {}) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) {
    location.href = target.href;
    return;
  }
  if (target.href !== location.href) {
    history[replaceState ? "replaceState" : "pushState"](
      null,
      "",
      target.pathname + target.search + target.hash,
    );
  }
  render();
}

async function render() {
  if (!session) return;
  const seq = ++renderSeq;
  const path = PAGES[location.pathname] ? location.pathname : "/";
  const page = PAGES[path];
  markNav(page.name);
  if (current && current.path === path && current.view.onUrlChange) {
    current.view.onUrlChange();
    return;
  }
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  const module = await page.load();
  if (seq !== renderSeq) return;
  replace(main);
  app.setTitle(page.title);
  const view = (await module.mount(main, app)) || {};
  if (seq !== renderSeq) {
    if (view.unmount) view.unmount();
    return;
  }
  current = { path, view };
}

function markNav(name) {
  const nav = topbar.querySelector(".mainnav");
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page !== name) {
      link.removeAttribute("aria-current");
      continue;
    }
    link.setAttribute("aria-current", "page");
    // On a narrow screen the nav scrolls sideways: keep the current page in sight.
    const right = link.offsetLeft + link.offsetWidth;
    if (right > nav.scrollLeft + nav.clientWidth || link.offsetLeft < nav.scrollLeft) {
      nav.scrollLeft = Math.max(0, right - nav.clientWidth + 8);
    }
  }
}

// ------------------------------------------------------------------ sign-in

function showSignIn(message) {
  session = null;
  if (current && current.view.unmount) current.view.unmount();
  current = null;
  invalidate();
  topbar.hidden = true;
  app.setTitle("Sign in");
  const token = h("input", {
    class: "input input-mono",
    id: "signin-token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "alt_…",
    required: true,
    "aria-describedby": "signin-hint signin-error",
  });
  const error = h("p", { class: "field-error", id: "signin-error", role: "alert" }, message || "");
  const reveal = h(
    "button",
    {
      type: "button",
      class: "btn btn-ghost btn-xs",
      "aria-pressed": "false",
      "aria-label": "Show token",
    },
    "Show",
  );
  reveal.addEventListener("click", () => {
    const shown = token.type === "text";
    token.type = shown ? "password" : "text";
    reveal.textContent = shown ? "Show" : "Hide";
    reveal.setAttribute("aria-pressed", String(!shown));
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    h(
      "div",
      { class: "field" },
      h("label", { for: "signin-token" }, "Admin token"),
      h("div", { class: "password-wrap" }, token, reveal),
      h(
        "p",
        { class: "field-hint", id: "signin-hint" },
        "The ",
        h("code", {}, "alt_…"),
        " token printed in the terminal when Astralog first started (",
        h("code", {}, "Admin token:"),
        ").",
      ),
      error,
    ),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = token.value.trim();
    if (!value) {
      error.textContent = "Paste your admin token to sign in.";
      token.setAttribute("aria-invalid", "true");
      token.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const data = await post("/v1/session", { token: value }, { quiet401: true });
      await startSession(data);
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? "That token was not accepted. Check for a missing character, or issue a new one."
          : err.detail || err.message;
      token.setAttribute("aria-invalid", "true");
      submit.disabled = false;
      submit.textContent = "Sign in";
      token.focus();
    }
  });
  replace(
    main,
    h(
      "div",
      { class: "signin" },
      h(
        "section",
        { class: "card signin-card", "aria-labelledby": "signin-title" },
        h(
          "div",
          { class: "signin-brand" },
          h("img", { src: logoSrc(), alt: "", width: "30", height: "30" }),
          "Astralog",
        ),
        h("h1", { id: "signin-title" }, "Sign in"),
        h("p", { class: "lede" }, "Search your logs and manage the storage you own."),
        form,
        h(
          "div",
          { class: "signin-foot" },
          h("p", {}, "Lost the token? Issue a new one on the server:"),
          h(
            "pre",
            { class: "mono" },
            "astralog tokens issue --org <org> \\\n  --scope logs:read --scope sources:read …",
          ),
        ),
      ),
    ),
  );
  token.focus();
}

function logoSrc() {
  return document.querySelector('link[rel="icon"]').getAttribute("href");
}

async function startSession(data) {
  session = data;
  setCsrf(data.csrf_token);
  topbar.hidden = false;
  const badge = document.getElementById("org-badge");
  replace(badge);
  cached("/v1/org")
    .then((org) => {
      session.org = org;
      replace(
        badge,
        h("span", {}, org.name),
        h(
          "span",
          { class: "plan-pill", title: `${org.limits?.retention_days ?? "?"} days retention` },
          org.plan,
        ),
      );
    })
    .catch(() => {});
  await render();
}

async function signOut() {
  try {
    await del("/v1/session");
  } catch {
    /* the session may already be gone; either way the cookie is cleared below */
  }
  showSignIn();
  toast("Signed out");
}

// ------------------------------------------------------------------ theme and keys

function setupTheme() {
  const button = document.getElementById("theme-toggle");
  const label = () => {
    const dark = document.documentElement.dataset.theme === "dark";
    button.setAttribute("aria-label", dark ? "Switch to light theme" : "Switch to dark theme");
  };
  label();
  button.addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try {
      localStorage.setItem("astralog.theme", next);
    } catch {
      /* not remembered, still applied */
    }
    document.documentElement.dataset.theme = next;
    label();
    announce(`${next === "dark" ? "Dark" : "Light"} theme`);
    window.dispatchEvent(new Event("astralog:theme"));
  });
}

function setupLinks() {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav], a[data-internal]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(link.getAttribute("href"));
    main.focus({ preventScroll: true });
  });
  window.addEventListener("popstate", () => render());
}

async function boot() {
  setupTheme();
  setupLinks();
  document.getElementById("sign-out").addEventListener("click", signOut);
  onSignedOut(() => {
    if (session) showSignIn("Your session ended. Sign in again to continue.");
  });
  try {
    const data = await get("/v1/session", { quiet401: true });
    await startSession(data);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) showSignIn();
    else {
      replace(
        main,
        h(
          "div",
          { class: "state state-error", role: "alert" },
          h("div", { class: "state-icon" }, icon("alert")),
          h("h2", {}, "Astralog is not answering"),
          h("p", {}, error.detail || String(error)),
          h(
            "div",
            { class: "row" },
            h("button", { class: "btn", onclick: () => location.reload() }, "Reload"),
          ),
        ),
      );
    }
  }
}

boot();
