'use strict';
// Visit counter: a small HTTP server that keeps its count in Redis.
//   GET /            HTML page, counts the visit
//   GET /api/visits  {"visits": n}, counts the visit
//   GET /health      200 "ok" when Redis answers PING, 503 otherwise

const http = require('node:http');
const { RedisClient } = require('./redis');

const PORT = Number(process.env.PORT || 3000);
const REDIS_URL = process.env.REDIS_URL || 'redis://cache:6379';
// Docker waits 10 s after SIGTERM by default; finish before that.
const SHUTDOWN_TIMEOUT_MS = Number(process.env.SHUTDOWN_TIMEOUT_MS || 8000);
const VISITS_KEY = 'visits';

const redis = new RedisClient(REDIS_URL);
let stopping = false;

function log(message) {
  console.log(`${new Date().toISOString()} ${message}`);
}

function send(res, status, type, body) {
  const headers = {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  };
  // While stopping, close each connection after its response instead of keeping it alive.
  if (stopping) headers.Connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

function sendText(res, status, text) {
  send(res, status, 'text/plain; charset=utf-8', text);
}

function sendJson(res, status, value) {
  send(res, status, 'application/json', JSON.stringify(value));
}

function page(visits) {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Visit counter</title></head>
<body>
<h1>Visit counter</h1>
<p>This page has been visited <strong id="visits">${visits}</strong> times.</p>
</body>
</html>
`;
}

async function health(req, res) {
  let reply;
  try {
    reply = await redis.command(['PING']);
  } catch (err) {
    sendText(res, 503, `Redis unavailable: ${err.message}`);
    return;
  }
  if (reply !== 'PONG') {
    sendText(res, 503, `unexpected reply to PING: ${reply}`);
    return;
  }
  sendText(res, 200, 'ok');
}

async function index(req, res) {
  const visits = await redis.command(['INCR', VISITS_KEY]);
  send(res, 200, 'text/html; charset=utf-8', page(visits));
}

async function visits(req, res) {
  const count = await redis.command(['INCR', VISITS_KEY]);
  sendJson(res, 200, { visits: count });
}

const routes = { '/': index, '/api/visits': visits, '/health': health };

async function handle(req, res) {
  const path = new URL(req.url, 'http://localhost').pathname;
  const route = routes[path];
  if (route === undefined) {
    sendText(res, 404, 'not found');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    sendText(res, 405, 'method not allowed');
    return;
  }
  try {
    await route(req, res);
  } catch (err) {
    log(`${req.method} ${path} failed: ${err.message}`);
    if (!res.headersSent) sendText(res, 503, 'service unavailable');
    else res.destroy();
  }
}

const server = http.createServer((req, res) => {
  handle(req, res);
});

// SIGTERM (docker stop): stop accepting, let the requests in flight finish, then exit.
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal} received, finishing requests in flight`);
  server.close(() => {
    redis.close();
    log('stopped');
    process.exit(0);
  });
  server.closeIdleConnections();
  setTimeout(() => {
    log(`requests still open after ${SHUTDOWN_TIMEOUT_MS} ms, exiting`);
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.listen(PORT, () => {
  log(`listening on :${PORT}, Redis at ${redis.host}:${redis.port}`);
});
