//! The demo's scenario: the services listening in the node namespace and the scripted
//! traffic steps (allowed and denied kubelet access, probes and scans from outside), each
//! run with a timeout and narrated in one or two lines.

use std::{process::Stdio, thread, time::Duration};

use anyhow::bail;
use node_monitor_lab::{Child, Lab, Netns, addr};

/// What a kubelet answers an anonymous request with.
const KUBELET_REPLY: &str = "printf 'HTTP/1.1 401 Unauthorized\\r\\nContent-Type: text/plain\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n\\r\\nUnauthorized'";
/// What the demo NodePort Service answers.
const NODEPORT_REPLY: &str = "printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: 12\\r\\nConnection: close\\r\\n\\r\\nhello world\\n'";
const KUBELET_PORT: u16 = 10250;
const NODEPORT: u16 = 30080;
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// The services listening in the node namespace; each ended by its guard (and by the
/// namespace's removal).
pub(crate) struct Services {
    _kubelet: Child,
    _nodeport: Child,
}

/// Starts the listeners in the node namespace: a kubelet stand-in (TLS, answers 401 like
/// an anonymous-auth-off kubelet) and one NodePort Service. 10255, 2379 and 2380 stay
/// closed.
pub(crate) fn start_services(lab: &Lab) -> anyhow::Result<Services> {
    let mut kubelet = lab.node.command("ncat");
    kubelet
        .args([
            "--ssl",
            "-lk",
            &KUBELET_PORT.to_string(),
            "-c",
            KUBELET_REPLY,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let kubelet_child = Child::spawn(&mut kubelet)?;
    let mut nodeport = lab.node.command("ncat");
    nodeport
        .args(["-lk", &NODEPORT.to_string(), "-c", NODEPORT_REPLY])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let nodeport_child = Child::spawn(&mut nodeport)?;
    wait_listening(&lab.node, &[KUBELET_PORT, NODEPORT])?;
    println!(
        "  listening in node: {KUBELET_PORT}/tcp (kubelet, TLS), {NODEPORT}/tcp (a NodePort Service)"
    );
    Ok(Services {
        _kubelet: kubelet_child,
        _nodeport: nodeport_child,
    })
}

/// Waits (at most 5 s) until TCP `ports` listen in `ns`.
fn wait_listening(ns: &Netns, ports: &[u16]) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..50 {
        let out = ns.exec_timeout(Duration::from_secs(5), "ss", &["-Htln"])?;
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        if ports.iter().all(|p| last.contains(&format!(":{p} "))) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "listeners on {ports:?} did not come up in {}: {last}",
        ns.name
    )
}

/// What a curl exit code means, for the narration.
fn curl_meaning(code: i32) -> &'static str {
    match code {
        0 => "got an answer",
        7 => "connection refused",
        28 => "timed out",
        35 => "TLS handshake failed",
        52 => "empty reply",
        56 => "connection reset",
        _ => "failed",
    }
}

/// One traffic step: a command run in a namespace of the lab.
pub(crate) struct Step<'a> {
    pub(crate) title: &'a str,
    pub(crate) from: &'a Netns,
    pub(crate) role: &'a str,
    pub(crate) program: &'a str,
    pub(crate) args: Vec<String>,
}

/// The scripted steps, in order.
pub(crate) fn steps(lab: &Lab) -> Vec<Step<'_>> {
    let node4 = addr::NODE_V4.to_string();
    let node6 = addr::NODE_V6.to_string();
    vec![
        Step {
            title: "allowed kubelet access from the control plane",
            from: &lab.cp,
            role: "cp",
            program: "curl",
            args: vec![
                "-sk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://{node4}:{KUBELET_PORT}/"),
            ],
        },
        Step {
            title: "kubelet access from outside (not allowed)",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-sk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://{node4}:{KUBELET_PORT}/"),
            ],
        },
        Step {
            title: "probe of the kubelet read-only port 10255 (closed) from outside",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-s".into(),
                "--max-time".into(),
                "2".into(),
                format!("http://{node4}:10255/pods"),
            ],
        },
        Step {
            title: "etcd probe from outside (SYN scan of 2379, 2380)",
            from: &lab.outside,
            role: "outside",
            program: "nmap",
            args: [
                "-Pn",
                "-sS",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "10s",
                "-p",
                "2379,2380",
                &node4,
            ]
            .map(String::from)
            .to_vec(),
        },
        Step {
            title: "NodePort sweep from outside (SYN scan of 30000-30100)",
            from: &lab.outside,
            role: "outside",
            program: "nmap",
            args: [
                "-Pn",
                "-sS",
                "-n",
                "--max-retries",
                "1",
                "--host-timeout",
                "10s",
                "-p",
                "30000-30100",
                &node4,
            ]
            .map(String::from)
            .to_vec(),
        },
        Step {
            title: "kubelet access from outside over IPv6",
            from: &lab.outside,
            role: "outside",
            program: "curl",
            args: vec![
                "-gsk".into(),
                "--max-time".into(),
                "2".into(),
                format!("https://[{node6}]:{KUBELET_PORT}/"),
            ],
        },
    ]
}

/// Runs one step and prints what it did (the caller prints its banner).
pub(crate) fn run_step(step: &Step<'_>) -> anyhow::Result<()> {
    println!("$ [{}] {} {}", step.role, step.program, step.args.join(" "));
    let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
    let out = step.from.exec_timeout(STEP_TIMEOUT, step.program, &args)?;
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if step.program == "curl" {
        let body = stdout.lines().next().unwrap_or("").trim();
        println!(
            "  curl exit {code} ({}){}",
            curl_meaning(code),
            if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            }
        );
    } else {
        for l in stdout
            .lines()
            .filter(|l| l.contains("/tcp") || l.starts_with("Not shown") || l.contains("scanned"))
        {
            println!("  {}", l.trim());
        }
        if !out.status.success() {
            println!(
                "  {} exit {code}: {}",
                step.program,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}
