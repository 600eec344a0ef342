import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kubectl, type RunningApiServer, request, startApiServer } from "./helpers/apiserver.js";
import { TestCluster } from "./helpers/cluster.js";
import { etcdctl, tempDir } from "./helpers/nodes.js";

/**
 * The real kubectl, the oldest and the newest of the versions installed beside `kubectl`
 * (1.27 and 1.33), against two API servers over a 3-member store. A missing binary fails the
 * suite (kubectlBinary throws); nothing is skipped.
 */

const VERSIONS = ["1.27", "1.33"] as const;

let cluster: TestCluster;
let a: RunningApiServer;
let b: RunningApiServer;
const work = tempDir("kubectl-files");

beforeAll(async () => {
  cluster = await TestCluster.start({ size: 3 });
  const eps = cluster.allEndpoints;
  [a, b] = await Promise.all([startApiServer({ etcd: eps }), startApiServer({ etcd: [...eps].reverse() })]);
}, 120_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await cluster?.killAll();
});

describe.each(VERSIONS)("kubectl %s", (version) => {
  const ns = `k${version.replace(".", "")}`;
  let k: Kubectl;
  let kb: Kubectl;

  beforeAll(async () => {
    k = new Kubectl(version, a.url);
    kb = new Kubectl(version, b.url);
  });

  it("version, api-resources, api-versions, cluster-info", async () => {
    const v = await k.ok(["version"]);
    expect(v).toMatch(/Server Version: (version\.Info\{.*GitVersion:"v1\.33\.0"|v1\.33\.0)/);
    const resources = await k.ok(["api-resources"]);
    for (const line of [
      /^configmaps\s+cm\s+v1\s+true\s+ConfigMap$/m,
      /^leases\s+coordination\.k8s\.io\/v1\s+true\s+Lease$/m,
      /^nodes\s+no\s+v1\s+false\s+Node$/m,
    ])
      expect(resources).toMatch(line);
    const versions = await k.ok(["api-versions"]);
    expect(versions.split("\n")).toEqual(expect.arrayContaining(["v1", "coordination.k8s.io/v1"]));
    // biome-ignore lint/suspicious/noControlCharactersInRegex: kubectl colours cluster-info
    const info = (await k.ok(["cluster-info"])).replace(/\u001b\[[0-9;]*m/g, "");
    expect(info).toContain(`Kubernetes control plane is running at ${a.url}`);
  });

  it("create namespace, configmap (literal and file) and secret", async () => {
    expect(await k.ok(["create", "namespace", ns])).toBe(`namespace/${ns} created\n`);
    expect(await k.ok(["-n", ns, "create", "configmap", "lit", "--from-literal=a=1", "--from-literal=b=two"])).toBe(
      "configmap/lit created\n",
    );
    const file = path.join(work, `${ns}-app.properties`);
    fs.writeFileSync(file, "color=blue\nsize=3\n");
    await k.ok(["-n", ns, "create", "configmap", "fromfile", `--from-file=${file}`]);
    await k.ok(["-n", ns, "create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    const secret = JSON.parse(await kb.ok(["-n", ns, "get", "secret", "creds", "-o", "json"]));
    expect(secret.data.password).toBe(Buffer.from("s3cret").toString("base64"));
    expect(secret.type).toBe("Opaque");
    const fromFile = JSON.parse(await kb.ok(["-n", ns, "get", "cm", "fromfile", "-o", "json"]));
    expect(fromFile.data).toEqual({ [`${ns}-app.properties`]: "color=blue\nsize=3\n" });
    const dup = await k.fails(["-n", ns, "create", "configmap", "lit", "--from-literal=a=1"]);
    expect(dup).toContain('configmaps "lit" already exists');
    const manifest = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lit\n  namespace: ${ns}\n`;
    const again = await k.fails(["create", "-f", "-"], { input: manifest });
    expect(again).toContain(
      'Error from server (AlreadyExists): error when creating "STDIN": configmaps "lit" already exists',
    );
  });

  it("get in every output format, with selectors and across namespaces", async () => {
    await k.ok(["-n", ns, "label", "cm", "lit", "tier=web"]);
    const table = await k.ok(["-n", ns, "get", "configmaps"]);
    expect(table).toMatch(/^NAME\s+DATA\s+AGE\n/);
    expect(table).toMatch(/^lit\s+2\s+\d+s$/m);
    const wide = await k.ok(["-n", ns, "get", "secret", "-o", "wide"]);
    expect(wide).toMatch(/^creds\s+Opaque\s+1\s+\d+s$/m);
    const yaml = await k.ok(["-n", ns, "get", "cm", "lit", "-o", "yaml"]);
    expect(yaml).toMatch(/^kind: ConfigMap$/m);
    expect(yaml).toMatch(/^ {2}a: "1"$/m);
    const json = JSON.parse(await k.ok(["-n", ns, "get", "cm", "lit", "-o", "json"]));
    expect(json.metadata.labels).toEqual({ tier: "web" });
    expect(await k.ok(["-n", ns, "get", "cm", "lit", "-o", "jsonpath={.data.b}"])).toBe("two");
    const labelled = await k.ok(["-n", ns, "get", "cm", "-l", "tier=web", "-o", "name"]);
    expect(labelled).toBe("configmap/lit\n");
    const field = await k.ok(["-n", ns, "get", "cm", "--field-selector", "metadata.name=fromfile", "-o", "name"]);
    expect(field).toBe("configmap/fromfile\n");
    const all = await k.ok(["get", "cm", "-A"]);
    expect(all).toMatch(/^NAMESPACE\s+NAME\s+DATA\s+AGE\n/);
    expect(all).toMatch(new RegExp(`^${ns}\\s+lit\\s+2\\s+`, "m"));
    const nsTable = await k.ok(["get", "namespaces"]);
    for (const n of ["default", "kube-system", "kube-public", "kube-node-lease", ns])
      expect(nsTable).toMatch(new RegExp(`^${n}\\s+Active\\s+`, "m"));
    const missing = await k.fails(["-n", ns, "get", "cm", "nope"]);
    expect(missing.trim()).toBe('Error from server (NotFound): configmaps "nope" not found');
  });

  it("get -w follows changes made through another API server", async () => {
    const w = k.watch(["-n", ns, "get", "cm", "-w", "--output-watch-events"]);
    try {
      await w.waitFor(/lit/);
      await kb.ok(["-n", ns, "create", "configmap", "watched", "--from-literal=x=1"]);
      await w.waitFor(/ADDED\s+watched/);
      await kb.ok(["-n", ns, "label", "cm", "watched", "seen=yes"]);
      await w.waitFor(/MODIFIED\s+watched/);
      await kb.ok(["-n", ns, "delete", "cm", "watched"]);
      await w.waitFor(/DELETED\s+watched/);
    } finally {
      await w.stop();
    }
  });

  it("describe", async () => {
    const d = await k.ok(["-n", ns, "describe", "configmap", "lit"]);
    expect(d).toMatch(/^Name:\s+lit$/m);
    expect(d).toMatch(/^Namespace:\s+/m);
    expect(d).toMatch(/^Labels:\s+tier=web$/m);
    expect(d).toMatch(/^a:\n-+\n1$/m);
    const dn = await k.ok(["describe", "namespace", ns]);
    expect(dn).toMatch(/^Status:\s+Active$/m);
  });

  it("apply -f creates, then updates, then finds nothing to change", async () => {
    const file = path.join(work, `${ns}-applied.yaml`);
    const manifest = (value: string) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: ${ns}\n  labels:\n    app: demo\ndata:\n  key: ${value}\n`;
    fs.writeFileSync(file, manifest("one"));
    expect(await k.ok(["apply", "-f", file])).toBe("configmap/applied created\n");
    fs.writeFileSync(file, manifest("two"));
    expect(await k.ok(["apply", "-f", file])).toBe("configmap/applied configured\n");
    expect(await k.ok(["apply", "-f", file])).toBe("configmap/applied unchanged\n");
    const got = JSON.parse(await kb.ok(["-n", ns, "get", "cm", "applied", "-o", "json"]));
    expect(got.data).toEqual({ key: "two" });
    expect(got.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]).toContain('"key":"two"');
    const pod = path.join(work, `${ns}-pod.yaml`);
    const podManifest = (image: string, env: string) =>
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: ${ns}\nspec:\n  containers:\n  - name: app\n    image: ${image}\n    env:\n    - name: MODE\n      value: ${env}\n  - name: sidecar\n    image: busybox:1.36\n`;
    fs.writeFileSync(pod, podManifest("nginx:1.27", "a"));
    await k.ok(["apply", "-f", pod]);
    fs.writeFileSync(pod, podManifest("nginx:1.28", "a"));
    expect(await k.ok(["apply", "-f", pod])).toBe("pod/web configured\n");
    const p = JSON.parse(await k.ok(["-n", ns, "get", "pod", "web", "-o", "json"]));
    expect(p.spec.containers.map((c: { name: string; image: string }) => `${c.name}=${c.image}`)).toEqual([
      "app=nginx:1.28",
      "sidecar=busybox:1.36",
    ]);
    const pods = await k.ok(["-n", ns, "get", "pods", "-o", "wide"]);
    expect(pods).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES\n/);
    expect(pods).toMatch(/^web\s+0\/2\s+Pending\s+0\s+/m);
  });

  it("edit with KUBE_EDITOR", async () => {
    const editor = path.join(work, `${ns}-editor.sh`);
    fs.writeFileSync(editor, `#!/bin/sh\nsed -i 's/^  b: two$/  b: edited/' "$1"\n`, { mode: 0o755 });
    expect(await k.ok(["-n", ns, "edit", "cm", "lit"], { env: { KUBE_EDITOR: editor } })).toBe(
      "configmap/lit edited\n",
    );
    expect(await k.ok(["-n", ns, "get", "cm", "lit", "-o", "jsonpath={.data.b}"])).toBe("edited");
  });

  it("label, annotate and patch (merge, json, strategic)", async () => {
    await k.ok(["-n", ns, "label", "cm", "lit", "env=prod"]);
    await k.ok(["-n", ns, "label", "cm", "lit", "env=staging", "--overwrite"]);
    await k.ok(["-n", ns, "annotate", "cm", "lit", "owner=team-a"]);
    await k.ok(["-n", ns, "patch", "cm", "lit", "--type", "merge", "-p", '{"data":{"merged":"yes"}}']);
    await k.ok(["-n", ns, "patch", "cm", "lit", "--type", "json", "-p", '[{"op":"remove","path":"/data/a"}]']);
    await k.ok(["-n", ns, "patch", "cm", "lit", "-p", '{"data":{"strategic":"yes"}}']);
    await k.ok([
      "-n",
      ns,
      "patch",
      "pod",
      "web",
      "-p",
      '{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.37"}]}}',
    ]);
    const got = JSON.parse(await kb.ok(["-n", ns, "get", "cm", "lit", "-o", "json"]));
    expect(got.metadata.labels).toEqual({ tier: "web", env: "staging" });
    expect(got.metadata.annotations.owner).toBe("team-a");
    expect(got.data).toEqual({ b: "edited", merged: "yes", strategic: "yes" });
    const pod = JSON.parse(await kb.ok(["-n", ns, "get", "pod", "web", "-o", "json"]));
    expect(pod.spec.containers.map((c: { image: string }) => c.image)).toEqual(["nginx:1.28", "busybox:1.37"]);
    const invalid = await k.fails(["-n", ns, "label", "cm", "lit", "bad key=x"]);
    expect(invalid).toMatch(/invalid label|is invalid/i);
  });

  it("replace, and a stale replace is a Conflict", async () => {
    const json = JSON.parse(await k.ok(["-n", ns, "get", "cm", "fromfile", "-o", "json"]));
    json.data = { replaced: "1" };
    const file = path.join(work, `${ns}-replace.json`);
    fs.writeFileSync(file, JSON.stringify(json));
    expect(await k.ok(["replace", "-f", file])).toBe("configmap/fromfile replaced\n");
    json.data = { replaced: "2" };
    fs.writeFileSync(file, JSON.stringify(json));
    const conflict = await k.fails(["replace", "-f", file]);
    expect(conflict).toContain(
      'Operation cannot be fulfilled on configmaps "fromfile": the object has been modified; please apply your changes to the latest version and try again',
    );
  });

  it("explain a supported type", async () => {
    const cm = await k.ok(["explain", "configmap"]);
    expect(cm).toMatch(/KIND:\s+ConfigMap/);
    expect(cm).toMatch(/data\s+<map\[string\]string>/);
    const containers = await k.ok(["explain", "pod.spec.containers"]);
    expect(containers).toMatch(/image\s+<string>/);
  });

  it("every object kubectl created is in the store, with resourceVersion = mod_revision", async () => {
    const listed = JSON.parse(await k.ok(["-n", ns, "get", "configmaps,secrets,pods", "-o", "json"]));
    expect(listed.items.length).toBeGreaterThanOrEqual(5);
    const prefix = await etcdctl(cluster.allEndpoints, ["get", "--prefix", "/registry/", "-w", "json"]);
    expect(prefix.code, prefix.stderr).toBe(0);
    const kvs = new Map<string, number>();
    for (const kv of JSON.parse(prefix.stdout).kvs as { key: string; mod_revision: number }[])
      kvs.set(Buffer.from(kv.key, "base64").toString(), kv.mod_revision);
    for (const item of listed.items) {
      const key = `/registry/${item.kind.toLowerCase()}s/${ns}/${item.metadata.name}`;
      expect(kvs.get(key), key).toBe(Number(item.metadata.resourceVersion));
    }
    expect(kvs.has(`/registry/namespaces/${ns}`)).toBe(true);
  });

  it("delete -l, delete --all, then delete the namespace", async () => {
    await k.ok(["-n", ns, "create", "configmap", "gone-1", "--from-literal=a=1"]);
    await k.ok(["-n", ns, "create", "configmap", "gone-2", "--from-literal=a=1"]);
    await k.ok(["-n", ns, "label", "cm", "gone-1", "gone-2", "purge=yes"]);
    const deleted = await k.ok(["-n", ns, "delete", "cm", "-l", "purge=yes"]);
    expect(deleted).toContain('configmap "gone-1" deleted');
    expect(deleted).toContain('configmap "gone-2" deleted');
    await k.ok(["-n", ns, "delete", "cm", "--all"]);
    expect(await k.ok(["-n", ns, "get", "cm", "-o", "name"])).toBe("");
    expect(await k.ok(["delete", "namespace", ns])).toBe(`namespace "${ns}" deleted\n`);
    const gone = await request(`${b.url}/api/v1/namespaces/${ns}/secrets`, "GET");
    expect(gone.json.items).toEqual([]);
    const keys = await etcdctl(cluster.allEndpoints, ["get", "--prefix", "/registry/", "--keys-only"]);
    expect(keys.stdout).not.toContain(`/${ns}/`);
  });
});
