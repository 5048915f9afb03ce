// The Node reference for bench/compare.py: Socket.IO 4 with the Redis adapter, the same event
// shape as bench/plain_app.py. ADAPTER=streams: @socket.io/redis-streams-adapter instead (every
// broadcast appended to a Redis stream) with connection state recovery on, the Node deployment
// that persists what it broadcasts. Clients `join {room}` and every `send` payload is broadcast to the
// room as `message` (the sender included), on every replica through Redis; both events are acked.
//
//   PORT=8101 REDIS_URL=redis://127.0.0.1:6390/0 node server.js
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const HOST = process.env.HOST || "127.0.0.1";
const PORT = Number(process.env.PORT || 8100);
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";
const NAMESPACE = process.env.NAMESPACE || "/chat";
const ADAPTER = process.env.ADAPTER || "redis";

async function main() {
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) client.on("error", (err) => console.error("redis:", err.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    // A readiness probe for the bench (the Python stacks answer /socket.io/ handshakes instead).
    if (req.url === "/healthz") return res.writeHead(200).end();
    // Started with --expose-gc, the bench collects garbage before it reads the RSS, so memory per
    // connection is what connections keep alive, not when V8 last happened to collect.
    if (req.url === "/gc" && global.gc) {
      global.gc();
      return res.writeHead(200).end();
    }
    res.writeHead(404).end();
  });
  const options = ADAPTER === "streams"
    ? { adapter: require("@socket.io/redis-streams-adapter").createAdapter(pub),
        connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } }
    : { adapter: createAdapter(pub, sub) };
  const io = new Server(httpServer, { ...options, serveClient: false });

  io.of(NAMESPACE).on("connection", (socket) => {
    socket.on("join", (data, ack) => {
      socket.join(data.room);
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("send", (data, ack) => {
      io.of(NAMESPACE).to(data.room).emit("message", data);
      if (typeof ack === "function") ack({ ok: true });
    });
  });

  httpServer.listen(PORT, HOST, () => console.log(`node reference listening on ${HOST}:${PORT}`));
  const stop = () => io.close(() => Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
