import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../util/logger.js";
import { yaml as yamlModule } from "../util/yaml-lazy.js";
import { Api, type FieldValidation, fieldNames, NAMESPACES, PATCH_TYPES, type WriteOptions } from "./api.js";
import type { Authenticator, UserInfo } from "./auth.js";
import { Compactor } from "./compactor.js";
import { buildOpenApi, buildOpenApiV2, type OpenApiDocuments, type OpenApiV2 } from "./openapi.js";
import { decodeProtobufBody } from "./protobuf.js";
import {
  findResource,
  groupVersion,
  groupVersions,
  type KObject,
  type ResourceType,
  resourcesOf,
} from "./resources.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { ApiError, errors } from "./status.js";
import { Storage } from "./storage.js";
import type { StoreClient } from "./store-client.js";
import { type TableOptions, toTable } from "./table.js";

/**
 * The API server's HTTP edge: routing (discovery, resources, health, OpenAPI), content
 * negotiation (JSON, YAML, server-side tables for kubectl), authentication, watch streaming, and
 * turning errors into Status bodies.
 */

export const KUBE_VERSION = { major: "1", minor: "33", gitVersion: "v1.33.0" };
/** Request bodies larger than this are refused (kube-apiserver's limit). */
export const MAX_REQUEST_BYTES = 3 * 1024 * 1024;
/** How often a watch that asked for bookmarks asks the store for progress. */
const BOOKMARK_INTERVAL_MS = 5_000;

export interface ListenSpec {
  readonly host: string;
  readonly port: number;
  /** Absent: plain HTTP (only when asked for explicitly). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer | undefined } | undefined;
  /** false only for the explicitly requested plain-HTTP port, which trusts every caller (as kube-apiserver's old insecure port did). */
  readonly authenticate: boolean;
}

export interface ApiServerOptions {
  readonly store: StoreClient;
  readonly etcdPrefix: string;
  readonly listen: readonly ListenSpec[];
  readonly authenticator: Authenticator;
  readonly logger: Logger;
  /** 0 disables the store compactor. */
  readonly compactionIntervalMs: number;
  readonly eventTtlSeconds: number;
}

interface Request {
  readonly method: string;
  readonly url: URL;
  readonly headers: http.IncomingHttpHeaders;
  readonly raw: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly warnings: string[];
  user: UserInfo | undefined;
}

const PUBLIC_PATHS = [/^\/(healthz|livez|readyz)(\/.*)?$/, /^\/version\/?$/];

export class ApiServer {
  private readonly servers: http.Server[] = [];
  readonly api: Api;
  // Built on first request: most processes never serve them, and building costs startup CPU.
  private openapiDocs: OpenApiDocuments | undefined;
  private openapiV2Doc: OpenApiV2 | undefined;
  private readonly compactor: Compactor | undefined;
  private readonly watches = new Set<() => void>();
  private bootstrapped = false;
  private storeCheck: { at: number; result: Promise<{ ok: boolean; detail: string }>; failed: boolean } | undefined;

  private constructor(private readonly options: ApiServerOptions) {
    this.api = new Api(new Storage(options.store, options.etcdPrefix.replace(/\/+$/, ""), options.eventTtlSeconds));
    this.compactor =
      options.compactionIntervalMs > 0
        ? new Compactor(options.store, options.compactionIntervalMs, options.logger)
        : undefined;
  }

  private get openapi(): OpenApiDocuments {
    this.openapiDocs ??= buildOpenApi(KUBE_VERSION.gitVersion);
    return this.openapiDocs;
  }

  private get openapiV2(): OpenApiV2 {
    this.openapiV2Doc ??= buildOpenApiV2(this.openapi, KUBE_VERSION.gitVersion);
    return this.openapiV2Doc;
  }

  static async start(options: ApiServerOptions): Promise<ApiServer> {
    const server = new ApiServer(options);
    for (const spec of options.listen) await server.listen(spec);
    // The system namespaces are created in the background: the server answers health checks
    // (not ready) while the store is still electing a leader.
    void server.bootstrap();
    server.compactor?.start();
    return server;
  }

  private async bootstrap(): Promise<void> {
    for (let attempt = 0; !this.bootstrapped; attempt++) {
      try {
        await this.api.bootstrap();
        this.bootstrapped = true;
        this.options.logger.info("system namespaces ready");
      } catch (e) {
        if (attempt % 5 === 0)
          this.options.logger.warn("cannot create the system namespaces yet; retrying", {
            error: (e as Error).message,
          });
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /** The addresses actually bound (port 0 picks a free one). */
  get addresses(): { host: string; port: number; tls: boolean }[] {
    return this.servers.map((s) => {
      const a = s.address() as AddressInfo;
      return { host: a.address, port: a.port, tls: s instanceof https.Server };
    });
  }

  private listen(spec: ListenSpec): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      void this.handle(req, res, spec.authenticate);
    };
    const server = spec.tls
      ? https.createServer(
          {
            cert: spec.tls.cert,
            key: spec.tls.key,
            ...(spec.tls.ca ? { ca: spec.tls.ca, requestCert: true, rejectUnauthorized: false } : {}),
          },
          handler,
        )
      : http.createServer(handler);
    server.keepAliveTimeout = 60_000;
    server.headersTimeout = 65_000;
    server.requestTimeout = 0;
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: spec.host, port: spec.port }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    this.compactor?.stop();
    for (const stop of this.watches) stop();
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.options.store.close();
  }

  // -------------------------------------------------------------------------------------------

  private async handle(raw: http.IncomingMessage, res: http.ServerResponse, authenticate: boolean): Promise<void> {
    const req: Request = {
      method: raw.method ?? "GET",
      url: new URL(raw.url ?? "/", "http://localhost"),
      headers: raw.headers,
      raw,
      res,
      warnings: [],
      user: undefined,
    };
    const started = Date.now();
    try {
      const isPublic = PUBLIC_PATHS.some((p) => p.test(req.url.pathname));
      const peer = raw.socket as TLSSocket;
      const cert =
        typeof peer.getPeerCertificate === "function" && peer.authorized ? peer.getPeerCertificate() : undefined;
      req.user = authenticate
        ? this.options.authenticator.authenticate(raw.headers.authorization, cert)
        : { name: "system:unsecured", uid: "", groups: ["system:masters", "system:authenticated"] };
      if (!req.user && !isPublic) throw errors.unauthorized();
      await this.route(req);
    } catch (e) {
      this.sendError(req, e);
    } finally {
      this.options.logger.debug("request", {
        verb: req.method,
        uri: raw.url,
        code: res.statusCode,
        ms: Date.now() - started,
        user: req.user?.name,
      });
    }
  }

  private sendError(req: Request, e: unknown): void {
    let err: ApiError;
    if (e instanceof ApiError) err = e;
    else {
      this.options.logger.error("request failed", {
        uri: req.raw.url,
        error: e instanceof Error ? (e.stack ?? e.message) : String(e),
      });
      err = errors.internal(e instanceof Error ? e.message : String(e));
    }
    if (req.res.headersSent) {
      req.res.end();
      return;
    }
    this.send(req, err.code, err.toStatus());
  }

  private send(req: Request, code: number, body: unknown): void {
    const res = req.res;
    for (const w of req.warnings) res.appendHeader("Warning", `299 - ${JSON.stringify(w)}`);
    res.setHeader("Cache-Control", "no-cache, private");
    const accept = String(req.headers.accept ?? "");
    const pretty = req.url.searchParams.get("pretty") === "true";
    if (/application\/yaml/.test(accept) && !/application\/json/.test(accept)) {
      res.writeHead(code, { "Content-Type": "application/yaml" });
      res.end(yamlModule().stringify(body));
      return;
    }
    res.writeHead(code, { "Content-Type": "application/json" });
    res.end(pretty ? `${JSON.stringify(body, null, 2)}\n` : `${JSON.stringify(body)}\n`);
  }

  private sendText(req: Request, code: number, text: string): void {
    req.res.writeHead(code, { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff" });
    req.res.end(text);
  }

  private async route(req: Request): Promise<void> {
    const path = req.url.pathname.replace(/\/+$/, "") || "/";
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const [first] = parts;
    if (first === "healthz" || first === "livez" || first === "readyz") return this.health(req, parts);
    if (path === "/version") return this.send(req, 200, this.versionInfo());
    if (path === "/") return this.send(req, 200, { paths: this.rootPaths() });
    if (first === "openapi") return this.serveOpenApi(req, parts);
    if (first === "api") {
      if (parts.length === 1) return this.send(req, 200, this.apiVersions(req));
      if (parts[1] !== "v1") throw errors.pathNotFound();
      if (parts.length === 2) return this.send(req, 200, this.resourceList("", "v1"));
      return this.resource(req, "", "v1", parts.slice(2));
    }
    if (first === "apis") {
      if (parts.length === 1) return this.send(req, 200, this.groupList());
      const group = parts[1] as string;
      const versions = groupVersions().filter((g) => g.group === group);
      if (versions.length === 0) throw errors.pathNotFound();
      if (parts.length === 2) return this.send(req, 200, this.apiGroup(group));
      const version = parts[2] as string;
      if (!versions.some((v) => v.version === version)) throw errors.pathNotFound();
      if (parts.length === 3) return this.send(req, 200, this.resourceList(group, version));
      return this.resource(req, group, version, parts.slice(3));
    }
    throw errors.pathNotFound();
  }

  // ------------------------------------------------------------------------------- discovery

  private versionInfo(): Record<string, string> {
    return {
      major: KUBE_VERSION.major,
      minor: KUBE_VERSION.minor,
      gitVersion: KUBE_VERSION.gitVersion,
      gitCommit: "lab",
      gitTreeState: "clean",
      buildDate: "2026-01-01T00:00:00Z",
      goVersion: `node ${process.version}`,
      compiler: "lab",
      platform: `${process.platform}/${process.arch === "x64" ? "amd64" : process.arch}`,
    };
  }

  private rootPaths(): string[] {
    const paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/openapi/v3", "/version"];
    for (const g of groupVersions()) if (g.group) paths.push(`/apis/${g.group}`, `/apis/${groupVersion(g)}`);
    return paths.sort();
  }

  private apiVersions(req: Request): Record<string, unknown> {
    const host = String(req.headers.host ?? `127.0.0.1:${req.raw.socket.localPort}`);
    return {
      kind: "APIVersions",
      versions: ["v1"],
      serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: host }],
    };
  }

  private apiGroup(group: string): Record<string, unknown> {
    const versions = groupVersions()
      .filter((g) => g.group === group)
      .map((g) => ({ groupVersion: groupVersion(g), version: g.version }));
    return { kind: "APIGroup", apiVersion: "v1", name: group, versions, preferredVersion: versions[0] };
  }

  private groupList(): Record<string, unknown> {
    const groups = [...new Set(groupVersions().map((g) => g.group))].filter(Boolean);
    return {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: groups.map((g) => {
        const { kind: _k, apiVersion: _a, ...rest } = this.apiGroup(g);
        return rest;
      }),
    };
  }

  private resourceList(group: string, version: string): Record<string, unknown> {
    const verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
    const resources: Record<string, unknown>[] = [];
    for (const r of resourcesOf(group, version)) {
      resources.push({
        name: r.plural,
        singularName: r.singular,
        namespaced: r.namespaced,
        kind: r.kind,
        verbs: r === NAMESPACES ? verbs.filter((v) => v !== "deletecollection") : verbs,
        ...(r.shortNames.length > 0 ? { shortNames: r.shortNames } : {}),
        ...(r.categories.length > 0 ? { categories: r.categories } : {}),
      });
      if (r.statusSubresource)
        resources.push({
          name: `${r.plural}/status`,
          singularName: "",
          namespaced: r.namespaced,
          kind: r.kind,
          verbs: ["get", "patch", "update"],
        });
    }
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: groupVersion({ group, version }), resources };
  }

  private serveOpenApi(req: Request, parts: string[]): void {
    if (parts[1] === "v2" && parts.length === 2) {
      const accept = String(req.headers.accept ?? "");
      const proto = accept.includes("protobuf");
      req.res.writeHead(200, {
        "Content-Type": proto ? "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" : "application/json",
        Etag: `"${this.openapiV2.etag}"`,
        "Cache-Control": "no-cache, private",
      });
      req.res.end(proto ? this.openapiV2.protobuf : this.openapiV2.json);
      return;
    }
    if (parts[1] !== "v3") throw errors.pathNotFound();
    if (parts.length === 2) {
      this.send(req, 200, this.openapi.root);
      return;
    }
    const key = parts.slice(2).join("/");
    const doc = this.openapi.documents.get(key);
    if (!doc) throw errors.pathNotFound();
    const hash = req.url.searchParams.get("hash");
    req.res.writeHead(200, {
      "Content-Type": "application/json",
      ...(hash === doc.hash
        ? { "Cache-Control": "public, immutable", Expires: new Date(Date.now() + 365 * 86400_000).toUTCString() }
        : { "Cache-Control": "no-cache, private" }),
      Etag: `"${doc.hash}"`,
    });
    req.res.end(doc.body);
  }

  // --------------------------------------------------------------------------------- health

  /**
   * The store's health, shared by concurrent probes: a good answer is reused for a second, a bad
   * one for only 100 ms, so readiness follows a store that just got its leader without delay.
   */
  private checkStore(): Promise<{ ok: boolean; detail: string }> {
    const now = Date.now();
    if (this.storeCheck === undefined || now - this.storeCheck.at > (this.storeCheck.failed ? 100 : 1_000)) {
      const check = { at: now, result: this.options.store.storeHealthy(), failed: false };
      void check.result.then((r) => {
        check.failed = !r.ok;
      });
      this.storeCheck = check;
    }
    return this.storeCheck.result;
  }

  private async health(req: Request, parts: string[]): Promise<void> {
    const [endpoint, only] = parts as [string, string | undefined];
    const store = await this.checkStore();
    const checks: { name: string; ok: boolean; detail: string }[] = [
      { name: "ping", ok: true, detail: "" },
      { name: "log", ok: true, detail: "" },
      { name: "etcd", ok: store.ok, detail: store.detail },
    ];
    if (endpoint === "readyz") checks.push({ name: "etcd-readiness", ok: store.ok, detail: store.detail });
    checks.push({ name: "poststarthook/bootstrap-system-namespaces", ok: this.bootstrapped, detail: "not finished" });
    if (only) {
      const c = checks.find((x) => x.name === parts.slice(1).join("/"));
      if (!c) throw errors.pathNotFound();
      if (!c.ok) return this.sendText(req, 500, `internal server error: ${c.detail}\n`);
      return this.sendText(req, 200, "ok");
    }
    const exclude = req.url.searchParams.getAll("exclude");
    const counted = checks.filter((c) => !exclude.includes(c.name));
    const ok = counted.every((c) => c.ok);
    if (!req.url.searchParams.has("verbose") && ok) return this.sendText(req, 200, "ok");
    const lines = checks.map((c) =>
      exclude.includes(c.name)
        ? `[+]${c.name} excluded: ok`
        : c.ok
          ? `[+]${c.name} ok`
          : `[-]${c.name} failed: ${c.detail || "reason withheld"}`,
    );
    lines.push(ok ? `${endpoint} check passed` : `${endpoint} check failed`);
    this.sendText(req, ok ? 200 : 500, `${lines.join("\n")}\n`);
  }

  // ------------------------------------------------------------------------------ resources

  private async resource(req: Request, group: string, version: string, rest: string[]): Promise<void> {
    let parts = rest;
    let legacyWatch = false;
    if (parts[0] === "watch") {
      legacyWatch = true;
      parts = parts.slice(1);
    }
    let namespace: string | undefined;
    let plural: string | undefined;
    let name: string | undefined;
    let subresource: string | undefined;
    if (
      parts[0] === "namespaces" &&
      parts.length >= 3 &&
      !(parts.length === 3 && ["status", "finalize"].includes(parts[2] as string))
    ) {
      namespace = parts[1];
      [plural, name, subresource] = parts.slice(2);
      if (parts.length > 5) throw errors.pathNotFound();
    } else {
      [plural, name, subresource] = parts;
      if (parts.length > 3) throw errors.pathNotFound();
    }
    const r = findResource(group, version, plural ?? "");
    if (!r) throw errors.pathNotFound();
    if (!r.namespaced && namespace !== undefined) throw errors.pathNotFound();
    if (subresource !== undefined && !(subresource === "status" && r.statusSubresource)) throw errors.pathNotFound();
    const q = req.url.searchParams;
    const watch = legacyWatch || q.get("watch") === "true" || q.get("watch") === "1";
    const options: WriteOptions = {
      dryRun: q.getAll("dryRun").includes("All"),
      fieldValidation: fieldValidationOf(q.get("fieldValidation")),
      warnings: req.warnings,
    };
    const dryRunValues = q.getAll("dryRun").filter((v) => v !== "All");
    if (dryRunValues.length > 0) throw errors.badRequest(`Invalid dry run value: ${dryRunValues.join(", ")}; use All`);
    if (name === undefined) {
      switch (req.method) {
        case "GET":
          if (watch) return this.watch(req, r, namespace);
          return this.list(req, r, namespace);
        case "POST": {
          if (!r.namespaced || namespace !== undefined || r === NAMESPACES) {
            const body = await readBody(req);
            const created = await this.api.create(r, namespace, body, options);
            return this.send(req, 201, created);
          }
          throw errors.methodNotAllowed();
        }
        case "DELETE": {
          if (r === NAMESPACES) throw errors.methodNotAllowed();
          const n = await this.api.deleteCollection(r, namespace, q, options.dryRun);
          return this.send(req, 200, {
            kind: "Status",
            apiVersion: "v1",
            metadata: {},
            status: "Success",
            details: { kind: r.plural, group: r.group, causes: [] },
            message: `${n} deleted`,
          });
        }
        default:
          throw errors.methodNotAllowed();
      }
    }
    if (r.namespaced && namespace === undefined) throw errors.pathNotFound();
    if (watch && req.method === "GET") {
      // Watching one object: a field selector on its name.
      const params = new URLSearchParams(q);
      params.set("fieldSelector", [q.get("fieldSelector"), `metadata.name=${name}`].filter(Boolean).join(","));
      return this.watch(req, r, namespace, params);
    }
    switch (req.method) {
      case "GET": {
        const o = await this.api.storage.get(r, namespace ?? "", name);
        return this.sendObject(req, r, o);
      }
      case "PUT": {
        const body = await readBody(req);
        const { object, created } = await this.api.update(r, namespace, name, body, subresource, options);
        return this.send(req, created ? 201 : 200, object);
      }
      case "PATCH": {
        const contentType =
          String(req.headers["content-type"] ?? "")
            .split(";")[0]
            ?.trim() ?? "";
        if (!PATCH_TYPES.includes(contentType)) throw errors.unsupportedMediaType(contentType, PATCH_TYPES);
        const body = await readBody(req, contentType === "application/apply-patch+yaml" ? "yaml" : "json");
        const patched = await this.api.patch(r, namespace, name, contentType, body, subresource, options);
        return this.send(req, 200, patched);
      }
      case "DELETE": {
        const body =
          Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"]
            ? await readBody(req)
            : undefined;
        const bodyDryRun = isRecord(body) && Array.isArray(body.dryRun) && body.dryRun.includes("All");
        const deleted = await this.api.delete(r, namespace, name, body, options.dryRun || bodyDryRun);
        if (["pods", "services", "namespaces"].includes(r.plural) && r.group === "")
          return this.send(req, 200, deleted);
        return this.send(req, 200, {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Success",
          details: { name, ...(r.group ? { group: r.group } : {}), kind: r.plural, uid: deleted.metadata.uid },
        });
      }
      default:
        throw errors.methodNotAllowed();
    }
  }

  private tableOptions(req: Request): TableOptions | undefined {
    const accept = String(req.headers.accept ?? "");
    const m = /as=Table;v=(v1beta1|v1);g=meta\.k8s\.io/.exec(accept) ?? /as=Table/.exec(accept);
    if (!m) return undefined;
    const include = req.url.searchParams.get("includeObject") ?? "Metadata";
    if (!["None", "Metadata", "Object"].includes(include))
      throw errors.badRequest(`includeObject: unsupported value "${include}"; supported: None, Metadata, Object`);
    return { apiVersion: `meta.k8s.io/${m[1] ?? "v1"}`, includeObject: include as TableOptions["includeObject"] };
  }

  private sendObject(req: Request, r: ResourceType, o: KObject): void {
    const table = this.tableOptions(req);
    this.send(
      req,
      200,
      table ? toTable(r, [o], { resourceVersion: String(o.metadata.resourceVersion) }, table, true) : o,
    );
  }

  private async list(req: Request, r: ResourceType, namespace: string | undefined): Promise<void> {
    const result = await this.api.list(r, namespace, req.url.searchParams);
    const metadata: Record<string, unknown> = { resourceVersion: String(result.resourceVersion) };
    if (result.continueToken) metadata.continue = result.continueToken;
    if (result.remainingItemCount !== undefined) metadata.remainingItemCount = result.remainingItemCount;
    const table = this.tableOptions(req);
    if (table) return this.send(req, 200, toTable(r, result.items, metadata, table, true));
    const items = result.items.map(({ kind: _k, apiVersion: _a, ...rest }) => rest);
    this.send(req, 200, { kind: `${r.kind}List`, apiVersion: groupVersion(r), metadata, items });
  }

  private async watch(
    req: Request,
    r: ResourceType,
    namespace: string | undefined,
    params?: URLSearchParams,
  ): Promise<void> {
    const q = params ?? req.url.searchParams;
    const labels = q.get("labelSelector") ? parseLabelSelector(q.get("labelSelector") as string) : undefined;
    const fields = q.get("fieldSelector")
      ? parseFieldSelector(q.get("fieldSelector") as string, fieldNames(r))
      : undefined;
    const bookmarks = q.get("allowWatchBookmarks") === "true";
    const timeoutText = q.get("timeoutSeconds");
    const timeoutSeconds = timeoutText ? Number(timeoutText) : 1800 * (1 + Math.random());
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0)
      throw errors.badRequest(`invalid timeoutSeconds: ${timeoutText}`);
    const table = this.tableOptions(req);
    const res = req.res;
    let started = false;
    let ended = false;
    let lastRevision = 0;
    let firstTable = true;
    const pending: string[] = [];
    const write = (type: string, object: unknown) => {
      const line = `${JSON.stringify({ type, object })}\n`;
      if (!started) pending.push(line);
      else res.write(line);
    };
    const encode = (o: KObject): unknown => {
      if (!table) return o;
      const t = toTable(r, [o], { resourceVersion: String(o.metadata.resourceVersion) }, table, firstTable);
      firstTable = false;
      return t;
    };
    let handle: { stop: () => void; requestProgress: () => void } | undefined;
    let bookmarkTimer: NodeJS.Timeout | undefined;
    let timeout: NodeJS.Timeout | undefined;
    const finish = () => {
      if (ended) return;
      ended = true;
      handle?.stop();
      if (bookmarkTimer) clearInterval(bookmarkTimer);
      if (timeout) clearTimeout(timeout);
      this.watches.delete(finish);
      if (started) res.end();
    };
    this.watches.add(finish);
    req.raw.on("close", finish);
    res.on("close", finish);
    handle = await this.api.storage.watch(
      r,
      namespace,
      { labels, fields, resourceVersion: q.get("resourceVersion") ?? "" },
      {
        event: (type, o) => {
          if (ended) return;
          lastRevision = Math.max(lastRevision, Number(o.metadata.resourceVersion));
          write(type, encode(o));
        },
        progress: (revision) => {
          if (ended || !bookmarks || revision <= lastRevision) return;
          lastRevision = revision;
          write("BOOKMARK", {
            kind: r.kind,
            apiVersion: groupVersion(r),
            metadata: { resourceVersion: String(revision) },
          });
        },
        error: (err) => {
          if (ended) return;
          write("ERROR", err.toStatus());
          setImmediate(finish);
        },
      },
    );
    if (ended) {
      handle.stop();
      return;
    }
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Cache-Control": "no-cache, private",
      "Transfer-Encoding": "chunked",
    });
    res.flushHeaders();
    started = true;
    for (const line of pending.splice(0)) res.write(line);
    if (bookmarks) bookmarkTimer = setInterval(() => handle?.requestProgress(), BOOKMARK_INTERVAL_MS);
    timeout = setTimeout(finish, timeoutSeconds * 1000);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fieldValidationOf(v: string | null): FieldValidation {
  if (v === null || v === "") return "Warn";
  if (v === "Strict" || v === "Warn" || v === "Ignore") return v;
  throw errors.badRequest(`fieldValidation must be one of "Ignore", "Warn" or "Strict", not "${v}"`);
}

/** Reads and parses a request body (JSON, or YAML when the content type says so). */
async function readBody(req: Request, format?: "json" | "yaml"): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req.raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_REQUEST_BYTES) {
      req.raw.resume();
      throw errors.tooLarge(MAX_REQUEST_BYTES);
    }
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks);
  const contentType =
    String(req.headers["content-type"] ?? "application/json")
      .split(";")[0]
      ?.trim() ?? "";
  if (format === undefined && contentType === "application/vnd.kubernetes.protobuf") return decodeProtobufBody(bytes);
  const text = bytes.toString("utf8");
  const yaml =
    format === "yaml" ||
    (format === undefined && (contentType === "application/yaml" || contentType === "application/x-yaml"));
  if (
    !yaml &&
    format === undefined &&
    contentType !== "application/json" &&
    contentType !== "" &&
    contentType !== "*/*"
  )
    throw errors.unsupportedMediaType(contentType, ["application/json", "application/yaml"]);
  if (text.trim() === "") throw errors.badRequest("the request body is empty: send the object as JSON or YAML");
  try {
    return yaml ? yamlModule().parse(text) : JSON.parse(text);
  } catch (e) {
    throw errors.badRequest(`the request body is not valid ${yaml ? "YAML" : "JSON"}: ${(e as Error).message}`);
  }
}
