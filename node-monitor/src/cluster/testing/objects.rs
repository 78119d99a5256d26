//! Objects shaped as `kubectl get -o json` prints them, for the fake API server. Addresses
//! come from the documentation ranges only.
use serde_json::{Value, json};

const CREATED: &str = "2026-12-01T10:00:00Z";

fn meta(namespace: Option<&str>, name: &str, uid: &str) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uid,
        "creationTimestamp": CREATED,
        "labels": {},
        "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1"}],
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A Ready node with InternalIP and ExternalIP addresses, pod CIDRs and role labels.
pub fn node(name: &str, addresses: &[(&str, &str)], pod_cidrs: &[&str], roles: &[&str]) -> Value {
    let mut m = meta(None, name, &format!("uid-node-{name}"));
    m["labels"] = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    for r in roles {
        m["labels"][format!("node-role.kubernetes.io/{r}")] = json!("");
    }
    let mut addrs: Vec<Value> = addresses
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    addrs.push(json!({"type": "Hostname", "address": name}));
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": m,
        "spec": {"podCIDR": pod_cidrs.first(), "podCIDRs": pod_cidrs, "providerID": format!("fake://{name}")},
        "status": {
            "addresses": addrs,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://2.0.0"},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        }
    })
}

/// Adds or replaces a label.
pub fn label(mut object: Value, key: &str, value: &str) -> Value {
    object["metadata"]["labels"][key] = json!(value);
    object
}

/// A pod; `owner` is its controller reference `(kind, name)`.
#[derive(Clone, Copy)]
pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub node: &'a str,
    pub ips: &'a [&'a str],
    pub host_network: bool,
    pub phase: &'a str,
    pub created: &'a str,
    pub owner: Option<(&'a str, &'a str)>,
}

impl<'a> PodSpec<'a> {
    pub fn new(namespace: &'a str, name: &'a str, node: &'a str, ips: &'a [&'a str]) -> Self {
        PodSpec {
            namespace,
            name,
            uid: name,
            node,
            ips,
            host_network: false,
            phase: "Running",
            created: CREATED,
            owner: None,
        }
    }

    pub fn json(&self) -> Value {
        let mut m = meta(
            Some(self.namespace),
            self.name,
            &format!("uid-{}", self.uid),
        );
        m["creationTimestamp"] = json!(self.created);
        m["labels"] = json!({"app": self.name.split('-').next().unwrap()});
        if let Some((kind, name)) = self.owner {
            let api = match kind {
                "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
                "Job" => "batch/v1",
                _ => "v1",
            };
            m["ownerReferences"] = json!([{
                "apiVersion": api, "kind": kind, "name": name, "uid": format!("uid-{name}"),
                "controller": true, "blockOwnerDeletion": true
            }]);
        }
        let ips: Vec<Value> = self.ips.iter().map(|ip| json!({"ip": ip})).collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": m,
            "spec": {
                "nodeName": self.node,
                "hostNetwork": self.host_network,
                "containers": [{"name": "main", "image": "registry.example/app:1"}],
                "serviceAccountName": "default",
            },
            "status": {
                "phase": self.phase,
                "podIP": self.ips.first(),
                "podIPs": ips,
                "hostIP": "198.51.100.20",
                "startTime": self.created,
                "qosClass": "BestEffort",
            }
        })
    }
}

/// A Service of type NodePort (or LoadBalancer when `lb_ranges` is not empty) with
/// `(port, nodePort, protocol)` entries.
pub fn service(
    namespace: &str,
    name: &str,
    ports: &[(u16, u16, &str)],
    traffic_policy: &str,
    lb_ranges: &[&str],
) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(p, np, proto)| json!({"name": format!("p{p}"), "port": p, "nodePort": np, "protocol": proto, "targetPort": p}))
        .collect();
    let mut spec = json!({
        "type": if lb_ranges.is_empty() { "NodePort" } else { "LoadBalancer" },
        "clusterIP": "203.0.113.250",
        "ports": ports,
        "externalTrafficPolicy": traffic_policy,
        "selector": {"app": name},
    });
    if !lb_ranges.is_empty() {
        spec["loadBalancerSourceRanges"] = json!(lb_ranges);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(Some(namespace), name, &format!("uid-svc-{name}")),
        "spec": spec,
        "status": {"loadBalancer": {}},
    })
}

/// The EndpointSlice of `default/kubernetes`.
pub fn apiserver_slice(name: &str, addresses: &[&str]) -> Value {
    let mut m = meta(Some("default"), name, &format!("uid-eps-{name}"));
    m["labels"] = json!({"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    let family = if addresses.iter().any(|a| a.contains(':')) {
        "IPv6"
    } else {
        "IPv4"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": m,
        "addressType": family,
        "endpoints": addresses.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    })
}

/// An EndpointSlice of another Service (the cache must not pick it up).
pub fn other_slice(name: &str, addresses: &[&str]) -> Value {
    let mut s = apiserver_slice(name, addresses);
    s["metadata"]["labels"]["kubernetes.io/service-name"] = json!("shop");
    s
}

/// A ReplicaSet owned by a Deployment (or by nothing).
pub fn replicaset(namespace: &str, name: &str, deployment: Option<&str>) -> Value {
    let mut m = meta(Some(namespace), name, &format!("uid-{name}"));
    if let Some(d) = deployment {
        m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": d, "uid": format!("uid-{d}"), "controller": true}]);
    }
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": m, "spec": {"replicas": 1}, "status": {"replicas": 1}})
}

/// A Job owned by a CronJob (or by nothing).
pub fn job(namespace: &str, name: &str, cronjob: Option<&str>) -> Value {
    let mut m = meta(Some(namespace), name, &format!("uid-{name}"));
    if let Some(c) = cronjob {
        m["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": c, "uid": format!("uid-{c}"), "controller": true}]);
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": m, "spec": {"backoffLimit": 6}, "status": {}})
}
