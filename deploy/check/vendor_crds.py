"""Regenerates deploy/check/crds/*.schema.json: the JSON Schemas of the prometheus-operator
custom resources the chart renders (ServiceMonitor, PrometheusRule), self-contained (every $ref
points into the file's own $defs). Run by hand when the pin below changes; CI never runs it, it
reads the committed files (check_chart.py).

Where the schemas come from: the PyPI package cloudcoil-models-prometheus-operator, pydantic
models that cloudcoil's code generator makes from prometheus-operator's CRDs (its version is the
operator's with one more number: 0.80.1.0 is the operator's v0.80.1). Pydantic writes their JSON
Schema; this script only tidies it: titles and defaults dropped, each optional field's "or null"
removed (the API server prunes a null of a field that is not nullable, so null is never what a
manifest means), apiVersion and kind required. It does not make the schemas strict: check_chart.py
does that when it loads them, so that these files stay what the generator wrote.

(The npm package @kubernetes-models/prometheus-operator that the checks used before ships only
ajv-compiled validators, no JSON Schema to vendor.)

usage, from the repository root:
    python3 -m venv /tmp/crd-venv
    /tmp/crd-venv/bin/pip install cloudcoil-models-prometheus-operator==0.80.1.0
    /tmp/crd-venv/bin/python deploy/check/vendor_crds.py
"""

import json
from importlib.metadata import version
from pathlib import Path

from cloudcoil.models.prometheus_operator import v1

PACKAGE = "cloudcoil.models.prometheus_operator"
PIN = "0.80.1.0"
OUT = Path(__file__).resolve().parent / "crds"
KINDS = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}


def tidy(node):
    if isinstance(node, list):
        return [tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: tidy(v) for k, v in node.items() if k not in ("title", "default")}
    alts = node.get("anyOf")
    if alts and {"type": "null"} in alts:
        rest = [a for a in alts if a != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
    return node


def main():
    got = version(PACKAGE)
    if got != PIN:
        raise SystemExit(f"{PACKAGE} {got} is installed, the pin is {PIN}: install the pin or change it")
    OUT.mkdir(exist_ok=True)
    for kind, model in KINDS.items():
        schema = tidy(model.model_json_schema(by_alias=True, mode="validation"))
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"monitoring.coreos.com/v1 {kind}, prometheus-operator v{PIN.rsplit('.', 1)[0]} CRD, "
            f"from the PyPI package {PACKAGE} {PIN} by deploy/check/vendor_crds.py; do not edit",
            **schema,
        }
        path = OUT / f"{kind.lower()}.schema.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path} ({len(schema.get('$defs', {}))} definitions)")


if __name__ == "__main__":
    main()
