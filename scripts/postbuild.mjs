// After tsc: copy the .proto declarations next to the compiled modules that load them, and mark
// the CLI entry point executable so `node dist/src/cli/main.js` and `npx lab` both work.
import { chmodSync, cpSync, existsSync } from "node:fs";

const root = new URL("../", import.meta.url);
const entry = new URL("dist/src/cli/main.js", root);
if (!existsSync(entry)) {
  console.error("postbuild: dist/src/cli/main.js is missing; did tsc fail?");
  process.exit(1);
}
cpSync(new URL("src/etcd/proto/", root), new URL("dist/src/etcd/proto/", root), { recursive: true });
cpSync(new URL("src/apiserver/proto/", root), new URL("dist/src/apiserver/proto/", root), { recursive: true });
chmodSync(entry, 0o755);
