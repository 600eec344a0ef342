/**
 * A small schema language for the built-in types. One declaration feeds three things:
 * - the OpenAPI v3 documents (kubectl explain; kubectl's check that the server validates fields),
 * - strict field validation (`?fieldValidation=Strict`: unknown fields are errors),
 * - strategic merge patch (which lists merge by key, and on which key).
 */

export type Schema =
  | {
      readonly type: "string";
      readonly description?: string;
      readonly format?: string;
      readonly enum?: readonly string[];
    }
  | { readonly type: "integer" | "number" | "boolean"; readonly description?: string }
  | {
      readonly type: "object";
      readonly description?: string;
      readonly properties: Readonly<Record<string, Schema>>;
      readonly required?: readonly string[];
    }
  | { readonly type: "map"; readonly description?: string; readonly values: Schema }
  | {
      readonly type: "array";
      readonly description?: string;
      readonly items: Schema;
      /** Strategic merge: elements are matched on this field (x-kubernetes-patch-merge-key). */
      readonly mergeKey?: string;
      /** Strategic merge: "merge" merges lists by key (or as sets of primitives); otherwise replaced. */
      readonly patchStrategy?: "merge" | "replace";
    }
  | { readonly type: "ref"; readonly name: string; readonly description?: string }
  /** Anything: IntOrString, Quantity, or a subtree this server stores without modelling. */
  | { readonly type: "any"; readonly description?: string; readonly format?: string };

export const str = (description: string, extra: { format?: string; enum?: readonly string[] } = {}): Schema => ({
  type: "string",
  description,
  ...extra,
});
export const int = (description: string): Schema => ({ type: "integer", description });
export const bool = (description: string): Schema => ({ type: "boolean", description });
export const obj = (description: string, properties: Record<string, Schema>, required?: string[]): Schema =>
  required ? { type: "object", description, properties, required } : { type: "object", description, properties };
export const map = (description: string, values: Schema = { type: "string" }): Schema => ({
  type: "map",
  description,
  values,
});
export const list = (
  description: string,
  items: Schema,
  merge?: { mergeKey?: string; patchStrategy?: "merge" | "replace" },
): Schema => ({ type: "array", description, items, ...merge });
export const ref = (name: string, description?: string): Schema =>
  description ? { type: "ref", name, description } : { type: "ref", name };
export const any = (description: string, format?: string): Schema =>
  format ? { type: "any", description, format } : { type: "any", description };

/** Named schemas that refs point to (ObjectMeta, Container, ...), by their OpenAPI component name. */
export type Definitions = ReadonlyMap<string, Schema>;

export function resolve(s: Schema, defs: Definitions): Schema {
  let cur = s;
  for (let i = 0; cur.type === "ref" && i < 16; i++) {
    const target = defs.get(cur.name);
    if (!target) throw new Error(`schema: no definition ${cur.name}`);
    cur = target;
  }
  return cur;
}

/**
 * Paths of fields the schema does not declare (strict field validation). Metadata fields the
 * server manages are declared, so a GET-edit-PUT round trip stays clean.
 */
export function unknownFields(value: unknown, schema: Schema, defs: Definitions, path = ""): string[] {
  const s = resolve(schema, defs);
  if (value === null || value === undefined) return [];
  if (s.type === "object") {
    if (typeof value !== "object" || Array.isArray(value)) return [];
    const out: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const child = s.properties[k];
      const p = path ? `${path}.${k}` : k;
      if (!child) out.push(p);
      else out.push(...unknownFields(v, child, defs, p));
    }
    return out;
  }
  if (s.type === "map" && typeof value === "object" && !Array.isArray(value)) {
    const out: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>))
      out.push(...unknownFields(v, s.values, defs, `${path}.${k}`));
    return out;
  }
  if (s.type === "array" && Array.isArray(value)) {
    const out: string[] = [];
    value.forEach((v, i) => {
      out.push(...unknownFields(v, s.items, defs, `${path}[${i}]`));
    });
    return out;
  }
  return [];
}

/** Type mismatches that would make the object unreadable by clients (a string where a list belongs). */
export function typeErrors(
  value: unknown,
  schema: Schema,
  defs: Definitions,
  path = "",
): { field: string; want: string; got: unknown }[] {
  const s = resolve(schema, defs);
  if (value === null || value === undefined) return [];
  const bad = (want: string) => [{ field: path, want, got: value }];
  switch (s.type) {
    case "string":
      return typeof value === "string" ? [] : bad("string");
    case "integer":
      return typeof value === "number" && Number.isInteger(value) ? [] : bad("integer");
    case "number":
      return typeof value === "number" ? [] : bad("number");
    case "boolean":
      return typeof value === "boolean" ? [] : bad("boolean");
    case "object": {
      if (typeof value !== "object" || Array.isArray(value)) return bad("object");
      const out: { field: string; want: string; got: unknown }[] = [];
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        const child = s.properties[k];
        if (child) out.push(...typeErrors(v, child, defs, path ? `${path}.${k}` : k));
      }
      return out;
    }
    case "map": {
      if (typeof value !== "object" || Array.isArray(value)) return bad("object");
      const out: { field: string; want: string; got: unknown }[] = [];
      for (const [k, v] of Object.entries(value as Record<string, unknown>))
        out.push(...typeErrors(v, s.values, defs, `${path}[${k}]`));
      return out;
    }
    case "array": {
      if (!Array.isArray(value)) return bad("array");
      const out: { field: string; want: string; got: unknown }[] = [];
      value.forEach((v, i) => {
        out.push(...typeErrors(v, s.items, defs, `${path}[${i}]`));
      });
      return out;
    }
    default:
      return [];
  }
}
