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
  var TYPING_REPEAT_MS = 2500;     // repeat `typing: true` this often while typing goes on
  var TYPING_IDLE_MS = 4000;       // `typing: false` after this long without a keystroke
  var TYPING_EXPIRES_MS = 6000;    // when an incoming `typing` has no usable expires_in
  var TYPING_EXPIRES_MAX_MS = 60000;
  var TYPING_BUDGET = 20;          // typing events per TYPING_BUDGET_WINDOW_MS at most
  var TYPING_BUDGET_WINDOW_MS = 10000;
  var READ_DELAY_MS = 1000;        // `read` at most about once a second (limit: 120/minute)
  var GEO_TIMEOUT_MS = 10000;
  var DROP_MAX_FILES = 5;          // files uploaded from one drop or paste
  var LABEL_MAX = 200;
  var ACCURACY_MAX = 10000000;     // metres, the server's bound
  var OSM = "https://www.openstreetmap.org/";
  var STICKY_COOKIE = "realtime_sticky";   // nginx/nginx.conf hashes it when present

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
    lastIds: {},           // room -> {epoch, id}: highest message id seen, in the history `epoch` names
    outbox: new Map(),     // client_id -> {client_id, room, type, body, created, failed}
    sending: null,         // client_id of the outbox entry awaiting its ack
    sendSeq: 0,
    sendPausedUntil: 0,    // after a rate_limited ack
    pumpTimer: null,
    retryTimer: null,      // manual reconnect after a server refusal (rate_limited)
    retryAttempt: 0,
    refreshing: false,
    errorSource: null,
    cacheTimer: null,
    names: new Map(),      // user id -> display name, learned from any payload carrying {id, name}
    typingRoom: null,      // room where this user is announced as typing
    typingSentAt: 0,       // when `typing: true` last went out
    typingIdleTimer: null,
    busy: new Map(),       // key -> text of a running upload or location lookup
    busySeq: 0,
    stick: true            // the message list is scrolled to the bottom (keep it there)
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
    },

    // body: {url, name, mime, size}; a preview that opens the full image in a new tab.
    image: function (msg) {
      var b = msg.body;
      var url = isObject(b) ? safeUrl(b.url, true) : null;   // img-src 'self': only our own uploads
      if (!url) { return null; }
      var name = typeof b.name === "string" && b.name ? b.name : "image";
      var fig = createEl("figure", "body body-image attachment");
      var link = createEl("a", "image-link");
      link.setAttribute("href", url);
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer");
      link.setAttribute("title", "Open " + name + " in a new tab");
      var img = createEl("img", "image-preview");
      img.setAttribute("alt", name);
      img.setAttribute("decoding", "async");
      img.addEventListener("load", keepAtBottom);
      img.addEventListener("error", function () {
        // A confined upload under another private prefix: fetch it once with the token.
        if (img.getAttribute("src") !== url || confinedRoom(msg.room)) { fig.classList.add("broken"); return; }
        showWithToken(url, img, link, function () { fig.classList.add("broken"); });
      });
      link.appendChild(img);
      if (confinedRoom(msg.room)) {
        showWithToken(url, img, link, function () { fig.classList.add("broken"); });
      } else {
        img.setAttribute("src", url);
      }
      fig.appendChild(link);
      var cap = createEl("figcaption", "attachment-caption");
      cap.appendChild(createEl("span", "attachment-name", name));
      var size = formatBytes(b.size);
      if (size) { cap.appendChild(createEl("span", "attachment-size", size)); }
      fig.appendChild(cap);
      return fig;
    },

    // body: {url, name, mime, size}; a download link with its size and type.
    file: function (msg) {
      var b = msg.body;
      var url = isObject(b) ? safeUrl(b.url, false) : null;
      if (!url) { return null; }
      var name = typeof b.name === "string" && b.name ? b.name : "file";
      var box = createEl("div", "body body-file attachment");
      box.appendChild(createEl("span", "file-icon", fileBadge(name, b.mime)));
      var info = createEl("div", "file-info");
      var link = createEl("a", "file-link", name);
      link.setAttribute("href", url);
      link.setAttribute("download", name);
      link.setAttribute("rel", "noopener noreferrer");
      link.setAttribute("title", "Download " + name);
      if (confinedRoom(msg.room)) {
        // Served only with the token: fetched on the first click, then a blob: URL.
        link.addEventListener("click", function (ev) {
          if (link.getAttribute("href") !== url) { return; }
          ev.preventDefault();
          uploadBlobUrl(url).then(function (blobUrl) {
            link.setAttribute("href", blobUrl);
            link.click();
          }, function () { showError("Could not download “" + name + "”.", "upload"); });
        });
      }
      info.appendChild(link);
      var meta = [formatBytes(b.size), typeof b.mime === "string" ? b.mime : ""].filter(Boolean).join(" · ");
      info.appendChild(createEl("span", "file-meta", meta));
      box.appendChild(info);
      return box;
    },

    // body: {lat, lng, accuracy?, label?}; coordinates and an OpenStreetMap link.
    location: function (msg) {
      var b = msg.body;
      if (!isObject(b)) { return null; }
      var lat = typeof b.lat === "number" ? b.lat : NaN;
      var lng = typeof b.lng === "number" ? b.lng : NaN;
      if (!(isFinite(lat) && isFinite(lng) && Math.abs(lat) <= 90 && Math.abs(lng) <= 180)) { return null; }
      var la = lat.toFixed(5), lo = lng.toFixed(5);
      var box = createEl("div", "body body-location");
      box.setAttribute("data-lat", la);
      box.setAttribute("data-lng", lo);
      var icon = createEl("span", "location-icon");
      icon.appendChild(pinIcon());
      box.appendChild(icon);
      var info = createEl("div", "location-info");
      if (typeof b.label === "string" && b.label) {
        info.appendChild(createEl("span", "location-label", b.label));
      }
      var line = createEl("span", "location-line");
      line.appendChild(createEl("span", "location-coords", la + ", " + lo));
      if (typeof b.accuracy === "number" && isFinite(b.accuracy) && b.accuracy >= 0) {
        line.appendChild(createEl("span", "location-accuracy", "±" + formatDistance(b.accuracy)));
      }
      info.appendChild(line);
      var link = createEl("a", "location-link", "open map");
      link.setAttribute("href", OSM + "?mlat=" + la + "&mlon=" + lo + "#map=16/" + la + "/" + lo);
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer");
      link.setAttribute("title", "Open this location on OpenStreetMap (new tab)");
      info.appendChild(link);
      box.appendChild(info);
      return box;
    }
  };

  // A map pin drawn as SVG (an emoji would depend on the system's fonts).
  function pinIcon() {
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    [["viewBox", "0 0 24 24"], ["width", "18"], ["height", "18"], ["fill", "none"], ["stroke", "currentColor"],
      ["stroke-width", "2"], ["stroke-linecap", "round"], ["stroke-linejoin", "round"], ["aria-hidden", "true"],
      ["focusable", "false"]].forEach(function (a) { svg.setAttribute(a[0], a[1]); });
    var path = document.createElementNS(NS, "path");
    path.setAttribute("d", "M21 10c0 7-9 13-9 13s-9-6-9-13a9 9 0 0 1 18 0z");
    var dot = document.createElementNS(NS, "circle");
    dot.setAttribute("cx", "12");
    dot.setAttribute("cy", "10");
    dot.setAttribute("r", "3");
    svg.appendChild(path);
    svg.appendChild(dot);
    return svg;
  }

  // An http(s) URL from a message body, or null; `sameOrigin` for what the page embeds.
  /*
   * Uploads of private rooms and direct-message rooms are served only to members, with
   * their token in `Authorization` (docs/api.md): they are fetched with it and shown
   * through a blob: URL, one per upload for the page's life. Public rooms' uploads
   * are plain URLs. "private-" is the server's default private prefix; an image of a
   * room under another prefix is fetched with the token once its plain URL fails.
   */
  var uploadBlobs = new Map();   // upload URL -> Promise of its blob: URL

  function confinedRoom(name) {
    return isDmRoom(name) || (typeof name === "string" && name.indexOf("private-") === 0);
  }

  function uploadBlobUrl(url) {
    if (uploadBlobs.has(url)) { return uploadBlobs.get(url); }
    var loading = fetch(url, {
      headers: { "Authorization": "Bearer " + state.token },
      credentials: "same-origin"
    }).then(function (res) {
      if (!res.ok) { throw new Error("HTTP " + res.status); }
      return res.blob();
    }).then(function (blob) { return URL.createObjectURL(blob); });
    loading.catch(function () { uploadBlobs.delete(url); });   // a later render tries again
    uploadBlobs.set(url, loading);
    return loading;
  }

  function showWithToken(url, img, link, failed) {
    uploadBlobUrl(url).then(function (blobUrl) {
      img.setAttribute("src", blobUrl);
      link.setAttribute("href", blobUrl);
    }, failed);
  }

  function safeUrl(raw, sameOrigin) {
    if (typeof raw !== "string" || !raw) { return null; }
    var u;
    try { u = new URL(raw, window.location.href); } catch (e) { return null; }
    if (u.protocol !== "http:" && u.protocol !== "https:") { return null; }
    if (sameOrigin && u.origin !== window.location.origin) { return null; }
    return u.href;
  }

  function formatBytes(n) {
    if (typeof n !== "number" || !isFinite(n) || n < 0) { return ""; }
    if (n < 1024) { return n + " B"; }
    var units = ["KB", "MB", "GB", "TB"];
    var v = n, i = -1;
    do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
    return (v < 10 ? v.toFixed(1) : String(Math.round(v))) + " " + units[i];
  }

  function formatDistance(m) {
    if (m < 1000) { return Math.round(m) + " m"; }
    var km = m / 1000;
    return (km < 10 ? km.toFixed(1) : String(Math.round(km))) + " km";
  }

  // A short tag for the file icon: the extension, else the mime subtype.
  function fileBadge(name, mime) {
    var dot = name.lastIndexOf(".");
    var ext = dot > 0 ? name.slice(dot + 1) : (typeof mime === "string" ? mime.split("/").pop() : "");
    ext = ext.replace(/[^A-Za-z0-9]/g, "").slice(0, 4).toUpperCase();
    return ext || "FILE";
  }

  // A safe token of a message type for class names ("message-image", ...).
  function typeToken(type) {
    return typeof type === "string" && /^[a-z0-9_-]{1,32}$/.test(type) ? type : "unknown";
  }

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
      joinLive: [],          // ids of others' live messages counted while a join was under way
      online: null,          // number, or null when unknown
      onlineUsers: null,     // Map user id -> name when the server sends a list
      reads: new Map(),      // user id -> last-read message id (others and this user)
      myRead: 0,             // this user's last-read id, as the server knows it
      typers: new Map(),     // user id -> {name, timer}: who is typing here now
      epoch: null,           // the server's name for the history our ids count in (null: unknown)
      wasReset: false,       // the last join found that history gone (the server lost its data)
      truncated: false
    };
  }

  function saveRooms() {
    storageSet(KEYS.rooms, Array.from(state.rooms.keys()));
    storageSet(KEYS.current, state.current);
  }

  function saveLastIds() { storageSet(KEYS.lastIds, state.lastIds); }

  function epochOf(value) { return typeof value === "string" && value ? value : null; }

  // The last id seen in a room and its epoch; an older build stored the bare id (no epoch).
  function lastSeen(name) {
    var v = state.lastIds[name];
    if (typeof v === "number" && isFinite(v)) { return { epoch: null, id: v }; }
    if (isObject(v) && typeof v.id === "number" && isFinite(v.id)) { return { epoch: epochOf(v.epoch), id: v.id }; }
    return null;
  }

  // Remember id `id` of history `epoch` as seen in a room, unless a later one of it is known.
  function noteSeen(name, epoch, id) {
    var last = lastSeen(name);
    var next;
    if (!last) {
      next = { epoch: epoch, id: id };
    } else if (epoch === null || last.epoch === null || last.epoch === epoch) {
      next = { epoch: epoch || last.epoch, id: Math.max(last.id, id) };
    } else {
      next = { epoch: epoch, id: id };   // another history: its ids start over
    }
    if (!last || next.epoch !== last.epoch || next.id !== last.id || typeof state.lastIds[name] === "number") {
      state.lastIds[name] = next;
      saveLastIds();
    }
  }

  /*
   * The server names the history a room's ids count in (its epoch). When that changes, the
   * server lost the room's messages and ids started again from 1: what we hold under the same
   * ids is another history, so it is forgotten rather than taken for the new messages.
   */
  function adoptEpoch(room, epoch) {
    if (epoch === null) { return; }
    if (room.epoch !== null && room.epoch !== epoch) { resetRoomHistory(room); }
    room.epoch = epoch;
    var last = lastSeen(room.name);
    if (last && last.epoch === null) { noteSeen(room.name, epoch, last.id); }
  }

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
    if (state.typingRoom && state.typingRoom !== name) { stopTyping(); }
    // What was on screen in the room we leave counts as read (markRead waits a little).
    if (state.current && state.current !== name) { sendRead(state.rooms.get(state.current)); }
    state.current = name;
    if (name) { state.rooms.get(name).unread = 0; }
    closeLocationForm();
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

  // The private room of this user and `uid` (ids sort as the server sorts them: ASCII).
  function dmRoomWith(uid) {
    var me = String(state.user.id), peer = String(uid);
    return me < peer ? "dm:" + me + ":" + peer : "dm:" + peer + ":" + me;
  }

  // Opens (and joins, for recovery) the private conversation with another user.
  function openDm(uid) {
    if (!state.user || state.user.id === null || state.user.id === undefined || isMe(uid)) { return; }
    var name = dmRoomWith(uid);
    joinRoom(name);
    selectRoom(name);
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
    var seen = lastSeen(name);
    if (seen) {
      payload.since = seen.id;
      if (seen.epoch) { payload.epoch = seen.epoch; }   // ids mean something only with it
    }

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
      room.wasReset = ack.reset === true;
      if (room.wasReset && room.epoch !== epochOf(ack.epoch)) {
        // The server lost the history we knew: `missed` is its new one, shown from scratch
        // (unless a live message of the new one got here first and did so already).
        resetRoomHistory(room);
      }
      adoptEpoch(room, epochOf(ack.epoch));
      var missed = Array.isArray(ack.missed) ? ack.missed : [];
      var serverUnread = typeof ack.unread === "number" && isFinite(ack.unread) && ack.unread >= 0;
      mergeBatch(room, missed, !serverUnread);
      setOnline(room, ack.online);
      setReads(room, ack.reads);
      if (serverUnread) { setUnreadFromJoin(room, ack.unread); }
      room.joinLive = [];
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

  /*
   * Adds a batch (missed, history). The join ack's `unread` already counts
   * everything up to the join, so a batch adds to the unread count only when
   * the server gave none (`count`).
   */
  function mergeBatch(room, list, count) {
    var fresh = 0;
    list.forEach(function (m) {
      if (addMessage(m, { silent: true }) && !isOwn(m)) { fresh++; }
    });
    if (count && fresh && room.name !== state.current) {
      room.unread += fresh;
      renderRooms();
    }
    if (room.name === state.current) { refreshSeen(room); }
  }

  /*
   * The join ack's `unread` counts retained messages after this user's last
   * read, up to the join. Live messages counted while the join was under way
   * are kept only when they came after what the ack covers (ids are contiguous,
   * so that is the last-read id + unread).
   */
  function setUnreadFromJoin(room, unread) {
    if (room.name === state.current && pageActive()) {
      room.unread = 0;
      return;
    }
    var covered = room.myRead + unread;
    var later = room.joinLive.filter(function (id) { return id > covered; }).length;
    room.unread = unread + later;
  }

  function setReads(room, reads) {
    if (!isObject(reads)) { return; }
    room.reads = new Map();
    Object.keys(reads).forEach(function (uid) {
      var id = reads[uid];
      if (typeof id !== "number" || !isFinite(id)) { return; }
      if (isMe(uid)) {
        room.myRead = Math.max(room.myRead, id);
        if (room.readSent === undefined || room.readSent < id) { room.readSent = id; }
      }
      room.reads.set(String(uid), id);
    });
    if (room.name === state.current) { refreshSeen(room); }
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
      mergeBatch(room, ack.messages, false);
      if (ack.messages.length >= HISTORY_PAGE) { catchUp(name, maxId(ack.messages), pages - 1); }
    });
  }

  // Recent messages of a room, merged like any others. Optional: failures are quiet.
  function loadHistory(name) {
    if (!isConnected()) { return; }
    emitWithAck("history", { room: name, limit: HISTORY_PAGE }, function (err, ack) {
      var room = state.rooms.get(name);
      if (err || !room || !isObject(ack) || ack.ok !== true || !Array.isArray(ack.messages)) { return; }
      mergeBatch(room, ack.messages, false);
    });
  }

  function removeRoom(name) {
    var gone = state.rooms.get(name);
    if (gone) { clearTypers(gone); }
    if (state.typingRoom === name) { stopTyping(); }
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
      room.onlineUsers = new Map();
      online.forEach(function (u) {
        if (isObject(u) && u.id !== undefined && u.id !== null) {
          rememberName(u);
          room.onlineUsers.set(String(u.id), nameOf(u.id));
        } else if (typeof u === "string") {
          room.onlineUsers.set(u, nameOf(u));
        }
      });
      room.online = room.onlineUsers.size;
    } else if (typeof online === "number" && isFinite(online)) {
      room.onlineUsers = null;
      room.online = online;
    }
    if (room.name === state.current) { renderOnline(); }
  }

  // The page is on screen and has the focus: what the user sees counts as read.
  function pageActive() {
    if (document.hidden) { return false; }
    return typeof document.hasFocus !== "function" || document.hasFocus();
  }

  /*
   * Tell the server how far this user has read the room on screen: the newest
   * message, once the room is selected, joined, and the page visible and focused
   * (best effort; called again on focus and visibility changes).
   */
  var readTimer = null;
  function markRead() {
    if (readTimer) { return; }
    readTimer = window.setTimeout(function () {
      readTimer = null;
      sendRead(state.current ? state.rooms.get(state.current) : null);
    }, READ_DELAY_MS);
  }

  // `read` of the room's newest message, unless the server already has it.
  function sendRead(room) {
    if (!room || !room.joined || !isConnected() || !pageActive() || !room.ids.length) { return; }
    var newest = room.ids[room.ids.length - 1];
    if (room.readSent !== undefined && room.readSent >= newest) { return; }
    room.readSent = newest;
    emitWithAck("read", { room: room.name, message_id: newest }, function (err, ack) {
      if (err || !isObject(ack) || ack.ok !== true) {
        // Lost or refused (e.g. rate limited): allow another try on the next change.
        if (room.readSent === newest) { room.readSent = room.myRead; }
        return;
      }
      if (typeof ack.message_id === "number") { room.myRead = Math.max(room.myRead, ack.message_id); }
    });
  }

  // Back on the page: the selected room counts as read.
  function onPageActive() {
    if (!pageActive()) { return; }
    var room = state.current ? state.rooms.get(state.current) : null;
    if (room && room.unread) {
      room.unread = 0;
      renderRooms();
    }
    markRead();
  }

  // ---------------------------------------------------------------- messages

  function isOwn(msg) {
    return !!(state.user && isObject(msg.from) && String(msg.from.id) === String(state.user.id));
  }

  function isMe(uid) {
    return !!(state.user && state.user.id !== null && state.user.id !== undefined &&
      String(uid) === String(state.user.id));
  }

  // Remembers a {id, name} user's display name (the reads map carries only ids).
  function rememberName(u) {
    if (!isObject(u) || u.id === undefined || u.id === null) { return; }
    var name = typeof u.name === "string" && u.name ? u.name : String(u.id);
    state.names.set(String(u.id), name);
  }

  function nameOf(uid) {
    return state.names.get(String(uid)) || String(uid);
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
    room.epoch = null;
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

    var epoch = epochOf(m.epoch);
    if (epoch !== null && room.epoch !== null && epoch !== room.epoch) {
      // A message of another history: the server lost this room's messages, ids start over.
      resetRoomHistory(room);
    }
    var known = room.messages.get(m.id);
    if (known) {
      if (sameMessage(known, m)) { return false; }
      // Same id, different message: the server's history for this room was reset
      // (e.g. a server without epochs restarted). Forget what we had for the room.
      resetRoomHistory(room);
    }
    if (epoch !== null) { room.epoch = epoch; }
    var pos = upperBound(room.ids, m.id);
    room.ids.splice(pos, 0, m.id);
    room.messages.set(m.id, m);
    rememberName(m.from);
    // Whoever just sent a message is not typing it any more.
    if (!opts.silent && isObject(m.from) && room.typers.has(String(m.from.id))) {
      dropTyper(room, String(m.from.id));
    }

    // Trim what is kept in memory to a generous bound.
    if (room.ids.length > CACHE_PER_ROOM * 5) {
      var drop = room.ids.splice(0, room.ids.length - CACHE_PER_ROOM * 5);
      drop.forEach(function (id) { room.messages.delete(id); });
      if (m.room === state.current) { renderMessages(); }
    }

    noteSeen(m.room, epoch, m.id);
    scheduleCacheSave();

    var counts = !opts.silent && !isOwn(m);
    if (counts && room.joining) { room.joinLive.push(m.id); }
    if (m.room === state.current) {
      insertMessageNode(m);
      if (counts && !pageActive()) {
        // On screen but nobody looking (hidden tab, other window): unread until they come back.
        room.unread += 1;
        renderTitle();
      }
      markRead();
    } else if (counts) {
      room.unread += 1;
      renderRooms();
    }
    return true;
  }

  function messageNode(m) {
    var type = typeToken(m.type);
    var li = createEl("li", "message message-" + type + (isOwn(m) ? " own" : ""));
    li.setAttribute("data-id", String(m.id));
    li.setAttribute("data-room", m.room);
    li.setAttribute("data-type", type);
    if (isObject(m.from) && m.from.id !== undefined && m.from.id !== null) {
      li.setAttribute("data-from", String(m.from.id));
    }

    var meta = createEl("div", "meta");
    var fromName = isObject(m.from) && m.from.name !== undefined ? m.from.name : (isObject(m.from) ? m.from.id : "unknown");
    meta.appendChild(createEl("span", "from", fromName));
    // A server sent it (the server API or the emitter), not a user: say so, as text only.
    if (m.via === "api" || m.via === "emitter") {
      var via = createEl("span", "via", m.via === "api" ? "server API" : "emitter");
      via.title = "sent by a server, not by a user";
      meta.appendChild(via);
    }
    var time = createEl("time", "time", formatTime(m.ts));
    var d = new Date(m.ts);
    if (!isNaN(d.getTime())) {
      time.setAttribute("datetime", d.toISOString());
      time.title = d.toLocaleString();
    }
    meta.appendChild(time);

    li.appendChild(meta);
    li.appendChild(renderBody(m));
    var room = state.rooms.get(m.room);
    var seen = room ? seenNode(room, m) : null;
    if (seen) { li.appendChild(seen); }
    return li;
  }

  /*
   * "seen by Ana, Bo" under the message that is exactly each other user's
   * last-read one (from the join ack's `reads`, then live `read` events). Not
   * for this user, and not for the author of that message (they wrote it).
   */
  function seenNode(room, m) {
    var author = isObject(m.from) && m.from.id !== undefined && m.from.id !== null ? String(m.from.id) : null;
    var ids = [];
    room.reads.forEach(function (readId, uid) {
      if (readId === m.id && !isMe(uid) && uid !== author) { ids.push(uid); }
    });
    if (!ids.length) { return null; }
    ids.sort(function (a, b) { return nameOf(a).localeCompare(nameOf(b)); });
    var names = ids.map(nameOf);
    var p = createEl("p", "seen-by", "seen by " + names.join(", "));
    p.setAttribute("data-users", ids.join(" "));
    p.setAttribute("title", "Read up to here by " + names.join(", "));
    return p;
  }

  // Re-renders the "seen by" lines of the given message ids (all when omitted).
  function refreshSeen(room, ids) {
    if (!room || room.name !== state.current) { return; }
    var nodes = ids ? ids.filter(function (id) { return typeof id === "number"; }).map(function (id) {
      return el.messages.querySelector('.message[data-id="' + String(id) + '"]');
    }) : Array.prototype.slice.call(el.messages.children);
    var stick = nearBottom();
    nodes.forEach(function (li) {
      if (!li) { return; }
      var m = room.messages.get(Number(li.getAttribute("data-id")));
      var old = li.querySelector(":scope > .seen-by");
      var fresh = m ? seenNode(room, m) : null;
      if (old && fresh) { li.replaceChild(fresh, old); }
      else if (old) { li.removeChild(old); }
      else if (fresh) { li.appendChild(fresh); }
    });
    if (stick) { scrollToBottom(); }
  }

  function nearBottom() {
    var s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
    state.stick = true;
  }

  // Content grew after it was placed (an image loaded): stay at the bottom if we were there.
  function keepAtBottom() {
    if (state.stick) { el.scroller.scrollTop = el.scroller.scrollHeight; }
  }

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
    var type = typeToken(entry.type);
    var li = createEl("li", "pending" + (entry.failed ? " failed" : ""));
    li.setAttribute("data-client-id", entry.client_id);
    li.setAttribute("data-room", entry.room);
    li.setAttribute("data-type", type);

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
      var shown = name !== state.current ? room.unread : 0;
      li.setAttribute("data-unread", String(shown));
      // One clean name for assistive technology: "#lobby", "@ana, 2 unread".
      btn.setAttribute("aria-label", roomLabel(name) + (shown > 0 ? ", " + shown + " unread" : ""));
      if (shown > 0) {
        var badge = createEl("span", "badge unread-badge", shown > 99 ? "99+" : shown);
        badge.setAttribute("aria-label", shown + " unread");
        btn.appendChild(badge);
      }
      btn.addEventListener("click", function () { selectRoom(name); });
      li.appendChild(btn);
      frag.appendChild(li);
    });
    el.rooms.replaceChildren(frag);
    el.roomsEmpty.hidden = state.rooms.size > 0;
    renderTitle();
  }

  // "(3) realtime · demo chat": everything unread, the selected room too while the page is away.
  var BASE_TITLE = document.title;
  function renderTitle() {
    var total = 0;
    state.rooms.forEach(function (room) { total += room.unread; });
    document.title = total > 0 ? "(" + (total > 99 ? "99+" : total) + ") " + BASE_TITLE : BASE_TITLE;
  }

  // Who is online in the selected room: a dot and a name each, this user first.
  function renderOnline() {
    var room = state.current ? state.rooms.get(state.current) : null;
    el.onlineHeading.textContent = room ? "Online in " + roomLabel(room.name) : "Online";
    var frag = document.createDocumentFragment();
    var known = !!(room && room.joined && isConnected() && room.onlineUsers);
    var count = 0;
    if (known) {
      var ids = Array.from(room.onlineUsers.keys());
      ids.sort(function (a, b) {
        if (isMe(a) !== isMe(b)) { return isMe(a) ? -1 : 1; }
        return nameOf(a).localeCompare(nameOf(b));
      });
      ids.forEach(function (uid) {
        var li = createEl("li", "online-user" + (isMe(uid) ? " me" : ""));
        li.setAttribute("data-user", uid);
        li.appendChild(createEl("span", "presence-dot"));
        li.appendChild(createEl("span", "online-name", room.onlineUsers.get(uid) || nameOf(uid)));
        if (isMe(uid)) {
          li.appendChild(createEl("span", "online-you", "you"));
        } else {
          var dm = createEl("button", "btn btn-ghost btn-small online-dm", "message");
          dm.type = "button";
          dm.setAttribute("aria-label", "Message " + (room.onlineUsers.get(uid) || nameOf(uid)) + " privately");
          dm.addEventListener("click", function () { openDm(uid); });
          li.appendChild(dm);
        }
        frag.appendChild(li);
      });
      count = ids.length;
    }
    el.online.replaceChildren(frag);
    el.online.setAttribute("data-count", String(count));
    el.online.setAttribute("data-room", room ? room.name : "");
    el.onlineEmpty.hidden = count > 0;
    el.onlineEmpty.textContent = !room ? "Join a room to see who is here." :
      (!isConnected() ? "Offline." : (known ? "Nobody here." : "…"));
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
    el.attachButton.disabled = !room;
    el.locationButton.disabled = !room || state.busy.has("geo");
    if (room && room.wasReset) {
      el.notice.textContent = "The server lost this room's earlier messages; showing the history it has now.";
      el.notice.hidden = false;
    } else if (room && room.truncated) {
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
    renderOnline();
    renderTyping();
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

  /*
   * nginx hashes the realtime_sticky cookie when a client sends one (else its
   * address): browsers behind one address (a NAT, a proxy) then spread over the
   * replicas. A random key per browser session, set before the first connect and
   * never changed while it lasts (the replica must stay the same for a session).
   */
  function ensureStickyCookie() {
    if (new RegExp("(?:^|;\\s*)" + STICKY_COOKIE + "=").test(document.cookie)) { return; }
    document.cookie = STICKY_COOKIE + "=" + newClientId() + "; path=/; SameSite=Lax" +
      (window.location.protocol === "https:" ? "; Secure" : "");
  }

  function connect() {
    teardownSocket();
    ensureStickyCookie();
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
    socket.on("typing", onTyping);
    socket.on("read", onRead);
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
    resetTyping();
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
    renderOnline();
  }

  function onDisconnect(reason) {
    state.rooms.forEach(function (room) {
      room.joined = false;
      room.joining = false;
      room.joinSeq++;
      room.onlineUsers = null;
      room.online = null;
    });
    state.sending = null;
    state.sendSeq++;
    // The server ends our typing when the connection goes; others' indicators are stale now.
    resetTyping();
    renderRooms();
    renderRoomHeader();
    renderOnline();
    renderTyping();
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
    rememberName(p.user);
    var uid = isObject(p.user) ? String(p.user.id) : String(p.user);
    if (room.onlineUsers) {
      if (p.online) { room.onlineUsers.set(uid, nameOf(uid)); } else { room.onlineUsers.delete(uid); }
      room.online = room.onlineUsers.size;
    } else if (typeof room.online === "number") {
      room.online = Math.max(0, room.online + (p.online ? 1 : -1));
    }
    // Gone from the room: not typing there any more either.
    if (!p.online && room.typers.has(uid)) { dropTyper(room, uid); }
    if (p.room === state.current) {
      renderRoomHeader();
      renderOnline();
    }
  }

  // `read {room, user, message_id}`: that user has read up to message_id.
  function onRead(r) {
    if (!isObject(r) || typeof r.room !== "string" || !isObject(r.user)) { return; }
    var room = state.rooms.get(r.room);
    var id = r.message_id;
    if (!room || typeof id !== "number" || !isFinite(id)) { return; }
    rememberName(r.user);
    var uid = String(r.user.id);
    var old = room.reads.get(uid);
    if (old !== undefined && id <= old) { return; }   // positions only move forward
    room.reads.set(uid, id);
    if (isMe(uid)) {
      // Read in another tab of ours: what comes after it is all that is left unread.
      room.myRead = Math.max(room.myRead, id);
      if (room.readSent === undefined || room.readSent < id) { room.readSent = id; }
      var newest = room.ids.length ? room.ids[room.ids.length - 1] : id;
      var left = Math.max(0, newest - id);
      if (room.unread > left) {
        room.unread = left;
        renderRooms();
      }
      return;
    }
    refreshSeen(room, [old, id]);
  }

  // ------------------------------------------------------------------ typing

  // `typing {room, user, typing, expires_in}` from another user (never shown for ourselves).
  function onTyping(t) {
    if (!isObject(t) || typeof t.room !== "string" || !isObject(t.user)) { return; }
    var room = state.rooms.get(t.room);
    if (!room) { return; }
    var uid = String(t.user.id);
    if (isMe(uid)) { return; }   // our other tabs
    rememberName(t.user);
    if (t.typing !== true) {
      dropTyper(room, uid);
      return;
    }
    var ms = typeof t.expires_in === "number" && isFinite(t.expires_in) && t.expires_in > 0 ?
      Math.min(t.expires_in, TYPING_EXPIRES_MAX_MS) : TYPING_EXPIRES_MS;
    var prev = room.typers.get(uid);
    if (prev) { window.clearTimeout(prev.timer); }
    var entry = { name: nameOf(uid), timer: 0 };
    entry.timer = window.setTimeout(function () {
      if (room.typers.get(uid) === entry) { dropTyper(room, uid); }
    }, ms);
    room.typers.set(uid, entry);
    if (t.room === state.current) { renderTyping(); }
  }

  function dropTyper(room, uid) {
    var entry = room.typers.get(uid);
    if (!entry) { return; }
    window.clearTimeout(entry.timer);
    room.typers.delete(uid);
    if (room.name === state.current) { renderTyping(); }
  }

  function clearTypers(room) {
    room.typers.forEach(function (entry) { window.clearTimeout(entry.timer); });
    room.typers.clear();
  }

  function typingText(names) {
    if (names.length === 1) { return names[0] + " is typing…"; }
    if (names.length === 2) { return names[0] + " and " + names[1] + " are typing…"; }
    return names.length + " people are typing…";
  }

  function renderTyping() {
    var room = state.current ? state.rooms.get(state.current) : null;
    var ids = room ? Array.from(room.typers.keys()) : [];
    el.typing.setAttribute("data-count", String(ids.length));
    el.typing.setAttribute("data-users", ids.join(" "));
    el.typing.setAttribute("data-room", room ? room.name : "");
    el.typing.textContent = ids.length ? typingText(ids.map(function (uid) { return room.typers.get(uid).name; })) : "";
    el.typing.hidden = ids.length === 0;
  }

  /*
   * Typing events stay well under the server's limit (30 per 10 s by default):
   * refusals count towards its abuse limit, which cuts the connection off.
   * A dropped `typing: false` only leaves the indicator up until it expires.
   */
  var typingSent = [];
  function emitTyping(roomName, typing) {
    if (!isConnected()) { return; }
    var now = Date.now();
    typingSent = typingSent.filter(function (t) { return now - t < TYPING_BUDGET_WINDOW_MS; });
    if (typingSent.length >= TYPING_BUDGET) { return; }
    typingSent.push(now);
    emitWithAck("typing", { room: roomName, typing: typing }, function () { /* best effort */ });
  }

  /*
   * On every change of the message box: announce typing in the selected room,
   * repeated every TYPING_REPEAT_MS while it goes on (the server drops
   * indicators after their expires_in); an emptied box stops it, and so does
   * TYPING_IDLE_MS without a keystroke.
   */
  function noteTyping() {
    if (state.typingIdleTimer) {
      window.clearTimeout(state.typingIdleTimer);
      state.typingIdleTimer = null;
    }
    var room = state.current ? state.rooms.get(state.current) : null;
    if (!el.messageInput.value.trim() || !room || !room.joined || !isConnected()) {
      stopTyping();
      return;
    }
    if (state.typingRoom && state.typingRoom !== room.name) { stopTyping(); }
    var now = Date.now();
    if (state.typingRoom !== room.name || now - state.typingSentAt >= TYPING_REPEAT_MS) {
      state.typingRoom = room.name;
      state.typingSentAt = now;
      emitTyping(room.name, true);
    }
    state.typingIdleTimer = window.setTimeout(function () {
      state.typingIdleTimer = null;
      stopTyping();
    }, TYPING_IDLE_MS);
  }

  function stopTyping() {
    if (state.typingIdleTimer) {
      window.clearTimeout(state.typingIdleTimer);
      state.typingIdleTimer = null;
    }
    var name = state.typingRoom;
    state.typingRoom = null;
    state.typingSentAt = 0;
    var room = name ? state.rooms.get(name) : null;
    if (room && room.joined) { emitTyping(name, false); }
  }

  // After a disconnect: nothing to announce (the server ended it), nothing to show.
  function resetTyping() {
    if (state.typingIdleTimer) {
      window.clearTimeout(state.typingIdleTimer);
      state.typingIdleTimer = null;
    }
    state.typingRoom = null;
    state.typingSentAt = 0;
    state.rooms.forEach(clearTypers);
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
    state.names = new Map();
    closeLocationForm();
    document.title = BASE_TITLE;
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
        var seen = lastSeen(name);
        room.epoch = seen ? seen.epoch : null;
        state.rooms.set(name, room);
        var cached = isObject(cache) && Array.isArray(cache[name]) ? cache[name] : [];
        cached.forEach(function (m) {
          var other = room.epoch !== null && epochOf(m.epoch) !== null && epochOf(m.epoch) !== room.epoch;
          if (validMessage(m) && m.room === name && !other && !room.messages.has(m.id)) {
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

  // ---------------------------------------------------- attachments, location

  // A line above the composer for running uploads and location lookups.
  function setBusy(key, text) {
    if (text) { state.busy.set(key, text); } else { state.busy.delete(key); }
    var parts = Array.from(state.busy.values());
    el.composerStatus.textContent = parts.join(" · ");
    el.composerStatus.hidden = parts.length === 0;
    el.composerStatus.setAttribute("data-busy", String(parts.length));
    el.locationButton.disabled = !state.current || state.busy.has("geo");
  }

  function hasFiles(ev) {
    var dt = ev.dataTransfer;
    return !!(dt && dt.types && Array.prototype.indexOf.call(dt.types, "Files") >= 0);
  }

  function uploadFiles(list) {
    var files = Array.prototype.slice.call(list, 0, DROP_MAX_FILES);
    if (list.length > DROP_MAX_FILES) {
      showError("Only the first " + DROP_MAX_FILES + " files are sent.", "upload");
    }
    files.forEach(function (f) { uploadFile(f); });
  }

  /*
   * POST /api/uploads (multipart fields `room` and `file`, the user's token), then an
   * `image` message (mime image/*) or a `file` message whose body is the
   * upload's answer {url, name, mime, size}. The message goes to the room that
   * was selected when the upload started; refusals (too_large,
   * unsupported_media_type, ...) are shown with the server's message.
   */
  function uploadFile(file) {
    var roomName = state.current;
    if (!roomName || !state.token || !file) { return; }
    var key = "upload-" + (++state.busySeq);
    var label = file.name || "file";
    setBusy(key, "Uploading " + label + (file.size ? " (" + formatBytes(file.size) + ")" : "") + "…");
    var form = new FormData();
    form.append("room", roomName);   // the upload is only for this room (its members may fetch it)
    form.append("file", file, label);
    fetch("/api/uploads", {
      method: "POST",
      headers: { "Authorization": "Bearer " + state.token, "Accept": "application/json" },
      body: form,
      credentials: "same-origin"
    }).then(function (res) {
      return res.json().then(function (data) { return { res: res, data: data }; },
        function () { return { res: res, data: null }; });
    }).then(function (r) {
      setBusy(key, null);
      var d = r.data;
      if (!r.res.ok || !isObject(d) || typeof d.url !== "string" || typeof d.mime !== "string") {
        var why = r.res.status === 413 ? "the file is too large" : "HTTP " + r.res.status;
        showError("Could not upload “" + label + "”: " + errorMessage(d, why), "upload");
        return;
      }
      clearError("upload");
      if (!state.rooms.has(roomName)) { return; }   // left meanwhile
      // Exactly the four fields: the server refuses unknown ones.
      var body = { url: d.url, name: d.name, mime: d.mime, size: d.size };
      queueMessage(roomName, d.mime.indexOf("image/") === 0 ? "image" : "file", body);
    }, function () {
      setBusy(key, null);
      showError("Could not upload “" + label + "”: the server did not answer (is it too large?).", "upload");
    });
  }

  /*
   * The browser's position when it can give one (secure context, permission);
   * otherwise, or when it fails, a small form for latitude, longitude and label.
   */
  function shareLocation() {
    var roomName = state.current;
    if (!roomName || state.busy.has("geo")) { return; }
    var geo = window.isSecureContext !== false && navigator.geolocation;
    if (!geo) {
      openLocationForm("This browser cannot share its position here. Enter a location:");
      return;
    }
    closeLocationForm();
    setBusy("geo", "Finding your position…");
    geo.getCurrentPosition(function (pos) {
      setBusy("geo", null);
      if (!state.rooms.has(roomName)) { return; }
      var c = pos.coords;
      var body = { lat: c.latitude, lng: c.longitude };
      if (typeof c.accuracy === "number" && isFinite(c.accuracy) && c.accuracy >= 0) {
        body.accuracy = Math.min(ACCURACY_MAX, Math.round(c.accuracy * 10) / 10);
      }
      queueMessage(roomName, "location", body);
    }, function (err) {
      setBusy("geo", null);
      var why = err && err.code === 1 ? "permission denied" : (err && err.code === 3 ? "timed out" : "unavailable");
      openLocationForm("Your position is not available (" + why + "). Enter a location:");
    }, { enableHighAccuracy: false, timeout: GEO_TIMEOUT_MS, maximumAge: 60000 });
  }

  function openLocationForm(note) {
    el.locationNote.textContent = note || "Share a location";
    el.locationForm.hidden = false;
    el.locationLat.focus();
  }

  function closeLocationForm() {
    if (!el.locationForm || el.locationForm.hidden) { return; }
    el.locationForm.hidden = true;
    el.locationForm.reset();
  }

  function readCoordinate(input, limit, what) {
    var raw = input.value.trim().replace(",", ".");
    var v = raw === "" ? NaN : Number(raw);
    if (!isFinite(v) || Math.abs(v) > limit) {
      showError(what + " must be a number from -" + limit + " to " + limit + ".", "location");
      input.focus();
      return null;
    }
    return v;
  }

  function submitLocationForm() {
    var roomName = state.current;
    if (!roomName) { return; }
    var lat = readCoordinate(el.locationLat, 90, "Latitude");
    if (lat === null) { return; }
    var lng = readCoordinate(el.locationLng, 180, "Longitude");
    if (lng === null) { return; }
    // The server refuses control characters in a label; newlines and tabs become spaces.
    var label = el.locationLabel.value.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ").trim().slice(0, LABEL_MAX);
    var body = { lat: lat, lng: lng };
    if (label) { body.label = label; }
    clearError("location");
    closeLocationForm();
    queueMessage(roomName, "location", body);
    el.messageInput.focus();
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
      ["sendForm", "send-form"], ["messageInput", "message-input"], ["sendButton", "send-button"],
      ["onlineHeading", "online-heading"], ["online", "online"], ["onlineEmpty", "online-empty"],
      ["typing", "typing"], ["composerStatus", "composer-status"], ["attachButton", "attach-button"],
      ["fileInput", "file-input"], ["locationButton", "location-button"], ["locationForm", "location-form"],
      ["locationNote", "location-note"], ["locationLat", "location-lat"], ["locationLng", "location-lng"],
      ["locationLabel", "location-label"], ["locationCancel", "location-cancel"]
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
    el.messageInput.addEventListener("input", function () {
      autoGrow();
      noteTyping();
    });
    el.messageInput.addEventListener("paste", function (ev) {
      var files = ev.clipboardData && ev.clipboardData.files;
      if (files && files.length) {
        ev.preventDefault();
        uploadFiles(files);
      }
    });

    el.attachButton.addEventListener("click", function () {
      if (!state.current) { return; }
      el.fileInput.value = "";
      el.fileInput.click();
    });
    el.fileInput.addEventListener("change", function () {
      if (el.fileInput.files && el.fileInput.files.length) { uploadFiles(el.fileInput.files); }
      el.fileInput.value = "";
    });

    // Files dropped on the conversation are uploaded like attached ones.
    var conversation = el.scroller.parentNode;
    conversation.addEventListener("dragover", function (ev) {
      if (!state.current || !hasFiles(ev)) { return; }
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
      conversation.classList.add("drop-target");
    });
    conversation.addEventListener("dragleave", function (ev) {
      if (!conversation.contains(ev.relatedTarget)) { conversation.classList.remove("drop-target"); }
    });
    conversation.addEventListener("drop", function (ev) {
      conversation.classList.remove("drop-target");
      if (!state.current || !hasFiles(ev)) { return; }
      ev.preventDefault();
      uploadFiles(ev.dataTransfer.files);
    });

    el.locationButton.addEventListener("click", shareLocation);
    el.locationCancel.addEventListener("click", closeLocationForm);
    el.locationForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      submitLocationForm();
    });
    el.locationForm.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { closeLocationForm(); }
    });

    el.scroller.addEventListener("scroll", function () { state.stick = nearBottom(); }, { passive: true });

    document.addEventListener("visibilitychange", onPageActive);
    window.addEventListener("focus", onPageActive);

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
    stopTyping();
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
