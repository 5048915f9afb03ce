// The smallest websocket client the load generator needs (RFC 6455 over a bare TCP socket).
//
// Why not `ws`: a subscriber spends almost all of its time reading frames, and `ws` reads them
// through a Readable stream and a Writable parser per socket. Reading through net's `onread` into
// one buffer shared by every socket costs about a third less CPU per delivery (measured on this
// machine: 15 -> 10 us with 1000 clients at 50 msg/s), which is CPU the servers under test get back
// on 2 cores. It reads what servers send (text, binary, fragments, ping, close; never masked) and
// sends masked text frames.
"use strict";

const crypto = require("crypto");
const net = require("net");

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const SHARED = Buffer.allocUnsafe(1 << 16); // every socket reads into it; a read is parsed at once
const MAX_HEAD = 16384;

function masked(opcode, payload) {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) (out[1] = 0x80 | 126), out.writeUInt16BE(n, 2);
  else (out[1] = 0x80 | 127), out.writeBigUInt64BE(BigInt(n), 2);
  const mask = crypto.randomBytes(4);
  mask.copy(out, head);
  for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

// connect("ws://host:port/path?query", {localAddress}, {open(), message(text), close(error?)})
// -> {send(text), close()}. `message` gets each text frame as a string; `close` is called once.
function connect(url, options, on) {
  const { hostname, port, pathname, search } = new URL(url);
  const key = crypto.randomBytes(16).toString("base64");
  const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
  let pending = null; // bytes of an incomplete handshake or frame, copied out of SHARED
  let upgraded = false;
  let fragments = null; // payloads of a fragmented message so far
  let closed = false;

  const finish = (error) => {
    if (closed) return;
    closed = true;
    socket.destroy();
    on.close(error);
  };

  const handshake = (buf) => {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) {
      if (buf.length > MAX_HEAD) finish(new Error("handshake response too long"));
      else pending = Buffer.from(buf);
      return -1;
    }
    const head = buf.toString("latin1", 0, end);
    const status = head.slice(0, head.indexOf("\r\n"));
    if (!/^HTTP\/1\.1 101 /.test(status)) return finish(new Error(`handshake: ${status}`)), -1;
    const got = /\r\nsec-websocket-accept:\s*(\S+)/i.exec(head);
    if (!got || got[1] !== accept) return finish(new Error("handshake: wrong Sec-WebSocket-Accept")), -1;
    upgraded = true;
    on.open();
    return end + 4;
  };

  const frame = (opcode, fin, buf, start, end) => {
    if (opcode === 0x8) {
      if (!closed) socket.write(masked(0x8, Buffer.alloc(0)));
      return finish(new Error("closed by the server"));
    }
    if (opcode === 0x9) return socket.write(masked(0xa, buf.subarray(start, end)));
    if (opcode === 0xa) return;
    if (!fin || fragments) {
      (fragments ||= []).push(Buffer.from(buf.subarray(start, end)));
      if (!fin) return;
      const whole = Buffer.concat(fragments);
      fragments = null;
      return on.message(whole.toString("utf8"));
    }
    on.message(buf.toString("utf8", start, end));
  };

  const read = (n, chunk) => {
    let buf = pending ? Buffer.concat([pending, chunk.subarray(0, n)]) : chunk.subarray(0, n);
    pending = null;
    let at = upgraded ? 0 : handshake(buf);
    if (at < 0) return;
    while (!closed && buf.length - at >= 2) {
      const fin = (buf[at] & 0x80) !== 0, opcode = buf[at] & 0x0f;
      let len = buf[at + 1] & 0x7f, start = at + 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2), start = at + 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        len = Number(buf.readBigUInt64BE(at + 2)), start = at + 10;
      }
      if (buf[at + 1] & 0x80) return finish(new Error("masked frame from the server"));
      if (buf.length < start + len) break;
      frame(opcode, fin, buf, start, start + len);
      at = start + len;
    }
    if (!closed && at < buf.length) pending = Buffer.from(buf.subarray(at));
  };

  const socket = net.connect({ host: hostname, port: Number(port), localAddress: options.localAddress,
                               onread: { buffer: SHARED, callback: read } });
  socket.setNoDelay(true);
  socket.on("error", (error) => finish(error));
  socket.on("close", () => finish(new Error("connection closed")));
  socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
               `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  return {
    send: (text) => closed || socket.write(masked(0x1, Buffer.from(text))),
    close: () => {
      if (closed) return;
      if (upgraded) socket.write(masked(0x8, Buffer.from([0x03, 0xe8])));
      socket.end();
      closed = true;
    },
  };
}

module.exports = { connect };
