import type * as dns from "node:dns";
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { peerLookup } from "../src/etcd/peer/lookup.js";

/** Peer name lookup (off the thread pool): literals and /etc/hosts names; no DNS query is sent here. */

function lookup(
  name: string,
  options: dns.LookupOptions,
): Promise<{ address: string | dns.LookupAddress[]; family?: number }> {
  return new Promise((resolve, reject) =>
    peerLookup(name, options, (err, address, family) =>
      err ? reject(err) : resolve(family === undefined ? { address } : { address, family }),
    ),
  );
}

describe("peer lookup", () => {
  it("passes IP literals through in both callback shapes", async () => {
    expect(await lookup("127.0.0.1", {})).toEqual({ address: "127.0.0.1", family: 4 });
    expect(await lookup("::1", { all: true })).toEqual({ address: [{ address: "::1", family: 6 }] });
  });

  it("answers names listed in /etc/hosts from it", async () => {
    const hosts = fs.readFileSync("/etc/hosts", "utf8");
    const line = hosts.split("\n").find((l) => /^127\.0\.0\.1\s+\S/.test(l));
    const name = line?.split(/\s+/)[1];
    expect(name, "/etc/hosts has a 127.0.0.1 line").toBeDefined();
    expect(await lookup(name as string, { family: 4 })).toEqual({ address: "127.0.0.1", family: 4 });
    const all = (await lookup((name as string).toUpperCase(), { all: true })).address as dns.LookupAddress[];
    expect(all).toContainEqual({ address: "127.0.0.1", family: 4 });
  });
});
