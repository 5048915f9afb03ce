// Webhook tester UI. Everything received is rendered with textContent, never as HTML.
// The API needs the UI token (WEBHOOK_UI_TOKEN) as `Authorization: Bearer`: it comes from the URL
// fragment (#token=..., never sent to the server) or the form, and is kept in sessionStorage
// (this tab only, gone when it closes).
"use strict";

const KNOWN_EVENTS = ["message.created", "client.connected", "client.disconnected", "room.joined", "room.left"];
const POLL_MS = 1000;

const state = {
  after: 0,               // newest event id shown
  generation: null,       // changes when the store is cleared (by any tab)
  maxRows: 1000,
  seen: new Map(),        // delivery id -> times seen
  rowsByDelivery: new Map(), // delivery id -> [seen badge elements]
  eventTypes: new Set(KNOWN_EVENTS),
  total: 0,
  rejected: 0,
};

const $ = (id) => document.getElementById(id);

const TOKEN_KEY = "webhook-ui-token";

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// #token=... once, then out of the address bar (and so out of history and bookmarks).
function takeTokenFromFragment() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!match) return;
  const value = decodeURIComponent(match[1]).trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  history.replaceState(null, "", location.pathname + location.search);
}

function showLogin(message) {
  $("login").hidden = false;
  $("login-note").textContent = message;
  setConnection(false, "token needed");
}

function login(event) {
  event.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  $("login").hidden = true;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  if (!token()) {
    showLogin("Enter the UI token (WEBHOOK_UI_TOKEN, or the one the service printed at start).");
    throw new Unauthorized("no token");
  }
  const options = {method, headers: {Accept: "application/json", Authorization: `Bearer ${token()}`}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("That token was refused: enter the current one.");
    throw new Unauthorized("token refused");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = {error: {code: "bad_answer", message: `HTTP ${response.status} without JSON`}};
  }
  return {status: response.status, ok: response.ok, data};
}

// ---------------------------------------------------------------------------------------------
// header and mode

let viaChosen = false;

function showInfo(info) {
  const endpoint = `${location.origin}${info.endpoint}`;
  $("endpoint").textContent = endpoint;
  $("empty-endpoint").textContent = endpoint;
  const chip = $("verifying");
  chip.textContent = info.verifying ? `signatures verified · ±${info.tolerance}s` : "NOT verifying signatures";
  chip.className = `chip ${info.verifying ? "chip-ok" : "chip-bad"}`;
  state.maxRows = info.max_events || state.maxRows;
  for (const input of document.querySelectorAll("input[name=via]")) {
    const configured = info.send && info.send[input.value];
    input.parentElement.title = configured ? "" :
      (input.value === "http" ? "WEBHOOK_REALTIME_URL is not set" : "WEBHOOK_REDIS_URL is not set");
    input.parentElement.classList.toggle("unconfigured", !configured);
    // Once, on load: preselect a path that is configured.
    if (!viaChosen && configured && !(info.send.http && input.value === "redis")) input.checked = true;
  }
  viaChosen = true;
  showMode(info);
}

function showMode(mode) {
  for (const button of document.querySelectorAll(".segment")) {
    const active = button.dataset.mode === mode.mode;
    button.classList.toggle("active", active);
    button.setAttribute("aria-checked", String(active));
  }
  const hang = $("hang-seconds");
  if (document.activeElement !== hang) hang.value = mode.hang_seconds;
  const notes = {
    ok: "Deliveries get 200 {\"received\": id}.",
    fail: "Deliveries get 500: the sender should retry with the same delivery id.",
    hang: `Deliveries wait ${mode.hang_seconds}s before 200: exercises the sender's read timeout.`,
  };
  $("mode-note").textContent = notes[mode.mode] || "";
  $("mode-note").className = `note note-${mode.mode}`;
}

async function setMode(mode) {
  const body = {mode};
  if (mode === "hang") body.hang_seconds = Number($("hang-seconds").value);
  const answer = await api("POST", "/api/mode", body);
  if (answer.ok) {
    showMode(answer.data);
  } else {
    $("mode-note").textContent = answer.data.error.message;
    $("mode-note").className = "note note-fail";
  }
}

// ---------------------------------------------------------------------------------------------
// send form

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const via = form.querySelector("input[name=via]:checked").value;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  const result = $("send-result");
  try {
    const answer = await api("POST", "/api/send", {room: $("send-room").value, body: $("send-body").value, via});
    result.textContent = `${answer.status} via ${via}\n${JSON.stringify(answer.data, null, 2)}`;
    result.className = `result ${answer.ok ? "result-ok" : "result-bad"}`;
  } catch (error) {
    result.textContent = `request failed: ${error}`;
    result.className = "result result-bad";
  } finally {
    result.hidden = false;
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// received events

function badge(text, kind, title) {
  const node = el("span", `badge badge-${kind}`, text);
  if (title) node.title = title;
  return node;
}

function verificationBadge(record) {
  if (record.verification === "valid") return badge("signature valid", "ok");
  if (record.verification === "skipped") return badge("not verified", "idle", "WEBHOOK_INSECURE_NO_SECRET is on");
  if (record.verification === "unchecked") return badge("not checked", "idle");
  return badge(record.verification.replace(/_/g, " "), "bad", record.error ? record.error.message : "");
}

function responseBadge(record) {
  const response = record.response || {};
  const text = response.mode === "hang" ? `${response.status} after ${response.hang_seconds}s` : String(response.status);
  const kind = response.status >= 500 ? "warn" : response.status >= 400 ? "bad" : "ok";
  return badge(`answered ${text}`, kind);
}

function formatTime(ms) {
  const date = new Date(ms);
  return `${date.toLocaleTimeString([], {hour12: false})}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

function headersTable(headers) {
  const table = el("table", "headers");
  const body = el("tbody");
  for (const [name, value] of Object.entries(headers || {})) {
    const row = el("tr");
    row.append(el("th", "", name), el("td", "", value));
    body.append(row);
  }
  table.append(body);
  const wrap = el("div", "table-wrap");
  wrap.append(table);
  return wrap;
}

function prettyBody(record) {
  if (record.json !== null && record.json !== undefined) return JSON.stringify(record.json, null, 2);
  return record.body === "" ? "(empty body)" : record.body;
}

function seenBadge(record) {
  const node = badge("", "dup");
  node.hidden = true;
  if (record.delivery) {
    const list = state.rowsByDelivery.get(record.delivery) || [];
    list.push(node);
    state.rowsByDelivery.set(record.delivery, list);
  }
  return node;
}

function updateSeen(delivery, seen) {
  if (!delivery) return;
  const count = Math.max(seen || 0, state.seen.get(delivery) || 0);
  state.seen.set(delivery, count);
  for (const node of state.rowsByDelivery.get(delivery) || []) {
    node.textContent = `delivery seen ${count}×`;
    node.hidden = count < 2;
  }
}

function summary(record) {
  const line = el("div", "summary");
  line.append(el("span", "seq", `#${record.id}`));
  line.append(el("span", "event-name", record.event || "(no event header)"));
  line.append(verificationBadge(record), responseBadge(record));
  if (record.attempt > 1) line.append(badge(`attempt ${record.attempt}`, "warn"));
  line.append(seenBadge(record));
  line.append(el("span", "spacer"));
  line.append(el("time", "time", formatTime(record.received_at)));
  return line;
}

function meta(record) {
  const line = el("div", "meta");
  line.append(el("span", "label", "delivery"), el("code", "", record.delivery || "—"));
  const created = record.json && typeof record.json.created_at === "number" ? record.json.created_at : null;
  if (created !== null) line.append(el("span", "label", "delay"), el("span", "", `${record.received_at - created} ms`));
  line.append(el("span", "label", "size"), el("span", "", `${record.body_bytes} B`));
  line.append(el("span", "label", "from"), el("span", "", record.remote_addr || "?"));
  if (record.error) line.append(el("span", "error-text", `${record.error.code}: ${record.error.message}`));
  return line;
}

function details(record) {
  const wrap = el("div", "details");
  const bodyBox = el("details", "box");
  bodyBox.open = true;
  bodyBox.append(el("summary", "", "body"), el("pre", "code", prettyBody(record)));
  const headerBox = el("details", "box");
  headerBox.open = true;
  headerBox.append(el("summary", "", `headers (${Object.keys(record.headers || {}).length})`), headersTable(record.headers));
  wrap.append(bodyBox, headerBox);
  return wrap;
}

function render(record) {
  const item = el("li", `event ${record.accepted ? "accepted" : "rejected"}`);
  item.dataset.event = record.event || "";
  item.dataset.outcome = record.accepted ? "accepted" : "rejected";
  item.append(summary(record), meta(record), details(record));
  return item;
}

function addEventType(name) {
  if (!name || state.eventTypes.has(name)) return;
  state.eventTypes.add(name);
  $("filter-event").append(new Option(name, name));
}

function applyFilter(item) {
  const wantedEvent = $("filter-event").value;
  const wantedOutcome = $("filter-outcome").value;
  item.hidden = (wantedEvent && item.dataset.event !== wantedEvent) ||
                (wantedOutcome && item.dataset.outcome !== wantedOutcome);
}

function refilter() {
  for (const item of $("events").children) applyFilter(item);
  updateCounts();
}

function updateCounts() {
  const list = $("events");
  const shown = Array.from(list.children).filter((item) => !item.hidden).length;
  const filtered = shown === list.children.length ? "" : ` · ${shown} shown`;
  $("counts").textContent = `${state.total} received · ${state.rejected} rejected${filtered}`;
  $("empty").hidden = list.children.length > 0;
}

function prune() {
  const list = $("events");
  while (list.children.length > state.maxRows) list.lastElementChild.remove();
}

function reset() {
  $("events").replaceChildren();
  state.after = 0;
  state.seen.clear();
  state.rowsByDelivery.clear();
  state.total = 0;
  state.rejected = 0;
  updateCounts();
}

function addRecords(records) {
  const list = $("events");
  for (const record of records) {
    addEventType(record.event);
    const item = render(record);
    applyFilter(item);
    list.prepend(item);
    updateSeen(record.delivery, Math.max(record.seen || 0, record.attempt || 0));
    state.after = Math.max(state.after, record.id);
    state.total += 1;
    if (!record.accepted) state.rejected += 1;
  }
  prune();
  updateCounts();
}

function setConnection(ok, text) {
  const chip = $("connection");
  chip.textContent = text;
  chip.className = `chip ${ok ? "chip-live" : "chip-bad"}`;
}

async function poll() {
  try {
    let more = true;
    while (more) {
      const answer = await api("GET", `/api/events?after=${state.after}`);
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const page = answer.data;
      if (page.generation !== state.generation) {
        // Cleared (here or in another tab): ids keep growing, so this page holds everything new.
        if (state.generation !== null) reset();
        state.generation = page.generation;
      }
      addRecords(page.events);
      more = page.more;
    }
    setConnection(true, "live");
  } catch (error) {
    if (!(error instanceof Unauthorized)) setConnection(false, "receiver unreachable");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

async function refreshInfo() {
  try {
    const answer = await api("GET", "/api/info");
    if (answer.ok) showInfo(answer.data);
  } catch (_) {
    // poll() reports the connection state
  } finally {
    setTimeout(refreshInfo, 5000);
  }
}

async function clearEvents() {
  const answer = await api("DELETE", "/api/events");
  if (answer.ok) reset();
}

function init() {
  takeTokenFromFragment();
  $("login-form").addEventListener("submit", login);
  for (const name of KNOWN_EVENTS) $("filter-event").append(new Option(name, name));
  for (const button of document.querySelectorAll(".segment")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("hang-seconds").addEventListener("change", () => {
    const active = document.querySelector(".segment.active");
    if (active && active.dataset.mode === "hang") setMode("hang");
  });
  $("send-form").addEventListener("submit", send);
  $("filter-event").addEventListener("change", refilter);
  $("filter-outcome").addEventListener("change", refilter);
  $("clear").addEventListener("click", clearEvents);
  updateCounts();
  refreshInfo();
  poll();
}

document.addEventListener("DOMContentLoaded", init);
