//! The raw (serde) layer: the YAML as written, every value with its location
//! (`serde_saphyr::Spanned`), unknown fields rejected. `validate` turns it into the model.

use std::{cell::RefCell, fmt};

use serde::{
    Deserialize,
    de::{self, MapAccess, Visitor},
};
use serde_saphyr::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) groups: Option<RawGroups>,
    pub(super) sampling: Option<RawSampling>,
    pub(super) limits: Option<RawLimits>,
    pub(super) interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) pod_interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) attach: Option<Spanned<String>>,
    pub(super) alerts: Option<RawAlerts>,
    pub(super) sinks: Option<Spanned<Vec<Spanned<RawSink>>>>,
    pub(super) metrics: Option<RawMetrics>,
    pub(super) cluster: Option<RawCluster>,
    pub(super) audit: Option<RawAudit>,
}

/// The `groups` mapping, in file order.
#[derive(Debug, Default)]
pub(super) struct RawGroups(pub(super) Vec<(Spanned<String>, RawGroup)>);

thread_local! {
    /// The group whose value is being read, so that an error inside it can be reported as
    /// `groups.<name>....`: the path tracker cannot see a `Spanned` key.
    pub(super) static CURRENT_GROUP: RefCell<Option<String>> = const { RefCell::new(None) };
}

pub(super) fn set_current_group(name: Option<String>) {
    CURRENT_GROUP.with(|c| *c.borrow_mut() = name);
}

impl<'de> Deserialize<'de> for RawGroups {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GroupsVisitor;
        impl<'de> Visitor<'de> for GroupsVisitor {
            type Value = RawGroups;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of group name to group")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawGroups, A::Error> {
                let mut groups = Vec::new();
                loop {
                    set_current_group(None);
                    let Some(name) = map.next_key::<Spanned<String>>()? else {
                        break;
                    };
                    set_current_group(Some(name.value.clone()));
                    let group = map.next_value::<RawGroup>()?;
                    groups.push((name, group));
                }
                set_current_group(None);
                Ok(RawGroups(groups))
            }
        }
        deserializer.deserialize_map(GroupsVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) protocols: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) ports: Option<Spanned<Vec<Spanned<RawPort>>>>,
    pub(super) allow: Option<Vec<Spanned<RawAllow>>>,
    pub(super) action: Option<Spanned<String>>,
    pub(super) detect_sweeps: Option<Spanned<bool>>,
}

/// A port entry as written: an integer or a string (`"10250"`, `"30000-32767"`).
#[derive(Debug)]
pub(super) enum RawPort {
    Int(i128),
    Str(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a port such as 10250 or a range such as "30000-32767""#)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::from(v)))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawPort, E> {
                Ok(RawPort::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawPort, E> {
                Ok(RawPort::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSampling {
    pub(super) allowed_flows_one_in: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) flows: Option<Spanned<u64>>,
    pub(super) events_per_source_per_second: Option<Spanned<u64>>,
    pub(super) answer_timeout_ms: Option<Spanned<u64>>,
    pub(super) flow_idle_timeout_ms: Option<Spanned<u64>>,
    pub(super) sources: Option<Spanned<u64>>,
    pub(super) ring_buffer_bytes: Option<Spanned<u64>>,
    pub(super) allow_entries: Option<Spanned<u64>>,
    pub(super) events_per_group_per_second: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub(super) dedup_window_s: Option<Spanned<u64>>,
    pub(super) sweep: Option<RawSweep>,
    pub(super) scan: Option<RawScan>,
    pub(super) flood_window_s: Option<Spanned<u64>>,
    pub(super) connection_alerts_per_group: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSweep {
    pub(super) min_ports: Option<Spanned<u64>>,
    pub(super) window_s: Option<Spanned<u64>>,
}

/// `alerts.scan`: scans across the ports of several groups (NM-1011).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScan {
    pub(super) min_ports: Option<Spanned<u64>>,
    pub(super) window_s: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<RawServerTls>>,
    pub(super) bearer_token_file: Option<Spanned<String>>,
}

/// `metrics.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) client_ca_file: Option<Spanned<String>>,
}

/// `sinks[i].tls` (http and syslog sinks).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientTls {
    pub(super) ca_file: Option<Spanned<String>>,
    pub(super) cert_file: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
    pub(super) server_name: Option<Spanned<String>>,
}

/// One `sinks` entry as written: the fields of every type, checked against `type` later so
/// that a misplaced field is reported at its own position.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    #[serde(rename = "type")]
    pub(super) kind: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) format: Option<Spanned<String>>,
    pub(super) queue: Option<Spanned<u64>>,
    pub(super) flows: Option<Spanned<bool>>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) max_size_mb: Option<Spanned<u64>>,
    pub(super) keep: Option<Spanned<u64>>,
    pub(super) address: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) batch_max: Option<Spanned<u64>>,
    pub(super) batch_interval_ms: Option<Spanned<u64>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) max_retries: Option<Spanned<u64>>,
    pub(super) headers: Option<Spanned<RawHeaders>>,
    pub(super) tls: Option<Spanned<RawClientTls>>,
    pub(super) bearer_token_file: Option<Spanned<String>>,
}

/// The `headers` mapping of an http sink, in file order.
#[derive(Debug, Default)]
pub(super) struct RawHeaders(pub(super) Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> Visitor<'de> for HeadersVisitor {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of header name to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(name) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value::<Spanned<String>>()?;
                    headers.push((name, value));
                }
                Ok(RawHeaders(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

/// The `cluster` section (see `cluster.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) enabled: Option<Spanned<String>>,
    pub(super) node_name: Option<Spanned<String>>,
    pub(super) resync_s: Option<Spanned<u64>>,
    pub(super) stale_after_s: Option<Spanned<u64>>,
    pub(super) node_port_also_allow: Option<Vec<Spanned<String>>>,
}

/// The `audit` section (see `audit.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) enabled: Option<Spanned<bool>>,
    pub(super) interval_s: Option<Spanned<u64>>,
    pub(super) timeout_s: Option<Spanned<u64>>,
    pub(super) min_severity: Option<Spanned<String>>,
    pub(super) kubelet_config: Option<Spanned<String>>,
    pub(super) apiserver_manifest: Option<Spanned<String>>,
}

/// One `allow` entry as written: a CIDR, an address or a set name, or
/// `{pods: {namespace: NAME, selector: "k=v,..."}}`.
#[derive(Debug)]
pub(super) enum RawAllow {
    Text(String),
    Pods(RawPods),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPods {
    pub(super) namespace: Option<Spanned<String>>,
    pub(super) selector: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawAllow {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AllowVisitor;
        impl<'de> Visitor<'de> for AllowVisitor {
            type Value = RawAllow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a CIDR, an IP address, a set name, or {pods: {namespace: NAME, selector: \"k=v\"}}",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAllow, E> {
                Ok(RawAllow::Text(v.to_owned()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawAllow, E> {
                Err(E::custom("expected a value, found null (nothing)"))
            }
            fn visit_none<E: de::Error>(self) -> Result<RawAllow, E> {
                self.visit_unit()
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAllow, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "an empty mapping: write {pods: {namespace: NAME, selector: \"k=v\"}}",
                    ));
                };
                if key != "pods" {
                    return Err(de::Error::unknown_field(&key, &["pods"]));
                }
                let pods = map.next_value::<RawPods>()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::unknown_field(&extra, &[]));
                }
                Ok(RawAllow::Pods(pods))
            }
        }
        deserializer.deserialize_any(AllowVisitor)
    }
}
