//! The sensor itself: the facts every format writes about who observed the item
//! (`observer.*` / `host.*` in ECS, `metadata.product` / `device` in OCSF, the CEF header).

/// Facts about this sensor, for `observer.*` / `host.*` / `metadata.product`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observer {
    pub hostname: String,
    pub product: &'static str,
    pub vendor: &'static str,
    pub version: &'static str,
}

impl Observer {
    pub fn local() -> Observer {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_owned());
        Observer {
            hostname,
            product: "node-monitor",
            vendor: "node-monitor",
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}
