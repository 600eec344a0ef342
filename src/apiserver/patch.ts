import { type Definitions, resolve, type Schema } from "./schema.js";
import { ApiError } from "./status.js";

/**
 * The three patch kinds kubectl sends: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
 * Kubernetes' strategic merge patch, which merges lists by a key the schema names
 * (containers by name, ports by containerPort) and understands the `$patch`, `$retainKeys`,
 * `$setElementOrder/…` and `$deleteFromPrimitiveList/…` directives that kubectl apply computes.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

function patchError(message: string): ApiError {
  return new ApiError(422, "Invalid", message);
}

// ---------------------------------------------------------------------------------------------

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: Record<string, unknown> = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

interface JsonPatchOp {
  op: string;
  path: string;
  from?: string;
  value?: unknown;
}

function parsePointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw patchError(`jsonpatch: invalid path "${path}": must start with "/"`);
  return path
    .slice(1)
    .split("/")
    .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: unknown, tokens: string[], op: string, path: string): { parent: unknown; last: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)];
    else if (isObject(cur)) cur = cur[t];
    else cur = undefined;
    if (cur === undefined) throw patchError(`jsonpatch ${op} operation does not apply: doc is missing path: "${path}"`);
  }
  return { parent: cur, last: tokens[tokens.length - 1] as string };
}

function getAt(doc: unknown, path: string, op: string): unknown {
  let cur = doc;
  for (const t of parsePointer(path)) {
    if (Array.isArray(cur)) cur = /^\d+$/.test(t) ? cur[Number(t)] : undefined;
    else if (isObject(cur)) cur = Object.hasOwn(cur, t) ? cur[t] : undefined;
    else cur = undefined;
    if (cur === undefined) throw patchError(`jsonpatch ${op} operation does not apply: doc is missing path: "${path}"`);
  }
  return cur;
}

function arrayIndex(parent: unknown[], last: string, op: string, path: string, forInsert: boolean): number {
  if (forInsert && last === "-") return parent.length;
  if (!/^\d+$/.test(last))
    throw patchError(`jsonpatch ${op} operation does not apply: invalid index "${last}" in "${path}"`);
  const i = Number(last);
  if (i > parent.length || (!forInsert && i >= parent.length))
    throw patchError(`jsonpatch ${op} operation does not apply: index out of bounds in "${path}"`);
  return i;
}

function addAt(doc: unknown, path: string, value: unknown, op: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return clone(value);
  const { parent, last } = parentOf(doc, tokens, op, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, op, path, true), 0, clone(value));
  else if (isObject(parent)) parent[last] = clone(value) as Json;
  else throw patchError(`jsonpatch ${op} operation does not apply: doc is missing path: "${path}"`);
  return doc;
}

function removeAt(doc: unknown, path: string, op: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) throw patchError("jsonpatch: cannot remove the whole document");
  const { parent, last } = parentOf(doc, tokens, op, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, op, path, false), 1);
  else if (isObject(parent) && Object.hasOwn(parent, last)) delete parent[last];
  else throw patchError(`jsonpatch ${op} operation does not apply: doc is missing path: "${path}"`);
  return doc;
}

/** Value equality (object key order does not matter), as RFC 6902's "test" compares. */
function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => deepEqual(v, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

export function jsonPatch(target: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) throw new ApiError(400, "BadRequest", "a JSON patch must be an array of operations");
  let doc = clone(target);
  for (const raw of patch) {
    if (!isObject(raw) || typeof raw.op !== "string" || typeof raw.path !== "string")
      throw new ApiError(400, "BadRequest", `invalid JSON patch operation: ${JSON.stringify(raw)}`);
    const op = raw as unknown as JsonPatchOp;
    switch (op.op) {
      case "add":
        doc = addAt(doc, op.path, op.value, "add");
        break;
      case "remove":
        doc = removeAt(doc, op.path, "remove");
        break;
      case "replace":
        getAt(doc, op.path, "replace");
        doc = op.path === "" ? clone(op.value) : addAt(removeAt(doc, op.path, "replace"), op.path, op.value, "replace");
        break;
      case "move": {
        const v = clone(getAt(doc, op.from ?? "", "move"));
        doc = addAt(removeAt(doc, op.from ?? "", "move"), op.path, v, "move");
        break;
      }
      case "copy":
        doc = addAt(doc, op.path, getAt(doc, op.from ?? "", "copy"), "copy");
        break;
      case "test":
        if (!deepEqual(getAt(doc, op.path, "test"), op.value))
          throw patchError(`testing value ${op.path} failed: test failed`);
        break;
      default:
        throw new ApiError(400, "BadRequest", `unexpected JSON patch operation "${op.op}"`);
    }
  }
  return doc;
}

// ---------------------------------------------------------------------------------------------

const SET_ORDER = "$setElementOrder/";
const DELETE_PRIMITIVE = "$deleteFromPrimitiveList/";

function childSchema(schema: Schema | undefined, key: string, defs: Definitions): Schema | undefined {
  if (!schema) return undefined;
  const s = resolve(schema, defs);
  if (s.type === "object") return s.properties[key];
  if (s.type === "map") return s.values;
  return undefined;
}

/** Applies a strategic merge patch to `original` (a map) under `schema` (absent: merge-patch rules). */
export function strategicMergePatch(
  original: unknown,
  patch: unknown,
  schema: Schema | undefined,
  defs: Definitions,
): unknown {
  if (!isObject(patch)) throw new ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object");
  return mergeMap(isObject(original) ? clone(original) : {}, patch, schema, defs);
}

function mergeMap(
  original: Record<string, unknown>,
  patch: Record<string, Json>,
  schema: Schema | undefined,
  defs: Definitions,
): Record<string, unknown> | undefined {
  const directive = patch.$patch;
  if (directive === "delete") return undefined;
  if (directive === "replace") {
    const out = clone(patch) as Record<string, unknown>;
    delete out.$patch;
    return out;
  }
  const out = original;
  const retain = patch.$retainKeys;
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$patch" || key === "$retainKeys") continue;
    if (key.startsWith(SET_ORDER) || key.startsWith(DELETE_PRIMITIVE)) continue;
    const sub = childSchema(schema, key, defs);
    if (value === null) {
      delete out[key];
      continue;
    }
    const cur = out[key];
    if (isObject(value)) {
      const merged = mergeMap(isObject(cur) ? cur : {}, value, sub, defs);
      if (merged === undefined) delete out[key];
      else out[key] = merged;
    } else if (Array.isArray(value)) {
      out[key] = mergeList(Array.isArray(cur) ? cur : [], value, sub, defs, key);
    } else {
      out[key] = value;
    }
  }
  // Directives that refer to a sibling list.
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith(DELETE_PRIMITIVE) && Array.isArray(value)) {
      const field = key.slice(DELETE_PRIMITIVE.length);
      const cur = out[field];
      if (Array.isArray(cur))
        out[field] = cur.filter((v) => !value.some((d) => JSON.stringify(d) === JSON.stringify(v)));
    }
  }
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith(SET_ORDER) && Array.isArray(value)) {
      const field = key.slice(SET_ORDER.length);
      const cur = out[field];
      if (Array.isArray(cur)) out[field] = reorder(cur, value, childSchema(schema, field, defs), defs);
    }
  }
  if (Array.isArray(retain)) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  }
  return out;
}

function listMeta(
  schema: Schema | undefined,
  defs: Definitions,
): { mergeKey?: string; merge: boolean; items?: Schema } {
  if (!schema) return { merge: false };
  const s = resolve(schema, defs);
  if (s.type !== "array") return { merge: false };
  return {
    ...(s.mergeKey ? { mergeKey: s.mergeKey } : {}),
    merge: s.patchStrategy === "merge",
    items: s.items,
  };
}

function mergeList(
  original: unknown[],
  patch: Json[],
  schema: Schema | undefined,
  defs: Definitions,
  field: string,
): unknown[] {
  const meta = listMeta(schema, defs);
  // {"$patch": "replace"} anywhere in the list replaces the whole list with the other elements.
  if (patch.some((e) => isObject(e) && e.$patch === "replace" && Object.keys(e).length === 1)) {
    return clone(patch.filter((e) => !(isObject(e) && e.$patch === "replace")));
  }
  if (!meta.merge) return clone(patch).filter((e) => !(isObject(e) && e.$patch !== undefined));
  if (!meta.mergeKey) {
    // A set of primitives: union, keeping the original order first.
    const out = [...original];
    for (const v of patch) if (!out.some((o) => JSON.stringify(o) === JSON.stringify(v))) out.push(clone(v));
    return out;
  }
  const key = meta.mergeKey;
  const out = [...original];
  for (const element of patch) {
    if (!isObject(element))
      throw new ApiError(400, "BadRequest", `${field}: expected a list of objects to merge on "${key}"`);
    const id = element[key];
    const at = out.findIndex((o) => isObject(o) && JSON.stringify(o[key]) === JSON.stringify(id));
    if (element.$patch === "delete") {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (id === undefined)
      throw new ApiError(400, "BadRequest", `${field}: map in a list merged by "${key}" has no "${key}" key`);
    if (at >= 0) {
      const merged = mergeMap(out[at] as Record<string, unknown>, element, meta.items, defs);
      if (merged === undefined) out.splice(at, 1);
      else out[at] = merged;
    } else {
      const fresh = clone(element) as Record<string, unknown>;
      delete fresh.$patch;
      out.push(fresh);
    }
  }
  return out;
}

function reorder(list: unknown[], order: Json[], schema: Schema | undefined, defs: Definitions): unknown[] {
  const key = listMeta(schema, defs).mergeKey;
  const idOf = (v: unknown) => JSON.stringify(key && isObject(v) ? v[key] : v);
  const wanted = order.map((o) => JSON.stringify(key && isObject(o) ? o[key] : o));
  const inOrder: unknown[] = [];
  for (const w of wanted) {
    const found = list.find((v) => idOf(v) === w);
    if (found !== undefined) inOrder.push(found);
  }
  const rest = list.filter((v) => !wanted.includes(idOf(v)));
  return [...inOrder, ...rest];
}
