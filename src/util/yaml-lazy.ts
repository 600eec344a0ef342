import { createRequire } from "node:module";

type YamlModule = typeof import("yaml");

const require = createRequire(import.meta.url);
let loaded: YamlModule | undefined;

/**
 * The `yaml` package, loaded on first use. Processes that may never see YAML (an API server whose
 * clients all speak JSON) skip its startup cost, which every lab host pays once per process.
 */
export function yaml(): YamlModule {
  loaded ??= require("yaml") as YamlModule;
  return loaded;
}
