"""The chart's checks with the real tools (run by `cargo xtask test`, step "deploy checks").

Helm's own engine (helm-python-sdk bundles Helm v4's Go SDK) renders and lints the chart for
the default values, for values-nondefault.yaml and for values-tls.yaml (every TLS and token
Secret: each file the config names must be in a mounted Secret, and the config is written
with those files made under OUT so that check-config reads them); values that break the
schema or combinations that cannot work must be refused; every rendered object must validate,
strict, against the Kubernetes API schemas of kubernetes-validate, and the ServiceMonitor and
PrometheusRule, strict too, against the prometheus-operator CRD schemas vendored in
deploy/check/crds/; deploy/manifests/ must be the default render; the chart's interface values
must reach the rendered config; every metric name of the rules and the dashboard must be the
daemon's (`node_monitor_*`, which the e2e test `deploy` finds in a real scrape) or one allowed
by name (FOREIGN_METRICS: Prometheus's `up`, two of kube-state-metrics'). The daemon's config
from each render, and the PrometheusRule's rules, are written to OUT for the checks that need
the daemon and promtool (xtask/src/deploy.rs).

usage: check_chart.py OUT [--write-manifests]
"""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/node-monitor"
MANIFESTS = ROOT / "deploy/manifests/node-monitor.yaml"
RELEASE, NAMESPACE = "node-monitor", "node-monitor"
# The Kubernetes version the objects are validated for: the newest kubernetes-validate ships.
KUBE_VERSION = kubernetes_validate.utils.latest_version()
# Custom resources: kubernetes-validate has no schema for them. They validate against the
# prometheus-operator CRD schemas vendored in deploy/check/crds/ (deploy/check/vendor_crds.py
# wrote them; crds/README.md says from what), made strict here; besides, the PrometheusRule's
# spec is files/rules.yaml (promtool checks and tests those) and the ServiceMonitor selects the
# chart's metrics Service by its labels and port name.
CRDS = ROOT / "deploy/check/crds"
CRD_SCHEMAS = {"ServiceMonitor": "servicemonitor.schema.json", "PrometheusRule": "prometheusrule.schema.json"}


def strict(node):
    """The schema with unknown fields refused, as kubernetes-validate's strict mode refuses them:
    `additionalProperties: false` on every object schema that lists its fields and says nothing
    of others (none of these CRDs' objects keeps unknown fields; an object without a field list,
    such as managedFields' FieldsV1, stays free-form). ObjectMeta is strict too: a misspelt
    `lables` is refused here as it is on the chart's other objects."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: strict(v) for k, v in node.items()}
    pattern = node.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        # The operator's patterns are Go's RE2, which takes a flag anywhere; Python's re
        # wants a global flag first. The same expression.
        node["pattern"] = "(?i)^" + pattern[len("^(?i)"):]
    if node.get("properties") and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    return node


def crd_validator(kind):
    schema = strict(json.loads((CRDS / CRD_SCHEMAS[kind]).read_text()))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


CRD_VALIDATORS = {kind: crd_validator(kind) for kind in CRD_SCHEMAS}


def crd_errors(o):
    """Where `o` breaks its CRD schema (strict), one line each; empty when it validates."""
    v = CRD_VALIDATORS[o["kind"]]
    return [f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in sorted(v.iter_errors(o), key=str)]


failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}")


def ok(msg):
    print(f"ok: {msg}")


def render(chart, values):
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {k: v for k, v in sorted(out.items()) if v.strip()}


def as_stream(rendered):
    """One multi-document YAML, as `helm template` prints it."""
    parts = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        parts.append(f"---\n# Source: {path}\n{text.strip()}\n")
    return "".join(parts)


def objects(stream):
    return [d for d in yaml.safe_load_all(stream) if d]


def lint(values, label):
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}.0")
    bad = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"error": e} for e in report.get("errors", [])
    ]
    for m in report["messages"]:
        print(f"  lint ({label}): severity {m['severity']} {m.get('path', '')}: {m['error']}")
    if bad:
        fail(f"helm lint --strict ({label}): {bad}")
    else:
        ok(f"helm lint --strict ({label}): no warning or error")


def validate(objs, label):
    kinds = {}
    for o in objs:
        kind = o.get("kind")
        name = f"{kind}/{o.get('metadata', {}).get('name')}"
        if kind in CRD_VALIDATORS:
            errors = crd_errors(o)
            if errors:
                fail(f"CRD schema strict ({label}) {name}: {errors}")
            else:
                kinds[kind] = kinds.get(kind, 0) + 1
            continue
        try:
            kubernetes_validate.validate(o, KUBE_VERSION, strict=True)
            kinds[kind] = kinds.get(kind, 0) + 1
        except Exception as e:  # ValidationError, SchemaNotFoundError
            fail(f"kubernetes-validate {KUBE_VERSION} strict ({label}) {name}: {e}")
    ok(f"kubernetes-validate {KUBE_VERSION} and CRD schemas, strict ({label}): {sum(kinds.values())} objects {sorted(kinds)}")


def find(objs, kind, suffix=""):
    return [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


def config_of(objs):
    (cm,) = [o for o in find(objs, "ConfigMap") if "config.yaml" in o.get("data", {})]
    return cm["data"]["config.yaml"]


def check_daemonset(objs, values, label):
    """What the issue asks of the DaemonSet, on the rendered object."""
    (ds,) = find(objs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    sc = c["securityContext"]
    caps = sc["capabilities"]
    audit = {"enabled": True, "hostPID": True, "processOwners": False, "legacyIptables": False,
             "kubeletConfig": "/var/lib/kubelet/config.yaml", "manifestsDir": "/etc/kubernetes/manifests"}
    audit.update(values.get("audit", {}))
    want_add = (
        ["BPF", "NET_ADMIN", "PERFMON"]
        + (["SYS_ADMIN"] if values.get("bpfStats", {}).get("enabled") else [])
        + (["SYS_PTRACE"] if audit["enabled"] and audit["processOwners"] else [])
        + (["NET_RAW"] if audit["enabled"] and audit["legacyIptables"] else [])
    )
    checks = {
        "hostNetwork": spec.get("hostNetwork") is True,
        "priorityClassName system-node-critical": spec.get("priorityClassName") == "system-node-critical",
        "tolerates every taint (control-plane included)": {"operator": "Exists"} in spec.get("tolerations", []),
        "not privileged": sc.get("privileged") is False and sc.get("allowPrivilegeEscalation") is False,
        "capabilities drop ALL": caps.get("drop") == ["ALL"],
        f"capabilities add {want_add}": caps.get("add") == want_add,
        "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
        "NODE_NAME from spec.nodeName": any(
            e["name"] == "NODE_NAME" and e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName"
            for e in c["env"]
        ),
        "liveness /healthz": c["livenessProbe"]["httpGet"]["path"] == "/healthz",
        "readiness /readyz": c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "resources requests and limits": set(c["resources"]) == {"requests", "limits"},
        "rolling update without surge": ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0},
        "config mounted as a whole volume (no subPath: live reload)": all(
            "subPath" not in m for m in c["volumeMounts"]
        ),
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    checks["bpffs hostPath /sys/fs/bpf, HostToContainer"] = (
        vols["bpffs"]["hostPath"]["path"] == "/sys/fs/bpf"
        and mounts["bpffs"]["mountPath"] == "/sys/fs/bpf"
        and mounts["bpffs"].get("mountPropagation") == "HostToContainer"
    )
    checks["/sys/kernel/btf read-only"] = (
        vols["btf"]["hostPath"]["path"] == "/sys/kernel/btf" and mounts["btf"].get("readOnly") is True
    )
    # The posture audit's view of the node: read-only, exactly the kubelet's config file (never
    # /var/lib/kubelet, whose pods/ holds every pod's Secrets), the static-pod manifests with a
    # type that starts on workers, hostPID only while the audit runs.
    checks[f"hostPID {audit['enabled'] and audit['hostPID']} (audit.enabled and audit.hostPID)"] = (
        spec.get("hostPID", False) is (audit["enabled"] and audit["hostPID"])
    )
    hostpaths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    checks["no hostPath of /var/lib/kubelet or its pods"] = not any(
        p.rstrip("/") in ("/var/lib/kubelet", "/var/lib/kubelet/pods") or p.startswith("/var/lib/kubelet/pods/")
        for p in hostpaths
    )
    for name, path, kind in [
        ("kubelet-config", audit["kubeletConfig"], "File"),
        ("static-pods", audit["manifestsDir"], "DirectoryOrCreate"),
    ]:
        if audit["enabled"] and path:
            checks[f"audit mount {name}: {path}, read-only, type {kind}"] = (
                vols.get(name, {}).get("hostPath") == {"path": path, "type": kind}
                and mounts.get(name, {}).get("mountPath") == path
                and mounts[name].get("readOnly") is True
            )
        else:
            checks[f"no audit mount {name}"] = name not in vols and name not in mounts
    log = next(e["value"] for e in c["env"] if e["name"] == "NODE_MONITOR_LOG_FORMAT")
    checks[f"log format {values.get('logFormat', 'json')}"] = log == values.get("logFormat", "json")
    for what, good in checks.items():
        (ok if good else fail)(f"DaemonSet ({label}): {what}")


# The daemon's own default pod_interfaces (its embedded default config), which the chart's
# podInterfaces.patterns default must equal.
DAEMON_DEFAULT = ROOT / "node-monitor/src/config/default-config.yaml"


def check_config(objs, values, label):
    """The interface values reach the rendered config: `interfaces` as it is, `pod_interfaces`
    as podInterfaces.patterns (default: the daemon's) followed by podInterfaces.extra."""
    config = yaml.safe_load(config_of(objs))
    daemon = yaml.safe_load(DAEMON_DEFAULT.read_text())["pod_interfaces"]
    pod = {"patterns": daemon, "extra": []}
    pod.update(values.get("podInterfaces", {}))
    want = list(dict.fromkeys(pod["patterns"] + pod["extra"]))
    (ok if config.get("interfaces") == values.get("interfaces", []) else fail)(
        f"config ({label}): interfaces {config.get('interfaces')}"
    )
    (ok if config.get("pod_interfaces") == want else fail)(
        f"config ({label}): pod_interfaces {config.get('pod_interfaces')} (want {want})"
    )


def check_rbac(objs, label):
    """get/list/watch only, on exactly the kinds src/cluster/mod.rs watches."""
    (cr,) = find(objs, "ClusterRole")
    (role,) = find(objs, "Role")
    got = set()
    for r in cr["rules"] + role["rules"]:
        if sorted(r["verbs"]) != ["get", "list", "watch"]:
            fail(f"RBAC ({label}): verbs {r['verbs']} beyond get/list/watch")
        for g in r["apiGroups"]:
            for res in r["resources"]:
                got.add((g, res))
    want = {("", "nodes"), ("", "pods"), ("", "services"), ("apps", "replicasets"), ("batch", "jobs"), ("discovery.k8s.io", "endpointslices")}
    (ok if got == want else fail)(f"RBAC ({label}): resources {sorted(got)}")
    (ok if role["metadata"]["namespace"] == "default" else fail)(f"RBAC ({label}): endpointslices only in default")


def check_monitoring(objs, label):
    sm, svc, rule = find(objs, "ServiceMonitor"), find(objs, "Service"), find(objs, "PrometheusRule")
    if sm:
        sel = sm[0]["spec"]["selector"]["matchLabels"]
        (s,) = svc
        good = all(s["metadata"]["labels"].get(k) == v for k, v in sel.items()) and any(
            p["name"] == sm[0]["spec"]["endpoints"][0]["port"] for p in s["spec"]["ports"]
        )
        (ok if good else fail)(f"ServiceMonitor ({label}): selects the metrics Service and its port")
    if rule:
        want = yaml.safe_load((CHART / "files/rules.yaml").read_text())
        (ok if rule[0]["spec"] == want else fail)(f"PrometheusRule ({label}): spec is files/rules.yaml")


# Metric names in the rules and the dashboard that the daemon does not export, each allowed by
# name with its reason. Every other name must be `node_monitor_*`, which the e2e test `deploy`
# (node-monitor/tests/e2e/deploy.rs) finds in a real scrape of the daemon.
FOREIGN_METRICS = {
    "up": "Prometheus's own, one per scraped target: NodeMonitorDown, NodeMonitorAbsent",
    "kube_daemonset_status_desired_number_scheduled": "kube-state-metrics: NodeMonitorPodsMissing sees a node with no monitor pod at all",
    "kube_daemonset_status_number_available": "kube-state-metrics: NodeMonitorPodsMissing sees a node with no monitor pod at all",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr):
    """The metric names an expression selects: string literals, label matchers, ranges and
    grouping lists taken out, then every identifier that is not a function call or a keyword."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", e)
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def not_allowed(names):
    """The names that are neither the daemon's (`node_monitor_*`) nor allowed by name above."""
    return sorted(n for n in names if not n.startswith("node_monitor_") and n not in FOREIGN_METRICS)


SECRETS_DIR = "/var/run/secrets/node-monitor"


def check_secrets(objs, label):
    """Every file the config names under the Secrets' directory is in a mounted Secret, the
    probes use HTTPS when the endpoint does, and the ServiceMonitor scrapes it with TLS and the
    token."""
    (ds,) = find(objs, "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config = yaml.safe_load(config_of(objs))
    files = []

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and node.startswith(SECRETS_DIR + "/"):
            files.append(node)

    walk(config)
    for f in files:
        d = f.rsplit("/", 1)[0]
        m = mounts.get(d)
        good = m is not None and m.get("readOnly") is True and "secret" in vols.get(m["name"], {})
        (ok if good else fail)(f"secrets ({label}): {f} is in a read-only Secret volume")
    https = "tls" in config.get("metrics", {})
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"]:
        scheme = c[probe]["httpGet"].get("scheme", "HTTP")
        (ok if scheme == ("HTTPS" if https else "HTTP") else fail)(f"secrets ({label}): {probe} scheme {scheme}")
    for sm in find(objs, "ServiceMonitor"):
        (ep,) = sm["spec"]["endpoints"]
        good = ep.get("scheme", "http") == ("https" if https else "http")
        token = config.get("metrics", {}).get("bearer_token_file")
        if token:
            cred = ep.get("authorization", {}).get("credentials", {})
            good = good and token.endswith("/" + cred.get("key", "?")) and any(
                v.get("secret", {}).get("secretName") == cred.get("name") for v in vols.values()
            )
        (ok if good else fail)(f"secrets ({label}): the ServiceMonitor scrapes with the endpoint's scheme and token")
    return files


def config_with_secret_files(config_text, files, out):
    """The rendered config with the Secrets' directory moved under OUT, and each file it names
    made there (one self-signed certificate and key for every certificate, key and CA bundle, a
    token for the rest), so that `check-config` can read them as the pod would."""
    base = out / "secrets"
    key, crt = base / "self.key", base / "self.crt"
    base.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=node-monitor-check",
         "-addext", "subjectAltName=DNS:node-monitor-check"],
        check=True, capture_output=True,
    )
    for f in files:
        local = base / f[len(SECRETS_DIR) + 1:]
        local.parent.mkdir(parents=True, exist_ok=True)
        name = local.name
        if name.endswith(".key"):
            local.write_bytes(key.read_bytes())
        elif name.endswith((".crt", ".pem")):
            local.write_bytes(crt.read_bytes())
        else:
            local.write_text("c2NyYXBlLXRva2Vu.check\n")
    return config_text.replace(SECRETS_DIR + "/", str(base) + "/")


def refused(chart, values, label, needle):
    """A render that must fail, with `needle` in the error."""
    try:
        render(chart, values)
    except (helm.HelmValuesError, helm.HelmRenderError, helm.HelmError) as e:
        text = str(e)
        (ok if needle in text else fail)(f"refused ({label}): {text.splitlines()[0][:200]}")
        return
    fail(f"not refused ({label}): {values}")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write = "--write-manifests" in sys.argv[2:]
    nondefault = yaml.safe_load((ROOT / "deploy/check/values-nondefault.yaml").read_text())
    tls = yaml.safe_load((ROOT / "deploy/check/values-tls.yaml").read_text())
    print(f"helm engine {helm.helm_sdk_version()} (helm-c {helm.helm_c_version()}); Kubernetes schemas {KUBE_VERSION}")
    with helm.Chart.load(str(CHART)) as chart:
        renders = {}
        for label, values in [("default", None), ("non-default", nondefault), ("tls", tls)]:
            lint(values, label)
            stream = as_stream(render(chart, values))
            objs = renders[label] = objects(stream)
            validate(objs, label)
            check_daemonset(objs, values or {}, label)
            check_rbac(objs, label)
            check_config(objs, values or {}, label)
            check_monitoring(objs, label)
            files = check_secrets(objs, label)
            if label == "tls":
                (ok if len(files) >= 10 else fail)(f"secrets (tls): the config names {len(files)} Secret files")
            (out / f"config-{label}.yaml").write_text(config_with_secret_files(config_of(objs), files, out))
            rules = find(objs, "PrometheusRule")
            if rules:
                (out / f"rules-{label}.yaml").write_text(yaml.safe_dump(rules[0]["spec"], sort_keys=False))
            if label == "default":
                header = "# node-monitor: the Helm chart (deploy/helm/node-monitor) rendered with its default values\n# for `kubectl apply -f`. Generated: `cargo xtask deploy-manifests`; a test fails when it drifts.\n"
                text = header + stream
                if write:
                    MANIFESTS.parent.mkdir(parents=True, exist_ok=True)
                    MANIFESTS.write_text(text)
                    ok(f"wrote {MANIFESTS.relative_to(ROOT)}")
                elif not MANIFESTS.exists() or MANIFESTS.read_text() != text:
                    fail(f"{MANIFESTS.relative_to(ROOT)} drifted from the chart's default render: run `cargo xtask deploy-manifests`")
                else:
                    ok(f"{MANIFESTS.relative_to(ROOT)} is the chart's default render")

        # The CRD check itself: each of these breaks the schema and must be refused.
        # (The non-default render, which has both.)
        (sm,) = find(renders["non-default"], "ServiceMonitor")
        (pr,) = find(renders["non-default"], "PrometheusRule")
        for what, o, change, needle in [
            ("a ServiceMonitor with a numeric interval", sm, lambda o: o["spec"]["endpoints"][0].update(interval=30), "endpoints/0/interval"),
            ("an unknown field in a ServiceMonitor endpoint", sm, lambda o: o["spec"]["endpoints"][0].update(scrapeInterval="30s"), "scrapeInterval"),
            ("a PrometheusRule rule with an unknown field", pr, lambda o: o["spec"]["groups"][0]["rules"][0].update(severity="critical"), "severity"),
            ("a PrometheusRule without its groups' names", pr, lambda o: o["spec"]["groups"][0].pop("name"), "name"),
            ("a misspelt metadata field", sm, lambda o: o["metadata"].update(lables={"a": "b"}), "lables"),
        ]:
            bad = copy.deepcopy(o)
            change(bad)
            errors = crd_errors(bad)
            good = any(needle in e for e in errors)
            (ok if good else fail)(f"CRD schema strict refuses {what}: {errors[:1] or 'accepted'}")

        # The dashboard's queries as recording rules, so that promtool parses their PromQL
        # (Grafana's variables replaced by values of their kind).
        dash = json.loads((CHART / "files/dashboard.json").read_text())
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        rec = [
            {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
            for i, e in enumerate(exprs)
        ]
        (out / "dashboard-queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rec}]}))
        (ok if len(exprs) >= 8 else fail)(f"dashboard: {len(exprs)} queries written for promtool")

        # Metric names: the daemon's, or allowed by name (FOREIGN_METRICS).
        rules = yaml.safe_load((CHART / "files/rules.yaml").read_text())
        used = set()
        for what, exs in [("files/rules.yaml", [r["expr"] for g in rules["groups"] for r in g["rules"]]),
                          ("files/dashboard.json", exprs)]:
            names = set().union(*map(promql_metric_names, exs))
            used |= names
            bad = not_allowed(names)
            (ok if names and not bad else fail)(
                f"metric names ({what}): {len(names)}, each node_monitor_* or allowed by name"
                + (f"; not allowed: {bad}" if bad else f" ({sorted(names & set(FOREIGN_METRICS))})")
            )
        # A promtool unit test per alert: each alert of the rule file fires in rules_test.yaml.
        tests = yaml.safe_load((CHART / "tests/rules_test.yaml").read_text())
        fired = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
        alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
        untested = [a for a in alerts if a not in fired]
        (ok if not untested else fail)(f"rules_test.yaml: each of the {len(alerts)} alerts fires in a unit test (not: {untested})")
        unused = sorted(set(FOREIGN_METRICS) - used)
        (ok if not unused else fail)(f"metric names: every name allowed is used (unused: {unused})")
        want = {"node_monitor_flagged_connections_total", "up", "kube_daemonset_status_number_available"}
        got = promql_metric_names('sum by (instance, group) (increase(node_monitor_flagged_connections_total{group=~"kubelet|x"}[5m])) > 0 or up{job="a"} == 0 unless on (namespace) kube_daemonset_status_number_available offset 5m')
        (ok if got == want else fail)(f"metric names: the PromQL scan finds {sorted(got)}")
        bad = not_allowed(promql_metric_names("rate(node_exporter_cpu_seconds_total[5m]) > 0"))
        (ok if bad == ["node_exporter_cpu_seconds_total"] else fail)(f"metric names: a name neither the daemon's nor allowed is refused ({bad})")

        ns = objects((ROOT / "deploy/manifests/namespace.yaml").read_text())
        validate(ns, "deploy/manifests/namespace.yaml")
        (ok if ns[0]["metadata"]["name"] == NAMESPACE else fail)(f"deploy/manifests/namespace.yaml names {NAMESPACE}")

        # Values that must be refused: by the schema, or by the chart (what the daemon cannot
        # honour yet, and combinations that cannot work).
        bad = [
            ("action not monitor|drop", {"groups": {"kubelet": {"action": "block"}}}, "action"),
            ("port out of range", {"metrics": {"port": 70000}}, "port"),
            ("unknown top-level key", {"metricsAddr": "0.0.0.0:9630"}, "metricsAddr"),
            ("cluster.enabled as a YAML boolean", {"cluster": {"enabled": True}}, "enabled"),
            ("group without ports", {"groups": {"extra": {"protocols": ["tcp"]}}}, "ports"),
            ("syslog address with a host name", {"sinks": {"syslog": {"enabled": True, "address": "syslog.example"}}}, "address"),
            ("log format", {"logFormat": "yaml"}, "logFormat"),
            ("audit severity", {"audit": {"minSeverity": "urgent"}}, "minSeverity"),
            ("audit interval under 10 s", {"audit": {"intervalSeconds": 5}}, "intervalSeconds"),
            ("audit kubelet config not absolute", {"audit": {"kubeletConfig": "config.yaml"}}, "kubeletConfig"),
            ("a pod interface with a slash", {"podInterfaces": {"extra": ["net/1"]}}, "extra"),
            ("pod interfaces null (use [] to turn them off)", {"podInterfaces": {"patterns": None}}, "patterns"),
        ]
        for label, values, needle in bad:
            try:
                chart.validate_schema(values)
                fail(f"schema accepted {label}: {values}")
            except helm.HelmValuesError as e:
                ok(f"schema refuses {label}: {str(e).splitlines()[0][:160]}")
            refused(chart, values, f"render, {label}", needle)
        refused(chart, {"metrics": {"tls": {"enabled": True}}}, "metrics.tls without its Secret", "secretName")
        refused(chart, {"metrics": {"tls": {"clientCASecretName": "ca"}}}, "a client CA without TLS", "needs metrics.tls.enabled")
        refused(chart, {"sinks": {"syslog": {"enabled": True, "address": "tls://203.0.113.5:6514"}}}, "syslog over TLS without a CA", "caSecret")
        refused(chart, {"sinks": {"syslog": {"enabled": True, "address": "tcp://203.0.113.5:514", "tls": {"clientCertSecret": "c"}}}}, "syslog TLS settings on a tcp:// address", "only for a tls://")
        refused(chart, {"sinks": {"http": {"enabled": True, "url": "https://siem.example/", "headers": {"Authorization": "Bearer x"}, "tokenSecret": {"name": "siem"}}}}, "http token and Authorization header", "both set the Authorization")
        refused(chart, {"sinks": {"http": {"enabled": True, "url": "http://siem.example/", "tls": {"caSecret": {"name": "ca"}}}}}, "http TLS on an http:// url", "https://")
        refused(chart, {"service": {"enabled": True}}, "a Service over a loopback endpoint", "loopback")
        refused(chart, {"sinks": {"stdout": {"enabled": False}}}, "no sink", "at least one sink")
        refused(chart, {"audit": {"intervalSeconds": 60, "timeoutSeconds": 120}}, "an audit timeout longer than its interval", "longer than audit.intervalSeconds")
        # The chart's default pod interfaces are the daemon's, and the values replace or extend them.
        chart_default = yaml.safe_load((CHART / "values.yaml").read_text())["podInterfaces"]["patterns"]
        daemon_default = yaml.safe_load(DAEMON_DEFAULT.read_text())["pod_interfaces"]
        (ok if chart_default == daemon_default else fail)(
            f"values.yaml podInterfaces.patterns is the daemon's default pod_interfaces ({DAEMON_DEFAULT.relative_to(ROOT)})"
        )
        for label, values in [
            ("pod interfaces replaced", {"podInterfaces": {"patterns": ["cali*"], "extra": ["cali*", "weave"]}}),
            ("pod interfaces off", {"podInterfaces": {"patterns": []}}),
        ]:
            check_config(objects(as_stream(render(chart, values))), values, label)
        # The audit off: no hostPID, no SYS_PTRACE nor NET_RAW even if asked, no mounts of the
        # node's files.
        off = {"audit": {"enabled": False, "processOwners": True, "legacyIptables": True}}
        check_daemonset(objects(as_stream(render(chart, off))), off, "audit off")
    if failures:
        print(f"\n{len(failures)} check(s) failed:")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print("chart checks: all passed")


if __name__ == "__main__":
    main()
