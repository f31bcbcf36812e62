// The search page: query, range, sources and columns live in the URL; results, histogram and
// facets are three requests made together; live tail streams new matches over Server-Sent
// Events into all three.

import { ApiError, cached, get, post, qs } from "./api.js";
import { announce, errorState, fmtNumber, h, icon, replace, stateView } from "./dom.js";
import {
  applyLayout,
  columnHeader,
  columnsParam,
  fieldList,
  fieldValue,
  moveColumn,
  openFieldDetails,
  readColumns,
} from "./columns.js";
import { showContext } from "./context.js";
import { eventRow } from "./events.js";
import { createFacets, FACETS } from "./facets.js";
import { createHistCard } from "./hist_card.js";
import { createSourcePicker, createTimePicker, describeRange, toDate, zoomOut } from "./pickers.js";
import { addTerm, createQueryBar, remember } from "./querybar.js";
import { createResultList } from "./results.js";
import { savedMenu } from "./saved_searches.js";
import { clampNote, emptyState, partialNote } from "./search_notes.js";
import { createLiveTail } from "./tail.js";
import { createPatterns } from "./patterns.js";

const PAGE_SIZE = 100;
const MORE_SIZE = 1000; // older pages: fewer round trips on the way to a long list
const DEFAULT_START = "now-15m";

function readUrl() {
  const params = new URLSearchParams(location.search);
  return {
    query: params.get("q") || "",
    start: params.get("start") || DEFAULT_START,
    end: params.get("end") || "now",
    sources: (params.get("sources") || "").split(",").filter(Boolean),
    columns: readColumns(params),
  };
}

function urlFor(s) {
  const cols = columnsParam(s.columns);
  return `/${qs({ q: s.query, start: s.start, end: s.end, sources: s.sources, cols })}`;
}

const searchKey = (s) => urlFor({ ...s, columns: [] });

function body(state, extra = {}) {
  const { query, start, end } = state;
  return { query, start, end, sources: state.sources.length ? state.sources : null, ...extra };
}

export async function mount(main, app, shown = () => true) {
  let state = readUrl();
  let sources = [];
  let controller = null;
  let cursor = null;
  let pinned = null; // the resolved range of the current search, for the next pages
  let loadingMore = false;
  let lastResponse = null;
  let fieldsFound = null; // GET /v1/search/fields for the range: the field list

  // ---------------------------------------------------------------- layout
  const queryBar = createQueryBar({
    value: state.query,
    onSubmit: (q) => update({ query: q }),
    getScope: () => state, // suggestions come from the range and sources being searched
    describeValue: (field, id) => (field === "source" && sources.find((s) => s.id === id)?.name) || "",
  });
  const sourcePicker = createSourcePicker({
    getSelected: () => state.sources,
    getSources: () => sources,
    onChange: (ids) => update({ sources: ids }),
  });
  const timePicker = createTimePicker({
    getRange: () => [state.start, state.end],
    onChange: (start, end) => update({ start, end }),
  });
  const runButton = h(
    "button",
    { type: "submit", class: "btn btn-primary run-btn", "aria-label": "Run search" },
    icon("search"),
    h("span", { class: "label" }, "Search"),
  );
  const form = h(
    "form",
    { role: "search", "aria-label": "Search logs" },
    queryBar.el,
    sourcePicker.el,
    timePicker.el,
    runButton,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    queryBar.close();
    update({ query: queryBar.value }, { force: true });
  });

  const hist = createHistCard({
    onRange: (start, end) => update({ start, end }),
    onZoomOut: () => {
      const [start, end] = zoomOut(state.start, state.end);
      update({ start, end });
    },
    onLevels: () => run(),
    describe: () => describeRange(state.start, state.end, { sentence: true }),
    changed: () => results.getAttribute("aria-busy") === "false" && updateCount(lastResponse),
  });
  const { histogram, histCard, zoomOutButton } = hist;

  const ctx = {
    sourceName: (id) => sources.find((s) => s.id === id)?.name || "",
    filter: (field, value, negate) => {
      update({ query: addTerm(state.query, field, value, negate) });
      window.scrollTo({ top: 0 });
    },
    linkTo: (event) => {
      const at = toDate(event.timestamp)?.getTime() ?? Date.now();
      const start = new Date(at - 60e3).toISOString();
      const end = new Date(at + 60e3).toISOString();
      const link = urlFor({ query: `event_id:${event.event_id}`, start, end, sources: [], columns: state.columns });
      return location.origin + link;
    },
    columns: state.columns,
    cell: (event, field) => fieldValue(event, field, ctx.sourceName),
    toggleColumn: (field) => setColumns(state.columns.includes(field) ? state.columns.filter((c) => c !== field) : [...state.columns, field]),
    showContext: (event) => showContext(event, ctx),
  };

  const facets = createFacets(ctx);
  const fieldsBox = h("div", { class: "fields-box" });
  // The panel's own heading keeps the outline in order: page (h1), panel (h2), its lists (h3).
  const facetsBox = h("aside", { class: "facets", id: "facets", "aria-label": "Filters" }, h("h2", { class: "sr-only" }, "Filters"), facets.el, fieldsBox);
  const facetsToggle = h(
    "button",
    { type: "button", class: "btn btn-sm facets-toggle", "aria-expanded": "false", "aria-controls": "facets" },
    icon("filter", "icon-sm"),
    "Filters",
  );
  facetsToggle.addEventListener("click", () => {
    const open = facetsBox.dataset.open !== "true";
    facetsBox.dataset.open = String(open);
    facetsToggle.setAttribute("aria-expanded", String(open));
  });

  const count = h("div", { class: "results-count", id: "results-count" });
  const tail = createLiveTail({
    getState: () => state,
    awayFromTop: () => awayFromTop(),
    show: (events) => prepend(events),
    count(events) {
      hist.add(events, { slide: state.end === "now" });
      facets.count(events);
    },
    pillTop: () => page.querySelector(".searchbar").getBoundingClientRect().bottom,
    toTop: () => scrollToResults(),
  });
  const { status: liveStatus, button: liveButton } = tail;
  const exportMenu = h("details", { class: "menu" });
  const exportLinks = h("div", { class: "popover popover-right", role: "menu" });
  exportMenu.append(
    h("summary", { class: "btn btn-sm", "aria-label": "Export results" }, icon("download", "icon-sm"), "Export"),
    exportLinks,
  );
  const patterns = createPatterns({ filters: () => body(state), apply: (query) => update({ query }) });
  const toolbar = h(
    "div",
    { class: "results-toolbar" },
    facetsToggle,
    count,
    h("span", { class: "spacer" }),
    patterns.button,
    liveStatus,
    liveButton,
    exportMenu,
    savedMenu(() => state, app).el,
  );

  const progress = h("div", { class: "progress", "data-active": "false", "aria-hidden": "true" });
  const list = createResultList({
    label: "Matching events, newest first",
    renderRow: (event, options) => eventRow(event, ctx, options),
  });
  const skeleton = h("ol", { class: "ev-skeleton", "aria-hidden": "true", hidden: true });
  const more = h("div", { class: "more", hidden: true });
  const head = h("div", { class: "results-head-wrap" });
  const results = h(
    "section",
    { class: "results", "aria-labelledby": "results-count", "aria-busy": "false" },
    head,
    progress,
    skeleton,
    list.el,
    more,
  );
  const stateBox = h("div", { class: "results-state" });
  // What the server accepted but ignored in the query (a boost): said next to the query, in a
  // live region that exists from the start so a screen reader announces what appears in it.
  const notices = h("div", { class: "query-notices", id: "query-notices", role: "status" });
  const page = h(
    "div",
    { class: "search-page" },
    h("h1", { class: "sr-only" }, "Search logs"),
    h("div", { class: "searchbar" }, form, notices),
    h("div", { class: "search-body" }, facetsBox, h("div", { class: "results-col" }, histCard, toolbar, patterns.panel, stateBox, results, tail.pill)),
  );
  replace(main, page);
  app.setTitle(state.query ? state.query : "Search");
  drawColumns();

  // ---------------------------------------------------------------- keys and scrolling
  function onKey(event) {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable='true']");
    if (event.key === "/" && !typing && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      queryBar.input.focus();
      queryBar.input.select();
    }
  }
  document.addEventListener("keydown", onKey);

  const moreObserver = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && loadMore(), { rootMargin: "400px" });
  moreObserver.observe(more);

  function awayFromTop() {
    const bar = page.querySelector(".searchbar").getBoundingClientRect().bottom;
    return list.el.getBoundingClientRect().top < bar - 4;
  }
  const onScroll = () => tail.onScroll();
  window.addEventListener("scroll", onScroll, { passive: true });

  function scrollToResults() {
    const bar = page.querySelector(".searchbar").getBoundingClientRect().bottom;
    window.scrollTo({ top: Math.max(0, histCard.getBoundingClientRect().top + window.scrollY - bar - 12) });
  }

  // ---------------------------------------------------------------- state changes
  function update(changes, { force = false } = {}) {
    const next = { ...state, ...changes };
    const changed = urlFor(next) !== urlFor(state);
    const research = searchKey(next) !== searchKey(state);
    state = next;
    if (changed) history.pushState(null, "", urlFor(state));
    if (research || force) run();
  }

  // A layout change: the URL keeps it, the rows are drawn again, nothing is searched again.
  function setColumns(columns) {
    state = { ...state, columns };
    history.replaceState(null, "", urlFor(state));
    drawColumns();
    list.redraw();
    drawFields();
    announce(`Columns: ${["time", "level", ...columns, "message"].join(", ")}`);
  }

  function drawColumns() {
    ctx.columns = state.columns;
    applyLayout(results, state.columns);
    replace(
      head,
      columnHeader(state.columns, {
        onOpen: openField,
        onMove: (field, by) => setColumns(moveColumn(state.columns, field, by)),
        onRemove: (field) => setColumns(state.columns.filter((c) => c !== field)),
      }),
    );
  }

  function drawFields() {
    replace(fieldsBox, fieldList(fieldsFound, { columns: state.columns, onOpen: openField, onToggle: ctx.toggleColumn }));
  }

  function openField(field) {
    openFieldDetails(field, {
      filters: body(state),
      isColumn: state.columns.includes(field),
      onToggle: ctx.toggleColumn,
      onFilter: (value, negate) => ctx.filter(field, value, negate),
      onVisualise: (field, top) => hist.visualise(field, top, state, controller.signal),
    });
  }

  function setActions(visible) {
    for (const el of [zoomOutButton, liveButton, exportMenu, liveStatus]) el.hidden = !visible;
  }

  function syncControls() {
    queryBar.sync(state.query);
    timePicker.update();
    sourcePicker.update();
    app.setTitle(state.query ? state.query : "Search");
    const params = { query: state.query, start: state.start, end: state.end, sources: state.sources };
    replace(
      exportLinks,
      ["ndjson", "csv"].map((format) =>
        h(
          "a",
          {
            class: "menu-item",
            role: "menuitem",
            href: `/v1/search/export${qs({ ...params, format })}`,
            download: `astralog-export.${format}`,
            onclick: () => exportMenu.removeAttribute("open"),
          },
          icon("download", "icon-sm"),
          format === "ndjson" ? "NDJSON (one event per line)" : "CSV (spreadsheet)",
        ),
      ),
    );
  }

  async function run() {
    syncControls();
    queryBar.clearError();
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    cursor = null;
    pinned = null;
    setBusy(true);
    skeleton.hidden = list.size() > 0;
    if (!skeleton.hidden) showSkeleton();
    if (tail.active()) tail.restart();
    patterns.refresh();
    const searchP = post("/v1/search", body(state, { limit: PAGE_SIZE, cursor: null }), { signal });
    const histP = post("/v1/search/histogram", body(state, { buckets: hist.bucketCount() }), { signal });
    const facetsP = post("/v1/search/facets", body(state, { fields: FACETS.map(([f]) => f), size: 8 }), { signal });
    histP.then(
      (response) => !signal.aborted && hist.render(response),
      (error) => error.name !== "AbortError" && !signal.aborted && hist.error(error),
    );
    facetsP.then(
      (response) => !signal.aborted && facets.render(response),
      (error) => error.name !== "AbortError" && !signal.aborted && facets.error(error),
    );
    loadFields(signal);
    try {
      const response = await searchP;
      if (signal.aborted) return;
      lastResponse = response;
      if (state.query) remember(state.query);
      renderResults(response);
    } catch (error) {
      if (error.name === "AbortError") return;
      resultsError(error);
    } finally {
      if (!signal.aborted) setBusy(false);
    }
  }

  // The fields of the whole range and sources, not of the query: what could be a column or a
  // filter next. Asked again only when the range or the sources change.
  let fieldsKey = "";
  function loadFields(signal) {
    const params = { start: state.start, end: state.end, sources: state.sources.length ? state.sources : null, limit: 200 };
    const key = JSON.stringify(params);
    if (key === fieldsKey && fieldsFound && !(fieldsFound instanceof Error)) return;
    fieldsKey = key;
    fieldsFound = null;
    drawFields();
    get(`/v1/search/fields${qs(params)}`, { signal }).then(
      (found) => !signal.aborted && ((fieldsFound = found), drawFields()),
      (error) => error.name !== "AbortError" && !signal.aborted && ((fieldsFound = error), drawFields()),
    );
  }

  function setBusy(busy) {
    results.setAttribute("aria-busy", String(busy));
    progress.dataset.active = String(busy);
  }

  function showSkeleton() {
    const bar = (i) => h("span", { class: "skeleton", dataset: { w: String(i) } });
    replace(skeleton, Array.from({ length: 8 }, (_, i) => h("li", { class: "ev-skel" }, bar(0), bar(0), bar(0), bar(i))));
    results.hidden = false;
    replace(stateBox);
  }

  // ---------------------------------------------------------------- results
  function renderResults(response) {
    const events = response.events || [];
    cursor = response.next_cursor || null;
    pinned = response.range ? [response.range.start, response.range.end] : null;
    showNotices(response.notices || []);
    skeleton.hidden = true;
    tail.know(events.map((e) => e.event_id));
    list.reset(events);
    setActions(true);
    const notes = response.range?.clamped ? [clampNote(response.range)] : [];
    for (const warning of response.warnings || []) notes.push(partialNote(warning));
    const empty = !events.length && !tail.active();
    results.hidden = empty;
    replace(stateBox, notes, empty ? emptyState(state, update) : null);
    updateMore();
    updateCount(response);
  }

  function showNotices(texts) {
    replace(
      notices,
      texts.map((text) => h("p", { class: "callout callout-info query-notice" }, icon("alert", "icon-sm"), h("span", {}, `Note: ${text}`))),
    );
  }

  function resultsError(error) {
    showNotices([]);
    results.hidden = true;
    list.clear();
    updateMore();
    if (error instanceof ApiError && error.status === 400 && error.problem?.position !== undefined) {
      // Nothing to zoom, tail or export until the query parses.
      setActions(false);
      tail.stop();
      queryBar.showError(error);
      const title = "The query has a syntax error";
      replace(stateBox, stateView({ kind: "error", title, text: "Fix the highlighted part of the query above, then press Enter." }));
      replace(count, "Syntax error");
      announce(`Syntax error: ${error.detail}`);
      return;
    }
    replace(stateBox, errorState(error, () => run()));
    replace(count);
    announce(`Search failed: ${error.detail}`);
  }

  function updateCount(response) {
    const shown = list.size();
    const total = hist.total();
    const parts = [];
    if (total !== null) {
      parts.push(h("b", {}, fmtNumber(total)), ` event${total === 1 ? "" : "s"}`);
      if (shown < total) parts.push(h("span", { class: "muted" }, ` · showing ${fmtNumber(shown)}`));
    } else {
      parts.push(h("b", {}, fmtNumber(shown)), ` event${shown === 1 ? "" : "s"}${cursor ? "+" : ""}`);
    }
    if (response?.took_ms !== undefined) parts.push(h("span", { class: "muted" }, ` · ${fmtNumber(response.took_ms)} ms`));
    replace(count, parts);
  }

  function updateMore() {
    more.hidden = !cursor && !loadingMore;
    if (cursor && list.full()) {
      replace(more, h("span", {}, `The list holds the newest ${fmtNumber(list.size())} events; narrow the range to see older ones.`));
    } else if (cursor) {
      const button = h("button", { type: "button", class: "btn btn-sm", onclick: () => loadMore() }, "Load older events");
      replace(more, loadingMore ? h("span", {}, "Loading older events…") : button);
    } else if (list.size() && !loadingMore) {
      more.hidden = false;
      replace(more, h("span", {}, "That's everything in this range."));
    }
  }

  async function loadMore() {
    if (!cursor || loadingMore || !lastResponse || list.full()) return;
    loadingMore = true;
    updateMore();
    const signal = controller.signal;
    const range = pinned ? { start: pinned[0], end: pinned[1] } : {};
    try {
      const limit = Math.min(MORE_SIZE, 100_000 - list.size());
      const response = await post("/v1/search", body(state, { ...range, limit, cursor }), { signal });
      if (signal.aborted) return;
      const fresh = (response.events || []).filter((e) => !tail.has(e.event_id));
      fresh.forEach((e) => tail.add(e.event_id));
      list.append(fresh);
      cursor = response.next_cursor || null;
      updateCount(lastResponse);
    } catch (error) {
      if (error.name !== "AbortError") replace(more, h("span", { class: "field-error" }, error.detail || String(error)));
    } finally {
      loadingMore = false;
      if (!signal.aborted) {
        updateMore();
        // The observer only reports changes: keep going while the end is still in sight.
        requestAnimationFrame(() => {
          if (cursor && more.getBoundingClientRect().top < window.innerHeight + 400) loadMore();
        });
      }
    }
  }

  function prepend(events) {
    results.hidden = false;
    replace(stateBox);
    list.prepend(events.slice().sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1)));
    updateCount(lastResponse);
    announce(`${events.length} new event${events.length === 1 ? "" : "s"}`);
  }

  // ---------------------------------------------------------------- start
  try {
    sources = await cached("/v1/sources");
  } catch {
    sources = [];
  }
  const view = {
    onUrlChange() {
      const next = readUrl();
      if (urlFor(next) === urlFor(state)) return;
      const research = searchKey(next) !== searchKey(state);
      const layout = next.columns.join() !== state.columns.join();
      state = next;
      if (layout) {
        drawColumns();
        list.redraw();
      }
      if (research) run();
    },
    unmount() {
      if (controller) controller.abort();
      tail.destroy();
      histogram.destroy();
      list.destroy();
      moreObserver.disconnect();
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("scroll", onScroll);
    },
  };
  // The person may have gone to another page while the sources loaded: the address bar is that
  // page's now (even while this page is still drawn and the new page's code is on its way), and
  // nothing is searched for a page nobody sees (the app unmounts this one).
  if (!shown()) return view;
  history.replaceState(null, "", urlFor(state));
  run();
  return view;
}
