// The result list, rendered by window: events are kept in chunks of CHUNK rows and only the
// chunks near the viewport are in the DOM; the others are spacers of their measured (or, before
// they were ever shown, estimated) height. The page keeps scrolling the window, so find-in-page,
// sticky headers and the "load older" sentinel work as before; a list of MAX_ROWS events costs
// about as much layout as a few hundred.

import { h } from "./dom.js";

export const MAX_ROWS = 100_000; // also in README and docs/search.md
const CHUNK = 100;
const ESTIMATE = 33; // px per collapsed row until one is measured

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

  const size = () => chunks.reduce((n, c) => n + c.items.length, 0);
  const heightOf = (c) => c.height ?? c.items.length * rowHeight;

  function build(chunk, offset) {
    chunk.rows = chunk.items.map(({ event, fresh }, i) => {
      const li = renderRow(event, { fresh });
      li.setAttribute("aria-posinset", String(offset + i + 1));
      if (open.has(event.event_id)) li.querySelector(".ev-row")?.click();
      return li;
    });
    return chunk.rows;
  }

  function measure(chunk) {
    if (!chunk.rows?.length) return;
    const first = chunk.rows[0].getBoundingClientRect();
    const last = chunk.rows[chunk.rows.length - 1].getBoundingClientRect();
    chunk.height = last.bottom - first.top;
    if (!chunk.rows.some((r) => open.has(r.dataset.id))) {
      rowHeight = Math.max(20, chunk.height / chunk.rows.length);
    }
  }

  // The chunks that meet the viewport, a viewport's height of margin either side.
  function wanted() {
    const listTop = el.getBoundingClientRect().top;
    const from = -listTop - innerHeight;
    const to = -listTop + 2 * innerHeight;
    let y = 0;
    let first = -1;
    let last = -1;
    chunks.forEach((chunk, i) => {
      const height = heightOf(chunk);
      if (y + height >= from && y <= to) {
        if (first < 0) first = i;
        last = i;
      }
      y += height;
    });
    if (first < 0 && chunks.length) first = last = y <= from ? chunks.length - 1 : 0;
    return [first, last];
  }

  function update() {
    frame = 0;
    for (const chunk of chunks) if (chunk.rows?.[0]?.isConnected) measure(chunk);
    const [first, last] = wanted();
    let offset = 0;
    let above = 0;
    let below = 0;
    const keep = [];
    chunks.forEach((chunk, i) => {
      if (i < first) above += heightOf(chunk);
      else if (i > last) below += heightOf(chunk);
      else keep.push([chunk, offset]);
      offset += chunk.items.length;
    });
    for (const chunk of chunks) {
      if (chunk.rows && !keep.some(([c]) => c === chunk)) {
        for (const row of chunk.rows) row.remove();
        chunk.rows = null;
      }
    }
    let cursor = top;
    // ARIA puts the list's size on its items: only a window of them is in the DOM.
    const total = size();
    for (const [chunk, start] of keep) {
      const rows = chunk.rows || build(chunk, start);
      rows.forEach((row, i) => {
        row.setAttribute("aria-posinset", String(start + i + 1));
        row.setAttribute("aria-setsize", String(total));
      });
      for (const row of rows) {
        if (cursor.nextSibling !== row) cursor.after(row);
        cursor = row;
      }
    }
    top.style.height = `${above}px`;
    bottom.style.height = `${below}px`;
    el.dataset.size = String(total);
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(update);
  }
  addEventListener("scroll", schedule, { passive: true });
  addEventListener("resize", schedule);

  function reset(events) {
    for (const chunk of chunks) for (const row of chunk.rows || []) row.remove();
    chunks = [];
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
    update();
  }

  // Newest first: `events` is already sorted so.
  function prepend(events) {
    const fresh = events.map((event) => ({ event, fresh: true }));
    for (let at = fresh.length; at > 0; at -= CHUNK) {
      chunks.unshift({ items: fresh.slice(Math.max(0, at - CHUNK), at), rows: null, height: null });
    }
    let extra = size() - MAX_ROWS;
    while (extra > 0 && chunks.length) {
      const last = chunks[chunks.length - 1];
      const cut = Math.min(extra, last.items.length);
      last.items.splice(last.items.length - cut, cut);
      dirty(last);
      if (!last.items.length) chunks.pop();
      extra -= cut;
    }
    update();
  }

  // A chunk whose events changed is built again the next time it is shown.
  function dirty(chunk) {
    if (chunk.rows) for (const row of chunk.rows) row.remove();
    chunk.rows = null;
    chunk.height = null;
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
