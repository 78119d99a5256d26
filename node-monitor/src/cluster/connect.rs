//! Whether to use the cluster, with which credentials, and this node's name.
use kube::Client;
use tracing::info;

use crate::config::{ClusterMode, ClusterSettings};

/// Why the daemon cannot use the cluster it was told to use (`cluster.enabled: on`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "cluster.enabled is `on` but no Kubernetes credentials were found ({0}): run in a pod \
         with a service account, or set KUBECONFIG, or write ~/.kube/config; or set \
         cluster.enabled to auto or off"
    )]
    NoCredentials(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client from the credentials found: {0}")]
    Client(#[source] kube::Error),
}

/// A client when the cluster is to be used: `off` never; `auto` when credentials are found
/// (in-cluster service account, else `KUBECONFIG` / `~/.kube/config`, as
/// `kube::Config::infer` finds them); `on` always, or an error. Connecting to the API
/// server is left to the watches, which retry: an API server that is down at start does not
/// keep the daemon from starting.
///
/// # Errors
///
/// With `on`: no credentials, or credentials a client cannot be built from.
pub async fn connect(settings: &ClusterSettings) -> Result<Option<Client>, ConnectError> {
    if settings.enabled == ClusterMode::Off {
        info!("cluster.enabled is off: no cluster identity");
        return Ok(None);
    }
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) if settings.enabled == ClusterMode::Auto => {
            info!(reason = %e, "no Kubernetes credentials found: running without cluster identity (cluster.enabled: auto)");
            return Ok(None);
        }
        Err(e) => return Err(ConnectError::NoCredentials(e)),
    };
    info!(api = %config.cluster_url, "Kubernetes credentials found: watching the cluster");
    Client::try_from(config)
        .map(Some)
        .map_err(ConnectError::Client)
}

/// This node's name: the config's, else env `NODE_NAME` (the downward API), else the
/// hostname.
pub fn node_name(settings: &ClusterSettings) -> Option<String> {
    settings
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
}
