'use strict';
// Container health check: exit 0 only when the server's /health answers 200.

const http = require('node:http');

const port = Number(process.env.PORT || 3000);
const req = http.get({ host: '127.0.0.1', port, path: '/health', timeout: 3000 }, (res) => {
  res.resume();
  if (res.statusCode !== 200) console.error(`unhealthy: /health answered ${res.statusCode}`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('no answer within 3 s')));
req.on('error', (err) => {
  console.error(`unhealthy: ${err.message}`);
  process.exit(1);
});
