import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";

/**
 * Authentication as kube-apiserver does it for the two methods the lab offers: static bearer
 * tokens (`--token-auth-file`, a CSV of token,user,uid[,"group1,group2"]) and client certificates
 * signed by `--client-ca-file` (the subject's CN is the user, its O entries the groups). Anyone
 * else is unauthenticated and gets 401 (the health endpoints and /version excepted).
 */

export interface UserInfo {
  readonly name: string;
  readonly uid: string;
  readonly groups: readonly string[];
}

export class TokenFileError extends Error {}

/** Parses kube-apiserver's token file format; errors name the line. */
export function parseTokenFile(text: string, path: string): Map<string, UserInfo> {
  const tokens = new Map<string, UserInfo>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    const fields = parseCsvLine(line);
    if (fields.length < 3)
      throw new TokenFileError(
        `${path}:${i + 1}: a token line needs at least 3 comma-separated fields (token,user,uid[,"group1,group2"]), found ${fields.length}`,
      );
    const [token, name, uid, groups] = fields as [string, string, string, string | undefined];
    if (!token) throw new TokenFileError(`${path}:${i + 1}: the token is empty`);
    if (!name) throw new TokenFileError(`${path}:${i + 1}: the user name is empty`);
    if (tokens.has(token)) throw new TokenFileError(`${path}:${i + 1}: duplicate token`);
    tokens.set(token, {
      name,
      uid,
      groups: [
        ...(groups
          ? groups
              .split(",")
              .map((g) => g.trim())
              .filter(Boolean)
          : []),
        "system:authenticated",
      ],
    });
  });
  return tokens;
}

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      out.push(cur.trim());
      cur = "";
    } else cur += c;
  }
  out.push(cur.trim());
  return out;
}

export class Authenticator {
  constructor(
    private readonly tokens: ReadonlyMap<string, UserInfo>,
    /** Whether client certificates (verified against --client-ca-file by TLS) identify users. */
    private readonly clientCerts: boolean,
  ) {}

  static fromFiles(tokenFile: string | undefined, clientCaFile: string | undefined): Authenticator {
    const tokens = tokenFile ? parseTokenFile(readFileSync(tokenFile, "utf8"), tokenFile) : new Map<string, UserInfo>();
    return new Authenticator(tokens, Boolean(clientCaFile));
  }

  get configured(): boolean {
    return this.tokens.size > 0 || this.clientCerts;
  }

  /** The caller's identity, or undefined (unauthenticated). A verified certificate is passed only when TLS verified it. */
  authenticate(authorization: string | undefined, cert: PeerCertificate | undefined): UserInfo | undefined {
    if (authorization) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      const user = m ? this.tokens.get(m[1] as string) : undefined;
      // A wrong token is a failed login even if a certificate came too (kube-apiserver: 401).
      return user;
    }
    if (this.clientCerts && cert?.subject) {
      const cn = cert.subject.CN;
      const name = Array.isArray(cn) ? cn[0] : cn;
      if (!name) return undefined;
      const o = cert.subject.O;
      const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
      return { name, uid: "", groups: [...groups, "system:authenticated"] };
    }
    return undefined;
  }
}
