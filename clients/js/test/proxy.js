// A TCP proxy the browser tests (and the demo) put between the page and
// herald's public listener, to cut, refuse and buffer connections at will.

import net from "node:net";

/**
 * A TCP proxy in front of herald's public listener, like a load balancer or
 * a corporate proxy the page has to go through. Modes, all switchable live:
 * `down` (every connection is closed at once: the gateway is unreachable),
 * `refuseWs` (an upgrade request gets 403), `bufferSse` (an SSE response's
 * head goes through and its body is held back, as a buffering proxy does),
 * `intercept` (a function that may answer a request head itself),
 * `freeze()` (open connections go silent) and `cut()` (drop every open
 * connection). When herald itself is unreachable it
 * answers 502, as a reverse proxy does.
 */
export class Proxy {
  static async start(upstreamPort, port = 0, upstreamHost = "127.0.0.1") {
    const p = new Proxy();
    p.upstreamPort = upstreamPort;
    p.upstreamHost = upstreamHost;
    p.sockets = new Set();
    p.down = false;
    p.refuseWs = false;
    p.bufferSse = false;
    p.accepted = 0;
    // Request heads seen, and a hook that may answer one instead of herald.
    p.heads = [];
    p.intercept = null;
    p.server = net.createServer((c) => p.accept(c));
    await new Promise((r) => p.server.listen(port, "127.0.0.1", r));
    p.port = p.server.address().port;
    return p;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  accept(client) {
    this.accepted += 1;
    if (this.down) {
      client.resetAndDestroy();
      return;
    }
    this.sockets.add(client);
    // A frozen connection stays open but carries nothing either way.
    client.frozen = false;
    client.on("close", () => this.sockets.delete(client));
    client.on("error", () => {});
    let upstream = null;
    let held = false;
    const pending = [];
    client.on("data", (chunk) => {
      if (client.frozen) return;
      const head = chunk.toString("latin1");
      if (/^[A-Z]+ \S+ HTTP\/1/.test(head)) this.heads.push(head.split("\r\n\r\n")[0]);
      const answer = this.intercept?.(head);
      if (answer) {
        client.end(answer);
        upstream?.destroy();
        return;
      }
      if (this.refuseWs && /^upgrade:\s*websocket/im.test(head)) {
        client.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        upstream?.destroy();
        return;
      }
      if (this.bufferSse && /^GET [^ ]*\/sse\//m.test(head)) held = true;
      if (upstream) upstream.write(chunk);
      else pending.push(chunk);
    });
    upstream = net.connect(this.upstreamPort, this.upstreamHost);
    this.sockets.add(upstream);
    upstream.on("close", () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    upstream.on("error", () => {
      if (!upstream.connected && client.writable) {
        client.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
      }
    });
    upstream.on("connect", () => {
      upstream.connected = true;
      for (const c of pending.splice(0)) upstream.write(c);
    });
    let headSent = false;
    upstream.on("data", (chunk) => {
      if (client.frozen) return;
      if (!held) return client.write(chunk);
      // Buffering: the response head goes through, the body is held back.
      if (headSent) return;
      const end = chunk.indexOf("\r\n\r\n");
      if (end >= 0) client.write(chunk.subarray(0, end + 4));
      headSent = true;
    });
    client.on("close", () => upstream.destroy());
  }

  /**
   * Silences every open connection without closing it, as a NAT that forgot
   * them or a network that went away under an idle socket does.
   */
  freeze() {
    for (const s of this.sockets) s.frozen = true;
  }

  /** Drops every open connection, both ways; returns how many there were. */
  cut() {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return n;
  }

  close() {
    this.cut();
    this.server.close();
  }
}

