//! The kubelet's and the API server's own settings: the kubelet config file
//! (`KubeletConfiguration`), the kubelet's command line, and the API server's static-pod
//! manifest.
use std::{fs, path::Path};

use serde_json::Value;

use super::{Finding, Severity};

/// Where kubeadm puts them.
pub const DEFAULT_KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const DEFAULT_APISERVER_MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";

/// What the kubelet's settings say about who may use its API, from the config file and
/// the command line (a flag overrides the file, as in the kubelet).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KubeletAuth {
    pub anonymous_enabled: Option<bool>,
    pub webhook_enabled: Option<bool>,
    pub authorization_mode: Option<String>,
    pub read_only_port: Option<u32>,
    pub rotate_certificates: Option<bool>,
}

fn yaml(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_saphyr::from_str::<Value>(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A `KubeletConfiguration` file.
pub fn kubelet_config(path: &Path) -> Result<KubeletAuth, String> {
    let v = yaml(path)?;
    if v.get("kind").and_then(Value::as_str) != Some("KubeletConfiguration") {
        return Err(format!("{}: not a KubeletConfiguration", path.display()));
    }
    Ok(KubeletAuth {
        anonymous_enabled: v
            .pointer("/authentication/anonymous/enabled")
            .and_then(Value::as_bool),
        webhook_enabled: v
            .pointer("/authentication/webhook/enabled")
            .and_then(Value::as_bool),
        authorization_mode: v
            .pointer("/authorization/mode")
            .and_then(Value::as_str)
            .map(str::to_owned),
        read_only_port: v
            .get("readOnlyPort")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        rotate_certificates: v.get("rotateCertificates").and_then(Value::as_bool),
    })
}

/// `--name=value` or `--name value` in an argument list.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let long = format!("--{name}");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&long) {
            if let Some(v) = v.strip_prefix('=') {
                return Some(v);
            }
            if v.is_empty() {
                return it.next().map(String::as_str);
            }
        }
    }
    None
}

/// Applies the kubelet's command-line flags over `auth`.
pub fn apply_kubelet_flags(auth: &mut KubeletAuth, args: &[String]) {
    if let Some(v) = flag(args, "anonymous-auth") {
        auth.anonymous_enabled = Some(v == "true");
    }
    if let Some(v) = flag(args, "authentication-token-webhook") {
        auth.webhook_enabled = Some(v == "true");
    }
    if let Some(v) = flag(args, "authorization-mode") {
        auth.authorization_mode = Some(v.to_owned());
    }
    if let Some(v) = flag(args, "read-only-port") {
        auth.read_only_port = v.parse().ok();
    }
    if let Some(v) = flag(args, "rotate-certificates") {
        auth.rotate_certificates = Some(v == "true");
    }
}

/// The command line of the first process named `kubelet` under `proc_root`.
#[must_use]
pub fn kubelet_cmdline(proc_root: &Path) -> Option<Vec<String>> {
    for entry in fs::read_dir(proc_root).ok()?.flatten() {
        if entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != "kubelet" {
            continue;
        }
        let raw = fs::read(entry.path().join("cmdline")).ok()?;
        return Some(
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        );
    }
    None
}

#[must_use]
pub fn kubelet_config_flag(args: &[String]) -> Option<&str> {
    flag(args, "config")
}

/// Findings on the kubelet's settings; `source` says where they were read.
#[must_use]
pub fn kubelet_findings(auth: &KubeletAuth, source: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    // The kubelet's defaults when neither file nor flag says: anonymous auth on, webhook
    // authentication off, AlwaysAllow authorization, read-only port 10255 (the file format's
    // defaults are the safe ones, but a bare flag-configured kubelet has these).
    if auth.anonymous_enabled != Some(false) {
        out.push(Finding::new(
            "NM-2020",
            Severity::High,
            "kubelet allows anonymous requests",
            format!(
                "{source}: authentication.anonymous.enabled is {}",
                show(auth.anonymous_enabled)
            ),
            "set authentication.anonymous.enabled: false (or --anonymous-auth=false)",
            Some("4.2.1"),
        ));
    }
    if auth.webhook_enabled != Some(true) {
        out.push(Finding::new(
            "NM-2021",
            Severity::Medium,
            "kubelet does not authenticate bearer tokens with the API server",
            format!(
                "{source}: authentication.webhook.enabled is {}",
                show(auth.webhook_enabled)
            ),
            "set authentication.webhook.enabled: true (or --authentication-token-webhook=true)",
            None,
        ));
    }
    if auth.authorization_mode.as_deref() != Some("Webhook") {
        out.push(Finding::new(
            "NM-2022",
            Severity::High,
            "kubelet does not ask the API server who may do what",
            format!(
                "{source}: authorization.mode is {}",
                auth.authorization_mode
                    .as_deref()
                    .unwrap_or("not set (AlwaysAllow)")
            ),
            "set authorization.mode: Webhook (or --authorization-mode=Webhook)",
            Some("4.2.2"),
        ));
    }
    if auth.read_only_port.is_some_and(|p| p != 0) {
        out.push(Finding::new(
            "NM-2023",
            Severity::High,
            "kubelet read-only port enabled in its settings",
            format!(
                "{source}: readOnlyPort is {}",
                auth.read_only_port.unwrap_or(0)
            ),
            "set readOnlyPort: 0 (or --read-only-port=0)",
            Some("4.2.4"),
        ));
    }
    if auth.rotate_certificates == Some(false) {
        out.push(Finding::new(
            "NM-2024",
            Severity::Medium,
            "kubelet client certificate rotation disabled",
            format!("{source}: rotateCertificates is false"),
            "set rotateCertificates: true",
            None,
        ));
    }
    out
}

fn show(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "not set",
    }
}

/// Findings on the API server's static-pod manifest: how it authenticates to kubelets,
/// and whether it takes anonymous requests.
pub fn apiserver_findings(path: &Path) -> Result<Vec<Finding>, String> {
    let v = yaml(path)?;
    let containers = v
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{}: no spec.containers", path.display()))?;
    let c = containers
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some("kube-apiserver"))
        .or_else(|| containers.first())
        .ok_or_else(|| format!("{}: no container", path.display()))?;
    let mut args: Vec<String> = Vec::new();
    for key in ["command", "args"] {
        if let Some(list) = c.get(key).and_then(Value::as_array) {
            args.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    let src = path.display();
    let mut out = Vec::new();
    let missing: Vec<&str> = ["kubelet-client-certificate", "kubelet-client-key"]
        .into_iter()
        .filter(|f| flag(&args, f).is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        out.push(Finding::new(
            "NM-2030",
            Severity::High,
            "API server does not present a client certificate to kubelets",
            format!("{src}: --{} not set", missing.join(", --")),
            "set --kubelet-client-certificate and --kubelet-client-key, so that kubelets can refuse anonymous requests",
            Some("1.2.4"),
        ));
    }
    if flag(&args, "anonymous-auth") != Some("false") {
        out.push(Finding::new(
            "NM-2031",
            Severity::Medium,
            "API server accepts anonymous requests",
            format!(
                "{src}: --anonymous-auth is {}",
                flag(&args, "anonymous-auth").unwrap_or("not set (true)")
            ),
            "set --anonymous-auth=false (or limit anonymous access to the health endpoints)",
            Some("1.2.1"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("nm-{}-{name}", uuid::Uuid::new_v4()));
        fs::write(&p, text).unwrap();
        p
    }

    fn ids(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.id).collect()
    }

    const GOOD_KUBELET: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
        authentication:\n  anonymous:\n    enabled: false\n  webhook:\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n\
        authorization:\n  mode: Webhook\nreadOnlyPort: 0\nrotateCertificates: true\n";

    #[test]
    fn good_kubelet_config_has_no_findings() {
        let p = write("kubelet.yaml", GOOD_KUBELET);
        let auth = kubelet_config(&p).unwrap();
        assert!(kubelet_findings(&auth, "f").is_empty(), "{auth:?}");
        let _ = fs::remove_file(p);
    }

    #[test]
    fn bad_kubelet_config_and_flags() {
        let bad = GOOD_KUBELET
            .replace(
                "webhook:\n    enabled: true",
                "webhook:\n    enabled: false",
            )
            .replace(
                "anonymous:\n    enabled: false",
                "anonymous:\n    enabled: true",
            )
            .replace("mode: Webhook", "mode: AlwaysAllow")
            .replace("readOnlyPort: 0", "readOnlyPort: 10255")
            .replace("rotateCertificates: true", "rotateCertificates: false");
        let p = write("kubelet.yaml", &bad);
        let auth = kubelet_config(&p).unwrap();
        assert_eq!(
            ids(&kubelet_findings(&auth, "f")),
            ["NM-2020", "NM-2021", "NM-2022", "NM-2023", "NM-2024"]
        );
        // Flags override the file, both spellings.
        let mut fixed = auth.clone();
        let args: Vec<String> = [
            "kubelet",
            "--anonymous-auth=false",
            "--authentication-token-webhook=true",
            "--authorization-mode",
            "Webhook",
            "--read-only-port=0",
            "--rotate-certificates=true",
        ]
        .map(str::to_owned)
        .to_vec();
        apply_kubelet_flags(&mut fixed, &args);
        assert!(kubelet_findings(&fixed, "f").is_empty(), "{fixed:?}");
        let _ = fs::remove_file(p);
    }

    /// The kubelet found by name in a /proc tree (other processes, and entries that are no
    /// process, passed over), its command line split at NULs, its `--config` read from it.
    #[test]
    fn the_kubelet_command_line_is_read_from_proc() {
        let root = std::env::temp_dir().join(format!("nm-proc-{}", uuid::Uuid::new_v4()));
        let proc_entry = |name: &str, comm: &str, cmdline: &[u8]| {
            let d = root.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("comm"), comm).unwrap();
            fs::write(d.join("cmdline"), cmdline).unwrap();
        };
        proc_entry("self", "kubelet\n", b"not-a-pid\0");
        proc_entry("17", "containerd\n", b"containerd\0--config\0/etc/c.toml\0");
        assert_eq!(kubelet_cmdline(&root), None, "no kubelet yet");
        proc_entry(
            "4242",
            "kubelet\n",
            b"/usr/bin/kubelet\0--config=/var/lib/kubelet/config.yaml\0--read-only-port\x0010255\0",
        );
        let args = kubelet_cmdline(&root).expect("the kubelet");
        assert_eq!(
            args,
            [
                "/usr/bin/kubelet",
                "--config=/var/lib/kubelet/config.yaml",
                "--read-only-port",
                "10255"
            ]
        );
        assert_eq!(
            kubelet_config_flag(&args),
            Some("/var/lib/kubelet/config.yaml")
        );
        // Its flag overrides a good file: the read-only port is open.
        let p = write("kubelet.yaml", GOOD_KUBELET);
        let mut auth = kubelet_config(&p).unwrap();
        apply_kubelet_flags(&mut auth, &args);
        assert_eq!(ids(&kubelet_findings(&auth, "f")), ["NM-2023"]);
        let _ = fs::remove_file(p);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_file_that_is_not_a_kubelet_config_is_an_error() {
        let p = write("other.yaml", "kind: Pod\n");
        assert!(
            kubelet_config(&p)
                .unwrap_err()
                .contains("not a KubeletConfiguration")
        );
        let _ = fs::remove_file(p);
        assert!(kubelet_config(Path::new("/nonexistent/nm.yaml")).is_err());
    }

    #[test]
    fn apiserver_manifest() {
        let good = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - --anonymous-auth=false\n    - --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt\n    - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key\n";
        let p = write("apiserver.yaml", good);
        assert!(apiserver_findings(&p).unwrap().is_empty());
        let bad = good.replace("    - --anonymous-auth=false\n", "").replace(
            "    - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key\n",
            "",
        );
        let q = write("apiserver-bad.yaml", &bad);
        let f = apiserver_findings(&q).unwrap();
        assert_eq!(ids(&f), ["NM-2030", "NM-2031"]);
        assert!(
            f[0].evidence.contains("--kubelet-client-key not set"),
            "{}",
            f[0].evidence
        );
        let _ = fs::remove_file(p);
        let _ = fs::remove_file(q);
    }
}
