/* realtime monitoring dashboard: plain JS, no build step, CSP-safe (no inline code).
 * Every server-provided string is rendered with textContent. */
(function () {
  "use strict";

  var TOKEN_KEY = "realtime.dashboard.token";
  var USER_KEY = "realtime.dashboard.user";   // display only
  var WINDOW_MS = 5 * 60 * 1000;   // chart window
  var MAX_POINTS = 400;            // ring buffer cap (~2 s cadence -> 150 points / 5 min)
  var STALE_MS = 10 * 1000;
  var SVG_NS = "http://www.w3.org/2000/svg";

  var ERROR_MESSAGES = {
    forbidden: "This account is not an admin. Sign in with an admin account.",
    auth_required: "Please sign in.",
    token_invalid: "Your session is invalid. Please sign in again.",
    token_expired: "Your session expired. Please sign in again."
  };

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    body: document.body,
    status: $("dash-status"),
    stale: $("dash-stale"),
    session: $("dash-session"),
    instance: $("dash-instance"),
    user: $("dash-user"),
    logout: $("dash-logout"),
    error: $("dash-error"),
    redisBanner: $("dash-redis-banner"),
    login: $("dash-login"),
    loginForm: $("dash-login-form"),
    username: $("dash-username"),
    loginButton: $("dash-login-button"),
    main: $("dash-main"),
    redis: $("dash-redis"),
    redisState: $("dash-redis-state"),
    redisMemory: $("dash-redis-memory"),
    redisError: $("dash-redis-error"),
    clientsTotal: $("dash-clients-total"),
    replicaCount: $("dash-replica-count"),
    goneCount: $("dash-gone-count"),
    whWaiting: $("dash-wh-waiting"),
    whInflight: $("dash-wh-inflight"),
    whDead: $("dash-wh-dead"),
    breakers: $("dash-breakers"),
    replicas: $("dash-replicas"),
    charts: $("dash-charts"),
    updated: $("dash-updated")
  };

  var socket = null;
  var series = [];           // [{time, clients, out, events}]
  var lastSeen = {};          // replica id -> last known replica object (to show gone replicas)
  var lastReceivedAt = 0;     // client clock, ms
  var loggedIn = false;

  // ------------------------------------------------------------------ helpers

  function storageGet(key) {
    try { return sessionStorage.getItem(key || TOKEN_KEY); } catch (e) { return null; }
  }
  function storageSet(v, key) {
    try {
      if (v) { sessionStorage.setItem(key || TOKEN_KEY, v); } else { sessionStorage.removeItem(key || TOKEN_KEY); }
    } catch (e) { /* storage unavailable: keep working in memory */ }
  }

  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmtInt(v) { return isNum(v) ? String(Math.round(v)) : "–"; }
  function fmtRate(v) { return isNum(v) ? (Math.round(v * 10) / 10).toFixed(1) : "–"; }
  function fmtMB(bytes) { return isNum(bytes) ? (bytes / 1048576).toFixed(1) + " MB" : "–"; }

  function fmtUptime(s) {
    if (!isNum(s) || s < 0) { return "–"; }
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d > 0) { return d + "d " + h + "h"; }
    if (h > 0) { return h + "h " + m + "m"; }
    if (m > 0) { return m + "m " + sec + "s"; }
    return sec + "s";
  }

  function setText(node, text) { node.textContent = text == null ? "" : String(text); }

  function showError(msg) {
    if (msg) { setText(el.error, msg); el.error.hidden = false; }
    else { el.error.textContent = ""; el.error.hidden = true; }
  }

  function setStatus(state) {
    el.body.setAttribute("data-connection", state);
    el.status.setAttribute("data-state", state);
    setText(el.status, state);
  }

  // ------------------------------------------------------------------ views

  function showLogin(message) {
    loggedIn = false;
    el.body.classList.remove("logged-in");
    el.main.hidden = true;
    el.session.hidden = true;
    el.stale.hidden = true;
    el.redisBanner.hidden = true;
    el.login.hidden = false;
    el.loginButton.disabled = false;
    showError(message || "");
    try { el.username.focus(); } catch (e) { /* ignore */ }
  }

  function showDashboard(userName) {
    loggedIn = true;
    el.body.classList.add("logged-in");
    el.login.hidden = true;
    el.main.hidden = false;
    el.session.hidden = false;
    setText(el.user, userName || "–");
  }

  // ------------------------------------------------------------------ auth

  function tokenFromHash() {
    var m = /^#token=(.+)$/.exec(window.location.hash || "");
    if (!m) { return null; }
    try { window.history.replaceState(null, "", window.location.pathname + window.location.search); }
    catch (e) { /* ignore */ }
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }

  function userFromToken(token) {
    // Best effort display name from a JWT payload; never trusted for anything.
    try {
      var part = token.split(".")[1];
      if (!part) { return null; }
      var json = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/")));
      return json.name || json.username || json.sub || null;
    } catch (e) { return null; }
  }

  function login(name) {
    el.loginButton.disabled = true;
    showError("");
    fetch("/api/auth/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: name }),
      credentials: "same-origin"
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (!res.ok || !data || typeof data.access_token !== "string") {
          var err = data && data.error;
          var msg = (err && typeof err === "object" && err.message) || (typeof err === "string" && err) ||
            (data && data.message) || ("Sign-in failed (HTTP " + res.status + ")");
          throw new Error(String(msg));
        }
        return data;
      });
    }).then(function (data) {
      storageSet(data.access_token);
      var u = data.user || {};
      var display = String(u.name || u.username || u.id || name);
      storageSet(display, USER_KEY);
      connect(data.access_token, display);
    }).catch(function (e) {
      el.loginButton.disabled = false;
      showError(e && e.message ? e.message : "Sign-in failed");
    });
  }

  function logout() {
    storageSet(null);
    storageSet(null, USER_KEY);
    disconnect();
    setStatus("offline");
    showLogin("");
  }

  // ------------------------------------------------------------------ socket

  function disconnect() {
    if (socket) {
      socket.removeAllListeners();
      if (socket.io) { socket.io.removeAllListeners(); }
      socket.disconnect();
      socket = null;
    }
  }

  function requestSnapshot() {
    if (!socket) { return; }
    var s = socket;
    s.timeout(5000).emit("snapshot", {}, function (err, res) {
      if (s !== socket) { return; }
      if (err) { return; }   // timed out; the periodic push will catch up
      if (res && res.ok && res.snapshot) { onSnapshot(res.snapshot); }
      else if (res && res.error) {
        showError("Snapshot failed: " + String(res.error.message || res.error.code || res.error));
      }
    });
  }

  function connect(token, userName) {
    disconnect();
    if (typeof window.io !== "function") {
      showLogin("The Socket.IO client failed to load.");
      return;
    }
    showDashboard(userName || userFromToken(token));
    setStatus("connecting");
    lastReceivedAt = Date.now();

    socket = window.io("/admin", { auth: { token: token } });

    socket.on("connect", function () {
      setStatus("connected");
      showError("");
      requestSnapshot();
    });

    socket.on("connect_error", function (err) {
      var code = err && err.data && err.data.code;
      if (code) {
        // Authentication / authorization problem: retrying will not help.
        storageSet(null);
        storageSet(null, USER_KEY);
        disconnect();
        setStatus("offline");
        var detail = err.data && typeof err.data.message === "string" ? err.data.message : "";
        showLogin(ERROR_MESSAGES[code] || detail || ("Connection refused: " + String(code)));
        return;
      }
      // Transport error: socket.io keeps retrying while socket.active.
      setStatus(socket && socket.active ? "reconnecting" : "offline");
    });

    socket.on("disconnect", function (reason) {
      if (reason === "io server disconnect") {
        setStatus("offline");
        showError("Disconnected by the server.");
        return;
      }
      setStatus(socket && socket.active ? "reconnecting" : "offline");
    });

    socket.io.on("reconnect_attempt", function () { setStatus("reconnecting"); });
    socket.io.on("reconnect_failed", function () { setStatus("offline"); });

    socket.on("dashboard", onSnapshot);
  }

  // ------------------------------------------------------------------ rendering

  function onSnapshot(snap) {
    if (!snap || typeof snap !== "object") { return; }
    lastReceivedAt = Date.now();
    checkStale();
    var replicas = Array.isArray(snap.replicas) ? snap.replicas : [];
    var gone = Array.isArray(snap.gone) ? snap.gone.map(String) : [];

    recordHistory(snap, replicas, gone);
    renderHeader(snap);
    renderRedis(snap.redis);
    renderTotals(snap, replicas, gone);
    renderReplicas(replicas, gone);
    renderWebhooks(snap.webhooks);
    renderCharts();
    setText(el.updated, new Date(isNum(snap.time) ? snap.time : Date.now()).toLocaleTimeString());
  }

  function renderHeader(snap) {
    setText(el.instance, snap.instance != null ? snap.instance : "–");
  }

  function renderRedis(redis) {
    redis = redis || {};
    var ok = redis.ok === true;
    el.redis.setAttribute("data-ok", ok ? "true" : "false");
    setText(el.redisState, ok ? "OK" : "DOWN");
    el.redisState.className = "badge " + (ok ? "badge-ok" : "badge-bad");
    setText(el.redisMemory, fmtMB(redis.used_memory));
    if (!ok && redis.error) {
      setText(el.redisError, redis.error);
      el.redisError.hidden = false;
    } else {
      el.redisError.textContent = "";
      el.redisError.hidden = true;
    }
    el.redisBanner.hidden = ok;
    if (!ok) {
      setText(el.redisBanner, "Redis is down" + (redis.error ? ": " + String(redis.error) : ""));
    }
  }

  function renderTotals(snap, replicas, gone) {
    var live = replicas.filter(function (r) { return gone.indexOf(String(r && r.id)) === -1; });
    setText(el.clientsTotal, fmtInt(snap.clients_total));
    setText(el.replicaCount, String(live.length));
    setText(el.goneCount, gone.length ? gone.length + " gone" : "");
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    setText(td, text);
    tr.appendChild(td);
    return td;
  }

  function renderReplicas(replicas, gone) {
    var rows = [];
    var seen = {};
    replicas.forEach(function (r) {
      if (!r || r.id == null) { return; }
      var id = String(r.id);
      lastSeen[id] = r;
      seen[id] = true;
      rows.push({ id: id, r: r, gone: gone.indexOf(id) !== -1 });
    });
    gone.forEach(function (id) {
      if (!seen[id]) { rows.push({ id: id, r: lastSeen[id] || { id: id }, gone: true }); }
    });
    // Forget replicas that are neither reporting nor listed as gone.
    Object.keys(lastSeen).forEach(function (id) {
      if (!seen[id] && gone.indexOf(id) === -1) { delete lastSeen[id]; }
    });
    rows.sort(function (a, b) {
      if (a.gone !== b.gone) { return a.gone ? 1 : -1; }
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });

    var frag = document.createDocumentFragment();
    rows.forEach(function (row) {
      var r = row.r;
      var tr = document.createElement("tr");
      tr.className = "replica" + (row.gone ? " gone" : "");
      tr.setAttribute("data-id", row.id);
      var idCell = cell(tr, row.id, "mono");
      idCell.title = row.id;
      var st = cell(tr, "");
      var badge = document.createElement("span");
      badge.className = "badge " + (row.gone ? "badge-bad" : "badge-ok");
      setText(badge, row.gone ? "gone" : "up");
      st.appendChild(badge);
      cell(tr, fmtUptime(r.uptime_s));
      cell(tr, fmtInt(r.clients), "num");
      cell(tr, fmtMB(r.memory_rss), "num");
      cell(tr, fmtInt(r.greenlets), "num");
      var paths = cell(tr, r.transport ? r.transport.state : "");
      if (r.transport) {
        paths.title = Object.keys(r.transport.versions).map(function (name) {
          return name + " " + r.transport.versions[name];
        }).join(", ");
      }
      cell(tr, fmtRate(r.messages_in_per_s), "num");
      cell(tr, fmtRate(r.messages_out_per_s), "num");
      cell(tr, fmtRate(r.events_per_s), "num");
      var errs = cell(tr, fmtInt(r.errors_total), "num");
      if (isNum(r.errors_total) && r.errors_total > 0) { errs.classList.add("error-text"); }
      frag.appendChild(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr");
      var td = cell(tr, "No replicas reporting.", "muted");
      td.colSpan = 11;
      frag.appendChild(tr);
    }
    el.replicas.replaceChildren(frag);
  }

  var BREAKER_CLASS = { closed: "badge-ok", open: "badge-bad", "half-open": "badge-warn" };

  function renderWebhooks(wh) {
    wh = wh || {};
    var b = wh.backlog;
    setText(el.whWaiting, b ? fmtInt(b.waiting) : "–");
    setText(el.whInflight, b ? fmtInt(b.in_flight) : "–");
    setText(el.whDead, b ? fmtInt(b.dead) : "–");
    el.whDead.classList.toggle("error-text", !!(b && isNum(b.dead) && b.dead > 0));

    var breakers = wh.breakers && typeof wh.breakers === "object" ? wh.breakers : {};
    var names = Object.keys(breakers).sort();
    var frag = document.createDocumentFragment();
    names.forEach(function (name) {
      var state = String(breakers[name]);
      var span = document.createElement("span");
      span.className = "badge breaker " + (BREAKER_CLASS[state] || "badge-warn");
      span.setAttribute("data-endpoint", name);
      span.setAttribute("data-state", state);
      span.title = name + ": " + state;
      var n = document.createElement("span");
      n.className = "breaker-name";
      setText(n, name);
      var s = document.createElement("strong");
      setText(s, state);
      span.appendChild(n);
      span.appendChild(s);
      frag.appendChild(span);
    });
    if (!names.length) {
      var none = document.createElement("span");
      none.className = "muted small";
      setText(none, "no endpoints");
      frag.appendChild(none);
    }
    el.breakers.replaceChildren(frag);
  }

  // ------------------------------------------------------------------ charts

  function sum(replicas, gone, key) {
    var total = 0;
    replicas.forEach(function (r) {
      if (r && gone.indexOf(String(r.id)) === -1 && isNum(r[key])) { total += r[key]; }
    });
    return total;
  }

  function recordHistory(snap, replicas, gone) {
    var t = isNum(snap.time) ? snap.time : Date.now();
    var last = series[series.length - 1];
    if (last && t <= last.time) {
      if (t === last.time) { return; }   // duplicate (ack + push of the same snapshot)
      series = [];                      // clock went backwards: start over
    }
    series.push({
      time: t,
      clients: isNum(snap.clients_total) ? snap.clients_total : 0,
      out: sum(replicas, gone, "messages_out_per_s"),
      events: sum(replicas, gone, "events_per_s")
    });
    var cutoff = t - WINDOW_MS;
    while (series.length && (series[0].time < cutoff || series.length > MAX_POINTS)) { series.shift(); }
  }

  function svg(tag, attrs) {
    var n = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, String(attrs[k])); });
    return n;
  }

  function niceMax(v) {
    if (!(v > 0)) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) { return steps[i] * p; } }
    return 10 * p;
  }

  function renderChart(fig, key, isRate) {
    var W = 320, H = 110, L = 34, R = 6, T = 8, B = 18;
    var plotW = W - L - R, plotH = H - T - B;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "chart-svg" });
    var end = series.length ? series[series.length - 1].time : Date.now();
    var start = end - WINDOW_MS;
    var max = niceMax(series.reduce(function (m, p) { return Math.max(m, p[key]); }, 0));

    [0, 0.5, 1].forEach(function (f) {
      var y = T + plotH - f * plotH;
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }));
      var label = svg("text", { x: L - 4, y: y + 3, "class": "axis", "text-anchor": "end" });
      var v = max * f;
      label.textContent = isRate && max < 10 ? v.toFixed(1) : String(Math.round(v));
      root.appendChild(label);
    });
    var l1 = svg("text", { x: L, y: H - 4, "class": "axis" });
    l1.textContent = "-5m";
    root.appendChild(l1);
    var l2 = svg("text", { x: W - R, y: H - 4, "class": "axis", "text-anchor": "end" });
    l2.textContent = "now";
    root.appendChild(l2);

    if (series.length) {
      var pts = series.map(function (p) {
        var x = L + ((p.time - start) / WINDOW_MS) * plotW;
        var y = T + plotH - (p[key] / max) * plotH;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      if (pts.length > 1) {
        var first = pts[0].split(",")[0], lastX = pts[pts.length - 1].split(",")[0];
        root.appendChild(svg("polygon", {
          points: first + "," + (T + plotH) + " " + pts.join(" ") + " " + lastX + "," + (T + plotH),
          "class": "area"
        }));
        root.appendChild(svg("polyline", { points: pts.join(" "), "class": "line" }));
      }
      var lp = pts[pts.length - 1].split(",");
      root.appendChild(svg("circle", { cx: lp[0], cy: lp[1], r: 2.5, "class": "dot" }));
    }

    var old = fig.querySelector("svg");
    if (old) { fig.replaceChild(root, old); } else { fig.appendChild(root); }
    var lastVal = series.length ? series[series.length - 1][key] : null;
    setText(fig.querySelector(".chart-last"), lastVal == null ? "" : (isRate ? fmtRate(lastVal) : fmtInt(lastVal)));
    root.setAttribute("aria-label", fig.querySelector("figcaption").textContent);
  }

  function renderCharts() {
    var figs = el.charts.querySelectorAll("figure[data-series]");
    Array.prototype.forEach.call(figs, function (fig) {
      var key = fig.getAttribute("data-series");
      renderChart(fig, key, key !== "clients");
    });
  }

  // ------------------------------------------------------------------ staleness

  function checkStale() {
    var stale = loggedIn && socket !== null && Date.now() - lastReceivedAt > STALE_MS;
    el.stale.hidden = !stale;
    if (stale) { el.body.setAttribute("data-stale", "true"); } else { el.body.removeAttribute("data-stale"); }
  }

  // ------------------------------------------------------------------ boot

  el.loginForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var name = el.username.value.trim();
    if (!name) { showError("Please enter a name."); return; }
    login(name);
  });
  el.logout.addEventListener("click", logout);
  window.setInterval(checkStale, 1000);

  var hashToken = tokenFromHash();
  var token = storageGet();
  if (!token && hashToken) { token = hashToken; storageSet(token); }
  renderCharts();
  if (token) { connect(token, storageGet(USER_KEY)); } else { setStatus("offline"); showLogin(""); }
})();
