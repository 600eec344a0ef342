import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningApiServer, request, startApiServer, WatchClient } from "./helpers/apiserver.js";
import { etcdctl, type RunningNode, startLab } from "./helpers/nodes.js";

/**
 * The API server's HTTP semantics, spoken to directly (what kubectl and client libraries rely on):
 * storage layout, metadata, Status errors, validation, paging, selectors, watch, patches,
 * namespace lifecycle, health. One store member; two API servers over it.
 */

let store: RunningNode;
let a: RunningApiServer;
let b: RunningApiServer;

beforeAll(async () => {
  store = await startLab();
  [a, b] = await Promise.all([startApiServer({ etcd: [store.endpoint] }), startApiServer({ etcd: [store.endpoint] })]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await store?.stop();
});

const cm = (name: string, data: Record<string, string> = { k: "v" }, labels?: Record<string, string>) => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, ...(labels ? { labels } : {}) },
  data,
});

async function ns(name: string): Promise<void> {
  const r = await request(`${a.url}/api/v1/namespaces`, "POST", {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name },
  });
  expect(r.status, r.text).toBe(201);
}

async function etcdJson(
  key: string,
): Promise<{ kvs?: { key: string; value: string; mod_revision: number; lease?: number }[] }> {
  const r = await etcdctl(store.endpoint, ["get", key, "-w", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe("bootstrap, discovery and health", () => {
  it("creates the system namespaces on first start, and refuses to delete default", async () => {
    const r = await request(`${a.url}/api/v1/namespaces`, "GET");
    expect(r.status).toBe(200);
    expect(r.json.kind).toBe("NamespaceList");
    const names = r.json.items.map((i: { metadata: { name: string } }) => i.metadata.name);
    expect(names).toEqual(expect.arrayContaining(["default", "kube-system", "kube-public", "kube-node-lease"]));
    const del = await request(`${a.url}/api/v1/namespaces/default`, "DELETE");
    expect(del.status).toBe(403);
    expect(del.json).toMatchObject({ kind: "Status", reason: "Forbidden", code: 403 });
    expect(del.json.message).toBe('namespaces "default" is forbidden: this namespace may not be deleted');
  });

  it("serves discovery documents", async () => {
    const api = await request(`${a.url}/api`, "GET");
    expect(api.json).toMatchObject({ kind: "APIVersions", versions: ["v1"] });
    const v1 = await request(`${a.url}/api/v1`, "GET");
    const cmRes = v1.json.resources.find((r: { name: string }) => r.name === "configmaps");
    expect(cmRes).toMatchObject({ kind: "ConfigMap", namespaced: true, shortNames: ["cm"] });
    expect(cmRes.verbs).toEqual(
      expect.arrayContaining(["create", "get", "list", "watch", "patch", "update", "delete"]),
    );
    expect(v1.json.resources.map((r: { name: string }) => r.name)).toEqual(
      expect.arrayContaining([
        "namespaces",
        "secrets",
        "services",
        "pods",
        "nodes",
        "events",
        "serviceaccounts",
        "pods/status",
      ]),
    );
    const apis = await request(`${a.url}/apis`, "GET");
    expect(apis.json.groups.map((g: { name: string }) => g.name)).toContain("coordination.k8s.io");
    const coord = await request(`${a.url}/apis/coordination.k8s.io/v1`, "GET");
    expect(coord.json.resources[0]).toMatchObject({ name: "leases", kind: "Lease", namespaced: true });
    const version = await request(`${a.url}/version`, "GET");
    expect(version.json.major).toBe("1");
    expect(version.json.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    const missing = await request(`${a.url}/apis/apps/v1`, "GET");
    expect(missing.status).toBe(404);
  });

  it("answers /healthz, /livez and /readyz with their checks", async () => {
    for (const p of ["/healthz", "/livez", "/readyz"]) {
      const r = await request(`${a.url}${p}`, "GET");
      expect(r.status).toBe(200);
      expect(r.text).toBe("ok");
    }
    const verbose = await request(`${a.url}/readyz?verbose`, "GET");
    expect(verbose.text).toContain("[+]etcd ok");
    expect(verbose.text).toContain("readyz check passed");
    const one = await request(`${a.url}/readyz/etcd`, "GET");
    expect(one.text).toBe("ok");
  });
});

describe("objects on the store", () => {
  beforeAll(() => ns("store-layout"));

  it("stores a ConfigMap under /registry/configmaps/<ns>/<name> as JSON; resourceVersion is its mod_revision", async () => {
    const created = await request(`${a.url}/api/v1/namespaces/store-layout/configmaps`, "POST", cm("c1", { a: "1" }));
    expect(created.status).toBe(201);
    const meta = created.json.metadata;
    expect(meta.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(meta.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(meta.namespace).toBe("store-layout");
    const kv = (await etcdJson("/registry/configmaps/store-layout/c1")).kvs?.[0];
    expect(kv).toBeDefined();
    expect(String(kv?.mod_revision)).toBe(meta.resourceVersion);
    const stored = JSON.parse(Buffer.from(kv?.value ?? "", "base64").toString());
    expect(stored).toMatchObject({
      apiVersion: "v1",
      kind: "ConfigMap",
      data: { a: "1" },
      metadata: { name: "c1", uid: meta.uid },
    });
    expect(stored.metadata.resourceVersion).toBeUndefined();
    const got = await request(`${b.url}/api/v1/namespaces/store-layout/configmaps/c1`, "GET");
    expect(got.json).toEqual(created.json);
  });

  it("keeps cluster-scoped and grouped types under kube-apiserver's keys", async () => {
    const node = await request(`${a.url}/api/v1/nodes`, "POST", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "worker-1" },
    });
    expect(node.status).toBe(201);
    expect((await etcdJson("/registry/minions/worker-1")).kvs).toHaveLength(1);
    const svc = await request(`${a.url}/api/v1/namespaces/store-layout/services`, "POST", {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web" },
      spec: { selector: { app: "web" }, ports: [{ port: 80 }] },
    });
    expect(svc.status, svc.text).toBe(201);
    expect(svc.json.spec).toMatchObject({ type: "ClusterIP", ports: [{ port: 80, protocol: "TCP", targetPort: 80 }] });
    expect(svc.json.spec.clusterIP).toMatch(/^10\.(9[6-9]|10\d|11[01])\.\d+\.\d+$/);
    expect((await etcdJson("/registry/services/specs/store-layout/web")).kvs).toHaveLength(1);
    const lease = await request(`${a.url}/apis/coordination.k8s.io/v1/namespaces/store-layout/leases`, "POST", {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "leader" },
      spec: { holderIdentity: "me", leaseDurationSeconds: 15 },
    });
    expect(lease.status, lease.text).toBe(201);
    expect((await etcdJson("/registry/leases/store-layout/leader")).kvs).toHaveLength(1);
  });

  it("stores events under a store lease (they expire, as with --event-ttl)", async () => {
    const ev = await request(`${a.url}/api/v1/namespaces/store-layout/events`, "POST", {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "c1.1" },
      involvedObject: { kind: "ConfigMap", name: "c1", namespace: "store-layout" },
      reason: "Tested",
      message: "hello",
      type: "Normal",
    });
    expect(ev.status, ev.text).toBe(201);
    const kv = (await etcdJson("/registry/events/store-layout/c1.1")).kvs?.[0];
    expect(Number(kv?.lease ?? 0)).toBeGreaterThan(0);
  });

  it("sets pod defaults and status, and tracks generation", async () => {
    const pod = await request(`${a.url}/api/v1/namespaces/store-layout/pods`, "POST", {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "p1" },
      spec: { containers: [{ name: "app", image: "nginx:1.27" }] },
      status: { phase: "Running" },
    });
    expect(pod.status, pod.text).toBe(201);
    expect(pod.json.metadata.generation).toBe(1);
    expect(pod.json.status.phase).toBe("Pending");
    expect(pod.json.spec).toMatchObject({
      restartPolicy: "Always",
      dnsPolicy: "ClusterFirst",
      terminationGracePeriodSeconds: 30,
    });
    expect(pod.json.spec.containers[0].imagePullPolicy).toBe("IfNotPresent");
    const patched = await request(
      `${a.url}/api/v1/namespaces/store-layout/pods/p1`,
      "PATCH",
      { spec: { containers: [{ name: "app", image: "nginx:1.28" }] } },
      { "Content-Type": "application/strategic-merge-patch+json" },
    );
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json.metadata.generation).toBe(2);
    expect(patched.json.spec.containers).toHaveLength(1);
    expect(patched.json.spec.containers[0]).toMatchObject({
      name: "app",
      image: "nginx:1.28",
      imagePullPolicy: "IfNotPresent",
    });
    const forbidden = await request(
      `${a.url}/api/v1/namespaces/store-layout/pods/p1`,
      "PATCH",
      { spec: { restartPolicy: "Never" } },
      { "Content-Type": "application/merge-patch+json" },
    );
    expect(forbidden.status).toBe(422);
    expect(forbidden.json.message).toContain("pod updates may not change fields other than");
    const status = await request(
      `${a.url}/api/v1/namespaces/store-layout/pods/p1/status`,
      "PATCH",
      { status: { phase: "Running" }, spec: { restartPolicy: "Never" } },
      { "Content-Type": "application/merge-patch+json" },
    );
    expect(status.status, status.text).toBe(200);
    expect(status.json.status.phase).toBe("Running");
    expect(status.json.spec.restartPolicy).toBe("Always");
  });
});

describe("errors as Kubernetes Status objects", () => {
  beforeAll(() => ns("errors"));
  const base = () => `${a.url}/api/v1/namespaces/errors/configmaps`;

  it("NotFound", async () => {
    const r = await request(`${base()}/missing`, "GET");
    expect(r.status).toBe(404);
    expect(r.json).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'configmaps "missing" not found',
      reason: "NotFound",
      details: { name: "missing", kind: "configmaps" },
      code: 404,
    });
    const lease = await request(`${a.url}/apis/coordination.k8s.io/v1/namespaces/errors/leases/x`, "GET");
    expect(lease.json.message).toBe('leases.coordination.k8s.io "x" not found');
  });

  it("AlreadyExists, and creating in a namespace that does not exist", async () => {
    expect((await request(base(), "POST", cm("dup"))).status).toBe(201);
    const again = await request(base(), "POST", cm("dup"));
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ reason: "AlreadyExists", message: 'configmaps "dup" already exists' });
    const nowhere = await request(`${a.url}/api/v1/namespaces/nowhere/configmaps`, "POST", cm("x"));
    expect(nowhere.status).toBe(404);
    expect(nowhere.json.message).toBe('namespaces "nowhere" not found');
  });

  it("Invalid with field causes", async () => {
    const r = await request(base(), "POST", cm("Bad_Name", { "bad key!": "v" }));
    expect(r.status).toBe(422);
    expect(r.json.reason).toBe("Invalid");
    expect(r.json.message).toMatch(
      /^ConfigMap "Bad_Name" is invalid: \[metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/,
    );
    const fields = r.json.details.causes.map((c: { field: string }) => c.field);
    expect(fields).toEqual(["metadata.name", "data[bad key!]"]);
    expect(r.json.details.causes[0].reason).toBe("FieldValueInvalid");
  });

  it("BadRequest for malformed JSON and YAML, with the parse error", async () => {
    const json = await request(base(), "POST", "{not json");
    expect(json.status).toBe(400);
    expect(json.json.reason).toBe("BadRequest");
    expect(json.json.message).toMatch(/not valid JSON/);
    const yaml = await request(base(), "POST", "metadata: [unclosed", { "Content-Type": "application/yaml" });
    expect(yaml.status).toBe(400);
    expect(yaml.json.message).toMatch(/not valid YAML/);
    const goodYaml = await request(
      base(),
      "POST",
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n",
      {
        "Content-Type": "application/yaml",
      },
    );
    expect(goodYaml.status, goodYaml.text).toBe(201);
    const wrongKind = await request(base(), "POST", { apiVersion: "v1", kind: "Secret", metadata: { name: "x" } });
    expect(wrongKind.status).toBe(400);
    const wrongType = await request(base(), "POST", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "x" },
      data: "text",
    });
    expect(wrongType.status).toBe(400);
    expect(wrongType.json.message).toContain("data");
  });

  it("refuses bodies over 3 MiB (413) and ConfigMap data over 1 MiB (422)", async () => {
    const huge = await request(base(), "POST", cm("huge", { k: "x".repeat(3 * 1024 * 1024 + 10) }));
    expect(huge.status).toBe(413);
    expect(huge.json.reason).toBe("RequestEntityTooLarge");
    const big = await request(base(), "POST", cm("big", { k: "x".repeat(1024 * 1024 + 1) }));
    expect(big.status).toBe(422);
    expect(big.json.details.causes[0]).toMatchObject({ reason: "FieldValueTooLong", field: "data" });
  });

  it("Conflict on a stale resourceVersion; a PUT without one replaces; a no-op keeps the version", async () => {
    const c = await request(base(), "POST", cm("cas", { v: "1" }));
    const rv = c.json.metadata.resourceVersion;
    const u1 = await request(`${base()}/cas`, "PUT", { ...c.json, data: { v: "2" } });
    expect(u1.status).toBe(200);
    expect(Number(u1.json.metadata.resourceVersion)).toBeGreaterThan(Number(rv));
    const stale = await request(`${base()}/cas`, "PUT", { ...c.json, data: { v: "3" } });
    expect(stale.status).toBe(409);
    expect(stale.json).toMatchObject({
      reason: "Conflict",
      message:
        'Operation cannot be fulfilled on configmaps "cas": the object has been modified; please apply your changes to the latest version and try again',
    });
    const blind = await request(`${base()}/cas`, "PUT", cm("cas", { v: "4" }));
    expect(blind.status).toBe(200);
    expect(blind.json.metadata.uid).toBe(c.json.metadata.uid);
    const same = await request(`${base()}/cas`, "PUT", blind.json);
    expect(same.json.metadata.resourceVersion).toBe(blind.json.metadata.resourceVersion);
    const wrongName = await request(`${base()}/cas`, "PUT", cm("other"));
    expect(wrongName.status).toBe(400);
    const missing = await request(`${base()}/nothing-here`, "PUT", cm("nothing-here"));
    expect(missing.status).toBe(404);
  });

  it("delete preconditions", async () => {
    const c = await request(base(), "POST", cm("pre"));
    const wrong = await request(`${base()}/pre`, "DELETE", { preconditions: { uid: "not-it" } });
    expect(wrong.status).toBe(409);
    expect(wrong.json.message).toContain("Precondition failed: UID in precondition: not-it");
    const right = await request(`${base()}/pre`, "DELETE", { preconditions: { uid: c.json.metadata.uid } });
    expect(right.status).toBe(200);
    expect(right.json).toMatchObject({
      kind: "Status",
      status: "Success",
      details: { name: "pre", kind: "configmaps" },
    });
    expect((await request(`${base()}/pre`, "GET")).status).toBe(404);
  });

  it("generateName, dryRun and field validation", async () => {
    const g = await request(base(), "POST", {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { generateName: "gen-" },
    });
    expect(g.status).toBe(201);
    expect(g.json.metadata.name).toMatch(/^gen-[a-z0-9]{5}$/);
    const dry = await request(`${base()}?dryRun=All`, "POST", cm("dry"));
    expect(dry.status).toBe(201);
    expect((await request(`${base()}/dry`, "GET")).status).toBe(404);
    const strict = await request(`${base()}?fieldValidation=Strict`, "POST", { ...cm("strict"), extra: 1 });
    expect(strict.status).toBe(400);
    expect(strict.json.message).toBe('strict decoding error: unknown field "extra"');
    const warn = await request(base(), "POST", { ...cm("warned"), extra: 1 });
    expect(warn.status).toBe(201);
    expect(warn.headers.get("warning")).toContain('unknown field \\"extra\\"');
    expect(warn.json.extra).toBeUndefined();
  });
});

describe("lists: paging, selectors, resourceVersions", () => {
  beforeAll(async () => {
    await ns("paging");
    for (let i = 0; i < 25; i++) {
      const r = await request(
        `${a.url}/api/v1/namespaces/paging/configmaps`,
        "POST",
        cm(
          `c${String(i).padStart(2, "0")}`,
          { i: String(i) },
          { parity: i % 2 === 0 ? "even" : "odd", tier: i < 5 ? "front" : "back" },
        ),
      );
      expect(r.status).toBe(201);
    }
  });
  const base = () => `${a.url}/api/v1/namespaces/paging/configmaps`;

  it("pages with limit and continue, at one consistent revision", async () => {
    const first = await request(`${base()}?limit=10`, "GET");
    expect(first.json.items).toHaveLength(10);
    expect(first.json.metadata.remainingItemCount).toBe(15);
    const rv = first.json.metadata.resourceVersion;
    // A write between pages is not seen by the rest of the paged list.
    await request(base(), "POST", cm("c99"));
    const names: string[] = first.json.items.map((i: { metadata: { name: string } }) => i.metadata.name);
    let token = first.json.metadata.continue;
    while (token) {
      const page = await request(`${base()}?limit=10&continue=${encodeURIComponent(token)}`, "GET");
      expect(page.status, page.text).toBe(200);
      expect(page.json.metadata.resourceVersion).toBe(rv);
      names.push(...page.json.items.map((i: { metadata: { name: string } }) => i.metadata.name));
      token = page.json.metadata.continue;
    }
    expect(names).toHaveLength(25);
    expect(new Set(names).size).toBe(25);
    expect(names).not.toContain("c99");
    await request(`${base()}/c99`, "DELETE");
  });

  it("filters by label and field selectors (and pages filtered lists)", async () => {
    const even = await request(`${base()}?labelSelector=${encodeURIComponent("parity=even,tier!=front")}`, "GET");
    expect(even.json.items.map((i: { data: { i: string } }) => Number(i.data.i))).toEqual([
      6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
    ]);
    const setBased = await request(
      `${base()}?labelSelector=${encodeURIComponent("tier in (front),parity notin (odd)")}`,
      "GET",
    );
    expect(setBased.json.items).toHaveLength(3);
    const byName = await request(`${base()}?fieldSelector=metadata.name%3Dc07`, "GET");
    expect(byName.json.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(["c07"]);
    const notName = await request(`${base()}?fieldSelector=metadata.name!%3Dc07`, "GET");
    expect(notName.json.items).toHaveLength(24);
    const all = await request(
      `${a.url}/api/v1/configmaps?fieldSelector=metadata.namespace%3Dpaging&labelSelector=tier%3Dfront`,
      "GET",
    );
    expect(all.json.items).toHaveLength(5);
    const paged = await request(`${base()}?labelSelector=parity%3Dodd&limit=5`, "GET");
    expect(paged.json.items).toHaveLength(5);
    expect(paged.json.metadata.continue).toBeTruthy();
    const bad = await request(`${base()}?fieldSelector=spec.foo%3Dx`, "GET");
    expect(bad.status).toBe(400);
    expect(bad.json.message).toBe("field label not supported: spec.foo");
    const badLabel = await request(`${base()}?labelSelector=${encodeURIComponent("a in (b")}`, "GET");
    expect(badLabel.status).toBe(400);
  });

  it("answers 410 Gone for a continue token or exact resourceVersion the store compacted", async () => {
    const first = await request(`${base()}?limit=5`, "GET");
    const rv = Number(first.json.metadata.resourceVersion);
    await request(base(), "POST", cm("bump"));
    const status = await etcdctl(store.endpoint, ["endpoint", "status", "-w", "json"]);
    const revision = JSON.parse(status.stdout)[0].Status.header.revision as number;
    const compact = await etcdctl(store.endpoint, ["compact", String(revision)]);
    expect(compact.code, compact.stderr).toBe(0);
    const gone = await request(`${base()}?limit=5&continue=${encodeURIComponent(first.json.metadata.continue)}`, "GET");
    expect(gone.status).toBe(410);
    expect(gone.json.reason).toBe("Expired");
    expect(gone.json.message).toMatch(/^The provided continue parameter is too old/);
    const exact = await request(`${base()}?resourceVersion=${rv}&resourceVersionMatch=Exact`, "GET");
    expect(exact.status).toBe(410);
    expect(exact.json.message).toMatch(/^too old resource version/);
  });

  it("deletecollection removes what the selector matches", async () => {
    const r = await request(`${base()}?labelSelector=tier%3Dfront`, "DELETE");
    expect(r.status).toBe(200);
    const left = await request(`${base()}?labelSelector=tier%3Dfront`, "GET");
    expect(left.json.items).toHaveLength(0);
    const rest = await request(base(), "GET");
    expect(rest.json.items.length).toBeGreaterThanOrEqual(20);
  });
});

describe("watch", () => {
  beforeAll(() => ns("watching"));
  const base = () => `${a.url}/api/v1/namespaces/watching/configmaps`;

  it("streams ADDED, MODIFIED and DELETED from a resourceVersion, across API servers", async () => {
    const start = await request(base(), "GET");
    const w = await WatchClient.open(
      `${a.url}/api/v1/namespaces/watching/configmaps?watch=true&resourceVersion=${start.json.metadata.resourceVersion}`,
    );
    expect(w.status).toBe(200);
    const created = await request(`${b.url}/api/v1/namespaces/watching/configmaps`, "POST", cm("w1"));
    const updated = await request(`${b.url}/api/v1/namespaces/watching/configmaps/w1`, "PUT", {
      ...created.json,
      data: { k: "2" },
    });
    await request(`${b.url}/api/v1/namespaces/watching/configmaps/w1`, "DELETE");
    const events = await w.until((e) => e.length >= 3);
    w.close();
    expect(events.map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    expect(events[0]?.object.metadata?.resourceVersion).toBe(created.json.metadata.resourceVersion);
    expect(events[1]?.object.metadata?.resourceVersion).toBe(updated.json.metadata.resourceVersion);
    expect(Number(events[2]?.object.metadata?.resourceVersion)).toBeGreaterThan(
      Number(updated.json.metadata.resourceVersion),
    );
    expect(events[0]?.object.kind).toBe("ConfigMap");
  });

  it("without a resourceVersion, starts with the current state as ADDED events", async () => {
    await request(base(), "POST", cm("existing"));
    const w = await WatchClient.open(`${base()}?watch=1`);
    const events = await w.until((e) => e.some((x) => x.object.metadata?.name === "existing"));
    w.close();
    expect(events[0]?.type).toBe("ADDED");
  });

  it("applies selectors to transitions: a label leaving the selector is a DELETED event", async () => {
    const start = await request(base(), "GET");
    const w = await WatchClient.open(
      `${base()}?watch=true&labelSelector=app%3Dweb&resourceVersion=${start.json.metadata.resourceVersion}`,
    );
    await request(base(), "POST", cm("sel", { k: "v" }, { app: "web" }));
    await request(
      `${base()}/sel`,
      "PATCH",
      { metadata: { labels: { app: "db" } } },
      { "Content-Type": "application/merge-patch+json" },
    );
    await request(
      `${base()}/sel`,
      "PATCH",
      { metadata: { labels: { app: "web" } } },
      { "Content-Type": "application/merge-patch+json" },
    );
    await request(base(), "POST", cm("other", { k: "v" }, { app: "db" }));
    const events = await w.until((e) => e.length >= 3);
    w.close();
    expect(events.map((e) => [e.type, e.object.metadata?.name])).toEqual([
      ["ADDED", "sel"],
      ["DELETED", "sel"],
      ["ADDED", "sel"],
    ]);
  });

  it("sends BOOKMARK events when asked", async () => {
    const start = await request(base(), "GET");
    const w = await WatchClient.open(
      `${base()}?watch=true&allowWatchBookmarks=true&resourceVersion=${start.json.metadata.resourceVersion}`,
    );
    await request(`${a.url}/api/v1/namespaces/default/configmaps`, "POST", cm("elsewhere"));
    const events = await w.until((e) => e.some((x) => x.type === "BOOKMARK"), 30_000);
    w.close();
    const bookmark = events.find((e) => e.type === "BOOKMARK");
    expect(bookmark?.object).toMatchObject({ kind: "ConfigMap", apiVersion: "v1" });
    expect(Number(bookmark?.object.metadata?.resourceVersion)).toBeGreaterThan(
      Number(start.json.metadata.resourceVersion),
    );
  });

  it("ends with a 410 Expired ERROR event when the resourceVersion was compacted", async () => {
    const status = await etcdctl(store.endpoint, ["endpoint", "status", "-w", "json"]);
    const revision = JSON.parse(status.stdout)[0].Status.header.revision as number;
    await request(base(), "POST", cm("after-compact"));
    const compact = await etcdctl(store.endpoint, ["compact", String(revision)]);
    expect(compact.code, compact.stderr).toBe(0);
    const w = await WatchClient.open(`${base()}?watch=true&resourceVersion=2`);
    const events = await w.until((e) => e.some((x) => x.type === "ERROR"));
    const error = events.find((e) => e.type === "ERROR");
    expect(error?.object).toMatchObject({ kind: "Status", status: "Failure", reason: "Expired", code: 410 });
    expect(String(error?.object.message)).toMatch(/^too old resource version: 2 \(\d+\)$/);
    await w.until(() => w.ended);
  });

  it("serves server-side tables to kubectl-style requests", async () => {
    const r = await request(`${base()}`, "GET", undefined, {
      Accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    });
    expect(r.json.kind).toBe("Table");
    expect(r.json.apiVersion).toBe("meta.k8s.io/v1");
    expect(r.json.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(["Name", "Data", "Age"]);
    expect(r.json.rows[0].object.kind).toBe("PartialObjectMetadata");
  });
});

describe("patches", () => {
  beforeAll(() => ns("patching"));
  const base = () => `${a.url}/api/v1/namespaces/patching/configmaps`;

  it("merge, JSON and strategic merge patches", async () => {
    await request(base(), "POST", cm("p", { a: "1", b: "2" }));
    const merge = await request(
      `${base()}/p`,
      "PATCH",
      { data: { a: null, c: "3" } },
      { "Content-Type": "application/merge-patch+json" },
    );
    expect(merge.json.data).toEqual({ b: "2", c: "3" });
    const json = await request(
      `${base()}/p`,
      "PATCH",
      [
        { op: "add", path: "/data/d", value: "4" },
        { op: "remove", path: "/data/b" },
      ],
      { "Content-Type": "application/json-patch+json" },
    );
    expect(json.json.data).toEqual({ c: "3", d: "4" });
    const missing = await request(`${base()}/p`, "PATCH", [{ op: "remove", path: "/data/zz" }], {
      "Content-Type": "application/json-patch+json",
    });
    expect(missing.status).toBe(422);
    const smp = await request(
      `${base()}/p`,
      "PATCH",
      { metadata: { labels: { x: "y" } } },
      {
        "Content-Type": "application/strategic-merge-patch+json",
      },
    );
    expect(smp.json.metadata.labels).toEqual({ x: "y" });
    const stale = await request(
      `${base()}/p`,
      "PATCH",
      { metadata: { resourceVersion: "1" }, data: { e: "5" } },
      {
        "Content-Type": "application/merge-patch+json",
      },
    );
    expect(stale.status).toBe(409);
    const unsupported = await request(`${base()}/p`, "PATCH", { data: {} }, { "Content-Type": "text/plain" });
    expect(unsupported.status).toBe(415);
  });
});

describe("namespace lifecycle", () => {
  it("deleting a namespace deletes everything in it", async () => {
    await ns("doomed");
    await request(`${a.url}/api/v1/namespaces/doomed/configmaps`, "POST", cm("one"));
    await request(`${a.url}/api/v1/namespaces/doomed/secrets`, "POST", {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s" },
      stringData: { password: "hunter2" },
    });
    const secret = await request(`${a.url}/api/v1/namespaces/doomed/secrets/s`, "GET");
    expect(secret.json.data).toEqual({ password: Buffer.from("hunter2").toString("base64") });
    expect(secret.json.stringData).toBeUndefined();
    const del = await request(`${a.url}/api/v1/namespaces/doomed`, "DELETE");
    expect(del.status).toBe(200);
    expect(del.json.status.phase).toBe("Terminating");
    expect((await request(`${a.url}/api/v1/namespaces/doomed`, "GET")).status).toBe(404);
    const left = await etcdctl(store.endpoint, ["get", "--prefix", "/registry/", "--keys-only"]);
    expect(left.stdout).not.toMatch(/\/doomed\//);
    expect(left.stdout).not.toMatch(/namespaces\/doomed$/m);
  });
});

describe("store compaction", () => {
  it("compacts the store every --etcd-compaction-interval, keeping one interval of history", async () => {
    const c = await startApiServer({ etcd: [store.endpoint], extraArgs: ["--etcd-compaction-interval=1s"] });
    try {
      const status = await etcdctl(store.endpoint, ["endpoint", "status", "-w", "json"]);
      const from = JSON.parse(status.stdout)[0].Status.header.revision as number;
      let compacted = 0;
      for (let i = 0; i < 200 && compacted <= from; i++) {
        await request(`${c.url}/api/v1/namespaces/default/configmaps`, "POST", cm(`tick-${i}`));
        for (const m of c.output().matchAll(/"msg":"compacted the store","component":"apiserver","revision":(\d+)/g))
          compacted = Math.max(compacted, Number(m[1]));
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(compacted).toBeGreaterThan(from);
      const old = await etcdctl(store.endpoint, ["get", "/registry/namespaces/default", `--rev=${compacted - 1}`]);
      expect(old.code).not.toBe(0);
      expect(old.stderr).toContain("required revision has been compacted");
      const key = await etcdctl(store.endpoint, ["get", "compact_rev_key", "-w", "json"]);
      expect(JSON.parse(key.stdout).kvs[0].version).toBeGreaterThanOrEqual(2);
    } finally {
      await c.stop();
    }
  });
});
