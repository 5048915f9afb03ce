// The external-emitter path of the Node stack: publish `message` to a room through Redis with
// @socket.io/redis-emitter (no Socket.IO server in this process), at a fixed rate for a duration.
// Same command line and JSON answer as bench/emit.py; bodies as bench/node/loadgen.js expects.
//
//   node emitter.js --redis-url URL --room ROOM --run ID --rate 20 --duration 10
"use strict";

const { performance } = require("perf_hooks");
const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");

const BODY_CHARS = 150;

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "").replace(/-/g, "_")] = argv[i + 1];
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.timeOrigin + performance.now();

async function main() {
  const opts = args(process.argv.slice(2));
  const rate = Number(opts.rate), duration = Number(opts.duration);
  const client = createClient({ url: opts.redis_url });
  await client.connect();
  const room = new Emitter(client).of(opts.namespace || "/chat").to(opts.room);
  const total = Math.floor(rate * duration);
  const started = now();
  let lagMax = 0;
  for (let k = 0; k < total; k++) {
    const due = started + (k * 1000) / rate;
    if (due > now()) await sleep(due - now());
    lagMax = Math.max(lagMax, now() - due);
    const head = `${opts.run}|${k}|${now().toFixed(3)}|`;
    room.emit("message", { room: opts.room, type: "text", body: head + "x".repeat(BODY_CHARS - head.length) });
  }
  await client.quit(); // after every queued PUBLISH went out
  const cpu = process.cpuUsage();
  console.log(JSON.stringify({ sent: total, errors: 0, send_lag_max_ms: lagMax,
                               cpu_s: (cpu.user + cpu.system) / 1e6 }));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
