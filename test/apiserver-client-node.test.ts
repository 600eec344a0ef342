import * as k8s from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningApiServer, request, startApiServer } from "./helpers/apiserver.js";
import { TestCluster } from "./helpers/cluster.js";
import { sleep } from "./helpers/nodes.js";

/**
 * @kubernetes/client-node against API servers on a 3-member store: CRUD on every supported
 * resource, watch, and an informer (list-watch) that stays in sync while the store's leader is
 * killed. Then readiness: /readyz fails its etcd check when the store loses quorum, and recovers.
 */

let cluster: TestCluster;
let a: RunningApiServer;
let b: RunningApiServer;
let kc: k8s.KubeConfig;
let core: k8s.CoreV1Api;
let coordination: k8s.CoordinationV1Api;

function configFor(server: string): k8s.KubeConfig {
  const c = new k8s.KubeConfig();
  c.loadFromOptions({
    clusters: [{ name: "lab", server, skipTLSVerify: true }],
    users: [{ name: "lab" }],
    contexts: [{ name: "lab", cluster: "lab", user: "lab" }],
    currentContext: "lab",
  });
  return c;
}

beforeAll(async () => {
  cluster = await TestCluster.start({ size: 3 });
  // Both API servers talk to the leader first, so killing it takes their store connection away.
  const leader = await cluster.waitLeader();
  const others = cluster.allEndpoints.filter((e) => e !== leader.endpoint);
  [a, b] = await Promise.all([
    startApiServer({ etcd: [leader.endpoint, ...others] }),
    startApiServer({ etcd: [leader.endpoint, ...others.reverse()] }),
  ]);
  kc = configFor(a.url);
  core = kc.makeApiClient(k8s.CoreV1Api);
  coordination = kc.makeApiClient(k8s.CoordinationV1Api);
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await cluster?.killAll();
});

const NS = "client-node";

describe("@kubernetes/client-node", () => {
  it("CRUD on every supported resource", async () => {
    const ns = await core.createNamespace({ body: { metadata: { name: NS, labels: { purpose: "test" } } } });
    expect(ns.status?.phase).toBe("Active");
    expect((await core.readNamespace({ name: NS })).metadata?.labels?.purpose).toBe("test");

    const cm = await core.createNamespacedConfigMap({
      namespace: NS,
      body: { metadata: { name: "cm" }, data: { a: "1" } },
    });
    expect(cm.metadata?.resourceVersion).toMatch(/^\d+$/);
    cm.data = { a: "2" };
    const replaced = await core.replaceNamespacedConfigMap({ name: "cm", namespace: NS, body: cm });
    expect(replaced.data).toEqual({ a: "2" });
    const patched = await core.patchNamespacedConfigMap(
      { name: "cm", namespace: NS, body: { data: { b: "3" } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    expect(patched.data).toEqual({ a: "2", b: "3" });
    expect((await core.listNamespacedConfigMap({ namespace: NS })).items.map((i) => i.metadata?.name)).toEqual(["cm"]);

    const secret = await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: "s" }, stringData: { token: "abc" } },
    });
    expect(secret.data?.token).toBe(Buffer.from("abc").toString("base64"));
    expect(secret.type).toBe("Opaque");

    const svc = await core.createNamespacedService({
      namespace: NS,
      body: { metadata: { name: "svc" }, spec: { selector: { app: "x" }, ports: [{ port: 443, targetPort: 8443 }] } },
    });
    expect(svc.spec?.clusterIP).toMatch(/^10\./);
    expect(svc.spec?.ports?.[0]?.protocol).toBe("TCP");

    const pod = await core.createNamespacedPod({
      namespace: NS,
      body: { metadata: { name: "p" }, spec: { containers: [{ name: "c", image: "busybox" }] } },
    });
    expect(pod.status?.phase).toBe("Pending");
    expect(pod.spec?.containers[0]?.imagePullPolicy).toBe("Always");
    const status = await core.replaceNamespacedPodStatus({
      name: "p",
      namespace: NS,
      body: { ...pod, status: { phase: "Running", podIP: "10.244.0.5" } },
    });
    expect(status.status?.phase).toBe("Running");
    expect((await core.listNamespacedPod({ namespace: NS, fieldSelector: "status.phase=Running" })).items).toHaveLength(
      1,
    );

    const node = await core.createNode({
      body: { metadata: { name: "n1", labels: { "node-role.kubernetes.io/control-plane": "" } } },
    });
    expect(node.metadata?.name).toBe("n1");
    expect((await core.listNode()).items.map((n) => n.metadata?.name)).toContain("n1");

    const ev = await core.createNamespacedEvent({
      namespace: NS,
      body: {
        metadata: { name: "p.1" },
        involvedObject: { kind: "Pod", name: "p", namespace: NS },
        reason: "Scheduled",
        message: "assigned",
        type: "Normal",
      },
    });
    expect(ev.reason).toBe("Scheduled");
    const events = await core.listNamespacedEvent({
      namespace: NS,
      fieldSelector: "involvedObject.name=p,involvedObject.kind=Pod",
    });
    expect(events.items).toHaveLength(1);

    const sa = await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: "robot" } } });
    expect(sa.metadata?.uid).toBeTruthy();

    const lease = await coordination.createNamespacedLease({
      namespace: NS,
      body: { metadata: { name: "leader" }, spec: { holderIdentity: "a", leaseDurationSeconds: 10 } },
    });
    lease.spec = { ...lease.spec, holderIdentity: "b" };
    const taken = await coordination.replaceNamespacedLease({ name: "leader", namespace: NS, body: lease });
    expect(taken.spec?.holderIdentity).toBe("b");

    await core.deleteNamespacedServiceAccount({ name: "robot", namespace: NS });
    await core.deleteNamespacedSecret({ name: "s", namespace: NS });
    await coordination.deleteNamespacedLease({ name: "leader", namespace: NS });
    await core.deleteNode({ name: "n1" });
    await expect(core.readNamespacedSecret({ name: "s", namespace: NS })).rejects.toMatchObject({ code: 404 });
    const conflict = core.replaceNamespacedConfigMap({ name: "cm", namespace: NS, body: cm });
    await expect(conflict).rejects.toMatchObject({ code: 409 });
  });

  it("watches", async () => {
    const list = await core.listNamespacedConfigMap({ namespace: NS });
    const seen: string[] = [];
    const watch = new k8s.Watch(kc);
    const req = await watch.watch(
      `/api/v1/namespaces/${NS}/configmaps`,
      { resourceVersion: list.metadata?.resourceVersion },
      (type, obj: k8s.V1ConfigMap) => seen.push(`${type} ${obj.metadata?.name}`),
      () => undefined,
    );
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "watched" } } });
    await core.deleteNamespacedConfigMap({ name: "watched", namespace: NS });
    for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(100);
    req.abort();
    expect(seen).toEqual(["ADDED watched", "DELETED watched"]);
  });

  it("an informer stays in sync while the store leader is killed; no request fails", async () => {
    const informer = k8s.makeInformer(kc, `/api/v1/namespaces/${NS}/configmaps`, () =>
      core.listNamespacedConfigMap({ namespace: NS }),
    );
    const errors: unknown[] = [];
    informer.on("error", (e) => {
      errors.push(e);
      // client-node stops on error; a real controller restarts it, and so do we.
      setTimeout(() => void informer.start(), 200);
    });
    await informer.start();
    // Writes through the other API server, before, during and after the leader's death.
    const other = configFor(b.url).makeApiClient(k8s.CoreV1Api);
    const failures: string[] = [];
    let written = 0;
    let stop = false;
    let slowest = 0;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          const started = Date.now();
          await other.createNamespacedConfigMap({
            namespace: NS,
            body: { metadata: { name: `w-${i}` }, data: { i: String(i) } },
          });
          slowest = Math.max(slowest, Date.now() - started);
          written++;
        } catch (e) {
          failures.push(`w-${i}: ${(e as Error).message}`);
        }
      }
    })();
    for (let i = 0; i < 100 && written < 20; i++) await sleep(50);
    const leader = await cluster.waitLeader();
    await cluster.kill(leader);
    const before = written;
    for (let i = 0; i < 400 && written < before + 30; i++) await sleep(50);
    stop = true;
    await writer;
    expect(failures).toEqual([]);
    expect(written).toBeGreaterThan(before);
    const want = (await core.listNamespacedConfigMap({ namespace: NS })).items.map((i) => i.metadata?.name).sort();
    let have: (string | undefined)[] = [];
    for (let i = 0; i < 200; i++) {
      have = informer
        .list(NS)
        .map((o) => o.metadata?.name)
        .sort();
      if (JSON.stringify(have) === JSON.stringify(want)) break;
      await sleep(100);
    }
    expect(have).toEqual(want);
    // The API server reopens its store watch on another member: the informer's watch never broke.
    expect(errors).toEqual([]);
    console.log(`leader killed: ${written} creates, none failed; the slowest took ${slowest} ms`);
    await informer.stop();
    await cluster.restart(leader);
  });

  it("/readyz fails its etcd check without a store quorum and recovers with it", async () => {
    const ready = await request(`${a.url}/readyz?verbose`, "GET");
    expect(ready.status).toBe(200);
    const [m1, m2] = cluster.members;
    await cluster.kill(m1 as (typeof cluster.members)[number]);
    await cluster.kill(m2 as (typeof cluster.members)[number]);
    let failed = await request(`${a.url}/readyz?verbose`, "GET");
    for (let i = 0; i < 100 && failed.status === 200; i++) {
      await sleep(200);
      failed = await request(`${a.url}/readyz?verbose`, "GET");
    }
    expect(failed.status).toBe(500);
    expect(failed.text).toContain("[-]etcd failed");
    expect(failed.text).toContain("readyz check failed");
    expect((await request(`${a.url}/livez/ping`, "GET")).status).toBe(200);
    await cluster.restart(m1 as (typeof cluster.members)[number]);
    await cluster.restart(m2 as (typeof cluster.members)[number]);
    let back = await request(`${a.url}/readyz`, "GET");
    for (let i = 0; i < 150 && back.status !== 200; i++) {
      await sleep(200);
      back = await request(`${a.url}/readyz`, "GET");
    }
    expect(back.status).toBe(200);
    expect((await core.readNamespace({ name: NS })).metadata?.name).toBe(NS);
  });
});
