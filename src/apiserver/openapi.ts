import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { yaml } from "../util/yaml-lazy.js";
import { DEFINITIONS, groupVersion, groupVersions, type ResourceType, resourcesOf } from "./resources.js";
import type { Schema } from "./schema.js";

/**
 * OpenAPI v3, as kube-apiserver serves it: `/openapi/v3` lists one document per group/version,
 * each with the paths of its resources and the schemas of its types. kubectl reads it for
 * `kubectl explain`, and to learn that the server validates fields itself (the `fieldValidation`
 * parameter on PATCH), which spares it client-side schema checks.
 */

type Json = Record<string, unknown>;

function toOpenApi(s: Schema): Json {
  const d = s.description ? { description: s.description } : {};
  switch (s.type) {
    case "string":
      return { ...d, type: "string", ...(s.format ? { format: s.format } : {}), ...(s.enum ? { enum: s.enum } : {}) };
    case "integer":
      return { ...d, type: "integer", format: "int64" };
    case "number":
      return { ...d, type: "number", format: "double" };
    case "boolean":
      return { ...d, type: "boolean" };
    case "object": {
      const properties: Json = {};
      for (const [k, v] of Object.entries(s.properties)) properties[k] = toOpenApi(v);
      return { ...d, type: "object", properties, ...(s.required ? { required: s.required } : {}) };
    }
    case "map":
      return { ...d, type: "object", additionalProperties: { ...toOpenApi(s.values), default: "" } };
    case "array":
      return {
        ...d,
        type: "array",
        items: toOpenApi(s.items),
        ...(s.mergeKey ? { "x-kubernetes-patch-merge-key": s.mergeKey } : {}),
        ...(s.patchStrategy ? { "x-kubernetes-patch-strategy": s.patchStrategy } : {}),
        ...(s.mergeKey ? { "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [s.mergeKey] } : {}),
      };
    case "ref":
      return s.description
        ? { ...d, default: {}, allOf: [{ $ref: `#/components/schemas/${s.name}` }] }
        : { $ref: `#/components/schemas/${s.name}` };
    case "any":
      return s.format === "int-or-string"
        ? { ...d, "x-kubernetes-int-or-string": true, anyOf: [{ type: "integer" }, { type: "string" }] }
        : { ...d, type: "object", "x-kubernetes-preserve-unknown-fields": true };
  }
}

/** Component names a schema refers to, transitively. */
function refsOf(s: Schema, into: Set<string>): void {
  switch (s.type) {
    case "ref":
      if (!into.has(s.name)) {
        into.add(s.name);
        const target = DEFINITIONS.get(s.name);
        if (target) refsOf(target, into);
      }
      return;
    case "object":
      for (const v of Object.values(s.properties)) refsOf(v, into);
      return;
    case "map":
      refsOf(s.values, into);
      return;
    case "array":
      refsOf(s.items, into);
      return;
    default:
      return;
  }
}

function gvk(r: ResourceType): Json {
  return { group: r.group, version: r.version, kind: r.kind };
}

function param(name: string, inWhere: "path" | "query", description: string, type = "string"): Json {
  return {
    name,
    in: inWhere,
    description,
    ...(inWhere === "path" ? { required: true } : {}),
    schema: { type, uniqueItems: true },
  };
}

const QUERY = {
  dryRun: param("dryRun", "query", "When present (All), the request is validated but nothing is stored."),
  fieldManager: param("fieldManager", "query", "The name of the actor making the change."),
  fieldValidation: param(
    "fieldValidation",
    "query",
    "How to treat fields the schema does not know: Ignore (drop them), Warn (drop them and warn; the default) or Strict (fail).",
  ),
  pretty: param("pretty", "query", "Indent the output."),
  labelSelector: param("labelSelector", "query", "Only objects whose labels match this selector."),
  fieldSelector: param("fieldSelector", "query", "Only objects whose fields match this selector."),
  limit: param("limit", "query", "Return at most this many objects, with a continue token for the rest.", "integer"),
  continue: param("continue", "query", "The continue token of the previous page."),
  resourceVersion: param("resourceVersion", "query", "Read or watch from this resourceVersion."),
  resourceVersionMatch: param("resourceVersionMatch", "query", "Exact or NotOlderThan."),
  watch: param("watch", "query", "Stream changes instead of returning a list.", "boolean"),
  allowWatchBookmarks: param("allowWatchBookmarks", "query", "Send BOOKMARK events.", "boolean"),
  timeoutSeconds: param("timeoutSeconds", "query", "End the list or watch after this many seconds.", "integer"),
  force: param("force", "query", "Take conflicting fields over (server-side apply).", "boolean"),
};

function response(ref: string, code = "200"): Json {
  const content = { schema: { $ref: `#/components/schemas/${ref}` } };
  return {
    [code]: {
      description: code === "201" ? "Created" : "OK",
      content: { "application/json": content, "application/yaml": content },
    },
  };
}

function operation(
  r: ResourceType,
  action: string,
  id: string,
  description: string,
  parameters: Json[],
  responses: Json,
  body?: Json,
): Json {
  return {
    tags: [r.group ? `${r.group.split(".")[0]}_${r.version}` : `core_${r.version}`],
    description,
    operationId: id,
    parameters,
    ...(body ? { requestBody: body } : {}),
    responses,
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": gvk(r),
  };
}

function pathsOf(r: ResourceType): Json {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const scope = r.namespaced ? `${base}/namespaces/{namespace}/${r.plural}` : `${base}/${r.plural}`;
  const pathParams = r.namespaced ? [param("namespace", "path", "The object's namespace.")] : [];
  const nameParam = param("name", "path", `The ${r.kind}'s name.`);
  const ref = r.schemaName;
  const listRef = `${ref}List`;
  const bodyOf = (types: string[]): Json => ({
    required: true,
    content: Object.fromEntries(types.map((t) => [t, { schema: { $ref: `#/components/schemas/${ref}` } }])),
  });
  const patchBody: Json = {
    required: true,
    content: Object.fromEntries(
      [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
      ].map((t) => [t, { schema: { type: "object" } }]),
    ),
  };
  const kindTitle = r.kind;
  const paths: Json = {
    [scope]: {
      get: operation(
        r,
        "list",
        `list${kindTitle}`,
        `list or watch objects of kind ${r.kind}`,
        [
          QUERY.labelSelector,
          QUERY.fieldSelector,
          QUERY.limit,
          QUERY.continue,
          QUERY.resourceVersion,
          QUERY.resourceVersionMatch,
          QUERY.watch,
          QUERY.allowWatchBookmarks,
          QUERY.timeoutSeconds,
        ],
        response(listRef),
      ),
      post: operation(
        r,
        "post",
        `create${kindTitle}`,
        `create a ${r.kind}`,
        [QUERY.dryRun, QUERY.fieldManager, QUERY.fieldValidation],
        { ...response(ref), ...response(ref, "201") },
        bodyOf(["application/json", "application/yaml"]),
      ),
      delete: operation(
        r,
        "deletecollection",
        `deleteCollection${kindTitle}`,
        `delete a collection of ${r.kind}`,
        [QUERY.labelSelector, QUERY.fieldSelector, QUERY.dryRun],
        response("io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
      ),
      parameters: [...pathParams, QUERY.pretty],
    },
    [`${scope}/{name}`]: {
      get: operation(r, "get", `read${kindTitle}`, `read the specified ${r.kind}`, [], response(ref)),
      put: operation(
        r,
        "put",
        `replace${kindTitle}`,
        `replace the specified ${r.kind}`,
        [QUERY.dryRun, QUERY.fieldManager, QUERY.fieldValidation],
        response(ref),
        bodyOf(["application/json", "application/yaml"]),
      ),
      patch: operation(
        r,
        "patch",
        `patch${kindTitle}`,
        `partially update the specified ${r.kind}`,
        [QUERY.dryRun, QUERY.fieldManager, QUERY.fieldValidation, QUERY.force],
        response(ref),
        patchBody,
      ),
      delete: operation(
        r,
        "delete",
        `delete${kindTitle}`,
        `delete a ${r.kind}`,
        [QUERY.dryRun],
        response("io.k8s.apimachinery.pkg.apis.meta.v1.Status"),
      ),
      parameters: [nameParam, ...pathParams, QUERY.pretty],
    },
  };
  if (r.namespaced) {
    paths[`${base}/${r.plural}`] = {
      get: operation(
        r,
        "list",
        `list${kindTitle}ForAllNamespaces`,
        `list or watch objects of kind ${r.kind} in every namespace`,
        [QUERY.labelSelector, QUERY.fieldSelector, QUERY.limit, QUERY.continue, QUERY.resourceVersion, QUERY.watch],
        response(listRef),
      ),
      parameters: [QUERY.pretty],
    };
  }
  return paths;
}

const STATUS_SCHEMA: Json = {
  description: "The result of an operation that returns no object, or an error.",
  type: "object",
  properties: {
    apiVersion: { type: "string" },
    kind: { type: "string" },
    metadata: { type: "object" },
    status: { type: "string", description: "Success or Failure." },
    message: { type: "string" },
    reason: { type: "string" },
    details: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
    code: { type: "integer", format: "int32" },
  },
};

export interface OpenApiDocuments {
  /** The document list at /openapi/v3. */
  readonly root: Json;
  /** Documents by path, e.g. "api/v1", "apis/coordination.k8s.io/v1". */
  readonly documents: ReadonlyMap<string, { body: string; hash: string }>;
}

export function buildOpenApi(version: string): OpenApiDocuments {
  const documents = new Map<string, { body: string; hash: string }>();
  const rootPaths: Json = {};
  for (const { group, version: v } of groupVersions()) {
    const resources = resourcesOf(group, v);
    const names = new Set<string>();
    for (const r of resources) {
      names.add(r.schemaName);
      refsOf(DEFINITIONS.get(r.schemaName) as Schema, names);
    }
    const schemas: Json = {};
    for (const name of [...names].sort()) {
      const s = toOpenApi(DEFINITIONS.get(name) as Schema);
      const r = resources.find((x) => x.schemaName === name);
      schemas[name] = r ? { ...s, "x-kubernetes-group-version-kind": [gvk(r)] } : s;
    }
    for (const r of resources) {
      schemas[`${r.schemaName}List`] = {
        description: `A list of ${r.kind} objects.`,
        type: "object",
        required: ["items"],
        properties: {
          apiVersion: { type: "string" },
          kind: { type: "string" },
          metadata: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
          items: { type: "array", items: { $ref: `#/components/schemas/${r.schemaName}` } },
        },
        "x-kubernetes-group-version-kind": [{ group: r.group, version: r.version, kind: `${r.kind}List` }],
      };
    }
    schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"] = STATUS_SCHEMA;
    let paths: Json = {};
    for (const r of resources) paths = { ...paths, ...pathsOf(r) };
    const doc = { openapi: "3.0.0", info: { title: "Kubernetes", version }, paths, components: { schemas } };
    const body = JSON.stringify(doc);
    const hash = createHash("sha512").update(body).digest("hex").toUpperCase().slice(0, 128);
    const key = group ? `apis/${groupVersion({ group, version: v })}` : `api/${v}`;
    documents.set(key, { body, hash });
    rootPaths[key] = { serverRelativeURL: `/openapi/v3/${key}?hash=${hash}` };
  }
  return { root: { paths: rootPaths }, documents };
}

// ---------------------------------------------------------------------------------------------
// OpenAPI v2 (what kubectl 1.27 and older read): one document for everything, as JSON and as the
// protobuf encoding kubectl asks for.

function v2Schema(s: Json): Json {
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === "$ref") out.$ref = String(v).replace("#/components/schemas/", "#/definitions/");
    else if (k === "allOf" && Array.isArray(v) && v.length === 1) Object.assign(out, v2Schema(v[0] as Json));
    else if (k === "default" || k === "anyOf" || k === "x-kubernetes-int-or-string") continue;
    else if (k === "properties") {
      const props: Json = {};
      for (const [name, p] of Object.entries(v as Json)) props[name] = v2Schema(p as Json);
      out.properties = props;
    } else if (k === "items" || k === "additionalProperties") out[k] = v2Schema(v as Json);
    else out[k] = v;
  }
  if (s["x-kubernetes-int-or-string"]) {
    out.type = "string";
    out.format = "int-or-string";
  }
  return out;
}

function v2Operation(op: Json): Json {
  const parameters = ((op.parameters as Json[] | undefined) ?? []).map(v2Parameter);
  const body = op.requestBody as Json | undefined;
  if (body) {
    const content = body.content as Record<string, Json>;
    const first = Object.values(content)[0] as Json;
    parameters.push({ name: "body", in: "body", required: true, schema: v2Schema(first.schema as Json) });
  }
  const responses: Json = {};
  for (const [code, r] of Object.entries(op.responses as Record<string, Json>)) {
    const content = r.content as Record<string, Json> | undefined;
    const schema = content ? (Object.values(content)[0] as Json).schema : undefined;
    responses[code] = { description: r.description, ...(schema ? { schema: v2Schema(schema as Json) } : {}) };
  }
  const body2 = op.requestBody as Json | undefined;
  return {
    tags: op.tags,
    description: op.description,
    operationId: op.operationId,
    consumes: body2 ? Object.keys(body2.content as Json) : ["*/*"],
    produces: ["application/json", "application/yaml"],
    parameters,
    responses,
    "x-kubernetes-action": op["x-kubernetes-action"],
    "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"],
  };
}

function v2Parameter(p: Json): Json {
  const schema = (p.schema as Json | undefined) ?? {};
  return {
    name: p.name,
    in: p.in,
    description: p.description,
    ...(p.required ? { required: true } : {}),
    type: schema.type ?? "string",
    uniqueItems: true,
  };
}

export interface OpenApiV2 {
  readonly json: string;
  readonly protobuf: Buffer;
  readonly etag: string;
}

export function buildOpenApiV2(v3: OpenApiDocuments, version: string): OpenApiV2 {
  const definitions: Json = {};
  const paths: Json = {};
  for (const doc of v3.documents.values()) {
    const d = JSON.parse(doc.body) as { paths: Record<string, Json>; components: { schemas: Record<string, Json> } };
    for (const [name, s] of Object.entries(d.components.schemas)) definitions[name] = v2Schema(s);
    for (const [path, item] of Object.entries(d.paths)) {
      const out: Json = {};
      for (const [method, op] of Object.entries(item)) {
        if (method === "parameters") out.parameters = (op as Json[]).map(v2Parameter);
        else out[method] = v2Operation(op as Json);
      }
      paths[path] = out;
    }
  }
  const json = { swagger: "2.0", info: { title: "Kubernetes", version }, paths, definitions };
  const text = JSON.stringify(json);
  const proto = encodeV2(json);
  return {
    json: text,
    protobuf: proto,
    etag: createHash("sha512").update(proto).digest("hex").toUpperCase().slice(0, 128),
  };
}

let v2Root: protobuf.Root | undefined;

function v2Type(name: string): protobuf.Type {
  if (!v2Root) {
    v2Root = new protobuf.Root();
    v2Root.loadSync(fileURLToPath(new URL("./proto/openapiv2.proto", import.meta.url)), { keepCase: true });
  }
  return v2Root.lookupType(`openapi.v2.${name}`);
}

function extensions(o: Json): Json[] {
  return Object.entries(o)
    .filter(([k]) => k.startsWith("x-"))
    .map(([name, value]) => ({ name, value: { yaml: yaml().stringify(value) } }));
}

function schemaMessage(s: Json): Json {
  const m: Json = {};
  if (s.$ref) m._ref = s.$ref;
  if (s.format) m.format = s.format;
  if (s.description) m.description = s.description;
  if (Array.isArray(s.required)) m.required = s.required;
  if (s.type) m.type = { value: [s.type] };
  if (s.items) m.items = { schema: [schemaMessage(s.items as Json)] };
  if (s.additionalProperties) m.additional_properties = { schema: schemaMessage(s.additionalProperties as Json) };
  if (s.properties)
    m.properties = {
      additional_properties: Object.entries(s.properties as Json).map(([name, v]) => ({
        name,
        value: schemaMessage(v as Json),
      })),
    };
  const ext = extensions(s);
  if (ext.length > 0) m.vendor_extension = ext;
  return m;
}

function parameterMessage(p: Json): Json {
  if (p.in === "body")
    return {
      parameter: {
        body_parameter: { name: p.name, in: "body", required: true, schema: schemaMessage(p.schema as Json) },
      },
    };
  const sub = {
    required: Boolean(p.required),
    in: p.in,
    description: p.description ?? "",
    name: p.name,
    type: p.type,
    unique_items: true,
  };
  return {
    parameter: {
      non_body_parameter: p.in === "path" ? { path_parameter_sub_schema: sub } : { query_parameter_sub_schema: sub },
    },
  };
}

function operationMessage(op: Json): Json {
  return {
    tags: op.tags,
    description: op.description,
    operation_id: op.operationId,
    produces: op.produces,
    consumes: op.consumes,
    parameters: (op.parameters as Json[]).map(parameterMessage),
    responses: {
      response_code: Object.entries(op.responses as Record<string, Json>).map(([name, r]) => ({
        name,
        value: {
          response: {
            description: r.description,
            ...(r.schema ? { schema: { schema: schemaMessage(r.schema as Json) } } : {}),
          },
        },
      })),
    },
    vendor_extension: extensions(op),
  };
}

function encodeV2(doc: { swagger: string; info: Json; paths: Json; definitions: Json }): Buffer {
  const message = {
    swagger: doc.swagger,
    info: doc.info,
    paths: {
      path: Object.entries(doc.paths).map(([name, item]) => {
        const value: Json = {};
        for (const [method, op] of Object.entries(item as Json)) {
          if (method === "parameters") value.parameters = (op as Json[]).map(parameterMessage);
          else value[method] = operationMessage(op as Json);
        }
        return { name, value };
      }),
    },
    definitions: {
      additional_properties: Object.entries(doc.definitions).map(([name, s]) => ({
        name,
        value: schemaMessage(s as Json),
      })),
    },
  };
  const type = v2Type("Document");
  const err = type.verify(message);
  if (err) throw new Error(`OpenAPI v2 document: ${err}`);
  const bytes = type.encode(type.fromObject(message)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
