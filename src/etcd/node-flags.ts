/**
 * Node.js (V8) flags that lab starts every store member with: inside lab hosts (the supervisor
 * runs `etcd ...` as `node <flags> main.js etcd ...`), in the benchmarks and in the tests.
 *
 * A young generation of at most 4 MiB per semi-space instead of Node's 16: a member's allocation
 * per write is short-lived (requests, frames, Ready passes), and what survives (the stored
 * records) costs a collection the same in total either way, so smaller, more frequent
 * collections stop each write for less. Side by side (one member, one client, 40–60 s in
 * alternating slices, four runs) the p99 was 10–20% lower (same build, same side order without
 * the flag: 2%); 128 clients and three members showed no difference.
 *
 * `lab etcd` started by hand runs without them unless given: `node --max-semi-space-size=4 $(command -v lab) etcd ...`.
 */
export const MEMBER_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=4"];

/** The arguments after the Node.js binary that run `lab etcd <etcdArgs>` as a store member. */
export function memberProcessArgs(labMain: string, etcdArgs: readonly string[]): string[] {
  return [...MEMBER_NODE_FLAGS, labMain, "etcd", ...etcdArgs];
}
