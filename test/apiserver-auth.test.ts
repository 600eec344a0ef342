import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kubectl, type RunningApiServer, request, startApiServer } from "./helpers/apiserver.js";
import { etcdctl, freePort, LAB_CLI, REAL_ETCD, type RunningNode, run, startLab, tempDir } from "./helpers/nodes.js";
import { createPki, type TestPki } from "./helpers/pki.js";

/**
 * TLS serving and authentication: bearer tokens from --token-auth-file and client certificates
 * signed by --client-ca-file; unauthenticated requests get 401 except health and /version.
 */

let store: RunningNode;
let pki: TestPki;
let server: RunningApiServer;
let tokenFile: string;

interface Res {
  status: number;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test JSON
  json: any;
}

function get(pathname: string, auth: { token?: string; cert?: { cert: string; key: string } } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "127.0.0.1",
        port: server.port,
        path: pathname,
        ca: fs.readFileSync(pki.caCert),
        ...(auth.cert ? { cert: fs.readFileSync(auth.cert.cert), key: fs.readFileSync(auth.cert.key) } : {}),
        headers: auth.token ? { Authorization: `Bearer ${auth.token}` } : {},
      },
      (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          text += d.toString();
        });
        res.on("end", () => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

beforeAll(async () => {
  store = await startLab();
  pki = createPki();
  tokenFile = path.join(pki.dir, "tokens.csv");
  fs.writeFileSync(tokenFile, '# token,user,uid,groups\nalice-token,alice,1001,"devs,ops"\nbob-token,bob,1002\n');
  server = await startApiServer({
    etcd: [store.endpoint],
    secure: true,
    extraArgs: [
      `--tls-cert-file=${pki.serverCert}`,
      `--tls-private-key-file=${pki.serverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${tokenFile}`,
    ],
  });
});

afterAll(async () => {
  await server?.stop();
  await store?.stop();
});

describe("authentication over TLS", () => {
  it("serves health and /version without credentials", async () => {
    for (const p of ["/healthz", "/livez", "/readyz", "/version"]) {
      const r = await get(p);
      expect(r.status, `${p}: ${r.text}`).toBe(200);
    }
  });

  it("answers 401 Unauthorized to anyone else", async () => {
    const r = await get("/api/v1/namespaces");
    expect(r.status).toBe(401);
    expect(r.json).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: "Unauthorized",
      reason: "Unauthorized",
      code: 401,
    });
    expect((await get("/api", { token: "wrong" })).status).toBe(401);
    expect((await get("/api/v1/namespaces", { cert: pki.client("mallory", [], pki.otherCa()) })).status).toBe(401);
  });

  it("accepts tokens from the token file and certificates from the client CA", async () => {
    expect((await get("/api/v1/namespaces", { token: "alice-token" })).status).toBe(200);
    expect((await get("/api/v1/namespaces", { token: "bob-token" })).status).toBe(200);
    expect((await get("/api/v1/namespaces", { cert: pki.client("carol", ["devs"]) })).status).toBe(200);
  });

  it.each(["1.27", "1.33"])(
    "kubectl %s with a token, with a client certificate, and without credentials",
    async (version) => {
      const ca = `--certificate-authority=${pki.caCert}`;
      const withToken = new Kubectl(version, server.url, [ca, "--token=alice-token"]);
      const ns = `auth${version.replace(".", "")}`;
      expect(await withToken.ok(["create", "namespace", ns])).toBe(`namespace/${ns} created\n`);
      const cert = pki.client(`dave-${version}`, ["admins"]);
      const withCert = new Kubectl(version, server.url, [
        ca,
        `--client-certificate=${cert.cert}`,
        `--client-key=${cert.key}`,
      ]);
      expect(await withCert.ok(["get", "namespace", ns, "-o", "name"])).toBe(`namespace/${ns}\n`);
      // Basic auth is not an authentication method here: the request is unauthenticated.
      const anonymous = new Kubectl(version, server.url, [ca, "--username=nobody", "--password=secret"]);
      const denied = await anonymous.fails(["get", "namespaces"]);
      expect(denied).toContain("error: You must be logged in to the server");
      expect(denied).toContain("the server has asked for the client to provide credentials");
      const badToken = new Kubectl(version, server.url, [ca, "--token=nope"]);
      expect(await badToken.fails(["get", "namespaces"])).toContain("error: You must be logged in to the server");
    },
  );
});

describe("lab apiserver flag errors", () => {
  const lab = (args: string[]) => run(process.execPath, [LAB_CLI, "apiserver", ...args], { timeoutMs: 20_000 });

  it("reports every problem at once and exits 2", async () => {
    const r = await lab(["--secure-port=70000", "--bogus=1"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--etcd-servers is required");
    expect(r.stderr).toContain("--secure-port=70000: expected a port number from 0 to 65535");
    expect(r.stderr).toContain("unknown flag --bogus; lab apiserver --help lists the supported ones");
  });

  it("needs serving certificates for the secure port, and names missing files", async () => {
    const r = await lab(["--etcd-servers=http://127.0.0.1:2379"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("the secure port needs --tls-cert-file and --tls-private-key-file");
    const missing = await lab([
      "--etcd-servers=http://127.0.0.1:2379",
      "--secure-port=0",
      "--insecure-port=8080",
      "--token-auth-file=/nonexistent.csv",
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--token-auth-file=/nonexistent.csv: no such file");
  });

  it("refuses a malformed token file, naming the line", async () => {
    const dir = tempDir("tokens");
    const file = path.join(dir, "bad.csv");
    fs.writeFileSync(file, "ok-token,user,1\nonly-two,fields\n");
    const r = await lab([
      "--etcd-servers=http://127.0.0.1:2379",
      "--secure-port=0",
      "--insecure-port=8080",
      `--token-auth-file=${file}`,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:2: a token line needs at least 3 comma-separated fields`);
  });

  it("prints its flags with --help", async () => {
    const r = await lab(["--help"]);
    expect(r.code).toBe(0);
    for (const f of [
      "--etcd-servers",
      "--etcd-prefix",
      "--secure-port",
      "--token-auth-file",
      "--client-ca-file",
      "--insecure-port",
    ])
      expect(r.stdout).toContain(f);
  });
});

describe("TLS to the store (--etcd-cafile, --etcd-certfile, --etcd-keyfile)", () => {
  it("talks to a real etcd that requires client certificates", async () => {
    const dir = tempDir("etcd-tls");
    const clientPort = await freePort();
    const peerPort = await freePort();
    const etcdClient = pki.client("kube-apiserver-etcd-client");
    const etcd = spawn(
      REAL_ETCD,
      [
        "--name=tls",
        `--data-dir=${path.join(dir, "tls.etcd")}`,
        `--listen-client-urls=https://127.0.0.1:${clientPort}`,
        `--advertise-client-urls=https://127.0.0.1:${clientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=tls=http://127.0.0.1:${peerPort}`,
        `--cert-file=${pki.serverCert}`,
        `--key-file=${pki.serverKey}`,
        `--trusted-ca-file=${pki.caCert}`,
        "--client-cert-auth",
      ],
      { stdio: "ignore" },
    );
    const tlsFlags = [
      `--etcd-cafile=${pki.caCert}`,
      `--etcd-certfile=${etcdClient.cert}`,
      `--etcd-keyfile=${etcdClient.key}`,
    ];
    let api: RunningApiServer | undefined;
    try {
      api = await startApiServer({ etcd: [`127.0.0.1:${clientPort}`], scheme: "https", extraArgs: tlsFlags });
      const created = await request(`${api.url}/api/v1/namespaces/default/configmaps`, "POST", {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "over-tls" },
        data: { a: "1" },
      });
      expect(created.status, created.text).toBe(201);
      // Single-key reads are single-key on the real etcd too (no stray range end on the wire).
      const missing = await request(`${api.url}/api/v1/namespaces/default/configmaps/a-missing`, "GET");
      expect(missing.status).toBe(404);
      const namespaces = await request(`${api.url}/api/v1/namespaces`, "GET");
      expect(namespaces.json.items.map((n: { metadata: { name: string } }) => n.metadata.name).sort()).toEqual([
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
      ]);
      const viaEtcdctl = await etcdctl(`127.0.0.1:${clientPort}`, [
        `--cacert=${pki.caCert}`,
        `--cert=${etcdClient.cert}`,
        `--key=${etcdClient.key}`,
        "get",
        "/registry/configmaps/default/over-tls",
        "--print-value-only",
      ]);
      expect(viaEtcdctl.code, viaEtcdctl.stderr).toBe(0);
      expect(JSON.parse(viaEtcdctl.stdout).data).toEqual({ a: "1" });
    } finally {
      await api?.stop();
      etcd.kill("SIGTERM");
      await new Promise((resolve) => etcd.once("exit", resolve));
    }
  });
});
