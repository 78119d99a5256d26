//! The in-process fake API server (`cluster::testing::FakeApi`) on a thread inside a lab
//! namespace, and a daemon that watches it: shared by the identity e2e tests.

use std::{sync::mpsc, time::Duration};

use node_monitor::cluster::testing::{FakeApi, objects::node};
use node_monitor_lab::{BpfPinDir, Netns, NsThread};
use serde_json::Value;

use crate::common::{
    daemon::{Daemon, context, scrape},
    temp::TempFile,
};

enum Command {
    Apply(&'static str, Value),
    Stop,
}

/// The fake API server, serving in `ns` (the daemon reaches it on 127.0.0.1) until stopped,
/// at most 120 s; `kubeconfig` points at it.
pub(crate) struct FakeCluster {
    commands: mpsc::Sender<Command>,
    server: Option<NsThread<()>>,
    pub(crate) kubeconfig: TempFile,
}

impl FakeCluster {
    /// Starts the server in `ns` with the objects `seed` applies.
    pub(crate) fn start(ns: &Netns, seed: impl FnOnce(&FakeApi) + Send + 'static) -> FakeCluster {
        let (commands, cmd_rx) = mpsc::channel::<Command>();
        let (cfg_tx, cfg_rx) = mpsc::channel::<String>();
        let server = context(ns.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let api = FakeApi::start(500).await;
                seed(&api);
                cfg_tx.send(api.kubeconfig()).unwrap();
                // Bounded: at most 120 s, polled every 20 ms.
                for _ in 0..6000 {
                    match cmd_rx.try_recv() {
                        Ok(Command::Apply(resource, object)) => api.apply(resource, object),
                        Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                        Err(mpsc::TryRecvError::Empty) => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            });
        }));
        let kubeconfig = TempFile::new(
            "kubeconfig",
            &cfg_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        );
        FakeCluster {
            commands,
            server: Some(server),
            kubeconfig,
        }
    }

    /// Adds or replaces an object, as a watch event.
    pub(crate) fn apply(&self, resource: &'static str, object: Value) {
        self.commands
            .send(Command::Apply(resource, object))
            .unwrap();
    }

    /// Stops the server and waits for its thread (a panic in it is resumed here).
    pub(crate) fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(server) = self.server.take() {
            context(server.join());
        }
    }

    /// The daemon in `ns` on eth0 with `config` (a path), watching this cluster; returns once
    /// its cache is synced and `ready` holds of its stderr (bounded: 10 s).
    pub(crate) fn daemon(
        &self,
        ns: &Netns,
        pin: &BpfPinDir,
        config: &str,
        ready: impl Fn(&str) -> bool,
    ) -> Daemon {
        let d = context(Daemon::start_env(
            ns,
            &pin.path,
            &["eth0"],
            &["--config", config],
            &[("KUBECONFIG", self.kubeconfig.as_str())],
        ));
        for _ in 0..100 {
            if scrape(ns, &d)
                .lines()
                .any(|l| l == "node_monitor_cluster_synced 1")
                && ready(&d.stderr())
            {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the cluster cache never synced (or was not ready): {}",
            d.stderr()
        );
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// This node as the e2e tests' clusters know it: `worker-1`, InternalIP 198.51.100.1 (the lab
/// node's address), role worker, with `pod_cidr`.
pub(crate) fn worker_1(pod_cidr: &str) -> Value {
    node(
        "worker-1",
        &[("InternalIP", "198.51.100.1")],
        &[pod_cidr],
        &["worker"],
    )
}

/// The control-plane node of the e2e tests' clusters: `cp-1`, InternalIP 198.51.100.2, role
/// control-plane, with `pod_cidr`.
pub(crate) fn cp_1(pod_cidr: &str) -> Value {
    node(
        "cp-1",
        &[("InternalIP", "198.51.100.2")],
        &[pod_cidr],
        &["control-plane"],
    )
}
