// The load generator of bench/compare.py: thousands of Socket.IO clients in one Node process.
//
//   node loadgen.js CONFIG.json      then JSON commands on stdin, one per line; JSON answers on stdout
//
// CONFIG: {urls, namespace, path, room, subscribers, publishers, tokens (file of
// {subscribers: [jwt...], publishers: [jwt...]} or null), events: {join, send, message},
// localAddresses (source addresses to spread over nginx's hash, or null), connectConcurrency,
// subscriberClient: "lite" | "socket.io"}.
// Publishers are socket.io-client sockets. Subscribers are too with "socket.io"; with "lite" (the
// default) each is a bare websocket (./rawws.js) speaking the same Engine.IO 4 / Socket.IO 5 frames as
// socket.io-client over websocket (open, namespace connect with auth, acked join, pings), that
// reads only the body of a `message` frame instead of decoding all of it: socket.io-client costs
// ~10 us per delivery, which on 2 cores made the generator, not the servers, the bottleneck.
// Commands:
//   {"cmd": "connect", "subscribers": n}  (n optional)   -> {"event": "connected", ...}
//   {"cmd": "run", "run": "r1", "rate": 50, "duration": 10, "mode": "publishers"|"external"}
//        publishers: our publishers send `rate` msg/s in total for `duration` s -> {"event": "result"}
//        external: -> {"event": "ready"}; someone else sends; then {"cmd": "expect", "sent": N}
//   {"cmd": "close"}                                      -> disconnects everyone and exits
// Every message body is "<run>|<index>|<send time, epoch ms>|" padded to BODY_CHARS; each subscriber
// records which indexes it got (loss, duplicates) and the latency (receive time - send time).
"use strict";

const fs = require("fs");
const readline = require("readline");
const { performance, monitorEventLoopDelay } = require("perf_hooks");
const { io } = require("socket.io-client");
const rawws = require("./rawws");

const BODY_CHARS = 150;
const BUCKET_MS = 0.1; // latency histogram resolution
const MAX_LATENCY_MS = 60000;
const QUIET_MS = 3000; // a drain ends when nothing arrived for this long...
const MAX_DRAIN_MS = 20000; // ...or after this long in any case
const ACK_TIMEOUT_MS = 20000;

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const tokens = config.tokens ? JSON.parse(fs.readFileSync(config.tokens, "utf8")) : null;
const events = { join: "join", send: "send", message: "message", ...(config.events || {}) };
const now = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms resolution

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function body(run, index) {
  const head = `${run}|${index}|${now().toFixed(3)}|`;
  return head + "x".repeat(Math.max(0, BODY_CHARS - head.length));
}

// ---------------------------------------------------------------------------------------------
// connections

const subscribers = []; // {socket, seen: Uint8Array bitmap of this run's indexes}
const publishers = [];
const errors = {}; // message -> count (connect errors, ack errors, disconnects)
let run = null; // the measurement in progress
let failedSubscribers = 0;
let publishersStarted = false;

function countError(what) {
  errors[what] = (errors[what] || 0) + 1;
}

function tokenFor(kind, i) {
  const list = tokens && tokens[kind];
  return list && list.length ? list[i % list.length] : null;
}

function connectLite(i) {
  // Engine.IO 4 over a websocket: "0{open}", "2" ping -> "3" pong, "4" + a Socket.IO packet:
  // "40/nsp,{auth}" connect, "44/nsp,{err}" refused, "42/nsp,1[event, data]" event with ack id 1,
  // "43/nsp,1[answer]" its ack, "42/nsp,[event, data]" an event from the server.
  const nsp = config.namespace === "/" ? "" : `${config.namespace},`;
  const base = config.urls[i % config.urls.length].replace(/^http/, "ws");
  const addresses = config.localAddresses;
  const token = tokenFor("subscribers", i);
  const sub = { ws: null, seen: null, lite: true };
  const eventPrefix = `42${nsp}["${events.message}",`;
  return new Promise((resolve, reject) => {
    let joined = false;
    const timer = setTimeout(() => reject(new Error("lite: no join ack within 30s")), 30000);
    const ws = rawws.connect(`${base}${config.path || "/socket.io/"}?EIO=4&transport=websocket`, {
      localAddress: addresses && addresses.length ? addresses[i % addresses.length] : undefined,
    }, {
      open: () => {},
      close: (err) => {
        if (!joined) reject(new Error(`lite: ${err.message} before joining`));
        else {
          countError("disconnect: lite websocket closed");
          if (run) run.disconnects += 1;
        }
      },
      message: (text) => {
        if (text.startsWith(eventPrefix)) return liteDelivery(sub, text);
        if (text === "2") return ws.send("3");
        if (text[0] === "0") return ws.send(`40${nsp}${token ? JSON.stringify({ token }) : ""}`);
        if (text.startsWith(`40${nsp}`)) {
          return ws.send(`42${nsp}1${JSON.stringify([events.join, { room: config.room }])}`);
        }
        if (text.startsWith(`44${nsp}`)) return reject(new Error(`connect_error: ${text.slice(nsp.length + 2)}`));
        if (text.startsWith(`43${nsp}1`)) {
          const ack = JSON.parse(text.slice(nsp.length + 3))[0];
          if (!ack || ack.ok === false) return reject(new Error(`join refused: ${JSON.stringify(ack)}`));
          joined = true;
          clearTimeout(timer);
          resolve(sub);
        }
      },
    });
    sub.ws = ws;
  });
}

function liteDelivery(sub, text) {
  // The body is ours ("run|index|time|xxx"): no quotes or escapes, so it ends at the next quote.
  const at = text.indexOf('"body":"');
  if (at < 0) return received(sub, undefined);
  const start = at + 8;
  return received(sub, text.slice(start, text.indexOf('"', start)));
}

function connectOne(kind, i) {
  if (kind === "subscribers" && (config.subscriberClient || "lite") === "lite") return connectLite(i);
  const url = config.urls[i % config.urls.length] + config.namespace;
  const token = tokenFor(kind, i);
  const addresses = config.localAddresses;
  const socket = io(url, {
    path: config.path || "/socket.io/",
    transports: ["websocket"],
    reconnection: false, // a dropped client must show up as loss, not be papered over
    forceNew: true,
    timeout: 30000,
    auth: token ? { token } : undefined,
    localAddress: addresses && addresses.length ? addresses[i % addresses.length] : undefined,
  });
  return new Promise((resolve, reject) => {
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    socket.once("connect", () => {
      socket.timeout(ACK_TIMEOUT_MS).emit(events.join, { room: config.room }, (err, ack) => {
        if (err) return reject(new Error("join: no ack"));
        if (!ack || ack.ok === false) return reject(new Error(`join refused: ${JSON.stringify(ack)}`));
        resolve(socket);
      });
    });
  });
}

async function connectAll(cmd) {
  // `upTo` subscribers in all (default: every one); the publishers come with the first call.
  const started = now();
  const upTo = Math.min(config.subscribers, cmd.subscribers ?? config.subscribers);
  const jobs = [];
  for (let i = subscribers.length + failedSubscribers; i < upTo; i++) jobs.push(["subscribers", i]);
  if (!publishersStarted) for (let i = 0; i < config.publishers; i++) jobs.push(["publishers", i]);
  publishersStarted = true;
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const [kind, i] = jobs[next++];
      try {
        const socket = await connectOne(kind, i);
        (kind === "subscribers" ? subscribers : publishers).push(socket);
        if (socket.lite) continue;
        socket.on("disconnect", (reason) => {
          countError(`disconnect: ${reason}`);
          if (run) run.disconnects += 1;
        });
        if (kind === "subscribers") socket.on(events.message, (data) => received(socket, data && data.body));
        else socket.on(events.message, () => run && run.echoes++);
      } catch (err) {
        failed += 1;
        if (kind === "subscribers") failedSubscribers += 1;
        countError(err.message);
      }
    }
  };
  await Promise.all(Array.from({ length: config.connectConcurrency || 100 }, worker));
  reply({ event: "connected", subscribers: subscribers.length, publishers: publishers.length,
          failed, seconds: (now() - started) / 1000, errors });
}

// ---------------------------------------------------------------------------------------------
// one measured run

function newRun(cmd) {
  const capacity = Math.ceil(cmd.rate * cmd.duration * 1.5) + 100;
  for (const socket of subscribers) socket.seen = new Uint8Array(Math.ceil(capacity / 8));
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  return {
    id: String(cmd.run), rate: cmd.rate, duration: cmd.duration, mode: cmd.mode, capacity,
    started: now(), cpu: process.cpuUsage(), loop,
    perIndex: new Uint32Array(capacity), okIndex: new Uint8Array(capacity),
    histogram: new Uint32Array(Math.ceil(MAX_LATENCY_MS / BUCKET_MS) + 1), maxLatency: 0,
    received: 0, duplicates: 0, stale: 0, unexpected: 0, echoes: 0, disconnects: 0,
    sent: 0, acked: 0, refused: {}, unacked: 0, lagMax: 0, sentCount: null,
    firstDelivery: null, lastDelivery: null,
  };
}

function received(socket, body) {
  const text = typeof body === "string" ? body : "";
  const [id, index, sentAt] = text.split("|", 3);
  if (!run || id !== run.id) {
    if (run) run.stale += 1;
    return;
  }
  const i = Number(index);
  if (!(i >= 0 && i < run.capacity)) {
    run.unexpected += 1;
    return;
  }
  const byte = i >> 3, bit = 1 << (i & 7);
  if (socket.seen[byte] & bit) {
    run.duplicates += 1;
    return;
  }
  socket.seen[byte] |= bit;
  const t = now();
  const latency = t - Number(sentAt);
  run.histogram[Math.min(run.histogram.length - 1, Math.max(0, Math.round(latency / BUCKET_MS)))]++;
  if (latency > run.maxLatency) run.maxLatency = latency;
  run.perIndex[i]++;
  run.received++;
  if (run.firstDelivery === null) run.firstDelivery = t;
  run.lastDelivery = t;
}

function publish(current) {
  // Message k is due at started + k / rate and goes out on publisher k mod M; a late timer sends
  // everything that is due at once, and the lag shows how far behind schedule we fell.
  return new Promise((resolve) => {
    const total = Math.floor(current.rate * current.duration);
    const pending = new Set();
    const tick = () => {
      const elapsed = now() - current.started;
      while (current.sent < total && current.sent * 1000 / current.rate <= elapsed) {
        const k = current.sent++;
        current.lagMax = Math.max(current.lagMax, elapsed - k * 1000 / current.rate);
        const socket = publishers[k % publishers.length];
        const payload = { room: config.room, type: "text", body: body(current.id, k),
                          client_id: `${current.id}-${k}` };
        const done = new Promise((settle) => {
          socket.timeout(ACK_TIMEOUT_MS).emit(events.send, payload, (err, ack) => {
            if (err) current.unacked++;
            else if (ack && ack.ok === false) {
              const code = (ack.error && ack.error.code) || "refused";
              current.refused[code] = (current.refused[code] || 0) + 1;
            } else {
              current.acked++;
              current.okIndex[k] = 1;
            }
            settle();
          });
        });
        pending.add(done);
        done.then(() => pending.delete(done));
      }
      if (current.sent < total) setTimeout(tick, 2);
      else Promise.all([...pending]).then(resolve);
    };
    tick();
  });
}

function drain(current, expected) {
  // Wait until every expected delivery arrived, or nothing came for QUIET_MS, or MAX_DRAIN_MS.
  const begun = now();
  return new Promise((resolve) => {
    const check = () => {
      const t = now();
      const quiet = t - Math.max(current.lastDelivery || begun, begun);
      if (current.received >= expected || quiet > QUIET_MS || t - begun > MAX_DRAIN_MS) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
}

function percentile(histogram, count, p) {
  if (!count) return null;
  const rank = Math.ceil(count * p);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i];
    if (seen >= rank) return i * BUCKET_MS;
  }
  return null;
}

function result(current, okIndexes) {
  const cpu = process.cpuUsage(current.cpu);
  const ended = now();
  let expected = 0, lost = 0, unexpected = current.unexpected;
  for (let i = 0; i < current.capacity; i++) {
    if (okIndexes(i)) {
      expected += subscribers.length;
      lost += subscribers.length - current.perIndex[i];
    } else unexpected += current.perIndex[i];
  }
  current.loop.disable();
  const spread = current.lastDelivery === null ? null : (current.lastDelivery - current.started) / 1000;
  return {
    event: "result", run: current.id, mode: current.mode, rate: current.rate,
    duration: current.duration, subscribers: subscribers.length, publishers: publishers.length,
    sent: current.mode === "external" ? current.sentCount : current.sent, acked: current.acked,
    refused: current.refused, unacked: current.unacked, expected, received: current.received,
    lost, duplicates: current.duplicates, unexpected, stale: current.stale, echoes: current.echoes,
    disconnects: current.disconnects, send_lag_max_ms: current.lagMax,
    deliveries_per_s: spread ? current.received / spread : 0,
    p50_ms: percentile(current.histogram, current.received, 0.5),
    p99_ms: percentile(current.histogram, current.received, 0.99),
    max_ms: current.received ? current.maxLatency : null,
    window_s: (ended - current.started) / 1000,
    cpu_user_us: cpu.user, cpu_system_us: cpu.system,
    cpu_pct: ((cpu.user + cpu.system) / 1000) / (ended - current.started) * 100,
    loop_delay_p99_ms: current.loop.percentile(99) / 1e6, rss_bytes: process.memoryUsage().rss,
    errors,
  };
}

async function runPublishers(cmd) {
  const current = (run = newRun(cmd));
  await publish(current);
  await drain(current, current.acked * subscribers.length);
  reply(result(current, (i) => current.okIndex[i] === 1));
  run = null;
}

async function expectExternal(sent) {
  const current = run;
  current.sentCount = Math.min(sent, current.capacity);
  await drain(current, current.sentCount * subscribers.length);
  reply(result(current, (i) => i < current.sentCount));
  run = null;
}

// ---------------------------------------------------------------------------------------------
// commands

function close() {
  for (const socket of [...subscribers, ...publishers]) socket.lite ? socket.ws.close() : socket.disconnect();
  setTimeout(() => process.exit(0), 200);
}

const commands = {
  connect: (cmd) => connectAll(cmd),
  run: (cmd) => {
    if (cmd.mode === "external") {
      run = newRun(cmd);
      reply({ event: "ready", run: run.id });
    } else runPublishers(cmd);
  },
  expect: (cmd) => expectExternal(cmd.sent),
  close,
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  const cmd = JSON.parse(line);
  Promise.resolve(commands[cmd.cmd](cmd)).catch((err) => reply({ event: "error", message: String(err) }));
}).on("close", close); // our parent went away: do not linger
process.on("SIGTERM", () => process.exit(0));
