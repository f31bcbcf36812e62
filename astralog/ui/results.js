// The result list, rendered by window: events are kept in chunks of CHUNK rows and only the
// chunks near the viewport are in the DOM, one contiguous run of them between two spacers of the
// others' measured (or, before they were ever shown, estimated) height. A frame builds rows for
// at most BUDGET_MS and BUDGET_ROWS, the chunks on screen first, then the margins; what is left
// waits for the next frame, so a long jump costs a few short frames instead of one long one and
// scrolling never waits for rows off screen. The page keeps scrolling the window, so
// find-in-page, sticky headers and the "load older" sentinel work as before; the DOM holds about
// three viewports of rows whatever the count, up to MAX_ROWS events.

import { h } from "./dom.js";

export const MAX_ROWS = 100_000; // also in README and docs/architecture.md
const CHUNK = 10;
const ESTIMATE = 33; // px per collapsed row until one is measured
// Building rows is script time; the browser still needs style, layout and paint in the same
// 16 ms frame, on a slow machine with software rendering too.
const BUDGET_MS = 5;
// Script time is the small part: style, layout and paint of a new row cost more than building
// it, so a frame also adds at most this many rows (the first chunk on screen aside).
const BUDGET_ROWS = 20;

// renderRow(event, { fresh }) -> <li>; the list re-opens rows the person had opened.
export function createResultList({ renderRow, label }) {
  const top = h("li", { class: "ev-spacer", "aria-hidden": "true" });
  const bottom = h("li", { class: "ev-spacer", "aria-hidden": "true" });
  const el = h("ol", { class: "ev-list", id: "results-list", "aria-label": label }, top, bottom);
  let chunks = []; // { items: [{ event, fresh }], rows: Element[] | null, height: number | null }
  let rowHeight = ESTIMATE;
  let frame = 0;
  const open = new Set(); // event ids whose detail is expanded

  el.addEventListener("click", (event) => {
    const row = event.target.closest?.(".ev-row");
    const item = row?.parentElement;
    if (!row || item?.parentElement !== el) return;
    if (row.getAttribute("aria-expanded") === "true") open.add(item.dataset.id);
    else open.delete(item.dataset.id);
    schedule();
  });

  // Keys, as in a mail client: arrows (or j/k) move between rows, Enter or Space opens one (a row
  // is a button), Escape anywhere in an open event closes it and returns to its row.
  el.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
    const item = event.target.closest?.("li.ev");
    const row = item?.querySelector(".ev-row");
    if (!row || item.parentElement !== el) return;
    if (event.key === "Escape" && row.getAttribute("aria-expanded") === "true") {
      event.preventDefault();
      row.click();
      row.focus();
      return;
    }
    const step = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 }[event.key];
    if (!step || event.target !== row) return;
    event.preventDefault();
    let next = step > 0 ? item.nextElementSibling : item.previousElementSibling;
    while (next && !next.matches("li.ev")) next = step > 0 ? next.nextElementSibling : next.previousElementSibling;
    next?.querySelector(".ev-row")?.focus();
  });

  let total = 0;
  let tops = null; // tops[i]: chunk i's top in the list, px; tops[n]: the list's height
  let starts = null; // starts[i]: the position of chunk i's first event
  const size = () => total;
  const heightOf = (c) => c.height ?? c.items.length * rowHeight;

  function build(chunk) {
    chunk.at = -1; // numbered by update()
    chunk.rows = chunk.items.map(({ event, fresh }) => {
      const li = renderRow(event, { fresh });
      if (open.has(event.event_id)) li.querySelector(".ev-row")?.click();
      return li;
    });
    return chunk.rows;
  }

  function drop(chunk) {
    if (chunk.rows) for (const row of chunk.rows) row.remove();
    chunk.rows = null;
  }

  function measure(chunk) {
    if (!chunk.rows?.length || !chunk.rows[0].isConnected) return;
    const first = chunk.rows[0].getBoundingClientRect();
    const last = chunk.rows[chunk.rows.length - 1].getBoundingClientRect();
    const height = last.bottom - first.top;
    if (height !== chunk.height) tops = null;
    chunk.height = height;
    if (!chunk.rows.some((r) => open.has(r.dataset.id))) {
      const each = Math.max(20, height / chunk.rows.length);
      if (each !== rowHeight) tops = null;
      rowHeight = each;
    }
  }

  // Where each chunk starts, in pixels and in events: built again only after a change, so a
  // frame costs the same for 100 events and for 100,000.
  function index() {
    if (tops) return;
    tops = new Float64Array(chunks.length + 1);
    starts = new Int32Array(chunks.length + 1);
    chunks.forEach((chunk, i) => {
      tops[i + 1] = tops[i] + heightOf(chunk);
      starts[i + 1] = starts[i] + chunk.items.length;
    });
  }

  // The first chunk whose bottom is at or below y, and the last whose top is at or above it.
  function firstEnding(y) {
    let [lo, hi] = [0, chunks.length - 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tops[mid + 1] >= y) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  function lastStarting(y) {
    let [lo, hi] = [0, chunks.length - 1];
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (tops[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  // The chunks that meet the viewport (`view`) and those within a viewport's height of it
  // (`want`), as [first, last] index pairs; the nearest chunk when the list is off screen.
  function ranges() {
    const viewTop = -el.getBoundingClientRect().top;
    const span = (from, to) => {
      const first = firstEnding(from);
      return [first, Math.max(first, lastStarting(to))];
    };
    return {
      view: span(viewTop, viewTop + innerHeight),
      want: span(viewTop - innerHeight, viewTop + 2 * innerHeight),
    };
  }

  function rendered() {
    let from = -1;
    let to = -1;
    for (let i = 0; i < chunks.length; i++) {
      if (!chunks[i].rows) continue;
      if (from < 0) from = i;
      to = i;
    }
    return [from, to];
  }

  const lastRow = (chunk) => chunk.rows[chunk.rows.length - 1];

  function place(chunk, after) {
    const rows = build(chunk);
    if (rows.length) after.after(...rows);
  }

  // Keeps [from, to] (clipped to `want`) and rebuilds chunks inside it that changed, so the
  // rendered run stays contiguous; returns the run, or null when nothing of it is on screen.
  function keep(from, to, view, want) {
    if (from < 0 || to < view[0] || from > view[1]) {
      chunks.forEach(drop);
      return null;
    }
    for (let i = from; i < want[0]; i++) drop(chunks[i]);
    for (let i = want[1] + 1; i <= to; i++) drop(chunks[i]);
    const run = [Math.max(from, want[0]), Math.min(to, want[1])];
    let cursor = top;
    for (let i = run[0]; i <= run[1]; i++) {
      if (!chunks[i].rows) place(chunks[i], cursor);
      if (chunks[i].rows.length) cursor = lastRow(chunks[i]);
    }
    return run;
  }

  // The next chunk to build: the screen first, then the margins; -1 when all are there.
  function next(run, view, want) {
    if (run[1] < view[1]) return run[1] + 1;
    if (run[0] > view[0]) return run[0] - 1;
    if (run[0] > want[0]) return run[0] - 1;
    if (run[1] < want[1]) return run[1] + 1;
    return -1;
  }

  function grow(run, view, want, started) {
    let rows = 0;
    while (performance.now() - started < BUDGET_MS && rows < BUDGET_ROWS) {
      const i = next(run, view, want);
      if (i < 0) return true;
      rows += chunks[i].items.length;
      if (i > run[1]) {
        place(chunks[i], run[1] >= 0 && chunks[run[1]].rows.length ? lastRow(chunks[run[1]]) : top);
        run[1] = i;
      } else {
        place(chunks[i], top);
        run[0] = i;
      }
    }
    return next(run, view, want) < 0;
  }

  // Spacers of the chunks outside the run; ARIA puts the list's size and each row's place on
  // the items, since only a window of them is in the DOM.
  function settle([from, to]) {
    for (let i = from; i <= to; i++) {
      const chunk = chunks[i];
      if (chunk.at !== starts[i] || chunk.total !== total) number(chunk, starts[i]);
    }
    top.style.height = `${tops[from]}px`;
    bottom.style.height = `${tops[chunks.length] - tops[to + 1]}px`;
    el.dataset.size = String(total);
  }

  function number(chunk, offset) {
    chunk.rows.forEach((row, k) => {
      row.setAttribute("aria-posinset", String(offset + k + 1));
      row.setAttribute("aria-setsize", String(total));
    });
    chunk.at = offset;
    chunk.total = total;
  }

  function update() {
    if (frame) cancelAnimationFrame(frame); // called directly after a change
    frame = 0;
    const started = performance.now();
    const [from, to] = rendered();
    for (let i = Math.max(from, 0); i <= to; i++) measure(chunks[i]);
    index();
    if (!chunks.length) return settle([0, -1]);
    const { view, want } = ranges();
    let run = keep(from, to, view, want);
    if (!run) {
      place(chunks[view[0]], top);
      run = [view[0], view[0]];
    }
    const done = grow(run, view, want, started);
    settle(run);
    if (!done) schedule();
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(update);
  }
  addEventListener("scroll", schedule, { passive: true });
  addEventListener("resize", schedule);

  function reset(events) {
    for (const chunk of chunks) for (const row of chunk.rows || []) row.remove();
    chunks = [];
    total = 0;
    tops = null;
    append(events);
  }

  function append(events) {
    for (const event of events) {
      let last = chunks[chunks.length - 1];
      if (!last || last.items.length >= CHUNK) {
        last = { items: [], rows: null, height: null };
        chunks.push(last);
      }
      last.items.push({ event, fresh: false });
      dirty(last);
    }
    total += events.length;
    update();
  }

  // Newest first: `events` is already sorted so.
  function prepend(events) {
    const fresh = events.map((event) => ({ event, fresh: true }));
    for (let at = fresh.length; at > 0; at -= CHUNK) {
      chunks.unshift({ items: fresh.slice(Math.max(0, at - CHUNK), at), rows: null, height: null });
    }
    total += fresh.length;
    tops = null;
    let extra = total - MAX_ROWS;
    while (extra > 0 && chunks.length) {
      const last = chunks[chunks.length - 1];
      const cut = Math.min(extra, last.items.length);
      last.items.splice(last.items.length - cut, cut);
      dirty(last);
      if (!last.items.length) chunks.pop();
      extra -= cut;
      total -= cut;
    }
    update();
  }

  // A chunk whose events changed is built again the next time it is shown.
  function dirty(chunk) {
    if (chunk.rows) for (const row of chunk.rows) row.remove();
    chunk.rows = null;
    chunk.height = null;
    tops = null;
  }

  return {
    el,
    reset,
    append,
    prepend,
    size,
    full: () => size() >= MAX_ROWS,
    rendered: () => el.childElementCount - 2,
    // Columns changed: every row is built again, the open ones opened again.
    redraw() {
      chunks.forEach(dirty);
      update();
    },
    clear() {
      reset([]);
      open.clear();
    },
    destroy() {
      removeEventListener("scroll", schedule);
      removeEventListener("resize", schedule);
      if (frame) cancelAnimationFrame(frame);
    },
  };
}
