import * as net from "node:net";

/**
 * A loopback port nothing listens on now and not in `taken`, which it joins: the kernel may offer
 * a port just released again at once, so callers that hand out several keep one set.
 */
export async function freeLoopbackPort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.once("error", reject);
      srv.listen({ host: "127.0.0.1", port: 0 }, () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}
