import * as dns from "node:dns";
import * as fs from "node:fs";
import * as net from "node:net";

/**
 * Name lookup for peer connections that never waits on libuv's thread pool.
 *
 * Node's default lookup (getaddrinfo) holds a pool thread until it answers, and a name no DNS
 * server answers for holds it a long time: under Docker's DNS a stopped container's name takes
 * ~10 s to fail. A member redials its lost peers every few hundred milliseconds, so a few such
 * lookups fill the pool (4 threads), and the write-ahead log's writes and fsyncs, which run on the
 * same pool, stall behind them: a stopped host would freeze its survivors' writes and shutdown.
 *
 * So: IP literals need no lookup; names in /etc/hosts are answered from it; other names go to the
 * DNS servers through c-ares (asynchronous, no pool thread) with a short timeout. Only when DNS
 * says "no such name" or cannot be asked at all does getaddrinfo get its turn (other name sources
 * such as NSS modules); a DNS timeout is reported as the dial's error and the dial retries later.
 */

const resolver = new dns.Resolver({ timeout: 1_000, tries: 2 });
const HOSTS_FILE = "/etc/hosts";
let hostsCache: { mtimeMs: number; names: Map<string, { address: string; family: 4 | 6 }[]> } | undefined;

function hostsEntries(name: string): { address: string; family: 4 | 6 }[] {
  try {
    const { mtimeMs } = fs.statSync(HOSTS_FILE);
    if (hostsCache?.mtimeMs !== mtimeMs) {
      const names = new Map<string, { address: string; family: 4 | 6 }[]>();
      for (const line of fs.readFileSync(HOSTS_FILE, "utf8").split("\n")) {
        const [address, ...aliases] = (line.split("#")[0] ?? "").trim().split(/\s+/);
        const family = address ? net.isIP(address) : 0;
        if (!address || (family !== 4 && family !== 6)) continue;
        for (const alias of aliases) {
          const key = alias.toLowerCase();
          names.set(key, [...(names.get(key) ?? []), { address, family }]);
        }
      }
      hostsCache = { mtimeMs, names };
    }
    return hostsCache.names.get(name.toLowerCase()) ?? [];
  } catch {
    return [];
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

function answer(options: dns.LookupOptions, found: { address: string; family: 4 | 6 }[], callback: LookupCallback) {
  const wanted = found.filter((a) => !options.family || options.family === a.family);
  const list = wanted.length > 0 ? wanted : found;
  if (options.all) callback(null, list);
  else callback(null, list[0]?.address ?? "", list[0]?.family ?? 4);
}

export function peerLookup(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  const family = net.isIP(hostname);
  if (family === 4 || family === 6) {
    answer(options, [{ address: hostname, family }], callback);
    return;
  }
  const fromHosts = hostsEntries(hostname);
  if (fromHosts.length > 0) {
    answer(options, fromHosts, callback);
    return;
  }
  resolver.resolve4(hostname, (err, addresses) => {
    if (!err && addresses.length > 0) {
      answer(
        options,
        addresses.map((address) => ({ address, family: 4 as const })),
        callback,
      );
      return;
    }
    if (err?.code === dns.TIMEOUT) {
      callback(Object.assign(new Error(`DNS lookup of ${hostname} timed out`), { code: err.code }), "", 4);
      return;
    }
    dns.lookup(hostname, { ...options, all: options.all === true }, callback as never);
  });
}
