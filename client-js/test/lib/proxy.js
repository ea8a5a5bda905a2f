// A TCP proxy on 127.0.0.1 that a test can cut and restore, to drop a
// client's connections while the server stays up. It also keeps the first
// bytes of every request, so a test can read request lines and headers.
import net from 'node:net';

export async function startProxy(t, target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const requests = [];
  let down = false;
  const server = net.createServer((client) => {
    if (down) return client.destroy();
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.once('data', (b) => requests.push(b.toString('latin1')));
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy = {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    /** Drops every open connection and refuses new ones until restore(). */
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore() { down = false; },
    close() {
      proxy.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
  t.after(() => proxy.close());
  return proxy;
}
