import { isIP } from "node:net";
import { jsonPatch, mergePatch, strategicMergePatch } from "./patch.js";
import {
  DEFINITIONS,
  findResource,
  groupVersion,
  type KObject,
  RESOURCES,
  type ResourceType,
  schemaOf,
} from "./resources.js";
import { type Schema, typeErrors, unknownFields } from "./schema.js";
import { parseFieldSelector, parseLabelSelector } from "./selectors.js";
import { ApiError, errors, type FieldError, fieldErrors } from "./status.js";
import { generateSuffix, type ListResult, newUid, nowTimestamp, type Storage } from "./storage.js";
import { validateObjectMeta } from "./validation.js";

/**
 * The REST semantics of the built-in resources, above the storage layer and below HTTP: what
 * create, update, patch and delete do to an object (server-set metadata, defaults, validation,
 * unknown fields), namespace lifecycle, and the namespaces that exist from the first start.
 */

export const NAMESPACES = findResource("", "v1", "namespaces") as ResourceType;
const SERVICES = findResource("", "v1", "services") as ResourceType;

/** The namespaces every cluster has, which may not be deleted (kube-node-lease may). */
export const SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];
const UNDELETABLE = ["default", "kube-system", "kube-public"];

export type FieldValidation = "Strict" | "Warn" | "Ignore";

export interface WriteOptions {
  readonly dryRun: boolean;
  readonly fieldValidation: FieldValidation;
  /** Warnings for the response's Warning headers. */
  readonly warnings: string[];
}

export const PATCH_TYPES = [
  "application/json-patch+json",
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
  "application/apply-patch+yaml",
];

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  return typeof v;
}

/** Drops fields the schema does not declare (as decoding into Go types does), per fieldValidation. */
function pruneUnknown(r: ResourceType, o: Record<string, unknown>, options: WriteOptions): void {
  const unknown = unknownFields(o, schemaOf(r), DEFINITIONS);
  if (unknown.length === 0) return;
  if (options.fieldValidation === "Strict") {
    const list = unknown.map((p) => `unknown field "${p}"`);
    throw errors.badRequest(`strict decoding error: ${list.join(", ")}`);
  }
  if (options.fieldValidation === "Warn") for (const p of unknown) options.warnings.push(`unknown field "${p}"`);
  for (const p of unknown) deletePath(o, p);
}

function deletePath(o: Record<string, unknown>, path: string): void {
  const parts = path.match(/[^.[\]]+/g) ?? [];
  let cur: unknown = o;
  for (const part of parts.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(part)];
    else if (isObject(cur)) cur = cur[part];
    else return;
  }
  const last = parts[parts.length - 1];
  if (last !== undefined && isObject(cur)) delete cur[last];
}

/** Decodes a request body into an object of this type, or fails as kube-apiserver's decoder does. */
export function decodeBody(r: ResourceType, body: unknown, options: WriteOptions): KObject {
  if (!isObject(body))
    throw errors.badRequest(`the body of the request must be a ${r.kind} object, got ${typeName(body)}`);
  const gv = groupVersion(r);
  if (body.apiVersion !== undefined && body.apiVersion !== gv)
    throw errors.badRequest(
      `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${gv})`,
    );
  if (body.kind !== undefined && body.kind !== r.kind)
    throw errors.badRequest(`the kind in the data (${String(body.kind)}) does not match the expected kind (${r.kind})`);
  const bad = typeErrors(body, schemaOf(r), DEFINITIONS);
  if (bad.length > 0) {
    const b = bad[0] as { field: string; want: string; got: unknown };
    throw errors.badRequest(
      `${r.kind} in version "${r.version}" cannot be handled as a ${r.kind}: field ${b.field}: expected ${b.want}, got ${typeName(b.got)}`,
    );
  }
  const o = structuredClone(body) as Record<string, unknown>;
  if (o.metadata === undefined || o.metadata === null) o.metadata = {};
  pruneUnknown(r, o, options);
  o.apiVersion = gv;
  o.kind = r.kind;
  return o as KObject;
}

export class Api {
  constructor(readonly storage: Storage) {}

  private async checkNamespace(r: ResourceType, namespace: string): Promise<void> {
    if (!r.namespaced) return;
    const ns = await this.storage.tryGet(NAMESPACES, "", namespace);
    if (!ns) throw errors.notFound(NAMESPACES, namespace);
    if (ns.metadata.deletionTimestamp || (ns.status as Record<string, unknown> | undefined)?.phase === "Terminating")
      throw errors.forbidden(
        r,
        "",
        `unable to create new content in namespace ${namespace} because it is being terminated`,
      );
  }

  private validate(r: ResourceType, o: KObject, old: KObject | undefined): void {
    const errs: FieldError[] = [...validateObjectMeta(o.metadata, r.nameRule, r.namespaced)];
    if (old) {
      if (o.metadata.uid !== old.metadata.uid)
        errs.push(fieldErrors.invalid("metadata.uid", o.metadata.uid, "field is immutable"));
    }
    errs.push(...(r.validate?.(o, old) ?? []));
    if (errs.length > 0)
      throw errors.invalid(r.kind, r.group, String(o.metadata.name ?? o.metadata.generateName ?? ""), errs);
  }

  async create(r: ResourceType, namespace: string | undefined, body: unknown, options: WriteOptions): Promise<KObject> {
    const o = decodeBody(r, body, options);
    const meta = o.metadata;
    if (r.namespaced) {
      const ns = namespace ?? "";
      if (meta.namespace !== undefined && meta.namespace !== "" && meta.namespace !== ns)
        throw errors.badRequest(
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      meta.namespace = ns;
    } else {
      delete meta.namespace;
    }
    if ((meta.name === undefined || meta.name === "") && typeof meta.generateName === "string" && meta.generateName) {
      meta.name = `${meta.generateName}${generateSuffix()}`;
    }
    meta.uid = newUid();
    meta.creationTimestamp = nowTimestamp();
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.selfLink;
    delete meta.managedFields;
    if (r.tracksGeneration) meta.generation = 1;
    else delete meta.generation;
    r.prepareForCreate?.(o);
    if (r.statusSubresource && !r.prepareForCreate && o.status === undefined) delete o.status;
    r.defaults?.(o);
    this.validate(r, o, undefined);
    await this.checkNamespace(r, String(meta.namespace ?? ""));
    if (r === SERVICES) await this.allocateClusterIP(o);
    if (options.dryRun) return o;
    return this.storage.create(r, o);
  }

  /** A service gets a free virtual IP from the service range (10.96.0.0/12, kubeadm's default). */
  private async allocateClusterIP(o: KObject): Promise<void> {
    const spec = o.spec as Record<string, unknown>;
    if (spec.type === "ExternalName") return;
    const wanted = typeof spec.clusterIP === "string" ? spec.clusterIP : "";
    const used = new Set<string>();
    const all = await this.storage.list(SERVICES, undefined);
    for (const s of all.items) {
      const ip = (s.spec as Record<string, unknown> | undefined)?.clusterIP;
      if (typeof ip === "string") used.add(ip);
    }
    if (wanted === "None") {
      spec.clusterIPs = ["None"];
      return;
    }
    if (wanted) {
      if (isIP(wanted) && used.has(wanted))
        throw errors.invalid("Service", "", String(o.metadata.name), [
          fieldErrors.invalid(
            "spec.clusterIPs",
            [wanted],
            `failed to allocate IP ${wanted}: provided IP is already allocated`,
          ),
        ]);
      spec.clusterIPs = [wanted];
      return;
    }
    for (let attempt = 0; attempt < 1000; attempt++) {
      // 10.96.0.0/12 without the network address and the first address (the kubernetes service's).
      const n = 2 + Math.floor(Math.random() * (1 << 20) - 3);
      const ip = `10.${96 + (n >> 16)}.${(n >> 8) & 0xff}.${n & 0xff}`;
      if (!used.has(ip)) {
        spec.clusterIP = ip;
        spec.clusterIPs = [ip];
        return;
      }
    }
    throw errors.internal("no free service IP in 10.96.0.0/12");
  }

  /** Builds the next version of an object from a client's full replacement (PUT). */
  private prepareUpdate(r: ResourceType, current: KObject, next: KObject, subresource: string | undefined): KObject {
    let o = next;
    if (subresource === "status") {
      // Only the status changes through /status.
      o = structuredClone(current);
      o.status = next.status;
      o.metadata.resourceVersion = next.metadata.resourceVersion;
    } else if (r.statusSubresource && r !== NAMESPACES) {
      // The main resource never changes status (kube-apiserver's rule for types with a status subresource).
      o.status = current.status;
      if (o.status === undefined) delete o.status;
    }
    const meta = o.metadata;
    const old = current.metadata;
    if (meta.uid === undefined || meta.uid === "") meta.uid = old.uid;
    meta.creationTimestamp = old.creationTimestamp;
    if (old.deletionTimestamp) meta.deletionTimestamp = old.deletionTimestamp;
    else delete meta.deletionTimestamp;
    if (r.namespaced) meta.namespace = old.namespace;
    delete meta.selfLink;
    delete meta.managedFields;
    if (r.tracksGeneration) {
      const specChanged = JSON.stringify(o.spec ?? null) !== JSON.stringify(current.spec ?? null);
      meta.generation = (typeof old.generation === "number" ? old.generation : 1) + (specChanged ? 1 : 0);
    } else if (old.generation !== undefined) meta.generation = old.generation;
    else delete meta.generation;
    r.defaults?.(o);
    this.validate(r, o, current);
    return o;
  }

  private checkName(r: ResourceType, o: KObject, name: string, namespace: string | undefined): void {
    if (o.metadata.name === undefined || o.metadata.name === "") o.metadata.name = name;
    if (o.metadata.name !== name)
      throw errors.badRequest(
        `the name of the object (${String(o.metadata.name)}) does not match the name on the URL (${name})`,
      );
    if (r.namespaced) {
      const ns = o.metadata.namespace;
      if (ns !== undefined && ns !== "" && ns !== namespace)
        throw errors.badRequest(
          "the namespace of the provided object does not match the namespace sent on the request",
        );
      o.metadata.namespace = namespace;
    }
  }

  /** PUT: replace. A resourceVersion in the body must match (409 Conflict otherwise); none means "whatever is there". */
  async update(
    r: ResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    subresource: string | undefined,
    options: WriteOptions,
  ): Promise<{ object: KObject; created: boolean }> {
    const next = decodeBody(r, body, options);
    this.checkName(r, next, name, namespace);
    const wanted = typeof next.metadata.resourceVersion === "string" ? next.metadata.resourceVersion : "";
    if (wanted !== "" && !/^\d+$/.test(wanted)) throw errors.badRequest(`invalid resourceVersion: ${wanted}`);
    const ns = namespace ?? "";
    if (wanted === "") {
      const createOnUpdate = r.plural === "events" || r.plural === "leases";
      const existing = await this.storage.tryGet(r, ns, name);
      if (!existing) {
        if (!createOnUpdate || subresource) throw errors.notFound(r, name);
        return { object: await this.create(r, namespace, next, options), created: true };
      }
      return {
        object: await this.storage.guaranteedUpdate(
          r,
          ns,
          name,
          (current) => this.prepareUpdate(r, current, structuredClone(next), subresource),
          (current, o) => (options.dryRun ? Promise.resolve(o) : this.storage.update(r, current, o)),
        ),
        created: false,
      };
    }
    const current = await this.storage.get(r, ns, name);
    if (current.metadata.resourceVersion !== wanted) throw errors.modified(r, name);
    const o = this.prepareUpdate(r, current, next, subresource);
    if (options.dryRun) return { object: o, created: false };
    return { object: await this.storage.update(r, current, o), created: false };
  }

  async patch(
    r: ResourceType,
    namespace: string | undefined,
    name: string,
    contentType: string,
    patch: unknown,
    subresource: string | undefined,
    options: WriteOptions,
  ): Promise<KObject> {
    if (contentType === "application/apply-patch+yaml")
      throw new ApiError(
        415,
        "UnsupportedMediaType",
        "server-side apply is not supported by this server: use kubectl apply without --server-side (client-side apply works)",
      );
    const ns = namespace ?? "";
    return this.storage.guaranteedUpdate(
      r,
      ns,
      name,
      (current) => {
        const patched = applyPatch(r, current, contentType, patch);
        if (!isObject(patched)) throw errors.badRequest("the patch did not produce an object");
        const pinned = isObject(patched.metadata) ? patched.metadata.resourceVersion : undefined;
        if (pinned !== undefined && pinned !== "" && pinned !== current.metadata.resourceVersion)
          throw errors.modified(r, name);
        const next = decodeBody(r, patched, options);
        if (next.metadata.name !== name) throw errors.badRequest("the name of an object may not be changed by a patch");
        next.metadata.resourceVersion = current.metadata.resourceVersion;
        this.checkName(r, next, name, namespace);
        return this.prepareUpdate(r, current, next, subresource);
      },
      (current, next) => (options.dryRun ? Promise.resolve(next) : this.storage.update(r, current, next)),
    );
  }

  /**
   * DELETE with optional preconditions (uid, resourceVersion). Deleting a namespace deletes every
   * object in it first (what the namespace controller does in a real cluster), then the namespace.
   */
  async delete(
    r: ResourceType,
    namespace: string | undefined,
    name: string,
    body: unknown,
    dryRun: boolean,
  ): Promise<KObject> {
    const ns = namespace ?? "";
    const preconditions = isObject(body) && isObject(body.preconditions) ? body.preconditions : {};
    if (r === NAMESPACES && UNDELETABLE.includes(name))
      throw errors.forbidden(NAMESPACES, name, "this namespace may not be deleted");
    const current = await this.storage.get(r, ns, name);
    if (typeof preconditions.uid === "string" && preconditions.uid !== current.metadata.uid)
      throw errors.conflict(
        r,
        name,
        `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${String(current.metadata.uid)}`,
      );
    if (
      typeof preconditions.resourceVersion === "string" &&
      preconditions.resourceVersion !== current.metadata.resourceVersion
    )
      throw errors.conflict(
        r,
        name,
        `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${String(current.metadata.resourceVersion)}`,
      );
    if (dryRun) return current;
    if (r === NAMESPACES) return this.deleteNamespace(current);
    return this.storage.delete(r, current);
  }

  private async deleteNamespace(current: KObject): Promise<KObject> {
    const name = String(current.metadata.name);
    // Terminating first: no new content can be created while the content goes.
    let terminating = current;
    if ((current.status as Record<string, unknown> | undefined)?.phase !== "Terminating") {
      terminating = await this.storage.guaranteedUpdate(
        NAMESPACES,
        "",
        name,
        (o) => {
          o.metadata.deletionTimestamp = nowTimestamp();
          o.status = { ...(o.status as Record<string, unknown>), phase: "Terminating" };
          return o;
        },
        (cur, next) => this.storage.update(NAMESPACES, cur, next),
      );
    }
    for (const r of RESOURCES) {
      if (!r.namespaced) continue;
      for (;;) {
        const listed = await this.storage.list(r, name, { limit: 500 });
        for (const o of listed.items) {
          try {
            await this.storage.delete(r, o);
          } catch (e) {
            if (!(e instanceof ApiError && e.code === 404)) throw e;
          }
        }
        if (!listed.continueToken) break;
      }
    }
    const latest = await this.storage.get(NAMESPACES, "", name);
    await this.storage.delete(NAMESPACES, latest);
    return terminating;
  }

  async deleteCollection(
    r: ResourceType,
    namespace: string | undefined,
    query: URLSearchParams,
    dryRun: boolean,
  ): Promise<number> {
    const listed = await this.list(r, namespace, query);
    let n = 0;
    for (const o of listed.items) {
      if (dryRun) {
        n++;
        continue;
      }
      try {
        if (r === NAMESPACES) await this.delete(r, undefined, String(o.metadata.name), undefined, false);
        else await this.storage.delete(r, o);
        n++;
      } catch (e) {
        if (!(e instanceof ApiError && (e.code === 404 || e.code === 403))) throw e;
      }
    }
    return n;
  }

  async list(r: ResourceType, namespace: string | undefined, query: URLSearchParams): Promise<ListResult> {
    const labels = query.get("labelSelector") ? parseLabelSelector(query.get("labelSelector") as string) : undefined;
    const fields = query.get("fieldSelector")
      ? parseFieldSelector(query.get("fieldSelector") as string, fieldNames(r))
      : undefined;
    const limitText = query.get("limit");
    const limit = limitText ? Number(limitText) : 0;
    if (limitText && (!Number.isInteger(limit) || limit < 0)) throw errors.badRequest(`invalid limit: ${limitText}`);
    const continueToken = query.get("continue") || undefined;
    const resourceVersion = query.get("resourceVersion") ?? undefined;
    const match = query.get("resourceVersionMatch") ?? "";
    if (match && !["Exact", "NotOlderThan"].includes(match))
      throw errors.badRequest(`invalid resourceVersionMatch: ${match}; supported: "Exact", "NotOlderThan"`);
    if (continueToken && resourceVersion && resourceVersion !== "0")
      throw errors.badRequest("specifying resource version is not allowed when using continue");
    return this.storage.list(r, namespace, {
      labels,
      fields,
      limit,
      continueToken,
      resourceVersion,
      exact: match === "Exact",
    });
  }

  /** Creates the namespaces every cluster has, if missing (idempotent, safe with several API servers). */
  async bootstrap(): Promise<void> {
    for (const name of SYSTEM_NAMESPACES) {
      if (await this.storage.tryGet(NAMESPACES, "", name)) continue;
      try {
        await this.create(
          NAMESPACES,
          undefined,
          { apiVersion: "v1", kind: "Namespace", metadata: { name } },
          { dryRun: false, fieldValidation: "Strict", warnings: [] },
        );
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 409)) throw e;
      }
    }
  }
}

export function fieldNames(r: ResourceType): string[] {
  return ["metadata.name", ...(r.namespaced ? ["metadata.namespace"] : []), ...Object.keys(r.fields ?? {})];
}

function applyPatch(r: ResourceType, current: KObject, contentType: string, patch: unknown): unknown {
  switch (contentType) {
    case "application/json-patch+json":
      return jsonPatch(current, patch);
    case "application/merge-patch+json":
      if (!isObject(patch)) throw errors.badRequest("a merge patch must be a JSON object");
      return mergePatch(current, patch);
    case "application/strategic-merge-patch+json":
      return strategicMergePatch(current, patch, schemaOf(r) as Schema, DEFINITIONS);
    default:
      throw errors.unsupportedMediaType(contentType, PATCH_TYPES.slice(0, 3));
  }
}
