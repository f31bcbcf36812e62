// Live tail over Server-Sent Events (GET /v1/search/tail): new matching events as they are
// accepted. The page decides what an event changes; this keeps the stream and says its state.

import { qs } from "./api.js";
import { announce, fmtNumber, h, icon } from "./dom.js";

// onEvent(event) for each new event; onState(text) when the stream's state changes.
function createTail({ onEvent, onState }) {
  let source = null;
  const seen = new Set();

  function open(state) {
    const url = `/v1/search/tail${qs({ query: state.query, sources: state.sources })}`;
    const stream = new EventSource(url, { withCredentials: true });
    source = stream;
    onState("connecting");
    stream.addEventListener("open", () => source === stream && onState("open"));
    stream.addEventListener("log", (message) => {
      if (source !== stream) return;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (seen.has(event.event_id)) return;
      seen.add(event.event_id);
      onEvent(event);
    });
    stream.addEventListener("error", () => {
      if (source !== stream) return;
      const closed = stream.readyState === EventSource.CLOSED;
      if (closed) close();
      onState(closed ? "closed" : "reconnecting");
    });
  }

  function close() {
    if (source) source.close();
    source = null;
  }

  return {
    open,
    close,
    active: () => Boolean(source),
    connecting: () => source?.readyState === EventSource.CONNECTING,
    // Ids already on the page (search results) are not streamed twice.
    know(ids) {
      seen.clear();
      for (const id of ids) seen.add(id);
    },
    has: (id) => seen.has(id),
    add: (id) => seen.add(id),
  };
}

// The page's live tail: the toggle, its status, the "N new events" pill. New events go to
// `show` at once while the list is at the top, are held while the person scrolls, and reach
// `count` (histogram, facets) every quarter second either way.
export function createLiveTail({ getState, awayFromTop, show, count, pillTop, toTop }) {
  let buffered = [];
  let counting = [];
  let timer = 0;
  const status = h("span", { class: "live-status", id: "live-status" });
  const button = h(
    "button",
    { type: "button", class: "btn btn-sm live-btn", "aria-pressed": "false", id: "live-toggle" },
    h("span", { class: "live-dot" }),
    "Live tail",
  );
  const pill = h(
    "button",
    { type: "button", class: "btn btn-primary btn-sm new-pill", hidden: true },
    icon("arrowUp", "icon-sm"),
    h("span", {}),
  );
  const stream = createTail({
    onEvent(event) {
      if (awayFromTop()) {
        buffered.push(event);
        if (buffered.length > 1000) buffered.shift();
        updatePill();
      } else {
        show([event]);
      }
      counting.push(event);
      if (!timer) timer = setTimeout(countIn, 250);
    },
    onState(what) {
      if (what === "connecting") status.textContent = "Connecting…";
      else if (what === "reconnecting") status.textContent = "Reconnecting…";
      else if (what === "closed") {
        stop({ keepStatus: true });
        status.textContent = "Live tail stopped: the server closed the stream";
      } else updateStatus();
    },
  });
  button.addEventListener("click", () => (stream.active() ? stop() : start()));
  pill.addEventListener("click", () => {
    toTop();
    flush();
  });

  function countIn() {
    timer = 0;
    const events = counting;
    counting = [];
    if (events.length) count(events);
  }

  function start() {
    button.setAttribute("aria-pressed", "true");
    stream.open(getState());
    announce("Live tail on: new matching events appear at the top");
  }

  function restart() {
    stream.close();
    buffered = [];
    counting = [];
    updatePill();
    stream.open(getState());
  }

  function stop({ keepStatus = false } = {}) {
    stream.close();
    buffered = [];
    updatePill();
    button.setAttribute("aria-pressed", "false");
    if (!keepStatus) status.textContent = "";
  }

  function flush() {
    const events = buffered;
    buffered = [];
    updatePill();
    if (events.length) show(events);
  }

  function updatePill() {
    pill.hidden = !buffered.length;
    if (buffered.length) {
      pill.style.top = `${pillTop() + 10}px`;
      const n = buffered.length;
      pill.querySelector("span").textContent = `${fmtNumber(n)} new event${n === 1 ? "" : "s"}`;
    }
    updateStatus();
  }

  function updateStatus() {
    if (!stream.active() || stream.connecting()) return;
    status.textContent = awayFromTop()
      ? "Paused while you scroll · back to the top resumes"
      : "Streaming new matches";
  }

  return {
    button,
    status,
    pill,
    start,
    stop,
    restart,
    active: stream.active,
    know: stream.know,
    has: stream.has,
    add: stream.add,
    onScroll() {
      if (stream.active() && buffered.length && !awayFromTop()) flush();
      updateStatus();
    },
    destroy() {
      stop();
      clearTimeout(timer);
    },
  };
}
