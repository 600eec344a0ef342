import * as crypto from "node:crypto";
import * as net from "node:net";
import {
  bitString,
  boolean,
  children,
  type Element,
  explicit,
  ia5Contents,
  implicitPrimitive,
  namedBitString,
  nullValue,
  objectIdentifier,
  octetString,
  readElement,
  sequence,
  setOf,
  Tag,
  time,
  unsignedInteger,
  utf8String,
} from "./der.js";

/**
 * X.509 v3 certificates (RFC 5280) issued without the openssl binary, laid out the way kubeadm
 * lays out a cluster's PKI: a self-signed CA, serving certificates with subjectAltNames and client
 * certificates whose subject carries the Kubernetes user (CN) and groups (O).
 *
 * Keys are ECDSA P-256. Certificates are signed with ecdsa-with-SHA256, or sha256WithRSAEncryption
 * when the issuer brings an RSA CA key (kubeadm's default CA key type).
 */

export interface KeyPair {
  privateKeyPem: string;
  publicKey: crypto.KeyObject;
  privateKey: crypto.KeyObject;
}

export interface CertificateSpec {
  commonName: string;
  /** Subject O= entries (Kubernetes groups), each in its own RDN before the CN. */
  organizations?: readonly string[];
  /** subjectAltName dNSName entries. */
  dnsNames?: readonly string[];
  /** subjectAltName iPAddress entries, IPv4 or IPv6. */
  ipAddresses?: readonly string[];
  /** basicConstraints CA:TRUE (critical) and keyUsage keyCertSign, cRLSign, digitalSignature. */
  isCa?: boolean;
  /** extKeyUsage serverAuth / clientAuth. */
  usages?: readonly ("server" | "client")[];
  /** Default 365 for leaves, 3650 for CAs. notAfter = (notBefore if given, else now) + validDays. */
  validDays?: number;
  /** Default now minus 5 minutes, to allow for clock skew. */
  notBefore?: Date;
}

export interface Issued {
  certPem: string;
  keyPem: string;
  certDer: Buffer;
}

const OID = {
  commonName: "2.5.4.3",
  organizationName: "2.5.4.10",
  ecPublicKey: "1.2.840.10045.2.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ecdsaWithSha256: "1.2.840.10045.4.3.2",
  sha256WithRsa: "1.2.840.113549.1.1.11",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
} as const;

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
const KeyUsage = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const;

const CLOCK_SKEW_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

export function generateKey(): KeyPair {
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { privateKeyPem: privateKeyToPem(privateKey), publicKey, privateKey };
}

/** EC keys as SEC1 "EC PRIVATE KEY" (what kubeadm writes), anything else as PKCS#8. */
function privateKeyToPem(key: crypto.KeyObject): string {
  const pem =
    key.asymmetricKeyType === "ec"
      ? key.export({ type: "sec1", format: "pem" })
      : key.export({ type: "pkcs8", format: "pem" });
  return pem.toString();
}

function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// Reading the parts of an existing certificate we need (issuer subject, SKI, public key)

interface ParsedCertificate {
  /** The complete DER of the subject Name, to be copied byte for byte as the issuer Name. */
  subject: Buffer;
  /** The complete DER of the subjectPublicKeyInfo. */
  spki: Buffer;
  /** The subjectKeyIdentifier extension's keyIdentifier, if present. */
  subjectKeyId: Buffer | undefined;
}

function expectTag(el: Element | undefined, tag: number, what: string): Element {
  if (el === undefined || el.tag !== tag) throw new Error(`x509: malformed certificate (${what})`);
  return el;
}

function parseCertificate(der: Buffer): ParsedCertificate {
  const cert = expectTag(readElement(der, 0), Tag.Sequence, "Certificate");
  if (cert.end !== der.length) throw new Error("x509: trailing data after certificate");
  const tbs = expectTag(children(der, cert)[0], Tag.Sequence, "TBSCertificate");
  const fields = children(der, tbs);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
  expectTag(fields[i++], Tag.Integer, "serialNumber");
  expectTag(fields[i++], Tag.Sequence, "signature");
  expectTag(fields[i++], Tag.Sequence, "issuer");
  expectTag(fields[i++], Tag.Sequence, "validity");
  const subject = expectTag(fields[i++], Tag.Sequence, "subject");
  const spki = expectTag(fields[i++], Tag.Sequence, "subjectPublicKeyInfo");
  let subjectKeyId: Buffer | undefined;
  const skiOid = objectIdentifier(OID.subjectKeyIdentifier);
  for (const field of fields.slice(i)) {
    if (field.tag !== 0xa3) continue; // [3] EXPLICIT Extensions
    const extensions = expectTag(children(der, field)[0], Tag.Sequence, "extensions");
    for (const ext of children(der, extensions)) {
      const parts = children(der, expectTag(ext, Tag.Sequence, "extension"));
      const oid = expectTag(parts[0], Tag.ObjectIdentifier, "extnID");
      if (!der.subarray(oid.start, oid.end).equals(skiOid)) continue;
      const value = expectTag(parts[parts.length - 1], Tag.OctetString, "extnValue");
      const keyId = expectTag(readElement(der, value.bodyStart, value.end), Tag.OctetString, "keyIdentifier");
      subjectKeyId = Buffer.from(der.subarray(keyId.bodyStart, keyId.end));
    }
  }
  return {
    subject: Buffer.from(der.subarray(subject.start, subject.end)),
    spki: Buffer.from(der.subarray(spki.start, spki.end)),
    subjectKeyId,
  };
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value (no tag, length, unused-bits octet). */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const spki = expectTag(readElement(spkiDer, 0), Tag.Sequence, "subjectPublicKeyInfo");
  const key = expectTag(children(spkiDer, spki)[1], Tag.BitString, "subjectPublicKey");
  return crypto
    .createHash("sha1")
    .update(spkiDer.subarray(key.bodyStart + 1, key.end))
    .digest();
}

// ---------------------------------------------------------------------------------------------
// Building the certificate

function name(commonName: string, organizations: readonly string[]): Buffer {
  const rdn = (type: string, value: string) => setOf(sequence(objectIdentifier(type), utf8String(value)));
  return sequence(...organizations.map((o) => rdn(OID.organizationName, o)), rdn(OID.commonName, commonName));
}

/** An IPv4 or IPv6 address as the 4 or 16 octets of an iPAddress GeneralName. */
export function ipAddressBytes(address: string): Buffer {
  const family = net.isIP(address);
  if (family === 4) return Buffer.from(address.split(".").map(Number));
  if (family !== 6 || address.includes("%")) throw new Error(`x509: ${JSON.stringify(address)} is not an IP address`);
  let text = address;
  const lastColon = text.lastIndexOf(":");
  const last = text.slice(lastColon + 1);
  if (last.includes(".")) {
    // An embedded IPv4 address (::ffff:10.0.0.1) stands for the last two groups.
    const v4 = ipAddressBytes(last);
    text = `${text.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const parseGroups = (s: string): number[] => (s === "" ? [] : s.split(":").map((g) => Number.parseInt(g, 16)));
  let groups: number[];
  const gap = text.indexOf("::");
  if (gap >= 0) {
    const head = parseGroups(text.slice(0, gap));
    const rest = parseGroups(text.slice(gap + 2));
    const zeros = 8 - head.length - rest.length;
    if (zeros < 1) throw new Error(`x509: cannot parse IPv6 address ${address}`);
    groups = [...head, ...new Array<number>(zeros).fill(0), ...rest];
  } else {
    groups = parseGroups(text);
  }
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff)))
    throw new Error(`x509: cannot parse IPv6 address ${address}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(g, i * 2);
  });
  return out;
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return sequence(objectIdentifier(oid), ...(critical ? [boolean(true)] : []), octetString(value));
}

/** 128 random bits, the first octet non-zero so that the INTEGER is exactly 16 octets of magnitude. */
function randomSerial(): Buffer {
  const bytes = crypto.randomBytes(16);
  while (bytes[0] === 0) bytes[0] = crypto.randomBytes(1)[0]!;
  return unsignedInteger(bytes);
}

function signatureAlgorithm(key: crypto.KeyObject): { algorithm: Buffer; digest: string } {
  switch (key.asymmetricKeyType) {
    case "ec":
      // RFC 5758 3.2: the parameters field MUST be absent for ecdsa-with-SHA256.
      return { algorithm: sequence(objectIdentifier(OID.ecdsaWithSha256)), digest: "sha256" };
    case "rsa":
      // RFC 4055 5: the parameters are NULL for sha256WithRSAEncryption.
      return { algorithm: sequence(objectIdentifier(OID.sha256WithRsa), nullValue()), digest: "sha256" };
    default:
      throw new Error(`x509: cannot sign with a ${key.asymmetricKeyType ?? "symmetric"} key`);
  }
}

function checkSpec(spec: CertificateSpec): void {
  if (spec.commonName === "") throw new Error("x509: commonName must not be empty");
  if (spec.validDays !== undefined && !(Number.isFinite(spec.validDays) && spec.validDays > 0)) {
    throw new Error(`x509: validDays must be positive, got ${spec.validDays}`);
  }
  if (spec.notBefore !== undefined && !Number.isFinite(spec.notBefore.getTime())) {
    throw new Error("x509: notBefore is an invalid date");
  }
  for (const dns of spec.dnsNames ?? []) {
    if (dns === "") throw new Error("x509: empty DNS name");
  }
}

/**
 * Issues a certificate for a freshly generated P-256 key, signed by `issuer` (a CA certificate and
 * its private key, in PEM) or, without an issuer, self-signed.
 */
export function createCertificate(spec: CertificateSpec, issuer?: { certPem: string; keyPem: string }): Issued {
  checkSpec(spec);
  const key = generateKey();
  const spki = key.publicKey.export({ type: "spki", format: "der" });
  const subject = name(spec.commonName, spec.organizations ?? []);
  const subjectKeyId = keyIdentifier(spki);

  let issuerName: Buffer;
  let authorityKeyId: Buffer;
  let signingKey: crypto.KeyObject;
  if (issuer === undefined) {
    issuerName = subject;
    authorityKeyId = subjectKeyId;
    signingKey = key.privateKey;
  } else {
    const issuerCert = new crypto.X509Certificate(issuer.certPem);
    signingKey = crypto.createPrivateKey(issuer.keyPem);
    if (!issuerCert.ca) throw new Error(`x509: the issuer ${issuerCert.subject} is not a CA certificate`);
    if (!issuerCert.checkPrivateKey(signingKey)) throw new Error("x509: the issuer key does not match its certificate");
    const parsed = parseCertificate(issuerCert.raw);
    issuerName = parsed.subject;
    authorityKeyId = parsed.subjectKeyId ?? keyIdentifier(parsed.spki);
  }

  const isCa = spec.isCa ?? false;
  const now = Date.now();
  const notBefore = new Date(spec.notBefore?.getTime() ?? now - CLOCK_SKEW_MS);
  const validDays = spec.validDays ?? (isCa ? 3650 : 365);
  const notAfter = new Date((spec.notBefore?.getTime() ?? now) + validDays * DAY_MS);

  const extensions: Buffer[] = [];
  const usageBits: number[] = isCa
    ? [KeyUsage.digitalSignature, KeyUsage.keyCertSign, KeyUsage.cRLSign]
    : [KeyUsage.digitalSignature];
  extensions.push(extension(OID.keyUsage, true, namedBitString(usageBits)));
  const usages = [...new Set(spec.usages ?? [])];
  if (usages.length > 0) {
    const oids = usages.map((u) => objectIdentifier(u === "server" ? OID.serverAuth : OID.clientAuth));
    extensions.push(extension(OID.extKeyUsage, false, sequence(...oids)));
  }
  // cA defaults to FALSE, and DER omits default values: a leaf's BasicConstraints is an empty SEQUENCE.
  extensions.push(extension(OID.basicConstraints, true, isCa ? sequence(boolean(true)) : sequence()));
  extensions.push(extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId)));
  extensions.push(extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, authorityKeyId))));
  const altNames = [
    ...[...new Set(spec.dnsNames ?? [])].map((d) => implicitPrimitive(2, ia5Contents(d))),
    ...[...new Set(spec.ipAddresses ?? [])].map((ip) => implicitPrimitive(7, ipAddressBytes(ip))),
  ];
  if (altNames.length > 0) extensions.push(extension(OID.subjectAltName, false, sequence(...altNames)));

  const { algorithm, digest } = signatureAlgorithm(signingKey);
  const tbs = sequence(
    explicit(0, unsignedInteger(2)), // v3
    randomSerial(),
    algorithm,
    issuerName,
    sequence(time(notBefore), time(notAfter)),
    subject,
    spki,
    explicit(3, sequence(...extensions)),
  );
  const signature = crypto.sign(digest, tbs, signingKey);
  const certDer = sequence(tbs, algorithm, bitString(signature));
  return { certPem: toPem("CERTIFICATE", certDer), keyPem: key.privateKeyPem, certDer };
}

/**
 * A lab's PKI as kubeadm lays it out: the cluster CA, the API server's serving certificate and the
 * admin's client certificate (CN kubernetes-admin in the system:masters group).
 */
export function createLabPki(options: { hostNames: string[]; ipAddresses: string[] }): {
  ca: Issued;
  apiServer: Issued;
  admin: Issued;
} {
  const ca = createCertificate({ commonName: "kubernetes", isCa: true });
  const signer = { certPem: ca.certPem, keyPem: ca.keyPem };
  const apiServer = createCertificate(
    {
      commonName: "kube-apiserver",
      usages: ["server"],
      dnsNames: [
        ...new Set([...options.hostNames, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]),
      ],
      ipAddresses: [...new Set([...options.ipAddresses, "127.0.0.1"])],
    },
    signer,
  );
  const admin = createCertificate(
    { commonName: "kubernetes-admin", organizations: ["system:masters"], usages: ["client"] },
    signer,
  );
  return { ca, apiServer, admin };
}
