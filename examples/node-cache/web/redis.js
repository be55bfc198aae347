'use strict';
// A tiny Redis client: one TCP connection, commands pipelined in order, RESP2 replies.
// Enough for PING, INCR and GET; no npm module needed.

const net = require('node:net');

class RedisError extends Error {}

// Encode a command as a RESP array of bulk strings.
function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const arg of args) {
    const text = String(arg);
    out += `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  }
  return out;
}

// Parse one reply at `start`: [value, offset after it], or undefined when more bytes are needed.
// An error reply ("-ERR ...") becomes a RedisError value, so the caller can reject that command.
function parse(buf, start) {
  const end = buf.indexOf('\r\n', start);
  if (end === -1) return undefined;
  const type = String.fromCharCode(buf[start]);
  const line = buf.toString('utf8', start + 1, end);
  const next = end + 2;
  switch (type) {
    case '+':
      return [line, next];
    case '-':
      return [new RedisError(line), next];
    case ':':
      return [Number(line), next];
    case '$': {
      const length = Number(line);
      if (length < 0) return [null, next];
      if (buf.length < next + length + 2) return undefined;
      return [buf.toString('utf8', next, next + length), next + length + 2];
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return [null, next];
      const items = [];
      let offset = next;
      for (let i = 0; i < count; i += 1) {
        const item = parse(buf, offset);
        if (item === undefined) return undefined;
        items.push(item[0]);
        offset = item[1];
      }
      return [items, offset];
    }
    default:
      throw new Error(`unexpected reply type ${JSON.stringify(type)} from Redis`);
  }
}

class RedisClient {
  // url: redis://[[user]:password@]host[:port][/db]
  constructor(url, { timeoutMs = 2000 } = {}) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'redis:') throw new Error(`not a redis:// URL: ${url}`);
    this.host = parsed.hostname;
    this.port = Number(parsed.port || 6379);
    this.username = decodeURIComponent(parsed.username);
    this.password = decodeURIComponent(parsed.password);
    this.db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0;
    this.timeoutMs = timeoutMs;
    this.socket = null;
    this.pending = []; // { resolve, reject, timer } in the order the commands were sent
    this.buffer = Buffer.alloc(0);
  }

  // Send a command; resolves with its reply. Connects (again) when there is no connection.
  command(args) {
    if (this.socket === null) this.connect();
    return this.send(args);
  }

  send(args) {
    return new Promise((resolve, reject) => {
      // No reply in time: the connection can no longer be trusted to be in step, drop it.
      const timer = setTimeout(() => {
        this.drop(new Error(`Redis did not answer ${args[0]} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.push({ resolve, reject, timer });
      this.socket.write(encode(args));
    });
  }

  connect() {
    const socket = net.createConnection({ host: this.host, port: this.port });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10000);
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    socket.on('data', (chunk) => this.onData(socket, chunk));
    socket.on('error', (err) => this.drop(err, socket));
    socket.on('close', () => this.drop(new Error('connection to Redis closed'), socket));
    // Written before any other command, so they run first (writes queue until connected).
    const rejectQuietly = (err) => this.drop(err, socket);
    if (this.password) {
      const auth = this.username ? ['AUTH', this.username, this.password] : ['AUTH', this.password];
      this.send(auth).catch(rejectQuietly);
    }
    if (this.db) this.send(['SELECT', this.db]).catch(rejectQuietly);
  }

  onData(socket, chunk) {
    if (socket !== this.socket) return;
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let offset = 0;
    try {
      for (;;) {
        const reply = parse(this.buffer, offset);
        if (reply === undefined) break;
        offset = reply[1];
        const waiter = this.pending.shift();
        if (waiter === undefined) throw new Error('reply from Redis without a command');
        clearTimeout(waiter.timer);
        if (reply[0] instanceof RedisError) waiter.reject(reply[0]);
        else waiter.resolve(reply[0]);
      }
    } catch (err) {
      this.drop(err, socket);
      return;
    }
    this.buffer = this.buffer.subarray(offset);
  }

  // Forget the connection and fail every command still waiting for a reply.
  drop(err, socket = this.socket) {
    if (socket === null || socket !== this.socket) return;
    this.socket = null;
    socket.destroy();
    const pending = this.pending;
    this.pending = [];
    for (const waiter of pending) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
  }

  close() {
    this.drop(new Error('Redis client closed'));
  }
}

module.exports = { RedisClient, RedisError, encode, parse };
