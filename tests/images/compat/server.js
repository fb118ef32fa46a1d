// The compat suite's node app: one line per request, with a counter kept in memory.
const http = require('http');
let hits = 0;
http.createServer((req, res) => {
  hits += 1;
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`hello from node ${process.version} ${req.method} ${req.url} hit ${hits}\n`);
}).listen(3000, '0.0.0.0', () => console.log('listening on 3000'));
process.on('SIGTERM', () => { console.log('SIGTERM: exiting'); process.exit(0); });
