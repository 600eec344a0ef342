import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bothPrinted, grantedLease, type Normalized, Pair, stopBoth, waitForWatchers } from "./helpers/etcdctl-diff.js";

/**
 * etcdctl watch runs as a child process against each server; the test makes the same writes on
 * both, waits for a final sentinel event, stops the watchers and compares everything they printed.
 */
describe("etcdctl watch: lab etcd vs etcd 3.4.23", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await Pair.start();
  });
  afterAll(async () => {
    await pair?.stop();
  });

  /** Writes that exercise puts, overwrites, deletes, range deletes and multi-op revisions. */
  async function writeSome(prefix: string): Promise<void> {
    await pair.same(["put", `${prefix}a`, "1"]);
    await pair.same(["put", `${prefix}b`, "2"]);
    await pair.same(["put", `${prefix}a`, "3"]);
    await pair.same(["put", "other", "not watched"]);
    await pair.same(["del", `${prefix}b`]);
    await pair.same(["txn"], { input: `\nput ${prefix}c 4\nput ${prefix}d 5\ndel ${prefix}a\n\n\n` });
    await pair.same(["del", prefix, "--prefix"]);
  }

  it("watch --prefix --prev-kv sees every event in order", async () => {
    const w = pair.spawn(["watch", "w1/", "--prefix", "--prev-kv"]);
    await waitForWatchers(pair, 1);
    await writeSome("w1/");
    await pair.same(["put", "w1/end", "sentinel"]);
    await bothPrinted(w, "sentinel");
    const r = await stopBoth(w, "SIGTERM");
    expect(r.stdout).toMatch(/^PUT\nw1\/a\n1\n/);
    // etcdctl prints the previous key-value before the event's own.
    expect(r.stdout).toContain("DELETE\nw1/b\n2\nw1/b\n\n");
    await waitForWatchers(pair, 0);
  });

  it("watch of one key and of a range, -w json", async () => {
    const one = pair.spawn(["watch", "w2/a", "-w", "json"]);
    const range = pair.spawn(["watch", "w2/b", "w2/d"]);
    await waitForWatchers(pair, 2);
    await writeSome("w2/");
    await pair.same(["put", "w2/a", "sentinel"]);
    await pair.same(["put", "w2/c", "sentinel"]);
    await bothPrinted(one, "c2VudGluZWw="); // "sentinel", base64 in JSON
    await bothPrinted(range, "sentinel");
    await stopBoth(one, "SIGTERM");
    const r = await stopBoth(range, "SIGTERM");
    expect(r.stdout).not.toContain("w2/a");
    await waitForWatchers(pair, 0);
  });

  it("watch --rev replays history, in the same responses", async () => {
    const start = await pair.same(["get", "w1/", "--prefix", "-w", "json", "--rev", "0"]);
    expect(start.code).toBe(0);
    for (const rev of ["1", "2", "9"]) {
      const w = pair.spawn(["watch", "w1/", "--prefix", "--rev", rev, "--prev-kv", "-w", "json"]);
      await bothPrinted(w, "c2VudGluZWw=");
      await stopBoth(w, "SIGTERM");
    }
    const w = pair.spawn(["watch", "", "--prefix", "--rev", "2"]);
    await bothPrinted(w, "w2/c\nsentinel");
    await stopBoth(w, "SIGTERM");
    await waitForWatchers(pair, 0);
  });

  it("watch -i: several watches on one stream, progress requests, bad lines", async () => {
    const w = pair.spawn(["watch", "-i"], { stdin: true });
    for (const bg of [w.lab, w.etcd]) {
      bg.write("watch w3/a\n");
      bg.write("watch w3/ --prefix --prev-kv\n");
    }
    await waitForWatchers(pair, 2);
    await writeSome("w3/");
    for (const bg of [w.lab, w.etcd]) {
      bg.write("bogus\n");
      bg.write("watch\n");
      bg.write("progress\n");
    }
    await bothPrinted(w, "progress notify:");
    await pair.same(["put", "w3/end", "sentinel"]);
    await bothPrinted(w, "sentinel");
    const [lab, etcd] = await Promise.all([w.lab.stop("SIGTERM"), w.etcd.stop("SIGTERM")]);
    // Each watch prints from its own goroutine in etcdctl, line by line, so two watches that see
    // the same revision interleave at random, even inside one event: compare the output as a
    // multiset of lines.
    expect(byLine(lab)).toEqual(byLine(etcd));
    expect(etcd.stderr).toContain("Invalid command bogus");
    await waitForWatchers(pair, 0);
  });

  function byLine(r: Normalized): Normalized {
    return { ...r, stdout: r.stdout.replace(/\n$/, "").split("\n").sort().join("\n") };
  }

  it("watch runs a command for each event", async () => {
    const w = pair.spawn([
      "watch",
      "w4/",
      "--prefix",
      "--",
      "sh",
      "-c",
      'echo "got $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE at $ETCD_WATCH_REVISION"',
    ]);
    await waitForWatchers(pair, 1);
    await writeSome("w4/");
    await pair.same(["put", "w4/end", "sentinel"]);
    await bothPrinted(w, 'got "PUT" "w4/end"="sentinel"');
    await stopBoth(w, "SIGTERM");
    await waitForWatchers(pair, 0);
  });

  it("watch from a future revision; a lease revocation deletes its keys in one revision", async () => {
    const lease = grantedLease(await pair.same(["lease", "grant", "100"]));
    for (const k of ["c", "a", "b"]) await pair.same(["put", `w5/${k}`, "v", "--lease", lease]);
    const now = await pair.same(["get", "w5/a", "-w", "json"]);
    const rev = Number(/"revision":(\d+)/.exec(now.stdout)?.[1]);
    expect(rev).toBeGreaterThan(1);
    // Starts two revisions ahead: the next put is skipped, the revocation and what follows are not.
    const w = pair.spawn(["watch", "w5/", "--prefix", "--rev", String(rev + 2), "--prev-kv", "-w", "json"]);
    await waitForWatchers(pair, 1);
    await pair.same(["put", "w5/skipped", "1"]);
    await pair.same(["lease", "revoke", lease]);
    await pair.same(["put", "w5/end", "sentinel"]);
    await bothPrinted(w, "c2VudGluZWw=");
    const r = await stopBoth(w, "SIGTERM");
    expect(r.stdout).not.toContain(Buffer.from("w5/skipped").toString("base64"));
    await waitForWatchers(pair, 0);
  });

  it("bad watch arguments fail the same way", async () => {
    for (const args of [["watch"], ["watch", "a", "b", "--prefix"]]) {
      expect((await pair.same(args)).code).not.toBe(0);
    }
  });
});
