import { groupVersion, type KObject, type ResourceType } from "./resources.js";

/**
 * Server-side printing: kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints
 * the rows the server computes (the same columns a real cluster shows for each type).
 */

export interface TableOptions {
  readonly apiVersion: string;
  /** What each row carries: nothing, the object's metadata (the default), or the whole object. */
  readonly includeObject: "None" | "Metadata" | "Object";
}

const NAME_COLUMN = {
  name: "Name",
  type: "string",
  format: "name",
  description: "The object's name, unique among objects of its kind in its namespace (or cluster).",
  priority: 0,
};

export function toTable(
  r: ResourceType,
  objects: readonly KObject[],
  metadata: Record<string, unknown>,
  options: TableOptions,
  withColumns: boolean,
): Record<string, unknown> {
  const now = Date.now();
  // Events lead with "Last Seen"; every other type leads with the name.
  const nameFirst = r.plural !== "events";
  const columns = nameFirst ? [NAME_COLUMN, ...r.columns] : [...r.columns];
  const rows = objects.map((o) => {
    const cells = r.cells(o, now);
    const row: Record<string, unknown> = { cells: nameFirst ? [o.metadata.name, ...cells] : cells };
    if (options.includeObject === "Metadata") {
      row.object = { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: o.metadata };
    } else if (options.includeObject === "Object") {
      row.object = { ...o, kind: r.kind, apiVersion: groupVersion(r) };
    }
    return row;
  });
  return {
    kind: "Table",
    apiVersion: options.apiVersion,
    metadata,
    ...(withColumns ? { columnDefinitions: columns } : {}),
    rows,
  };
}
