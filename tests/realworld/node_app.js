// A Node.js program for the realworld tests, using every kind of thread Node has:
//   node node_app.js PORT DIR
// At start, 4 worker_threads (a V8 isolate and event loop each, on a thread of their own)
// compute a SHA-256 chain of 20,000 links each and post the result back. Then an HTTP server
// on 127.0.0.1:PORT answers GET /NAME with the file DIR/NAME, read with fs.readFile (libuv's
// threadpool), after a crypto.pbkdf2 of 1,000 rounds (the threadpool too) whose key goes in an
// X-Key header; GET /workers answers the 4 workers' results. Prints "listening PORT" once the
// workers are done and the server listens. SIGTERM ends it with status 0.
'use strict';
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const crypto = require('crypto');

function chain(seed) {
  let h = Buffer.from('seed' + seed);
  for (let k = 0; k < 20000; k++) h = crypto.createHash('sha256').update(h).digest();
  return h.toString('hex');
}

if (!isMainThread) {
  parentPort.postMessage(chain(workerData));
} else {
  const http = require('http');
  const fs = require('fs');
  const path = require('path');
  const [port, dir] = [+process.argv[2], process.argv[3]];
  const results = [];
  let done = 0;
  for (let i = 0; i < 4; i++) {
    new Worker(__filename, { workerData: i }).on('message', (m) => {
      results[i] = m;
      if (++done === 4) serve();
    });
  }
  function serve() {
    const server = http.createServer((req, res) => {
      if (req.url === '/workers') return res.end(results.join('\n') + '\n');
      fs.readFile(path.join(dir, path.basename(req.url)), (err, data) => {
        if (err) { res.writeHead(404); return res.end(); }
        crypto.pbkdf2('password', req.url, 1000, 16, 'sha256', (e, key) => {
          res.writeHead(200, { 'Content-Length': data.length, 'X-Key': key.toString('hex') });
          res.end(data);
        });
      });
    });
    server.listen(port, '127.0.0.1', () => console.log('listening ' + port));
    process.on('SIGTERM', () => server.close(() => process.exit(0)));
  }
}
