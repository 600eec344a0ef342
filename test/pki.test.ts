import { execFile, execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificate, createLabPki, generateKey, type Issued, ipAddressBytes } from "../src/pki/x509.js";

/**
 * The PKI module must produce certificates that other implementations accept, not merely ones it
 * can read back itself: Node's X509Certificate (OpenSSL), the openssl command, a real TLS handshake
 * with client authentication, and Go's crypto/x509 through the real kubectl.
 */

const OPENSSL = "/usr/bin/openssl";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "pki-test-"));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

let fileCounter = 0;
function writeTemp(name: string, content: string): string {
  const p = path.join(work, `${fileCounter++}-${name}`);
  fs.writeFileSync(p, content);
  return p;
}

function openssl(args: readonly string[]): { code: number; out: string } {
  try {
    const out = execFileSync(OPENSSL, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return { code: 0, out };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { code: err.status ?? 1, out: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

function x509(issued: Issued): crypto.X509Certificate {
  return new crypto.X509Certificate(issued.certPem);
}

const lab = createLabPki({ hostNames: ["lab-control-plane"], ipAddresses: ["10.96.0.1", "fd00::1"] });

describe("certificates parsed by Node (OpenSSL)", () => {
  const ca = x509(lab.ca);
  const apiServer = x509(lab.apiServer);
  const admin = x509(lab.admin);

  it("parses every certificate, and DER and PEM agree", () => {
    for (const issued of [lab.ca, lab.apiServer, lab.admin]) {
      const cert = x509(issued);
      expect(cert.raw.equals(issued.certDer)).toBe(true);
      expect(new crypto.X509Certificate(issued.certDer).fingerprint256).toBe(cert.fingerprint256);
      expect(cert.checkPrivateKey(crypto.createPrivateKey(issued.keyPem))).toBe(true);
    }
  });

  it("leaves are signed by the CA and issued by it", () => {
    for (const leaf of [apiServer, admin]) {
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.checkIssued(ca)).toBe(true);
      expect(leaf.issuer).toBe(ca.subject);
    }
    expect(ca.verify(ca.publicKey)).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);
  });

  it("the CA is a CA and the leaves are not", () => {
    expect(ca.ca).toBe(true);
    expect(apiServer.ca).toBe(false);
    expect(admin.ca).toBe(false);
  });

  it("the serving certificate matches its host names and addresses", () => {
    expect(apiServer.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(apiServer.checkIP("10.96.0.1")).toBe("10.96.0.1");
    expect(apiServer.checkIP("fd00::1")).toBeDefined();
    expect(apiServer.checkIP("10.0.0.9")).toBeUndefined();
    for (const host of [
      "localhost",
      "lab-control-plane",
      "kubernetes",
      "kubernetes.default",
      "kubernetes.default.svc",
    ]) {
      expect(apiServer.checkHost(host)).toBe(host);
    }
    expect(apiServer.checkHost("example.com")).toBeUndefined();
    expect(apiServer.subjectAltName).toContain("IP Address:FD00:0:0:0:0:0:0:1");
    expect(apiServer.subject).toBe("CN=kube-apiserver");
  });

  it("subjects carry CN and O as given, O before CN", () => {
    expect(admin.subject).toBe("O=system:masters\nCN=kubernetes-admin");
    expect(ca.subject).toBe("CN=kubernetes");
    const multi = x509(createCertificate({ commonName: "jane", organizations: ["dev", "ops"], usages: ["client"] }));
    expect(multi.subject).toBe("O=dev\nO=ops\nCN=jane");
  });

  it("extended key usages are as asked", () => {
    expect(apiServer.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
    expect(admin.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    const both = x509(createCertificate({ commonName: "peer", usages: ["server", "client"] }));
    expect(both.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
  });

  it("serial numbers are positive, 128-bit and distinct", () => {
    const serials = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const serial = x509(createCertificate({ commonName: `s${i}` })).serialNumber;
      expect(serial).toMatch(/^[0-9A-F]{32}$/);
      expect(serial.startsWith("00")).toBe(false);
      serials.add(serial);
    }
    expect(serials.size).toBe(50);
  });

  it("default validity: now - 5 minutes to now + 365 days (leaf) or 3650 days (CA)", () => {
    const day = 24 * 3600 * 1000;
    const now = Date.now();
    const from = (c: crypto.X509Certificate) => new Date(c.validFrom).getTime();
    const to = (c: crypto.X509Certificate) => new Date(c.validTo).getTime();
    for (const [cert, days] of [
      [ca, 3650],
      [apiServer, 365],
      [admin, 365],
    ] as const) {
      expect(Math.abs(from(cert) - (now - 5 * 60 * 1000))).toBeLessThan(60_000);
      expect(Math.abs(to(cert) - (now + days * day))).toBeLessThan(60_000);
    }
  });

  it("explicit validity, in UTCTime and in GeneralizedTime", () => {
    const early = x509(
      createCertificate({ commonName: "a", notBefore: new Date("2024-01-02T03:04:05.678Z"), validDays: 10 }),
    );
    expect(new Date(early.validFrom).toISOString()).toBe("2024-01-02T03:04:05.000Z");
    expect(new Date(early.validTo).toISOString()).toBe("2024-01-12T03:04:05.000Z");
    const late = createCertificate({ commonName: "b", notBefore: new Date("2049-12-31T23:00:00Z"), validDays: 1 });
    const lateCert = x509(late);
    expect(new Date(lateCert.validFrom).toISOString()).toBe("2049-12-31T23:00:00.000Z");
    expect(new Date(lateCert.validTo).toISOString()).toBe("2050-01-01T23:00:00.000Z");
    // notBefore in 2049 is a UTCTime, notAfter in 2050 a GeneralizedTime (RFC 5280 4.1.2.5).
    expect(late.certDer.includes(Buffer.from("\x17\x0d491231230000Z", "latin1"))).toBe(true);
    expect(late.certDer.includes(Buffer.from("\x18\x0f20500101230000Z", "latin1"))).toBe(true);
    const text = openssl(["x509", "-noout", "-dates", "-in", writeTemp("late.pem", late.certPem)]);
    expect(text.out).toContain("notBefore=Dec 31 23:00:00 2049 GMT");
    expect(text.out).toContain("notAfter=Jan  1 23:00:00 2050 GMT");
  });

  it("encodes IP addresses as 4 or 16 octets", () => {
    expect(ipAddressBytes("10.1.2.3").toString("hex")).toBe("0a010203");
    expect(ipAddressBytes("::1").toString("hex")).toBe(`${"0".repeat(30)}01`);
    expect(ipAddressBytes("2001:db8::8:800:200c:417a").toString("hex")).toBe("20010db80000000000080800200c417a");
    expect(ipAddressBytes("::ffff:192.0.2.1").toString("hex")).toBe("00000000000000000000ffffc0000201");
    expect(ipAddressBytes("1:2:3:4:5:6:7:8").toString("hex")).toBe("00010002000300040005000600070008");
    expect(() => ipAddressBytes("localhost")).toThrow(/not an IP/);
    expect(() => ipAddressBytes("1.2.3")).toThrow(/not an IP/);
  });

  it("generateKey makes P-256 keys", () => {
    const key = generateKey();
    expect(key.privateKey.asymmetricKeyType).toBe("ec");
    expect(key.privateKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(crypto.createPrivateKey(key.privateKeyPem).export({ format: "jwk" }).d).toBe(
      key.privateKey.export({ format: "jwk" }).d,
    );
    expect(crypto.createPublicKey(key.privateKey).export({ format: "jwk" }).x).toBe(
      key.publicKey.export({ format: "jwk" }).x,
    );
  });

  it("refuses bad input", () => {
    expect(() => createCertificate({ commonName: "" })).toThrow(/commonName/);
    expect(() => createCertificate({ commonName: "x", validDays: 0 })).toThrow(/validDays/);
    expect(() => createCertificate({ commonName: "x", ipAddresses: ["not-an-ip"] })).toThrow(/not an IP/);
    expect(() => createCertificate({ commonName: "x", dnsNames: ["bücher.example"] })).toThrow(/IA5String/);
    // A leaf cannot issue, and the issuer's key must be its own.
    expect(() =>
      createCertificate({ commonName: "y" }, { certPem: lab.admin.certPem, keyPem: lab.admin.keyPem }),
    ).toThrow(/not a CA/);
    expect(() => createCertificate({ commonName: "y" }, { certPem: lab.ca.certPem, keyPem: lab.admin.keyPem })).toThrow(
      /does not match/,
    );
  });
});

describe("the openssl command", () => {
  const caFile = writeTemp("ca.pem", lab.ca.certPem);
  const apiFile = writeTemp("apiserver.pem", lab.apiServer.certPem);
  const adminFile = writeTemp("admin.pem", lab.admin.certPem);

  it("verifies the chain strictly, for the intended purposes", () => {
    for (const [file, purpose] of [
      [apiFile, "sslserver"],
      [adminFile, "sslclient"],
    ] as const) {
      const r = openssl(["verify", "-x509_strict", "-purpose", purpose, "-CAfile", caFile, file]);
      expect(r.out).toContain(": OK");
      expect(r.code).toBe(0);
    }
    // The serving certificate is not a client certificate, nor the client certificate a serving one.
    expect(openssl(["verify", "-purpose", "sslclient", "-CAfile", caFile, apiFile]).code).not.toBe(0);
    expect(openssl(["verify", "-purpose", "sslserver", "-CAfile", caFile, adminFile]).code).not.toBe(0);
    expect(openssl(["verify", "-x509_strict", "-CAfile", caFile, caFile]).code).toBe(0);
  });

  it("shows the extensions as asked", () => {
    const ca = openssl(["x509", "-noout", "-text", "-in", caFile]).out;
    expect(ca).toContain("CA:TRUE");
    expect(ca).toMatch(/X509v3 Basic Constraints: critical/);
    expect(ca).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/);
    expect(ca).toContain("Signature Algorithm: ecdsa-with-SHA256");
    expect(ca).toContain("ASN1 OID: prime256v1");
    expect(ca).toContain("Version: 3 (0x2)");

    const api = openssl(["x509", "-noout", "-text", "-in", apiFile]).out;
    expect(api).toContain("TLS Web Server Authentication");
    expect(api).toContain("IP Address:127.0.0.1");
    expect(api).toContain("IP Address:10.96.0.1");
    expect(api).toContain("IP Address:FD00:0:0:0:0:0:0:1");
    expect(api).toContain("DNS:localhost");
    expect(api).toContain("DNS:kubernetes.default.svc");
    expect(api).toContain("CA:FALSE");
    expect(api).toMatch(/X509v3 Key Usage: critical\s+Digital Signature\n/);

    const admin = openssl(["x509", "-noout", "-text", "-in", adminFile]).out;
    expect(admin).toContain("TLS Web Client Authentication");
    expect(admin).toContain("Subject: O = system:masters, CN = kubernetes-admin");
    expect(admin).not.toContain("Subject Alternative Name");
  });

  it("the authority key identifier of a leaf is the CA's subject key identifier", () => {
    const ski = openssl(["x509", "-noout", "-ext", "subjectKeyIdentifier", "-in", caFile]).out.split("\n")[1]?.trim();
    expect(ski).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/);
    for (const file of [caFile, apiFile, adminFile]) {
      const aki = openssl(["x509", "-noout", "-ext", "authorityKeyIdentifier", "-in", file]).out;
      expect(aki).toContain(ski);
    }
    // SKI = SHA-1 of the subjectPublicKey bits: the last 65 octets of a P-256 SPKI.
    const spki = new crypto.X509Certificate(lab.ca.certPem).publicKey.export({ type: "spki", format: "der" });
    const expected = crypto.createHash("sha1").update(spki.subarray(-65)).digest("hex").toUpperCase();
    expect(ski?.replaceAll(":", "")).toBe(expected);
  });

  it("parses the private keys", () => {
    const r = openssl(["ec", "-check", "-noout", "-in", writeTemp("admin.key", lab.admin.keyPem)]);
    expect(r.code).toBe(0);
    expect(lab.admin.keyPem).toContain("-----BEGIN EC PRIVATE KEY-----");
  });
});

/** An HTTPS server that requires a client certificate, as the API server does. */
interface TestServer {
  port: number;
  seen: { authorized: boolean; subject: Record<string, string | string[] | undefined> }[];
  close(): Promise<void>;
}

async function startServer(
  tls: { cert: string; key: string; ca: string } = {
    cert: lab.apiServer.certPem,
    key: lab.apiServer.keyPem,
    ca: lab.ca.certPem,
  },
): Promise<TestServer> {
  const seen: TestServer["seen"] = [];
  const server = https.createServer({ ...tls, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    seen.push({ authorized: socket.authorized, subject: { ...peer.subject } });
    if (req.url === "/version") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ major: "1", minor: "33", gitVersion: "v1.33.0" }));
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end("{}");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("a TLS handshake with client authentication", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server.close();
  });

  function get(options: https.RequestOptions): Promise<{
    status: number;
    body: string;
    authorized: boolean;
    peer: Record<string, string | string[] | undefined>;
  }> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port: server.port, path: "/version", agent: false, ...options },
        (res) => {
          const socket = res.socket as TLSSocket;
          const authorized = socket.authorized;
          const peer = { ...socket.getPeerCertificate().subject };
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => {
            body += d;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body, authorized, peer }));
        },
      );
      req.on("error", reject);
      req.end();
    });
  }

  it("both sides authenticate each other", async () => {
    for (const servername of ["localhost", "kubernetes.default.svc"]) {
      const before = server.seen.length;
      const r = await get({ ca: lab.ca.certPem, cert: lab.admin.certPem, key: lab.admin.keyPem, servername });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ major: "1", minor: "33", gitVersion: "v1.33.0" });
      expect(r.authorized).toBe(true);
      expect(r.peer.CN).toBe("kube-apiserver");
      expect(server.seen.length).toBe(before + 1);
      expect(server.seen[before]).toEqual({
        authorized: true,
        subject: { CN: "kubernetes-admin", O: "system:masters" },
      });
    }
  });

  it("connecting by IP checks the IP SAN", async () => {
    const r = await get({ ca: lab.ca.certPem, cert: lab.admin.certPem, key: lab.admin.keyPem });
    expect(r.authorized).toBe(true);
  });

  it("a client certificate from another CA is refused", async () => {
    const other = createCertificate({ commonName: "other", isCa: true });
    const intruder = createCertificate({ commonName: "intruder", usages: ["client"] }, other);
    await expect(
      get({ ca: lab.ca.certPem, cert: intruder.certPem, key: intruder.keyPem, servername: "localhost" }),
    ).rejects.toThrow();
  });

  it("a server name outside the SANs is refused", async () => {
    await expect(
      get({ ca: lab.ca.certPem, cert: lab.admin.certPem, key: lab.admin.keyPem, servername: "example.com" }),
    ).rejects.toThrow(/altnames|example\.com/);
  });
});

function kubectlPath(): string {
  let resolved: string;
  try {
    resolved = execFileSync("bash", ["-c", 'readlink -f "$(command -v kubectl)"'], { encoding: "utf8" }).trim();
  } catch {
    resolved = "";
  }
  if (resolved === "") throw new Error("kubectl is not on PATH: the PKI interoperability test needs kubectl 1.33");
  const p = path.join(path.dirname(resolved), "kubectl.1.33");
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: the PKI interoperability test needs kubectl 1.33`);
  return p;
}

function runKubectl(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = fs.mkdtempSync(path.join(work, "kubectl-home-"));
  fs.writeFileSync(path.join(home, "config"), "apiVersion: v1\nkind: Config\n");
  return new Promise((resolve) => {
    // Asynchronous on purpose: the server runs in this process's event loop.
    execFile(
      kubectlPath(),
      args,
      {
        encoding: "utf8",
        timeout: 60_000,
        env: {
          PATH: process.env.PATH ?? "",
          HOME: home,
          KUBECONFIG: path.join(home, "config"),
          KUBECACHEDIR: path.join(home, "cache"),
        },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("Go's crypto/x509 and crypto/tls (kubectl 1.33)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server.close();
  });

  const caFile = writeTemp("go-ca.crt", lab.ca.certPem);
  const adminCrt = writeTemp("go-admin.crt", lab.admin.certPem);
  const adminKey = writeTemp("go-admin.key", lab.admin.keyPem);

  function getVersion(port: number, extra: readonly string[] = [], ca = caFile, crt = adminCrt, key = adminKey) {
    return runKubectl([
      "--server",
      `https://127.0.0.1:${port}`,
      "--certificate-authority",
      ca,
      "--client-certificate",
      crt,
      "--client-key",
      key,
      ...extra,
      "get",
      "--raw",
      "/version",
    ]);
  }

  it("kubectl verifies the serving certificate and presents the client certificate", async () => {
    const before = server.seen.length;
    const r = await getVersion(server.port);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ major: "1", minor: "33", gitVersion: "v1.33.0" });
    expect(server.seen.slice(before)).toContainEqual({
      authorized: true,
      subject: { CN: "kubernetes-admin", O: "system:masters" },
    });
  });

  it("kubectl matches the DNS names too, and refuses a name outside them", async () => {
    for (const name of ["localhost", "kubernetes.default.svc", "lab-control-plane"]) {
      const r = await getVersion(server.port, ["--tls-server-name", name]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ major: "1", minor: "33", gitVersion: "v1.33.0" });
    }
    const r = await getVersion(server.port, ["--tls-server-name", "example.com"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate is valid for .*not example\.com/);
  });

  it("kubectl follows a chain through an intermediate CA", async () => {
    const root = createCertificate({ commonName: "root", isCa: true });
    const intermediate = createCertificate({ commonName: "intermediate", isCa: true }, root);
    const serving = createCertificate(
      { commonName: "kube-apiserver", ipAddresses: ["127.0.0.1"], usages: ["server"] },
      intermediate,
    );
    const client = createCertificate(
      { commonName: "jane", organizations: ["dev", "ops"], usages: ["client"] },
      intermediate,
    );
    const chained = await startServer({
      cert: serving.certPem + intermediate.certPem,
      key: serving.keyPem,
      ca: root.certPem + intermediate.certPem,
    });
    try {
      const r = await getVersion(
        chained.port,
        [],
        writeTemp("chain-root.crt", root.certPem),
        writeTemp("chain-client.crt", client.certPem + intermediate.certPem),
        writeTemp("chain-client.key", client.keyPem),
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ major: "1", minor: "33", gitVersion: "v1.33.0" });
      expect(chained.seen).toContainEqual({ authorized: true, subject: { CN: "jane", O: ["dev", "ops"] } });
    } finally {
      await chained.close();
    }
  });

  it("kubectl refuses a server whose CA it does not trust", async () => {
    const other = createCertificate({ commonName: "kubernetes", isCa: true });
    const r = await getVersion(server.port, [], writeTemp("other-ca.crt", other.certPem));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate signed by unknown authority/);
  });
});

describe("CAs other than the lab's", () => {
  it("a CA signs a leaf that verifies under it and under no other CA", () => {
    const x = createCertificate({ commonName: "x", isCa: true });
    const leaf = createCertificate({ commonName: "leaf", usages: ["client"] }, x);
    const unrelated = createCertificate({ commonName: "x", isCa: true });
    const stranger = createCertificate({ commonName: "leaf", usages: ["client"] }, unrelated);

    const xCert = x509(x);
    const unrelatedCert = x509(unrelated);
    expect(x509(leaf).verify(xCert.publicKey)).toBe(true);
    expect(x509(leaf).checkIssued(xCert)).toBe(true);
    expect(x509(stranger).verify(xCert.publicKey)).toBe(false);
    // Same subject name, different key: the authority key identifier tells them apart.
    expect(x509(stranger).checkIssued(xCert)).toBe(false);
    expect(x509(stranger).verify(unrelatedCert.publicKey)).toBe(true);

    const xFile = writeTemp("x.pem", x.certPem);
    expect(openssl(["verify", "-x509_strict", "-CAfile", xFile, writeTemp("leaf.pem", leaf.certPem)]).code).toBe(0);
    const refused = openssl(["verify", "-CAfile", xFile, writeTemp("stranger.pem", stranger.certPem)]);
    expect(refused.code).not.toBe(0);
  });

  it("an intermediate CA signs a second-level leaf; the chain verifies through it", () => {
    const root = createCertificate({ commonName: "root", isCa: true });
    const intermediate = createCertificate({ commonName: "intermediate", organizations: ["lab"], isCa: true }, root);
    const leaf = createCertificate(
      { commonName: "etcd-peer", dnsNames: ["etcd-0"], ipAddresses: ["::1"], usages: ["server", "client"] },
      intermediate,
    );
    const leafCert = x509(leaf);
    expect(leafCert.issuer).toBe("O=lab\nCN=intermediate");
    expect(leafCert.checkIssued(x509(intermediate))).toBe(true);
    expect(leafCert.verify(x509(intermediate).publicKey)).toBe(true);
    expect(leafCert.verify(x509(root).publicKey)).toBe(false);
    expect(leafCert.checkIP("::1")).toBeDefined();

    const rootFile = writeTemp("root.pem", root.certPem);
    const intermediateFile = writeTemp("intermediate.pem", intermediate.certPem);
    const leafFile = writeTemp("second-level.pem", leaf.certPem);
    const r = openssl(["verify", "-x509_strict", "-CAfile", rootFile, "-untrusted", intermediateFile, leafFile]);
    expect(r.out).toContain(": OK");
    // Without the intermediate, there is no path to the root.
    expect(openssl(["verify", "-CAfile", rootFile, leafFile]).code).not.toBe(0);
  });

  it("an RSA CA (kubeadm's default CA key) can issue too", () => {
    const dir = fs.mkdtempSync(path.join(work, "rsa-ca-"));
    const key = path.join(dir, "ca.key");
    const cert = path.join(dir, "ca.crt");
    const made = openssl([
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=kubernetes",
    ]);
    expect(made.code).toBe(0);
    const ca = { certPem: fs.readFileSync(cert, "utf8"), keyPem: fs.readFileSync(key, "utf8") };
    const leaf = createCertificate(
      { commonName: "kube-apiserver", ipAddresses: ["127.0.0.1"], usages: ["server"] },
      ca,
    );
    expect(x509(leaf).verify(new crypto.X509Certificate(ca.certPem).publicKey)).toBe(true);
    // Not -x509_strict: openssl req's CA has no keyUsage extension, which strict mode demands of a CA.
    const r = openssl(["verify", "-purpose", "sslserver", "-CAfile", cert, writeTemp("rsa-leaf.pem", leaf.certPem)]);
    expect(r.out).toContain(": OK");
    expect(openssl(["x509", "-noout", "-text", "-in", writeTemp("rsa-leaf2.pem", leaf.certPem)]).out).toContain(
      "Signature Algorithm: sha256WithRSAEncryption",
    );
  });
});
