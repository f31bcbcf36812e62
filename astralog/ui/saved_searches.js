// Saved searches: a query, its sources and range under a name, private to its owner or shared
// with the org. The search page's "Saved" menu saves the search on screen, lists the saved ones
// and opens each by its URL (the API's `search_url`, a link anyone allowed can open), deletes
// them, and starts an alert on the search on screen.

import { del, get, post, qs } from "./api.js";
import { confirmAndRun, h, icon, openDialog, popover, replace, toast } from "./dom.js";
import { clearErrors, errorSlot, showProblem } from "./field_errors.js";
import { describeRange } from "./pickers.js";

const can = (app, scope) => (app.session?.scopes || []).includes(scope);

// The "Saved" button and its menu. `getState()` answers the search on screen:
// { query, start, end, sources }.
export function savedMenu(getState, app) {
  const button = h(
    "button",
    { type: "button", class: "btn btn-sm", id: "saved-menu" },
    icon("history", "icon-sm"),
    "Saved",
  );
  const wrap = h("div", { class: "picker saved-menu" }, button);
  const pop = popover(wrap, button, (panel, close) => fillMenu(panel, close, getState, app), {
    align: "right",
    cls: "saved-popover",
  });
  return { el: wrap, close: pop.close };
}

function fillMenu(panel, close, getState, app) {
  const list = h("div", { id: "saved-list", "aria-busy": "true" }, h("p", { class: "menu-label" }, "Loading…"));
  const state = getState();
  replace(
    panel,
    can(app, "searches:write")
      ? h("button", { type: "button", class: "menu-item", id: "save-search", onclick: () => {
          close();
          saveDialog(state);
        } }, icon("plus", "icon-sm"), "Save this search…")
      : null,
    can(app, "alerts:write")
      ? h("a", { class: "menu-item", id: "alert-on-search", href: `/alerts${qs({ new: 1, q: state.query, sources: state.sources })}`, "data-internal": "", onclick: close }, icon("alert", "icon-sm"), "Alert on this search…")
      : null,
    h("div", { class: "menu-sep" }),
    h("div", { class: "menu-label" }, "Saved searches"),
    list,
  );
  loadList(list, close, app);
}

async function loadList(list, close, app) {
  let searches;
  try {
    searches = await get("/v1/saved-searches");
  } catch (error) {
    replace(list, h("p", { class: "field-error", role: "alert" }, error.detail || String(error)));
    return;
  }
  list.setAttribute("aria-busy", "false");
  if (!searches.length) {
    replace(list, h("p", { class: "menu-label saved-empty" }, "None yet: save a search to find it here."));
    return;
  }
  replace(list, h("ul", { class: "saved-items" }, searches.map((s) => savedItem(s, list, close, app))));
}

function savedItem(search, list, close, app) {
  const mine = search.owner === app.session?.principal || can(app, "members:write");
  const open = h(
    "a",
    { class: "menu-item", href: search.search_url, "data-internal": "", title: search.query || "every event", onclick: close },
    h("span", { class: "saved-name" }, search.name),
    search.visibility === "shared" ? h("span", { class: "badge badge-plain" }, "shared") : null,
  );
  const remove = mine
    ? h(
        "button",
        { type: "button", class: "icon-btn icon-btn-sm", "aria-label": `Delete saved search ${search.name}`, title: "Delete" },
        icon("x", "icon-sm"),
      )
    : null;
  remove?.addEventListener("click", () => {
    close();
    confirmAndRun(
      { title: `Delete “${search.name}”?`, text: "The saved search goes for everyone it is shared with. Alerts made from it keep running: they hold their own copy.", confirm: "Delete" },
      async () => {
        await del(`/v1/saved-searches/${encodeURIComponent(search.id)}`);
        toast(`Deleted “${search.name}”`);
      },
    );
  });
  return h("li", { class: "saved-item", dataset: { saved: search.id } }, open, remove);
}

// The dialog that names the search on screen and saves it, private or shared.
function saveDialog(state) {
  const name = h("input", { class: "input", id: "saved-name", maxlength: "200", autocomplete: "off", placeholder: state.query || "All events" });
  const choice = (value, label) =>
    h("label", {}, h("input", { type: "radio", name: "visibility", value, id: `saved-${value}`, checked: value === "private" }), label);
  const visibility = h("div", { class: "segmented", role: "radiogroup", "aria-label": "Who sees it", id: "saved-visibility" }, choice("private", "Only me"), choice("shared", "Everyone in the org"));
  const slots = { name: errorSlot(name), visibility: errorSlot(visibility) };
  const general = h("p", { class: "field-error", id: "saved-form-error", role: "alert" });
  const scope = state.sources.length ? `${state.sources.length} source${state.sources.length === 1 ? "" : "s"}` : "every source you can read";
  const form = h(
    "form",
    { id: "saved-form", class: "stack", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "saved-name" }, "Name"), name, slots.name.el),
    h("div", { class: "field" }, h("span", { class: "field-label" }, "Who sees it"), visibility, slots.visibility.el),
    h("dl", { class: "kv" }, h("dt", {}, "Query"), h("dd", { class: "mono" }, state.query || "(every event)"), h("dt", {}, "Range"), h("dd", {}, describeRange(state.start, state.end)), h("dt", {}, "Sources"), h("dd", {}, scope)),
    general,
  );
  const submit = h("button", { type: "submit", class: "btn btn-primary", form: "saved-form" }, "Save search");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const { close } = openDialog({ title: "Save this search", description: "Opened again from the Saved menu or by its link; alerts can watch it.", body: [form], actions: [cancel, submit] });
  cancel.addEventListener("click", () => close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(slots, general);
    if (!name.value.trim()) {
      showProblem({ detail: "Give the search a name." }, slots, general, [[/name/, "name"]]);
      return;
    }
    submit.disabled = true;
    const body = {
      name: name.value.trim(),
      query: state.query,
      sources: state.sources.length ? state.sources : null,
      start: state.start,
      end: state.end,
      visibility: form.querySelector("input[name=visibility]:checked").value,
    };
    try {
      const saved = await post("/v1/saved-searches", body);
      close();
      toast(`Saved “${saved.name}”`);
    } catch (error) {
      showProblem(error, slots, general, [[/\bname\b/i, "name"], [/visib/i, "visibility"]]);
      submit.disabled = false;
    }
  });
  name.focus();
}
