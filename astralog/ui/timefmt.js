// The one place times are shown and read: in UTC or in the browser's zone, as the person chose
// (remembered in this browser), always 24-hour, always with the zone beside the time. Typed times
// follow the server's grammar (astralog/query/timerange.py): now, now-15m, now+1h, now-7d/d
// (s m h d w; /unit rounds down in UTC, as the server does), an ISO-like time such as
// 2026-01-31 12:00:00 (read in the chosen zone unless it carries Z or +01:00), or epoch ms.

const ZONE_KEY = "astralog.timezone";
const ZONE_EVENT = "astralog:timezone";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const UNIT_MS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 };
const pad = (n, w = 2) => String(n).padStart(w, "0");

// The server's pattern for relative times, whitespace and all.
export const RELATIVE = /^now(?:\s*([-+])\s*(\d{1,7})\s*([smhdw]))?(?:\/([smhd]))?$/;
const ABSOLUTE = new RegExp(
  "^(\\d{4})-(\\d{2})-(\\d{2})(?:[T ](\\d{2}):(\\d{2})(?::(\\d{2})(?:[.,](\\d{1,9}))?)?)?" +
    "\\s*(Z|[+-]\\d{2}:?\\d{2})?$",
  "i",
);

// ------------------------------------------------------------------ the zone

export function getZone() {
  try {
    return localStorage.getItem(ZONE_KEY) === "utc" ? "utc" : "local";
  } catch {
    return "local";
  }
}

export function setZone(zone) {
  try {
    localStorage.setItem(ZONE_KEY, zone === "utc" ? "utc" : "local");
  } catch {
    /* private mode: the choice lasts for this page */
  }
  refreshTimes();
  window.dispatchEvent(new CustomEvent(ZONE_EVENT));
}

// Calls listener() after every switch; returns the function that stops it.
export function onZoneChange(listener) {
  window.addEventListener(ZONE_EVENT, listener);
  return () => window.removeEventListener(ZONE_EVENT, listener);
}

// Minutes east of UTC at that instant in the chosen zone (DST changes it during the year).
export function offsetMinutes(date, zone = getZone()) {
  return zone === "utc" ? 0 : -date.getTimezoneOffset();
}

// "UTC", or "UTC+01:00" / "UTC-05:00" / "UTC+05:30": the zone as it stood at that instant.
export function zoneLabel(date = new Date(), zone = getZone()) {
  const offset = offsetMinutes(date, zone);
  if (offset === 0) return "UTC";
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

// Where space is short (rows, the histogram's axis): "UTC", "UTC+1", "UTC-5", "UTC+5:30".
export function zoneShort(date = new Date(), zone = getZone()) {
  const offset = offsetMinutes(date, zone);
  if (offset === 0) return "UTC";
  const abs = Math.abs(offset);
  const minutes = abs % 60 ? `:${pad(abs % 60)}` : "";
  return `UTC${offset < 0 ? "-" : "+"}${Math.floor(abs / 60)}${minutes}`;
}

// A result row's zone, in the little room a row has: "UTC", or the offset alone ("+1", "+5:30").
export function zoneTiny(date = new Date(), zone = getZone()) {
  const short = zoneShort(date, zone);
  return short === "UTC" ? short : short.slice(3);
}

// "UTC", or "Local (Europe/Paris)" where the browser names its zone.
export function zoneName(zone = getZone()) {
  if (zone === "utc") return "UTC";
  // Asked once: resolving a formatter costs more than building the rest of a result row.
  localName ??= Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  return localName ? `Local (${localName})` : "Local";
}
let localName = null;

function fields(date, zone = getZone()) {
  const shifted = new Date(date.getTime() + offsetMinutes(date, zone) * 60e3);
  return {
    year: shifted.getUTCFullYear(),
    month: shifted.getUTCMonth(),
    day: shifted.getUTCDate(),
    hour: shifted.getUTCHours(),
    minute: shifted.getUTCMinutes(),
    second: shifted.getUTCSeconds(),
    ms: shifted.getUTCMilliseconds(),
  };
}

// ------------------------------------------------------------------ showing

function toDateValue(value) {
  if (value instanceof Date) return value;
  if (typeof value === "number") return new Date(value);
  const text = String(value ?? "");
  return new Date(text.replace(/\.(\d{3})\d*/, ".$1"));
}

// The digits after the seconds as the server sent them (nanoseconds), else the milliseconds.
function fraction(value, date) {
  const match = typeof value === "string" ? /\.(\d+)Z?$/i.exec(value) : null;
  return match ? match[1] : pad(date.getUTCMilliseconds(), 3);
}

// Result rows: "Nov 27 15:03:10.555".
export function fmtEventTime(value) {
  const date = toDateValue(value);
  if (Number.isNaN(date.getTime())) return String(value ?? "");
  const f = fields(date);
  const time = `${pad(f.hour)}:${pad(f.minute)}:${pad(f.second)}.${pad(f.ms, 3)}`;
  return `${MONTHS[f.month]} ${pad(f.day)} ${time}`;
}

// "Nov 27, 15:03 UTC" (the year when it is not this one); zone: false leaves the zone out.
export function fmtDateTime(value, { seconds = false, zone = true } = {}) {
  const date = toDateValue(value);
  if (Number.isNaN(date.getTime())) return String(value ?? "");
  const f = fields(date);
  const thisYear = fields(new Date()).year;
  const day = `${MONTHS[f.month]} ${f.day}${f.year === thisYear ? "" : `, ${f.year}`}`;
  const time = `${pad(f.hour)}:${pad(f.minute)}${seconds ? `:${pad(f.second)}` : ""}`;
  return `${day}, ${time}${zone ? ` ${zoneLabel(date)}` : ""}`;
}

// The event detail: "2026-11-27 15:03:10.555123456 UTC", every digit the server sent.
export function fmtFull(value) {
  const date = toDateValue(value);
  if (Number.isNaN(date.getTime())) return String(value ?? "");
  return `${fmtInput(date)}.${fraction(value, date)} ${zoneLabel(date)}`;
}

// What an absolute-time box holds: "2026-11-27 15:03:10", in the chosen zone.
export function fmtInput(date) {
  const f = fields(date);
  return (
    `${f.year}-${pad(f.month + 1)}-${pad(f.day)} ` +
    `${pad(f.hour)}:${pad(f.minute)}:${pad(f.second)}`
  );
}

// Histogram ticks: "15:30", "15:30:10" under a minute, "Nov 27" at a day or a midnight.
export function fmtTick(ms, interval) {
  const f = fields(new Date(ms));
  if (interval >= 86400e3 || (f.hour === 0 && f.minute === 0 && interval >= 3600e3)) {
    return `${MONTHS[f.month]} ${f.day}`;
  }
  const hm = `${pad(f.hour)}:${pad(f.minute)}`;
  return interval < 60e3 ? `${hm}:${pad(f.second)}` : hm;
}

// A <time> that follows the zone switch. style: "event" (rows) or "full" (the detail).
export function timeNode(iso, style = "event", className = "") {
  const node = document.createElement("time");
  if (className) node.className = className;
  node.dateTime = iso || "";
  node.dataset.tfmt = style;
  fillTime(node);
  return node;
}

function fillTime(node) {
  const iso = node.dateTime;
  const date = toDateValue(iso);
  if (node.dataset.tfmt === "full") node.textContent = fmtFull(iso);
  else {
    const zone = document.createElement("span");
    zone.className = "tz";
    zone.textContent = Number.isNaN(date.getTime()) ? "" : `\u2009${zoneTiny(date)}`;
    node.replaceChildren(fmtEventTime(iso), zone);
  }
  node.title = `${iso} (${zoneName()})`;
}

export function refreshTimes(root = document) {
  root.querySelectorAll("time[data-tfmt]").forEach(fillTime);
}

// ------------------------------------------------------------------ reading

export function parseRelative(text) {
  const match = RELATIVE.exec(String(text).trim());
  if (!match) return null;
  const [, sign, amount, unit, round] = match;
  return { sign: sign || "-", amount: amount ? Number(amount) : 0, unit: unit || null, round };
}

// The instant a relative time names now, rounded like the server (down, in UTC).
export function relativeDate(text, now = Date.now()) {
  const rel = parseRelative(text);
  if (!rel) return null;
  const offset = rel.unit ? rel.amount * UNIT_MS[rel.unit] : 0;
  const ms = rel.sign === "+" ? now + offset : now - offset;
  return new Date(rel.round ? ms - (ms % UNIT_MS[rel.round]) : ms);
}

// An absolute time as typed, in the chosen zone unless it names its own; null when not one.
export function parseAbsolute(text, zone = getZone()) {
  const match = ABSOLUTE.exec(String(text).trim());
  if (!match) return null;
  const [, y, mo, d, hh = "0", mi = "0", ss = "0", frac = "", tz] = match;
  const parts = [Number(y), Number(mo) - 1, Number(d), Number(hh), Number(mi), Number(ss)];
  const ms = Number(frac.slice(0, 3).padEnd(3, "0"));
  const wall = Date.UTC(...parts, ms);
  const check = new Date(wall);
  if (
    check.getUTCFullYear() !== parts[0] ||
    check.getUTCMonth() !== parts[1] ||
    check.getUTCDate() !== parts[2] ||
    check.getUTCHours() !== parts[3] ||
    check.getUTCMinutes() !== parts[4] ||
    check.getUTCSeconds() !== parts[5]
  ) {
    return null; // 2026-02-30, 24:00, 12:61 ...
  }
  if (tz) return new Date(wall - tzMinutes(tz) * 60e3);
  if (zone === "utc") return check;
  // The wall-clock time in the browser's zone: the local constructor resolves DST.
  return new Date(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], ms);
}

function tzMinutes(tz) {
  if (/^z$/i.test(tz)) return 0;
  const digits = tz.replace(":", "");
  const minutes = Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5));
  return digits[0] === "-" ? -minutes : minutes;
}

// A time box's text as the API takes it: { value } (relative text as typed, else an ISO UTC
// time) or { error } saying what is accepted.
export function readTime(text, zone = getZone()) {
  const value = String(text).trim();
  if (!value) return { error: "Enter a time." };
  if (RELATIVE.test(value)) return { value: value.replace(/\s+/g, ""), date: relativeDate(value) };
  if (/^\d{10,16}$/.test(value)) return { value, date: new Date(Number(value)) };
  const date = parseAbsolute(value, zone);
  if (!date) {
    return {
      error:
        `“${value.slice(0, 40)}” is not a time: use now, now-2h, now-7d (s, m, h, d, w) ` +
        "or 2026-01-31 14:00[:00], 24-hour.",
    };
  }
  return { value: date.toISOString(), date };
}
