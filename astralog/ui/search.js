// The search page: query, range and sources live in the URL; results, histogram and facets are
// three requests made together; live tail streams new matches over Server-Sent Events.

import { ApiError, cached, post, qs } from "./api.js";
import {
  announce,
  errorState,
  fmtDateTime,
  fmtNumber,
  h,
  icon,
  replace,
  stateView,
} from "./dom.js";
import { eventRow, LEVEL_ORDER, levelOf } from "./events.js";
import { createHistogram } from "./histogram.js";
import { createSourcePicker, createTimePicker, describeRange, toDate, zoomOut } from "./pickers.js";
import { addTerm, createQueryBar, remember } from "./querybar.js";

const PAGE_SIZE = 100;
const DEFAULT_START = "now-15m";
const FACETS = [
  ["level", "Level"],
  ["service", "Service"],
  ["host", "Host"],
  ["source", "Source"],
];
const MAX_ROWS = 5000;

function readUrl() {
  const params = new URLSearchParams(location.search);
  return {
    query: params.get("q") || "",
    start: params.get("start") || DEFAULT_START,
    end: params.get("end") || "now",
    sources: (params.get("sources") || "").split(",").filter(Boolean),
  };
}

function urlFor(state) {
  return `/${qs({ q: state.query, start: state.start, end: state.end, sources: state.sources })}`;
}

function body(state, extra = {}) {
  return {
    query: state.query,
    start: state.start,
    end: state.end,
    sources: state.sources.length ? state.sources : null,
    ...extra,
  };
}

export async function mount(main, app) {
  let state = readUrl();
  let sources = [];
  let controller = null;
  let cursor = null;
  let pinned = null; // the resolved range of the current search, for the next pages
  let loadingMore = false;
  let shown = 0;
  let total = null;
  let seen = new Set();
  let tail = null;
  let buffered = [];
  let lastResponse = null;

  // ---------------------------------------------------------------- layout
  const queryBar = createQueryBar({ value: state.query, onSubmit: (q) => update({ query: q }) });
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

  const histogram = createHistogram({ onRange: (start, end) => update({ start, end }) });
  const histTotal = h("div", { class: "hist-total", id: "hist-total" });
  const legend = h("div", { class: "legend", "aria-hidden": "true" });
  const zoomOutButton = h(
    "button",
    { type: "button", class: "btn btn-ghost btn-xs", title: "Twice the range" },
    icon("zoomOut", "icon-sm"),
    "Zoom out",
  );
  zoomOutButton.addEventListener("click", () => {
    const [start, end] = zoomOut(state.start, state.end);
    update({ start, end });
  });
  const histMessage = h("div", { class: "hist-msg", hidden: true });
  const histCard = h(
    "section",
    { class: "card hist-card", "aria-label": "Events over time" },
    h(
      "div",
      { class: "hist-head" },
      histTotal,
      legend,
      h("span", { class: "hist-hint" }, "Drag to zoom · click a bar to narrow"),
      zoomOutButton,
    ),
    histogram.el,
    histMessage,
  );

  const facetsBox = h("aside", { class: "facets", id: "facets", "aria-label": "Filters" });
  const facetsToggle = h(
    "button",
    {
      type: "button",
      class: "btn btn-sm facets-toggle",
      "aria-expanded": "false",
      "aria-controls": "facets",
    },
    icon("filter", "icon-sm"),
    "Filters",
  );
  facetsToggle.addEventListener("click", () => {
    const open = facetsBox.dataset.open !== "true";
    facetsBox.dataset.open = String(open);
    facetsToggle.setAttribute("aria-expanded", String(open));
  });

  const count = h("div", { class: "results-count", id: "results-count" });
  const liveStatus = h("span", { class: "live-status", id: "live-status" });
  const liveButton = h(
    "button",
    { type: "button", class: "btn btn-sm live-btn", "aria-pressed": "false", id: "live-toggle" },
    h("span", { class: "live-dot" }),
    "Live tail",
  );
  liveButton.addEventListener("click", () => (tail ? stopTail() : startTail()));
  const exportMenu = h("details", { class: "menu" });
  const exportLinks = h("div", { class: "popover popover-right", role: "menu" });
  exportMenu.append(
    h(
      "summary",
      { class: "btn btn-sm", "aria-label": "Export results" },
      icon("download", "icon-sm"),
      "Export",
    ),
    exportLinks,
  );
  const toolbar = h(
    "div",
    { class: "results-toolbar" },
    facetsToggle,
    count,
    h("span", { class: "spacer" }),
    liveStatus,
    liveButton,
    exportMenu,
  );

  const progress = h("div", { class: "progress", "data-active": "false", "aria-hidden": "true" });
  const list = h("ol", {
    class: "ev-list",
    id: "results-list",
    "aria-label": "Matching events, newest first",
  });
  const more = h("div", { class: "more", hidden: true });
  const results = h(
    "section",
    { class: "results", "aria-labelledby": "results-count", "aria-busy": "false" },
    h(
      "div",
      { class: "results-head", "aria-hidden": "true" },
      h("span", {}, "Time"),
      h("span", {}, "Level"),
      h("span", {}, "Service"),
      h("span", {}, "Message"),
    ),
    progress,
    list,
    more,
  );
  const stateBox = h("div", { class: "results-state" });
  const newPill = h(
    "button",
    { type: "button", class: "btn btn-primary btn-sm new-pill", hidden: true },
    icon("arrowUp", "icon-sm"),
    h("span", {}),
  );
  newPill.addEventListener("click", () => {
    scrollToResults();
    flushBuffer();
  });

  const page = h(
    "div",
    { class: "search-page" },
    h("div", { class: "searchbar" }, form),
    h(
      "div",
      { class: "search-body" },
      facetsBox,
      h("div", { class: "results-col" }, histCard, toolbar, stateBox, results, newPill),
    ),
  );
  replace(main, page);
  app.setTitle(state.query ? state.query : "Search");

  const ctx = {
    sourceName: (id) => sources.find((s) => s.id === id)?.name || "",
    filter: (field, value, negate) => {
      update({ query: addTerm(state.query, field, value, negate) });
      window.scrollTo({ top: 0 });
    },
    linkTo: (event) => {
      const at = toDate(event.timestamp)?.getTime() ?? Date.now();
      const link = urlFor({
        query: `event_id:${event.event_id}`,
        start: new Date(at - 60e3).toISOString(),
        end: new Date(at + 60e3).toISOString(),
        sources: [],
      });
      return location.origin + link;
    },
  };

  // ---------------------------------------------------------------- keys and scrolling
  function onKey(event) {
    const target = event.target;
    const typing = target.closest?.("input, textarea, select, [contenteditable='true']");
    if (event.key === "/" && !typing && !event.metaKey && !event.ctrlKey) {
      event.preventDefault();
      queryBar.input.focus();
      queryBar.input.select();
    }
  }
  document.addEventListener("keydown", onKey);

  const moreObserver = new IntersectionObserver(
    (entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    },
    { rootMargin: "400px" },
  );
  moreObserver.observe(more);

  function awayFromTop() {
    const bar = page.querySelector(".searchbar").getBoundingClientRect().bottom;
    return list.getBoundingClientRect().top < bar - 4;
  }
  function onScroll() {
    if (tail && buffered.length && !awayFromTop()) flushBuffer();
    updateLiveStatus();
  }
  window.addEventListener("scroll", onScroll, { passive: true });

  function scrollToResults() {
    const bar = page.querySelector(".searchbar").getBoundingClientRect().bottom;
    const top = histCard.getBoundingClientRect().top + window.scrollY - bar - 12;
    window.scrollTo({ top: Math.max(0, top) });
  }

  // ---------------------------------------------------------------- state changes
  function update(changes, { force = false } = {}) {
    const next = { ...state, ...changes };
    const changed = urlFor(next) !== urlFor(state);
    state = next;
    if (changed) history.pushState(null, "", urlFor(state));
    if (changed || force) run();
  }

  function syncControls() {
    queryBar.value = state.query;
    timePicker.update();
    sourcePicker.update();
    app.setTitle(state.query ? state.query : "Search");
    const params = {
      query: state.query,
      start: state.start,
      end: state.end,
      sources: state.sources,
    };
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
    total = null;
    setBusy(true);
    if (!list.childElementCount) showSkeleton();
    if (tail) restartTail();
    const buckets = Math.max(24, Math.min(80, Math.floor((histogram.el.clientWidth || 600) / 12)));
    const searchP = post("/v1/search", body(state, { limit: PAGE_SIZE, cursor: null }), { signal });
    const histP = post("/v1/search/histogram", body(state, { buckets }), { signal });
    const facetsP = post(
      "/v1/search/facets",
      body(state, { fields: FACETS.map(([f]) => f), size: 8 }),
      { signal },
    );
    histP.then(renderHistogram, (error) => histogramError(error, signal));
    facetsP.then(renderFacets, (error) => facetsError(error, signal));
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

  function setBusy(busy) {
    results.setAttribute("aria-busy", String(busy));
    progress.dataset.active = String(busy);
  }

  function showSkeleton() {
    replace(
      list,
      Array.from({ length: 8 }, (_, i) =>
        h(
          "li",
          { class: "ev-skel", "aria-hidden": "true" },
          h("span", { class: "skeleton" }),
          h("span", { class: "skeleton" }),
          h("span", { class: "skeleton" }),
          h("span", { class: "skeleton", dataset: { w: String(i) } }),
        ),
      ),
    );
    results.hidden = false;
    replace(stateBox);
  }

  // ---------------------------------------------------------------- results
  function renderResults(response) {
    const events = response.events || [];
    cursor = response.next_cursor || null;
    pinned = response.range ? [response.range.start, response.range.end] : null;
    seen = new Set(events.map((e) => e.event_id));
    shown = events.length;
    replace(
      list,
      events.map((event) => eventRow(event, ctx)),
    );
    buffered = [];
    updatePill();
    const notes = [];
    if (response.range?.clamped) {
      notes.push(
        h(
          "div",
          { class: "callout callout-info clamp-note", role: "note" },
          icon("clock"),
          h(
            "span",
            {},
            `The range starts at your retention limit: data older than ${response.range.retention_days} days is not kept.`,
          ),
        ),
      );
    }
    for (const warning of response.warnings || []) notes.push(partialNote(warning));
    if (!events.length && !tail) {
      results.hidden = true;
      replace(stateBox, notes, emptyState());
    } else {
      results.hidden = false;
      replace(stateBox, notes);
    }
    updateMore();
    updateCount(response);
  }

  // A destination that could not be read: the results are the rest, and the note says what is
  // missing, so a quiet stretch is never mistaken for no events.
  function partialNote(warning) {
    const when = `${fmtDateTime(warning.start, { seconds: true })} to ${fmtDateTime(warning.end, { seconds: true })}`;
    const next = warning.retryable
      ? "Search again in a moment."
      : "An admin should check this destination on the Storage page.";
    return h(
      "div",
      { class: "callout callout-warn partial-note", role: "alert" },
      icon("alert"),
      h(
        "span",
        {},
        h("strong", {}, "Incomplete results. "),
        `Destination ${warning.destination} could not be read, so up to ${fmtNumber(warning.rows)} events from ${when} are missing. ${next}`,
        h(
          "details",
          { class: "partial-detail" },
          h("summary", {}, "What the destination answered"),
          warning.detail,
        ),
      ),
    );
  }

  function emptyState() {
    const range = describeRange(state.start, state.end, { sentence: true });
    const widen = (start, label) =>
      h(
        "button",
        { type: "button", class: "btn", onclick: () => update({ start, end: "now" }) },
        label,
      );
    if (state.query || state.sources.length) {
      return stateView({
        iconName: "search",
        title: `No events match in ${range}`,
        text: "Remove a filter from the query, choose more sources, or widen the time range.",
        actions: [
          state.query
            ? h(
                "button",
                { type: "button", class: "btn", onclick: () => update({ query: "" }) },
                "Clear the query",
              )
            : null,
          widen("now-24h", "Last 24 hours"),
          widen("now-7d", "Last 7 days"),
        ].filter(Boolean),
      });
    }
    return stateView({
      iconName: "inbox",
      title: `No events in ${range}`,
      text: "Widen the range, or check that your shipper sends to this Astralog with an ingest key of the right source.",
      actions: [
        widen("now-24h", "Last 24 hours"),
        widen("now-7d", "Last 7 days"),
        h("a", { class: "btn btn-ghost", href: "/sources", "data-nav": "" }, "Ingest snippets"),
      ],
    });
  }

  function resultsError(error) {
    results.hidden = true;
    replace(list);
    updateMore();
    if (
      error instanceof ApiError &&
      error.status === 400 &&
      error.problem?.position !== undefined
    ) {
      queryBar.showError(error);
      replace(
        stateBox,
        stateView({
          kind: "error",
          title: "The query has a syntax error",
          text: "Fix the highlighted part of the query above, then press Enter.",
        }),
      );
      replace(count, "Syntax error");
      announce(`Syntax error: ${error.detail}`);
      return;
    }
    replace(
      stateBox,
      errorState(error, () => run()),
    );
    replace(count);
    announce(`Search failed: ${error.detail}`);
  }

  function updateCount(response) {
    const parts = [];
    if (total !== null) {
      parts.push(h("b", {}, fmtNumber(total)), ` event${total === 1 ? "" : "s"}`);
      if (shown < total)
        parts.push(h("span", { class: "muted" }, ` · showing ${fmtNumber(shown)}`));
    } else {
      parts.push(
        h("b", {}, fmtNumber(shown)),
        ` event${shown === 1 ? "" : "s"}${cursor ? "+" : ""}`,
      );
    }
    if (response?.took_ms !== undefined)
      parts.push(h("span", { class: "muted" }, ` · ${fmtNumber(response.took_ms)} ms`));
    replace(count, parts);
  }

  function updateMore() {
    more.hidden = !cursor && !loadingMore;
    if (cursor) {
      const button = h(
        "button",
        { type: "button", class: "btn btn-sm", onclick: () => loadMore() },
        "Load older events",
      );
      replace(more, loadingMore ? h("span", {}, "Loading older events…") : button);
    } else if (shown && !loadingMore) {
      more.hidden = false;
      replace(more, h("span", {}, "That's everything in this range."));
    }
  }

  async function loadMore() {
    if (!cursor || loadingMore || !lastResponse) return;
    loadingMore = true;
    updateMore();
    const signal = controller.signal;
    const range = pinned ? { start: pinned[0], end: pinned[1] } : {};
    try {
      const response = await post(
        "/v1/search",
        body(state, { ...range, limit: PAGE_SIZE, cursor }),
        { signal },
      );
      if (signal.aborted) return;
      const fresh = (response.events || []).filter((e) => !seen.has(e.event_id));
      fresh.forEach((e) => seen.add(e.event_id));
      list.append(...fresh.map((event) => eventRow(event, ctx)));
      shown += fresh.length;
      cursor = response.next_cursor || null;
      updateCount(lastResponse);
    } catch (error) {
      if (error.name !== "AbortError")
        replace(more, h("span", { class: "field-error" }, error.detail || String(error)));
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

  // ---------------------------------------------------------------- histogram
  function renderHistogram(response) {
    histMessage.hidden = true;
    histogram.el.hidden = false;
    histogram.render(response);
    const totals = {};
    total = 0;
    for (const bucket of response.buckets || []) {
      total += bucket.total || 0;
      for (const [level, n] of Object.entries(bucket.levels || {})) {
        const key = levelOf(level);
        totals[key] = (totals[key] || 0) + n;
      }
    }
    replace(
      histTotal,
      fmtNumber(total),
      h(
        "span",
        { class: "muted" },
        ` event${total === 1 ? "" : "s"} in ${describeRange(state.start, state.end, { sentence: true })}`,
      ),
    );
    replace(
      legend,
      LEVEL_ORDER.filter((level) => totals[level]).map((level) =>
        h(
          "span",
          {},
          h("i", { class: `fill-${level}` }),
          `${level === "OTHER" ? "other" : level.toLowerCase()} ${fmtNumber(totals[level])}`,
        ),
      ),
    );
    zoomOutButton.hidden = false;
    if (results.getAttribute("aria-busy") === "false") updateCount(lastResponse);
    announce(`${fmtNumber(total)} events match`);
  }

  function histogramError(error, signal) {
    if (error.name === "AbortError" || signal.aborted) return;
    histogram.clear();
    histogram.el.hidden = true;
    replace(histTotal);
    replace(legend);
    histMessage.hidden = false;
    const syntax = error instanceof ApiError && error.problem?.position !== undefined;
    replace(
      histMessage,
      syntax
        ? "Fix the query to see the histogram."
        : `Histogram unavailable: ${error.detail || error.message}`,
    );
  }

  // ---------------------------------------------------------------- facets
  function renderFacets(response) {
    const facets = response.facets || {};
    replace(
      facetsBox,
      FACETS.map(([field, title]) => {
        const values = facets[field] || [];
        const max = Math.max(1, ...values.map((v) => v.count));
        return h(
          "section",
          { class: "facet", "aria-label": title },
          h("h3", {}, title),
          values.length
            ? h(
                "ul",
                {},
                values.map((item) => facetItem(field, item, max)),
              )
            : h("p", { class: "facet-empty" }, "No values"),
        );
      }),
    );
  }

  function facetItem(field, item, max) {
    const value = String(item.value);
    const label =
      field === "source"
        ? ctx.sourceName(value) || value
        : field === "level"
          ? value.toLowerCase()
          : value;
    const bar = h("i", {});
    bar.style.transform = `scaleX(${item.count / max})`;
    const include = h(
      "button",
      {
        type: "button",
        class: "facet-btn",
        title: `${field}:${value}`,
        "aria-label": `Filter ${title(field)} ${label}: ${fmtNumber(item.count)} events`,
      },
      h(
        "span",
        { class: "fv" },
        field === "level"
          ? h("span", { class: `lvl lvl-${levelOf(value)}` }, value.toUpperCase())
          : label,
      ),
      h("span", { class: "fc" }, fmtNumber(item.count)),
      h("span", { class: "facet-bar", "aria-hidden": "true" }, bar),
    );
    include.addEventListener("click", (event) =>
      ctx.filter(field, value, event.altKey || event.shiftKey),
    );
    const exclude = h(
      "button",
      {
        type: "button",
        class: "icon-btn icon-btn-sm facet-not",
        "aria-label": `Exclude ${title(field)} ${label}`,
        title: `Exclude ${field}:${value}`,
      },
      icon("minus", "icon-sm"),
    );
    exclude.addEventListener("click", () => ctx.filter(field, value, true));
    return h("li", { class: "facet-item" }, include, exclude);
  }

  function title(field) {
    return FACETS.find(([f]) => f === field)?.[1].toLowerCase() || field;
  }

  function facetsError(error, signal) {
    if (error.name === "AbortError" || signal.aborted) return;
    const syntax = error instanceof ApiError && error.problem?.position !== undefined;
    replace(
      facetsBox,
      h(
        "p",
        { class: "facet-empty" },
        syntax
          ? "Fix the query to see field values."
          : `Field values unavailable: ${error.detail || error.message}`,
      ),
    );
  }

  // ---------------------------------------------------------------- live tail
  function startTail() {
    liveButton.setAttribute("aria-pressed", "true");
    openStream();
    announce("Live tail on: new matching events appear at the top");
  }

  function openStream() {
    const url = `/v1/search/tail${qs({ query: state.query, sources: state.sources })}`;
    const source = new EventSource(url, { withCredentials: true });
    tail = source;
    liveStatus.textContent = "Connecting…";
    source.addEventListener("open", () => {
      if (tail === source) updateLiveStatus();
    });
    source.addEventListener("log", (message) => {
      if (tail !== source) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (seen.has(event.event_id)) return;
      seen.add(event.event_id);
      if (awayFromTop()) {
        buffered.push(event);
        if (buffered.length > 1000) buffered.shift();
        updatePill();
      } else {
        prepend([event]);
      }
    });
    source.addEventListener("error", () => {
      if (tail !== source) return;
      liveStatus.textContent =
        source.readyState === EventSource.CLOSED
          ? "Live tail stopped: the server closed the stream"
          : "Reconnecting…";
      if (source.readyState === EventSource.CLOSED) stopTail({ keepStatus: true });
    });
  }

  function restartTail() {
    if (!tail) return;
    tail.close();
    buffered = [];
    updatePill();
    openStream();
  }

  function stopTail({ keepStatus = false } = {}) {
    if (tail) tail.close();
    tail = null;
    buffered = [];
    updatePill();
    liveButton.setAttribute("aria-pressed", "false");
    if (!keepStatus) liveStatus.textContent = "";
  }

  function prepend(events) {
    if (!events.length) return;
    results.hidden = false;
    replace(stateBox);
    const rows = events
      .slice()
      .sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1))
      .map((event) => eventRow(event, ctx, { fresh: true }));
    list.prepend(...rows);
    shown += rows.length;
    if (total !== null) total += rows.length;
    while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
    updateCount(lastResponse);
    announce(`${rows.length} new event${rows.length === 1 ? "" : "s"}`);
  }

  function flushBuffer() {
    const events = buffered;
    buffered = [];
    updatePill();
    prepend(events);
  }

  function updatePill() {
    newPill.hidden = !buffered.length;
    if (buffered.length)
      newPill.style.top = `${page.querySelector(".searchbar").getBoundingClientRect().bottom + 10}px`;
    if (buffered.length)
      newPill.querySelector("span").textContent =
        `${fmtNumber(buffered.length)} new event${buffered.length === 1 ? "" : "s"}`;
    updateLiveStatus();
  }

  function updateLiveStatus() {
    if (!tail) return;
    if (tail.readyState === EventSource.CONNECTING) return;
    liveStatus.textContent = awayFromTop()
      ? "Paused while you scroll · back to the top resumes"
      : "Streaming new matches";
  }

  // ---------------------------------------------------------------- start
  try {
    sources = await cached("/v1/sources");
  } catch {
    sources = [];
  }
  history.replaceState(null, "", urlFor(state));
  run();

  return {
    onUrlChange() {
      const next = readUrl();
      if (urlFor(next) === urlFor(state)) return;
      state = next;
      run();
    },
    unmount() {
      if (controller) controller.abort();
      stopTail();
      histogram.destroy();
      moreObserver.disconnect();
      document.removeEventListener("keydown", onKey);
      window.removeEventListener("scroll", onScroll);
    },
  };
}
