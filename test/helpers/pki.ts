import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { tempDir } from "./nodes.js";

/**
 * A throwaway PKI for TLS tests, made with the openssl command: a CA, a serving certificate for
 * 127.0.0.1 and client certificates (CN = user, O = groups), as kubeadm lays them out.
 */

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Issues a client certificate; returns the cert and key paths. */
  client(name: string, groups?: readonly string[], ca?: { cert: string; key: string }): { cert: string; key: string };
  /** A second, unrelated CA (its certificates must be refused). */
  otherCa(): { cert: string; key: string };
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): { cert: string; key: string } {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  openssl(
    [
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
      `/CN=${name}`,
    ],
    dir,
  );
  return { cert, key };
}

function issue(
  dir: string,
  name: string,
  subject: string,
  ca: { cert: string; key: string },
  ext: string,
): { cert: string; key: string } {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const extFile = path.join(dir, `${name}.ext`);
  fs.writeFileSync(extFile, ext);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject], dir);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-CAcreateserial",
      "-out",
      cert,
      "-days",
      "2",
      "-extfile",
      extFile,
    ],
    dir,
  );
  return { cert, key };
}

export function createPki(): TestPki {
  const dir = tempDir("pki");
  const ca = makeCa(dir, "ca");
  const server = issue(
    dir,
    "apiserver",
    "/CN=kube-apiserver",
    ca,
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  let other: { cert: string; key: string } | undefined;
  return {
    dir,
    caCert: ca.cert,
    caKey: ca.key,
    serverCert: server.cert,
    serverKey: server.key,
    client(name, groups = [], signer = ca) {
      const subject = `${groups.map((g) => `/O=${g}`).join("")}/CN=${name}`;
      return issue(
        dir,
        `client-${name}-${path.basename(signer.cert, ".crt")}`,
        subject,
        signer,
        "extendedKeyUsage=clientAuth\n",
      );
    },
    otherCa() {
      other ??= makeCa(dir, "other-ca");
      return other;
    },
  };
}
