/*
 * realtime: browser demo client.
 *
 * Plain JavaScript, no build step. Talks to the server through the vendored
 * Socket.IO client (/static/vendor/socket.io.min.js, global `io`) on the
 * `/chat` namespace and to `POST /api/auth/token` for the demo login.
 *
 * Every user-provided string is rendered with textContent, never innerHTML.
 * No inline styles are set (the page runs under a strict CSP); visual state is
 * expressed with classes, data attributes and the `hidden` attribute.
 */
(function () {
  "use strict";

  // ---------------------------------------------------------------- constants

  var NAME_RE = /^[A-Za-z0-9_.-]{1,32}$/;
  var NAMESPACE = "/chat";
  var ACK_TIMEOUT_MS = 10000;      // an ack not received by then is treated as lost
  var RETRY_DELAY_MS = 2000;       // resend delay after an ack timeout
  var CACHE_PER_ROOM = 200;        // messages per room kept in sessionStorage
  var HISTORY_PAGE = 50;           // messages per `history` request
  var CATCH_UP_PAGES = 10;         // history pages fetched after a truncated replay
  var TOKEN_CODES = { auth_required: true, token_invalid: true, token_expired: true };

  var STATUS = {
    CONNECTING: "connecting",
    CONNECTED: "connected",
    RECONNECTING: "reconnecting",
    OFFLINE: "offline"
  };

  var KEYS = {
    token: "realtime.token",
    user: "realtime.user",
    rooms: "realtime.rooms",
    current: "realtime.currentRoom",
    lastIds: "realtime.lastIds",
    outbox: "realtime.outbox",
    cache: "realtime.messages"
  };

  // ------------------------------------------------------------------- state

  var state = {
    token: null,
    user: null,            // {id, name}
    socket: null,
    instance: null,        // replica id from `welcome`
    stats: null,           // last `stats` payload
    rooms: new Map(),      // name -> room record (see newRoom)
    current: null,         // selected room name
    lastIds: {},           // room -> highest message id seen
    outbox: new Map(),     // client_id -> {client_id, room, type, body, created, failed}
    sending: null,         // client_id of the outbox entry awaiting its ack
    sendSeq: 0,
    sendPausedUntil: 0,    // after a rate_limited ack
    pumpTimer: null,
    retryTimer: null,      // manual reconnect after a server refusal (rate_limited)
    retryAttempt: 0,
    refreshing: false,
    errorSource: null,
    cacheTimer: null
  };

  var el = {};

  // ------------------------------------------------------------ small helpers

  function $(id) { return document.getElementById(id); }

  function storageGet(key, fallback) {
    try {
      var raw = window.sessionStorage.getItem(key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch (e) {
      return fallback;
    }
  }

  function storageSet(key, value) {
    try {
      if (value === null || value === undefined) {
        window.sessionStorage.removeItem(key);
      } else {
        window.sessionStorage.setItem(key, JSON.stringify(value));
      }
    } catch (e) { /* storage full or disabled: the page still works, it just forgets on reload */ }
  }

  function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function formatTime(ms) {
    var d = new Date(ms);
    if (isNaN(d.getTime())) { return "--:--:--"; }
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  // crypto.randomUUID exists only in secure contexts (https, localhost); the demo
  // may be served over plain http on a LAN address, so fall back to getRandomValues.
  function newClientId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") {
      try { return c.randomUUID(); } catch (e) { /* fall through */ }
    }
    var b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(b);
    } else {
      for (var i = 0; i < 16; i++) { b[i] = Math.floor(Math.random() * 256); }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function errorMessage(ack, fallback) {
    if (isObject(ack) && isObject(ack.error)) {
      var m = ack.error.message || ack.error.code;
      if (m) { return String(m); }
    }
    return fallback;
  }

  function createEl(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  // ------------------------------------------------------------ status & error

  function setStatus(status, detail) {
    el.status.textContent = status;
    el.status.setAttribute("data-state", status);
    document.body.setAttribute("data-connection", status);
    el.statusDetail.textContent = detail || "";
    // A manual "reconnect" is offered whenever we are logged in but not trying.
    el.reconnectButton.hidden = !(status === STATUS.OFFLINE && state.token && state.socket);
  }

  function showError(message, source) {
    if (!message) { return; }
    state.errorSource = source || "general";
    el.error.textContent = String(message);
    el.errorBar.hidden = false;
  }

  // Clears the error line; with a source, only if that source set it.
  function clearError(source) {
    if (source && state.errorSource !== source) { return; }
    state.errorSource = null;
    el.error.textContent = "";
    el.errorBar.hidden = true;
  }

  // ------------------------------------------------------------ message types

  /*
   * Renderers keyed on message `type`. Each gets the message and returns a DOM
   * node for its body. Add new types here (or at runtime through
   * window.RealtimeDemo.registerRenderer) - e.g. image, file, location.
   */
  var renderers = {
    text: function (msg) {
      var body = typeof msg.body === "string" ? msg.body : (msg.body === null || msg.body === undefined ? "" : JSON.stringify(msg.body));
      return createEl("p", "body body-text", body);
    }
  };

  function renderBody(msg) {
    var type = typeof msg.type === "string" ? msg.type : "unknown";
    if (Object.prototype.hasOwnProperty.call(renderers, type)) {
      try {
        var node = renderers[type](msg);
        if (node) { return node; }
      } catch (e) {
        if (window.console) { console.warn("renderer for", type, "failed", e); }
      }
    }
    return createEl("p", "body body-unknown", "[" + type + "] message");
  }

  // ------------------------------------------------------------------- rooms

  function newRoom(name) {
    return {
      name: name,
      messages: new Map(),   // id -> message
      ids: [],               // sorted ascending
      joined: false,         // server confirmed membership on the current connection
      everJoined: false,     // confirmed at least once (then a failed re-join keeps it listed)
      joining: false,
      joinSeq: 0,
      unread: 0,
      online: null,          // number, or null when unknown
      onlineUsers: null,     // Set of user ids when the server sends a list
      truncated: false
    };
  }

  function saveRooms() {
    storageSet(KEYS.rooms, Array.from(state.rooms.keys()));
    storageSet(KEYS.current, state.current);
  }

  function saveLastIds() { storageSet(KEYS.lastIds, state.lastIds); }

  function scheduleCacheSave() {
    if (state.cacheTimer) { return; }
    state.cacheTimer = window.setTimeout(function () {
      state.cacheTimer = null;
      saveCache();
    }, 250);
  }

  function saveCache() {
    if (!state.token) { return; }
    var out = {};
    state.rooms.forEach(function (room, name) {
      var ids = room.ids.slice(-CACHE_PER_ROOM);
      out[name] = ids.map(function (id) { return room.messages.get(id); });
    });
    storageSet(KEYS.cache, out);
  }

  function getOrCreateRoom(name) {
    var room = state.rooms.get(name);
    if (!room) {
      room = newRoom(name);
      state.rooms.set(name, room);
      saveRooms();
    }
    return room;
  }

  function selectRoom(name) {
    if (!state.rooms.has(name)) { name = null; }
    state.current = name;
    if (name) { state.rooms.get(name).unread = 0; }
    saveRooms();
    renderRooms();
    renderConversation();
    markRead();
    // Do not pop up the on-screen keyboard on touch devices just for switching rooms.
    if (name && !el.messageInput.disabled && window.matchMedia && window.matchMedia("(pointer: fine)").matches) {
      el.messageInput.focus();
    }
  }

  // Private rooms are named dm:<smaller id>:<larger id>; one replies with {to: peer}.
  function isDmRoom(name) { return typeof name === "string" && name.indexOf("dm:") === 0; }

  function dmPeer(name) {
    var parts = name.split(":");
    if (parts.length !== 3) { return null; }
    var me = state.user && state.user.id !== null && state.user.id !== undefined ? String(state.user.id) : null;
    return parts[1] === me ? parts[2] : parts[1];
  }

  function validRoomName(name) {
    return typeof name === "string" && name.length > 0 && name.length <= 64;
  }

  function joinRoom(name) {
    var room = getOrCreateRoom(name);
    renderRooms();
    if (!isConnected() || room.joining) { return; }   // joined on (re)connect
    room.joining = true;
    var seq = ++room.joinSeq;
    var payload = { room: name };
    var since = state.lastIds[name];
    if (typeof since === "number" && isFinite(since)) { payload.since = since; }

    emitWithAck("join", payload, function (err, ack) {
      if (state.rooms.get(name) !== room || room.joinSeq !== seq) { return; }  // left, or a newer attempt
      room.joining = false;
      if (err) {
        showError("Joining “" + name + "” timed out; will retry.", "join");
        window.setTimeout(function () {
          if (state.rooms.get(name) === room && !room.joined) { joinRoom(name); }
        }, RETRY_DELAY_MS);
        return;
      }
      if (!isObject(ack) || ack.ok !== true) {
        if (isDmRoom(name)) {
          // Private messages reach us without a join; a refused join only costs recovery.
          room.joined = true;
          renderRooms();
          if (name === state.current) { renderRoomHeader(); }
          flushOutbox();
          return;
        }
        showError(errorMessage(ack, "Could not join “" + name + "”."), "join");
        var e = isObject(ack) && isObject(ack.error) ? ack.error : {};
        if (e.code === "rate_limited" || e.code === "unavailable") {
          // Temporary: keep the room and try again later.
          window.setTimeout(function () {
            if (state.rooms.get(name) === room && !room.joined) { joinRoom(name); }
          }, typeof e.retry_after === "number" && e.retry_after > 0 ? e.retry_after * 1000 : RETRY_DELAY_MS);
        } else if (!room.everJoined) {
          removeRoom(name);
        }
        renderRooms();
        return;
      }
      clearError("join");
      room.joined = true;
      room.everJoined = true;
      var missed = Array.isArray(ack.missed) ? ack.missed : [];
      mergeBatch(room, missed);
      setOnline(room, ack.online);
      room.truncated = ack.truncated === true;
      if (room.truncated && missed.length) {
        // The replay was cut short: fetch what follows its last message, page by page.
        catchUp(name, maxId(missed), CATCH_UP_PAGES);
      }
      renderRooms();
      if (name === state.current) { renderConversation(); }
      flushOutbox();
      markRead();
      // First time in this room (no `since`): show its recent history.
      if (!("since" in payload)) { loadHistory(name); }
    });
  }

  // Adds a batch (missed, history); counts what others wrote as unread when not on screen.
  function mergeBatch(room, list) {
    var fresh = 0;
    list.forEach(function (m) {
      if (addMessage(m, { silent: true }) && !isOwn(m)) { fresh++; }
    });
    if (fresh && room.name !== state.current) {
      room.unread += fresh;
      renderRooms();
    }
  }

  function maxId(list) {
    var top = -1;
    list.forEach(function (m) { if (validMessage(m) && m.id > top) { top = m.id; } });
    return top;
  }

  function catchUp(name, after, pages) {
    if (pages <= 0 || after < 0 || !isConnected()) { return; }
    var room = state.rooms.get(name);
    emitWithAck("history", { room: name, after: after, limit: HISTORY_PAGE }, function (err, ack) {
      if (err || state.rooms.get(name) !== room || !isObject(ack) || ack.ok !== true || !Array.isArray(ack.messages)) { return; }
      mergeBatch(room, ack.messages);
      if (ack.messages.length >= HISTORY_PAGE) { catchUp(name, maxId(ack.messages), pages - 1); }
    });
  }

  // Recent messages of a room, merged like any others. Optional: failures are quiet.
  function loadHistory(name) {
    if (!isConnected()) { return; }
    emitWithAck("history", { room: name, limit: HISTORY_PAGE }, function (err, ack) {
      var room = state.rooms.get(name);
      if (err || !room || !isObject(ack) || ack.ok !== true || !Array.isArray(ack.messages)) { return; }
      mergeBatch(room, ack.messages);
    });
  }

  function removeRoom(name) {
    state.rooms.delete(name);
    delete state.lastIds[name];
    saveLastIds();
    state.outbox.forEach(function (entry, id) {
      if (entry.room === name) { state.outbox.delete(id); }
    });
    saveOutbox();
    if (state.current === name) {
      var next = state.rooms.keys().next();
      state.current = next.done ? null : next.value;
      if (state.current) { state.rooms.get(state.current).unread = 0; }
    }
    saveRooms();
    scheduleCacheSave();
    renderRooms();
    renderConversation();
  }

  function leaveRoom(name) {
    var room = state.rooms.get(name);
    if (!room) { return; }
    var wasJoined = room.joined;
    removeRoom(name);
    if (wasJoined && isConnected() && !isDmRoom(name)) {
      emitWithAck("leave", { room: name }, function (err, ack) {
        if (err) { showError("Leaving “" + name + "” timed out.", "leave"); return; }
        if (!isObject(ack) || ack.ok !== true) {
          showError(errorMessage(ack, "Could not leave “" + name + "”."), "leave");
        }
      });
    }
  }

  function setOnline(room, online) {
    if (Array.isArray(online)) {
      room.onlineUsers = new Set(online.map(function (u) { return isObject(u) ? String(u.id) : String(u); }));
      room.online = room.onlineUsers.size;
    } else if (typeof online === "number" && isFinite(online)) {
      room.onlineUsers = null;
      room.online = online;
    }
  }

  // Tell the server how far this user has read the room on screen (best effort).
  var readTimer = null;
  function markRead() {
    if (readTimer) { return; }
    readTimer = window.setTimeout(function () {
      readTimer = null;
      var room = state.current ? state.rooms.get(state.current) : null;
      if (!room || !room.joined || !isConnected() || document.hidden || !room.ids.length) { return; }
      var newest = room.ids[room.ids.length - 1];
      if (room.readSent !== undefined && room.readSent >= newest) { return; }
      room.readSent = newest;
      emitWithAck("read", { room: room.name, message_id: newest }, function () { /* best effort */ });
    }, 500);
  }

  // ---------------------------------------------------------------- messages

  function isOwn(msg) {
    return !!(state.user && isObject(msg.from) && String(msg.from.id) === String(state.user.id));
  }

  function validMessage(m) {
    return isObject(m) && typeof m.id === "number" && isFinite(m.id) &&
      typeof m.room === "string" && m.room.length > 0;
  }

  function sameMessage(a, b) {
    if (typeof a.ts === "number" && typeof b.ts === "number" && a.ts !== b.ts) { return false; }
    if (typeof a.client_id === "string" && typeof b.client_id === "string" && a.client_id !== b.client_id) { return false; }
    return true;
  }

  function resetRoomHistory(room) {
    room.messages.clear();
    room.ids = [];
    delete state.lastIds[room.name];
    saveLastIds();
    scheduleCacheSave();
    if (room.name === state.current) { el.messages.replaceChildren(); }
  }

  // Index of the first id greater than `id` in the sorted array.
  function upperBound(ids, id) {
    var lo = 0, hi = ids.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (ids[mid] <= id) { lo = mid + 1; } else { hi = mid; }
    }
    return lo;
  }

  /*
   * Adds a message (from an event, a join ack's `missed`, or a send ack),
   * deduplicated by (room, id). Returns true when it was new.
   */
  function addMessage(m, opts) {
    if (!validMessage(m)) { return false; }
    opts = opts || {};
    var room = state.rooms.get(m.room);
    if (!room) {
      // Private messages arrive in rooms the client never joined explicitly.
      if (m.room.indexOf("dm:") !== 0) { return false; }
      room = getOrCreateRoom(m.room);
      room.joined = room.everJoined = true;
    }

    // A message carrying our client_id confirms an outbox entry.
    if (typeof m.client_id === "string" && state.outbox.has(m.client_id)) {
      state.outbox.delete(m.client_id);
      saveOutbox();
      if (m.room === state.current) { renderOutbox(); }
    }

    var known = room.messages.get(m.id);
    if (known) {
      if (sameMessage(known, m)) { return false; }
      // Same id, different message: the server's history for this room was reset
      // (e.g. an in-memory server restarted). Forget what we had for the room.
      resetRoomHistory(room);
    }
    var pos = upperBound(room.ids, m.id);
    room.ids.splice(pos, 0, m.id);
    room.messages.set(m.id, m);

    // Trim what is kept in memory to a generous bound.
    if (room.ids.length > CACHE_PER_ROOM * 5) {
      var drop = room.ids.splice(0, room.ids.length - CACHE_PER_ROOM * 5);
      drop.forEach(function (id) { room.messages.delete(id); });
      if (m.room === state.current) { renderMessages(); }
    }

    var last = state.lastIds[m.room];
    if (typeof last !== "number" || m.id > last) {
      state.lastIds[m.room] = m.id;
      saveLastIds();
    }
    scheduleCacheSave();

    if (m.room === state.current) {
      insertMessageNode(m);
      markRead();
    } else if (!opts.silent && !isOwn(m)) {
      room.unread += 1;
      renderRooms();
    }
    return true;
  }

  function messageNode(m) {
    var li = createEl("li", "message" + (isOwn(m) ? " own" : ""));
    li.setAttribute("data-id", String(m.id));
    li.setAttribute("data-room", m.room);
    li.setAttribute("data-type", typeof m.type === "string" ? m.type : "unknown");

    var meta = createEl("div", "meta");
    var fromName = isObject(m.from) && m.from.name !== undefined ? m.from.name : (isObject(m.from) ? m.from.id : "unknown");
    meta.appendChild(createEl("span", "from", fromName));
    var time = createEl("time", "time", formatTime(m.ts));
    var d = new Date(m.ts);
    if (!isNaN(d.getTime())) {
      time.setAttribute("datetime", d.toISOString());
      time.title = d.toLocaleString();
    }
    meta.appendChild(time);

    li.appendChild(meta);
    li.appendChild(renderBody(m));
    return li;
  }

  function nearBottom() {
    var s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() { el.scroller.scrollTop = el.scroller.scrollHeight; }

  function insertMessageNode(m) {
    var stick = nearBottom();
    var room = state.rooms.get(m.room);
    var pos = room.ids.indexOf(m.id);
    var nextId = pos >= 0 && pos + 1 < room.ids.length ? room.ids[pos + 1] : null;
    var node = messageNode(m);
    var before = null;
    if (nextId !== null) {
      before = el.messages.querySelector('.message[data-id="' + String(nextId) + '"]');
    }
    el.messages.insertBefore(node, before);
    el.emptyHint.hidden = true;
    if (stick || isOwn(m)) { scrollToBottom(); }
  }

  function renderMessages() {
    var room = state.current ? state.rooms.get(state.current) : null;
    var frag = document.createDocumentFragment();
    if (room) {
      room.ids.forEach(function (id) { frag.appendChild(messageNode(room.messages.get(id))); });
    }
    el.messages.replaceChildren(frag);
  }

  // ------------------------------------------------------------------ outbox

  function saveOutbox() {
    var list = [];
    state.outbox.forEach(function (e) {
      list.push({ client_id: e.client_id, room: e.room, type: e.type, body: e.body, created: e.created, failed: e.failed || null });
    });
    storageSet(KEYS.outbox, list);
  }

  function queueMessage(roomName, type, body) {
    var entry = { client_id: newClientId(), room: roomName, type: type, body: body, created: Date.now(), failed: null };
    state.outbox.set(entry.client_id, entry);
    saveOutbox();
    renderOutbox();
    scrollToBottom();
    pumpOutbox();
  }

  function flushOutbox() { pumpOutbox(); }

  /*
   * The outbox is sent one message at a time, oldest first: the user's order is
   * kept, and a backlog sent after a reconnect does not trip the server's rate
   * limit (repeated refusals get a connection cut off). An entry leaves the
   * outbox only when an ack (or the `message` event) confirms it; a resend uses
   * the same client_id, so the server stores it once.
   */
  function pumpOutbox() {
    if (state.sending || !isConnected()) { return; }
    var wait = state.sendPausedUntil - Date.now();
    if (wait > 0) { schedulePump(wait); return; }
    var next = null;
    state.outbox.forEach(function (e) {
      var room = state.rooms.get(e.room);
      if (e.failed || !room || !room.joined) { return; }
      if (!next || e.created < next.created) { next = e; }
    });
    if (next) { sendEntry(next); }
  }

  function schedulePump(ms) {
    if (state.pumpTimer) { return; }
    state.pumpTimer = window.setTimeout(function () {
      state.pumpTimer = null;
      pumpOutbox();
    }, ms);
  }

  function confirmSent(entry, message) {
    if (state.outbox.get(entry.client_id) === entry) {
      state.outbox.delete(entry.client_id);
      saveOutbox();
      if (entry.room === state.current) { renderOutbox(); }
    }
    addMessage(message);
  }

  function sendEntry(entry) {
    state.sending = entry.client_id;
    var seq = ++state.sendSeq;
    var payload = { type: entry.type, body: entry.body, client_id: entry.client_id };
    if (isDmRoom(entry.room)) { payload.to = dmPeer(entry.room); } else { payload.room = entry.room; }

    emitWithAck("send", payload, function (err, ack) {
      var ok = !err && isObject(ack) && ack.ok === true;
      if (seq !== state.sendSeq) {
        // From before a disconnect: a late success still confirms the entry.
        if (ok) { confirmSent(entry, ack.message); }
        return;
      }
      state.sending = null;
      if (err) {
        // No ack in time: keep it and try again (same client_id).
        schedulePump(RETRY_DELAY_MS);
        return;
      }
      if (ok) {
        confirmSent(entry, ack.message);
        clearError("send");
        pumpOutbox();
        return;
      }
      var e = isObject(ack) && isObject(ack.error) ? ack.error : {};
      if (e.code === "rate_limited") {
        var pause = typeof e.retry_after === "number" && e.retry_after > 0 ? e.retry_after * 1000 : RETRY_DELAY_MS;
        state.sendPausedUntil = Date.now() + pause;
        showError(errorMessage(ack, "Sending too fast.") + " Retrying…", "send");
        schedulePump(pause);
        return;
      }
      if (state.outbox.get(entry.client_id) === entry) {
        entry.failed = { code: e.code || "error", message: errorMessage(ack, "The server refused the message.") };
        saveOutbox();
        if (entry.room === state.current) { renderOutbox(); }
      }
      showError(errorMessage(ack, "The server refused the message."), "send");
      pumpOutbox();
    });
  }

  function outboxNode(entry) {
    var li = createEl("li", "pending" + (entry.failed ? " failed" : ""));
    li.setAttribute("data-client-id", entry.client_id);
    li.setAttribute("data-room", entry.room);

    var meta = createEl("div", "meta");
    meta.appendChild(createEl("span", "from", state.user ? state.user.name : "me"));
    meta.appendChild(createEl("span", "state", entry.failed ? "failed: " + entry.failed.message : "sending…"));
    li.appendChild(meta);
    li.appendChild(renderBody({ type: entry.type, body: entry.body, room: entry.room }));

    if (entry.failed) {
      var actions = createEl("div", "actions");
      var retry = createEl("button", "btn btn-small", "retry");
      retry.type = "button";
      retry.addEventListener("click", function () {
        entry.failed = null;
        saveOutbox();
        renderOutbox();
        pumpOutbox();
      });
      var discard = createEl("button", "btn btn-small btn-ghost", "discard");
      discard.type = "button";
      discard.addEventListener("click", function () {
        state.outbox.delete(entry.client_id);
        saveOutbox();
        renderOutbox();
      });
      actions.appendChild(retry);
      actions.appendChild(discard);
      li.appendChild(actions);
    }
    return li;
  }

  function renderOutbox() {
    var frag = document.createDocumentFragment();
    var list = [];
    state.outbox.forEach(function (e) { if (e.room === state.current) { list.push(e); } });
    list.sort(function (a, b) { return a.created - b.created; });
    list.forEach(function (e) { frag.appendChild(outboxNode(e)); });
    el.outbox.replaceChildren(frag);
    updateEmptyHint();
  }

  // ------------------------------------------------------------ rendering UI

  function renderRooms() {
    var frag = document.createDocumentFragment();
    state.rooms.forEach(function (room, name) {
      var li = createEl("li", "room-item");
      li.setAttribute("data-room", name);
      var btn = createEl("button", "room-button");
      btn.type = "button";
      btn.setAttribute("data-room", name);
      if (name === state.current) {
        li.classList.add("active");
        btn.setAttribute("aria-current", "true");
      }
      if (!room.joined) { li.classList.add("not-joined"); }
      var dm = isDmRoom(name);
      btn.appendChild(createEl("span", "room-hash", dm ? "@" : "#"));
      btn.appendChild(createEl("span", "room-name", dm ? (dmPeer(name) || name) : name));
      if (room.unread > 0 && name !== state.current) {
        btn.appendChild(createEl("span", "badge", room.unread > 99 ? "99+" : room.unread));
      }
      btn.addEventListener("click", function () { selectRoom(name); });
      li.appendChild(btn);
      frag.appendChild(li);
    });
    el.rooms.replaceChildren(frag);
    el.roomsEmpty.hidden = state.rooms.size > 0;
  }

  function roomLabel(name) {
    if (isDmRoom(name)) { return "@" + (dmPeer(name) || name); }
    return "#" + name;
  }

  function roomMetaText(room) {
    var parts = [];
    if (isDmRoom(room.name)) { parts.push("private"); }
    if (!isConnected()) {
      parts.push("waiting for connection");
    } else if (!room.joined) {
      parts.push(room.joining ? "joining…" : "not joined");
    } else if (room.online !== null && room.online > 0) {
      parts.push(room.online + " online");
    }
    return parts.join(" · ");
  }

  function renderRoomHeader() {
    var room = state.current ? state.rooms.get(state.current) : null;
    el.roomTitle.textContent = room ? roomLabel(room.name) : "No room selected";
    el.messageInput.placeholder = room ? "Message " + roomLabel(room.name) : "Join a room first";
    el.roomMeta.textContent = room ? roomMetaText(room) : "";
    el.leaveButton.hidden = !room;
    el.messageInput.disabled = !room;
    el.sendButton.disabled = !room;
    if (room && room.truncated) {
      el.notice.textContent = "Some of the older messages you missed while offline may have been dropped by the server.";
      el.notice.hidden = false;
    } else {
      el.notice.textContent = "";
      el.notice.hidden = true;
    }
  }

  function updateEmptyHint() {
    el.emptyHint.hidden = !!state.current && (el.messages.childElementCount > 0 || el.outbox.childElementCount > 0);
    if (state.current && el.messages.childElementCount === 0 && el.outbox.childElementCount === 0) {
      el.emptyHint.firstElementChild.textContent = "No messages yet. Say hello!";
      el.emptyHint.lastElementChild.hidden = true;
    } else {
      el.emptyHint.firstElementChild.textContent = "Join a room to start chatting.";
      el.emptyHint.lastElementChild.hidden = false;
    }
  }

  function renderConversation() {
    renderRoomHeader();
    renderMessages();
    renderOutbox();
    scrollToBottom();
  }

  function renderStats() {
    var s = state.stats;
    if (!s) { return; }
    var instances = Array.isArray(s.instances) ? s.instances.filter(isObject) : [];
    el.clientsTotal.textContent = typeof s.clients_total === "number" ? String(s.clients_total) : "–";
    el.replicaCount.textContent = String(instances.length);
    el.clientsLabel.textContent = s.clients_total === 1 ? "client" : "clients";
    el.replicasLabel.textContent = instances.length === 1 ? "replica" : "replicas";

    var frag = document.createDocumentFragment();
    instances.slice().sort(function (a, b) { return String(a.id).localeCompare(String(b.id)); })
      .forEach(function (inst) {
        var li = createEl("li", "replica");
        li.setAttribute("data-instance", String(inst.id));
        var mine = state.instance !== null && String(inst.id) === String(state.instance);
        if (mine) {
          li.classList.add("current");
          li.title = "This browser is connected to this replica";
        }
        li.appendChild(createEl("span", "replica-id", inst.id));
        if (mine) { li.appendChild(createEl("span", "replica-you", "you")); }
        var n = typeof inst.clients === "number" ? inst.clients : "?";
        li.appendChild(createEl("span", "replica-clients", n + (n === 1 ? " client" : " clients")));
        var started = parseStartedAt(inst.started_at);
        if (started) { li.title = (li.title ? li.title + " · " : "") + "started " + started.toLocaleString(); }
        frag.appendChild(li);
      });
    el.replicas.replaceChildren(frag);
  }

  // started_at may be epoch seconds, epoch ms or an ISO string.
  function parseStartedAt(v) {
    var d = null;
    if (typeof v === "number" && isFinite(v)) { d = new Date(v < 1e12 ? v * 1000 : v); }
    else if (typeof v === "string" && v) { d = new Date(v); }
    return d && !isNaN(d.getTime()) ? d : null;
  }

  function renderSession() {
    var loggedIn = !!state.token;
    el.loginView.hidden = loggedIn;
    el.chatView.hidden = !loggedIn;
    el.session.hidden = !loggedIn;
    document.body.classList.toggle("logged-in", loggedIn);
    if (loggedIn && state.user) {
      el.userName.textContent = state.user.name;
      el.userAvatar.textContent = String(state.user.name || "?").charAt(0).toUpperCase();
    }
    el.replica.textContent = state.instance !== null ? String(state.instance) : "–";
  }

  // ---------------------------------------------------------------- socket

  function isConnected() { return !!(state.socket && state.socket.connected); }

  // Emit with an ack and a timeout: cb(err, ack); err is set when no ack came.
  function emitWithAck(event, payload, cb) {
    var sock = state.socket;
    sock.timeout(ACK_TIMEOUT_MS).emit(event, payload, function (err, ack) {
      if (sock !== state.socket) { return; }   // from a socket we have since dropped
      cb(err || null, ack);
    });
  }

  function connect() {
    teardownSocket();
    if (typeof window.io !== "function") {
      setStatus(STATUS.OFFLINE);
      showError("The Socket.IO client failed to load.", "connection");
      return;
    }
    setStatus(STATUS.CONNECTING);
    var socket = window.io(NAMESPACE, {
      forceNew: true,
      // A function, so a reconnect always sends the current token.
      auth: function (cb) { cb({ token: state.token }); }
    });
    state.socket = socket;

    socket.on("connect", onConnect);
    socket.on("disconnect", onDisconnect);
    socket.on("connect_error", onConnectError);
    socket.io.on("reconnect_attempt", function (n) {
      if (socket !== state.socket) { return; }
      setStatus(STATUS.RECONNECTING, "attempt " + n);
    });
    socket.io.on("reconnect_failed", function () {
      if (socket !== state.socket) { return; }
      setStatus(STATUS.OFFLINE, "gave up");
    });
    socket.on("welcome", onWelcome);
    socket.on("stats", onStats);
    socket.on("message", function (m) { addMessage(m); });
    socket.on("presence", onPresence);
    socket.on("token_expiring", refreshToken);
  }

  function teardownSocket() {
    if (state.retryTimer) {
      window.clearTimeout(state.retryTimer);
      state.retryTimer = null;
    }
    if (state.pumpTimer) {
      window.clearTimeout(state.pumpTimer);
      state.pumpTimer = null;
    }
    state.sending = null;
    state.sendSeq++;
    state.sendPausedUntil = 0;
    if (state.socket) {
      var s = state.socket;
      state.socket = null;
      s.off();
      s.io.off();
      s.disconnect();
    }
  }

  function onConnect() {
    state.retryAttempt = 0;
    setStatus(STATUS.CONNECTED);
    clearError("connection");
    // Re-join every room, asking for what was missed since the last id seen.
    state.rooms.forEach(function (room, name) {
      room.joined = false;
      room.joining = false;
      joinRoom(name);
    });
    renderRooms();
    renderRoomHeader();
  }

  function onDisconnect(reason) {
    state.rooms.forEach(function (room) {
      room.joined = false;
      room.joining = false;
      room.joinSeq++;
    });
    state.sending = null;
    state.sendSeq++;
    renderRooms();
    renderRoomHeader();
    if (!state.socket) { return; }
    if (state.socket.active) {
      // The manager reconnects by itself; reconnect_attempt gives the count.
      setStatus(STATUS.RECONNECTING, "waiting");
    } else if (reason === "io server disconnect") {
      // Closed on purpose by the server (expired token, abuse, shutdown). Try again
      // after a pause: a token problem then surfaces as a connect_error.
      showError("The server closed the connection.", "connection");
      scheduleReconnect(0);
    } else {
      setStatus(STATUS.OFFLINE);
    }
  }

  function onConnectError(err) {
    var socket = state.socket;
    if (!socket) { return; }
    var data = err && isObject(err.data) ? err.data : {};
    var code = typeof data.code === "string" ? data.code : null;
    var message = (err && err.message) || "Connection failed.";

    if (code && TOKEN_CODES[code]) {
      logout(message);
      return;
    }
    if (socket.active) {
      // A transport-level failure: the manager keeps retrying.
      setStatus(STATUS.RECONNECTING, el.statusDetail.textContent || "waiting");
      return;
    }
    // Refused by the server (forbidden, rate_limited, ...): no automatic retry.
    showError(message, "connection");
    if (code === "rate_limited" || code === "unavailable") {
      scheduleReconnect(typeof data.retry_after === "number" && data.retry_after > 0 ? data.retry_after * 1000 : 0);
    } else {
      setStatus(STATUS.OFFLINE, code || "");
    }
  }

  // A reconnect the Manager will not do by itself (after a refusal or a server close).
  function scheduleReconnect(delayMs) {
    var socket = state.socket;
    if (!socket) { return; }
    state.retryAttempt++;
    var delay = delayMs > 0 ? delayMs : Math.min(30000, 1000 * Math.pow(2, state.retryAttempt));
    setStatus(STATUS.RECONNECTING, "attempt " + state.retryAttempt);
    if (state.retryTimer) { window.clearTimeout(state.retryTimer); }
    state.retryTimer = window.setTimeout(function () {
      state.retryTimer = null;
      if (state.socket === socket && !socket.connected) { socket.connect(); }
    }, delay);
  }

  function onWelcome(data) {
    if (!isObject(data)) { return; }
    if (data.instance !== undefined && data.instance !== null) { state.instance = String(data.instance); }
    if (isObject(data.user) && typeof data.user.name === "string") {
      state.user = { id: data.user.id, name: data.user.name };
      storageSet(KEYS.user, state.user);
    }
    renderSession();
    renderStats();
  }

  function onStats(data) {
    if (!isObject(data)) { return; }
    state.stats = data;
    renderStats();
  }

  function onPresence(p) {
    if (!isObject(p) || typeof p.room !== "string") { return; }
    var room = state.rooms.get(p.room);
    if (!room) { return; }
    var uid = isObject(p.user) ? String(p.user.id) : String(p.user);
    if (room.onlineUsers) {
      if (p.online) { room.onlineUsers.add(uid); } else { room.onlineUsers.delete(uid); }
      room.online = room.onlineUsers.size;
    } else if (typeof room.online === "number") {
      room.online = Math.max(0, room.online + (p.online ? 1 : -1));
    }
    if (p.room === state.current) { renderRoomHeader(); }
  }

  // ------------------------------------------------------------ login/logout

  // POST /api/auth/token; resolves {token, user} or {error: message}.
  function requestToken(name) {
    return fetch("/api/auth/token", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ username: name }),
      credentials: "same-origin"
    }).then(function (res) {
      return res.json().then(function (data) { return { res: res, data: data }; },
        function () { return { res: res, data: null }; });
    }).then(function (r) {
      var data = r.data;
      if (!r.res.ok || !isObject(data) || typeof data.access_token !== "string") {
        return { error: errorMessage(data, "Login failed (HTTP " + r.res.status + ").") };
      }
      var user = isObject(data.user) ? { id: data.user.id, name: String(data.user.name || name) } : { id: null, name: name };
      return { token: data.access_token, user: user };
    }, function () {
      return { error: "Could not reach the server." };
    });
  }

  function login(name) {
    clearError();
    el.loginButton.disabled = true;
    requestToken(name).then(function (r) {
      el.loginButton.disabled = false;
      if (r.error) {
        showError(r.error, "login");
        return;
      }
      startSession(r.token, r.user);
    });
  }

  /*
   * The server warns with `token_expiring` before it closes a connection whose
   * token runs out. The demo asks for a fresh token for the same name and hands
   * it over with `refresh`. Best effort: if that fails, the reconnect that
   * follows the server's close reports token_expired and the login form returns.
   */
  function refreshToken() {
    if (state.refreshing || !state.token || !state.user || !state.user.name) { return; }
    state.refreshing = true;
    var forToken = state.token;
    requestToken(state.user.name).then(function (r) {
      state.refreshing = false;
      if (r.error || state.token !== forToken) { return; }
      state.token = r.token;
      storageSet(KEYS.token, r.token);
      if (isConnected()) {
        emitWithAck("refresh", { token: r.token }, function () { /* best effort */ });
      }
    });
  }

  function startSession(token, user) {
    state.token = token;
    state.user = user;
    storageSet(KEYS.token, token);
    storageSet(KEYS.user, user);
    renderSession();
    renderRooms();
    renderConversation();
    connect();
  }

  // Drops the token and every trace of the session; back to the login form.
  function logout(message) {
    teardownSocket();
    if (state.cacheTimer) { window.clearTimeout(state.cacheTimer); state.cacheTimer = null; }
    state.token = null;
    state.user = null;
    state.instance = null;
    state.stats = null;
    state.rooms = new Map();
    state.current = null;
    state.lastIds = {};
    state.outbox = new Map();
    Object.keys(KEYS).forEach(function (k) { storageSet(KEYS[k], null); });
    el.clientsTotal.textContent = "–";
    el.replicaCount.textContent = "–";
    el.clientsLabel.textContent = "clients";
    el.replicasLabel.textContent = "replicas";
    el.replicas.replaceChildren();
    renderSession();
    renderRooms();
    renderConversation();
    setStatus(STATUS.OFFLINE);
    clearError();
    if (message) { showError(message, "login"); }
    el.username.focus();
  }

  // Restores a session from sessionStorage after a reload.
  function restore() {
    var token = storageGet(KEYS.token, null);
    if (typeof token !== "string" || !token) { return false; }
    state.token = token;
    var user = storageGet(KEYS.user, null);
    state.user = isObject(user) ? user : { id: null, name: "" };
    var lastIds = storageGet(KEYS.lastIds, {});
    state.lastIds = isObject(lastIds) ? lastIds : {};
    var rooms = storageGet(KEYS.rooms, []);
    var cache = storageGet(KEYS.cache, {});
    if (Array.isArray(rooms)) {
      rooms.forEach(function (name) {
        if (!validRoomName(name) || state.rooms.has(name)) { return; }
        var room = newRoom(name);
        room.everJoined = true;
        state.rooms.set(name, room);
        var cached = isObject(cache) && Array.isArray(cache[name]) ? cache[name] : [];
        cached.forEach(function (m) {
          if (validMessage(m) && m.room === name && !room.messages.has(m.id)) {
            room.messages.set(m.id, m);
            room.ids.push(m.id);
          }
        });
        room.ids.sort(function (a, b) { return a - b; });
      });
    }
    var outbox = storageGet(KEYS.outbox, []);
    if (Array.isArray(outbox)) {
      outbox.forEach(function (e) {
        if (!isObject(e) || typeof e.client_id !== "string" || !state.rooms.has(e.room)) { return; }
        state.outbox.set(e.client_id, {
          client_id: e.client_id, room: e.room, type: e.type || "text", body: e.body,
          created: e.created || Date.now(), failed: e.failed || null
        });
      });
    }
    var current = storageGet(KEYS.current, null);
    state.current = state.rooms.has(current) ? current : (state.rooms.size ? state.rooms.keys().next().value : null);
    renderSession();
    renderRooms();
    renderConversation();
    connect();
    return true;
  }

  // ------------------------------------------------------------------- wire up

  function init() {
    [
      ["status", "status"], ["statusDetail", "status-detail"], ["reconnectButton", "reconnect-button"],
      ["session", "session"], ["replica", "replica"], ["userName", "user-name"], ["userAvatar", "user-avatar"],
      ["logoutButton", "logout-button"], ["errorBar", "error-bar"], ["error", "error"],
      ["errorDismiss", "error-dismiss"], ["loginView", "login-view"], ["loginForm", "login-form"],
      ["username", "username"], ["loginButton", "login-button"], ["chatView", "chat-view"],
      ["joinForm", "join-form"], ["roomInput", "room-input"], ["joinButton", "join-button"],
      ["rooms", "rooms"], ["roomsEmpty", "rooms-empty"], ["clientsTotal", "clients-total"],
      ["replicaCount", "replica-count"], ["clientsLabel", "clients-label"], ["replicasLabel", "replicas-label"], ["replicas", "replicas"], ["roomTitle", "room-title"],
      ["roomMeta", "room-meta"], ["leaveButton", "leave-button"], ["scroller", "scroller"],
      ["notice", "notice"], ["emptyHint", "empty-hint"], ["messages", "messages"], ["outbox", "outbox"],
      ["sendForm", "send-form"], ["messageInput", "message-input"], ["sendButton", "send-button"]
    ].forEach(function (pair) { el[pair[0]] = $(pair[1]); });

    el.loginForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = el.username.value.trim();
      if (!NAME_RE.test(name)) {
        showError("Names are 1–32 characters: letters, digits, _ . -", "login");
        el.username.focus();
        return;
      }
      login(name);
    });

    el.logoutButton.addEventListener("click", function () { logout(); });
    el.errorDismiss.addEventListener("click", function () { clearError(); });
    el.reconnectButton.addEventListener("click", function () {
      if (state.socket) {
        setStatus(STATUS.CONNECTING);
        state.socket.connect();
      } else if (state.token) {
        connect();
      }
    });

    el.joinForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = el.roomInput.value.trim();
      if (!validRoomName(name)) {
        showError("Enter a room name (up to 64 characters).", "join");
        return;
      }
      clearError("join");
      joinRoom(name);
      selectRoom(name);
    });

    el.leaveButton.addEventListener("click", function () {
      if (state.current) { leaveRoom(state.current); }
    });

    el.sendForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      submitMessage();
    });

    el.messageInput.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submitMessage();
      }
    });
    el.messageInput.addEventListener("input", autoGrow);

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { markRead(); }
    });

    window.addEventListener("pagehide", function () {
      if (state.cacheTimer) { window.clearTimeout(state.cacheTimer); state.cacheTimer = null; }
      saveCache();
    });

    if (!restore()) {
      renderSession();
      renderRooms();
      renderConversation();
      setStatus(STATUS.OFFLINE);
      el.username.focus();
    }
  }

  function submitMessage() {
    var body = el.messageInput.value.trim();
    if (!body || !state.current) { return; }
    queueMessage(state.current, "text", body);
    el.messageInput.value = "";
    autoGrow();
    el.messageInput.focus();
  }

  // Grow the textarea with its content (by rows: no inline style needed).
  function autoGrow() {
    var lines = el.messageInput.value.split("\n").length;
    el.messageInput.rows = Math.max(1, Math.min(6, lines));
  }

  // A tiny extension point for other message types (image, file, location, …).
  window.RealtimeDemo = {
    registerRenderer: function (type, fn) {
      if (typeof type === "string" && typeof fn === "function") {
        renderers[type] = fn;
        if (state.current) { renderMessages(); }
      }
    }
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
