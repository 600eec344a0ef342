import { stringify as toYaml } from "yaml";
import {
  builtinTopologies,
  formatDiagnostic,
  loadTopologyFile,
  resolveTopologyRef,
  TopologyError,
} from "../topology/load.js";
import { topologyJsonSchema } from "../topology/schema.js";

const USAGE = `Usage:
  lab topology list                 the built-in topologies
  lab topology validate NAME|FILE   check a topology; print it with every default filled in
  lab topology schema               the topology file's JSON Schema (for editors)
`;

/** `lab topology ...`: inspect and check topology files without starting anything. */
export async function runTopology(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "list":
      for (const name of builtinTopologies()) process.stdout.write(`${name}\n`);
      return 0;
    case "schema":
      process.stdout.write(`${JSON.stringify(topologyJsonSchema(), null, 2)}\n`);
      return 0;
    case "validate": {
      const ref = rest[0];
      if (!ref || rest.length > 1) {
        process.stderr.write(`lab topology validate: give one topology name or file\n${USAGE}`);
        return 2;
      }
      try {
        const { topology, warnings, file } = loadTopologyFile(resolveTopologyRef(ref));
        for (const w of warnings) process.stderr.write(`warning: ${formatDiagnostic(w)}\n`);
        process.stdout.write(`# ${file}: valid\n${toYaml(topology)}`);
        return 0;
      } catch (e) {
        if (e instanceof TopologyError) {
          for (const d of e.diagnostics) process.stderr.write(`error: ${formatDiagnostic(d)}\n`);
          return 1;
        }
        throw e;
      }
    }
    case undefined:
    case "-h":
    case "--help":
      process.stdout.write(USAGE);
      return sub === undefined ? 2 : 0;
    default:
      process.stderr.write(`lab topology: unknown subcommand "${sub}"\n${USAGE}`);
      return 2;
  }
}
