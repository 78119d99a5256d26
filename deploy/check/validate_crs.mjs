// The chart's prometheus-operator custom resources (ServiceMonitor, PrometheusRule) validated
// against the operator's CRD schemas, as the npm package @kubernetes-models/prometheus-operator
// compiles them (types, enums, required fields, patterns; unknown fields are not refused, as
// the API server prunes them). Run by the deploy checks (xtask/src/deploy.rs).
//
// usage: node validate_crs.mjs NODE_MODULES CRS.json    (CRS.json: a JSON array of objects)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
const objects = JSON.parse(readFileSync(file, "utf8"));
const pkg = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1");
let failed = 0;
const seen = new Set();
for (const o of objects) {
  if (o.apiVersion !== "monitoring.coreos.com/v1") {
    console.log(`FAIL: ${o.kind}/${o.metadata?.name}: apiVersion ${o.apiVersion}`);
    failed++;
    continue;
  }
  const mod = await import(pathToFileURL(join(pkg, `${o.kind}.js`)).href);
  try {
    new mod[o.kind](o).validate();
    console.log(`ok: ${o.kind}/${o.metadata.name} validates against the CRD schema`);
    seen.add(o.kind);
  } catch (e) {
    console.log(`FAIL: ${o.kind}/${o.metadata?.name}: ${e.message}`);
    failed++;
  }
}
// The check itself: a resource that breaks the schema is refused.
const { ServiceMonitor } = await import(pathToFileURL(join(pkg, "ServiceMonitor.js")).href);
try {
  new ServiceMonitor({
    apiVersion: "monitoring.coreos.com/v1",
    kind: "ServiceMonitor",
    metadata: { name: "bad" },
    spec: { selector: {}, endpoints: [{ port: "metrics", interval: 30 }] },
  }).validate();
  console.log("FAIL: a ServiceMonitor with a numeric interval was accepted");
  failed++;
} catch (e) {
  console.log(`ok: a ServiceMonitor with a numeric interval is refused (${e.message.split(",")[0]})`);
}
for (const kind of ["ServiceMonitor", "PrometheusRule"]) {
  if (!seen.has(kind)) {
    console.log(`FAIL: no ${kind} among the rendered objects`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
