//! One output item → one line in the sink's format (ECS JSON, OCSF JSON or CEF), and the
//! facts every format shares (messages, outcome, community id, epoch times).
use std::{
    cell::RefCell,
    fmt,
    net::IpAddr,
    thread::LocalKey,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    community_id::{CommunityId, community_id_v1_text, proto_number},
    engine::record_time,
    model::{Alert, AlertKind, FloodScope, Observer, OutputItem, Rule},
    rules,
};
use crate::{config::Format, events::FlowRecord};

/// Community ID seed: 0, the interoperable default (every tool must use the same seed).
pub const COMMUNITY_ID_SEED: u16 = 0;

/// Renders one item as one line (no trailing newline).
pub fn render(item: &OutputItem, format: Format, observer: &Observer) -> String {
    let mut out = Vec::with_capacity(2048);
    render_into(item, format, observer, &mut out);
    // Every writer appends UTF-8 only (strings, numbers, escapes).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends one item as one line (no trailing newline) to `out`, which a sink reuses.
pub fn render_into(item: &OutputItem, format: Format, observer: &Observer, out: &mut Vec<u8>) {
    match format {
        Format::Ecs => super::ecs::render_into(item, observer, out),
        Format::Ocsf => super::ocsf::render_into(item, observer, out),
        Format::Cef => super::cef::render_into(item, observer, out),
    }
}

/// The connection an alert is about: the record of a connection alert, the connection that
/// crossed the threshold of a sweep; none for a flood.
pub(crate) fn alert_record(alert: &Alert) -> Option<&FlowRecord> {
    match &alert.kind {
        AlertKind::Connection { record } => Some(record),
        AlertKind::Sweep { last, .. } => Some(last),
        AlertKind::Flood { .. } => None,
    }
}

/// The Community ID of a record's flow.
pub fn community_id(rec: &FlowRecord) -> String {
    community_id_text(rec).as_str().to_owned()
}

/// The Community ID of a record's flow, without allocating.
pub(crate) fn community_id_text(rec: &FlowRecord) -> CommunityId {
    community_id_v1_text(
        COMMUNITY_ID_SEED,
        rec.src_ip,
        rec.dst_ip,
        proto_number(rec.protocol),
        rec.src_port,
        rec.dst_port,
    )
}

pub(crate) fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A short action verb for `event.action` and friends.
pub(crate) fn action_name(item: &OutputItem) -> &'static str {
    match item {
        OutputItem::Flow(_) => "flow-sampled",
        OutputItem::Alert(a) => match a.kind {
            AlertKind::Connection { .. } => "flagged-connection",
            AlertKind::Sweep { .. } => "nodeport-sweep",
            AlertKind::Flood { .. } => "event-flood",
        },
    }
}

/// `success` when the node accepted the connection, `failure` when it refused or did not
/// answer, `unknown` when no answer is known (sampled flows, floods).
pub(crate) fn outcome(rec: Option<&FlowRecord>) -> &'static str {
    use crate::events::Answer;
    match rec.and_then(|r| r.answer) {
        Some(Answer::Accepted) => "success",
        Some(Answer::Refused | Answer::NoAnswer) => "failure",
        None => "unknown",
    }
}

/// Whether the policy denies the connection (enforced or not).
pub(crate) fn denied(rec: &FlowRecord) -> bool {
    matches!(rec.action, "would_drop" | "dropped")
}

/// `src -> dst/proto`, IPv6 addresses in brackets.
/// `src -> dst/proto` of a record, IPv6 addresses in brackets.
fn write_endpoints(out: &mut Vec<u8>, r: &FlowRecord) {
    let ep = |out: &mut Vec<u8>, ip: IpAddr, port: u16| {
        if ip.is_ipv6() {
            out.push(b'[');
            write_ip(out, ip);
            out.extend_from_slice(b"]:");
        } else {
            write_ip(out, ip);
            out.push(b':');
        }
        out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    };
    ep(out, r.src_ip, r.src_port);
    out.extend_from_slice(b" -> ");
    ep(out, r.dst_ip, r.dst_port);
    out.push(b'/');
    out.extend_from_slice(r.protocol.as_bytes());
}

/// One readable sentence about the item. [`Message::write_to`] writes it straight into its
/// destination (a JSON string, a CEF line) without the `fmt` machinery: this runs for every
/// item of every format.
pub(crate) struct Message<'a>(pub &'a OutputItem);

impl Message<'_> {
    /// Appends the sentence to `out`, unescaped.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let num = |out: &mut Vec<u8>, n: u64| {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        };
        let text = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
        match self.0 {
            OutputItem::Flow(r) => {
                text(out, "Sampled flow ");
                write_endpoints(out, r);
                text(out, " of group ");
                text(out, &r.group);
                text(out, " (");
                text(out, r.verdict);
                text(out, ", ");
                text(out, r.action);
                text(out, ").");
            }
            OutputItem::Alert(a) => {
                text(out, a.rule.name);
                text(out, ": ");
                match &a.kind {
                    AlertKind::Connection { record: r } => {
                        write_endpoints(out, r);
                        text(out, " (group ");
                        text(out, &r.group);
                        text(out, ", ");
                        text(out, r.action);
                        if let Some(x) = r.answer {
                            text(out, ", answer ");
                            text(out, x.as_str());
                        }
                        text(out, ").");
                    }
                    AlertKind::Sweep {
                        source,
                        group,
                        ports,
                        window,
                        ..
                    } => {
                        write_ip(out, *source);
                        text(out, " reached ");
                        num(out, ports.len() as u64);
                        text(out, " distinct ports of group ");
                        text(out, group);
                        text(out, " within ");
                        num(out, window.as_secs());
                        text(out, "s.");
                    }
                    AlertKind::Flood {
                        rate_limited,
                        ringbuf_full,
                        window,
                        ..
                    } => {
                        num(out, *rate_limited);
                        text(out, " events withheld by the rate limit and ");
                        num(out, *ringbuf_full);
                        text(out, " lost to a full ring buffer within ");
                        num(out, window.as_secs());
                        text(out, "s.");
                    }
                }
                if a.suppressed > 0 {
                    text(out, " ");
                    num(out, a.suppressed);
                    text(out, " more occurrence");
                    text(out, if a.suppressed == 1 { "" } else { "s" });
                    text(out, " since the first alert.");
                }
            }
        }
    }
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(160);
        self.write_to(&mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// One readable sentence about the item.
#[cfg(test)]
pub(crate) fn message(item: &OutputItem) -> String {
    Message(item).to_string()
}

/// Writes the members of a JSON object one at a time: `"key":` with commas between.
pub(crate) struct Members {
    first: bool,
}

impl Members {
    pub(crate) fn new() -> Members {
        Members { first: true }
    }
    pub(crate) fn key(&mut self, j: &mut JsonOut<'_>, k: &str) {
        j.raw(if std::mem::take(&mut self.first) {
            "\""
        } else {
            ",\""
        })
        .raw(k)
        .raw("\":");
    }
}

/// node-monitor's own facts of a connection, as the ECS `node_monitor` and OCSF
/// `unmapped.node_monitor` objects both carry them: port group, verdict, action, answer, TCP
/// flags and hook.
pub(crate) fn write_connection_facts(
    m: &mut Members,
    j: &mut JsonOut<'_>,
    alert: Option<&Alert>,
    rec: Option<&FlowRecord>,
) {
    let port_group = match alert.map(|a| &a.kind) {
        Some(AlertKind::Sweep { group, .. }) => Some(&**group),
        _ => rec.map(|r| &*r.group),
    };
    if let Some(g) = port_group {
        m.key(j, "port_group");
        j.str(g);
    }
    if let Some(r) = rec {
        m.key(j, "verdict");
        j.str(r.verdict);
        m.key(j, "action");
        j.str(r.action);
        if let Some(a) = r.answer {
            m.key(j, "answer");
            j.str(a.as_str());
        }
        if let Some(f) = r.tcp_flags {
            m.key(j, "tcp_flags");
            j.str(f);
        }
        m.key(j, "hook");
        j.str(r.hook);
    }
}

/// An alert's own facts, in both JSON formats: the dedup count, the alert it follows up,
/// the losses since the previous alert, and the sweep or flood details.
pub(crate) fn write_alert_facts(m: &mut Members, j: &mut JsonOut<'_>, a: &Alert) {
    m.key(j, "suppressed_count");
    j.num(a.suppressed);
    if let Some(f) = &a.follow_up_of {
        m.key(j, "follow_up_of");
        j.str(f);
    }
    m.key(j, "losses_since_previous");
    // Small maps, rare sweeps and floods: serde writes these few.
    let _ = serde_json::to_writer(&mut *j.0, &a.losses_since_previous);
    let (sweep, flood) = sweep_flood(a);
    if let Some(s) = sweep {
        m.key(j, "sweep");
        let _ = serde_json::to_writer(&mut *j.0, &s);
    }
    if let Some(f) = flood {
        m.key(j, "flood");
        let _ = serde_json::to_writer(&mut *j.0, &f);
    }
}

/// A format's per-thread cache of the line parts that depend only on the observer.
pub(crate) type FragmentCache<F> = RefCell<Option<(Observer, F)>>;

/// Runs `f` on this thread's fragments for `observer`, made by `make` when the thread has
/// none yet or made them for another observer.
pub(crate) fn with_fragments<F, R>(
    cache: &'static LocalKey<FragmentCache<F>>,
    observer: &Observer,
    make: impl FnOnce(&Observer) -> F,
    f: impl FnOnce(&mut F) -> R,
) -> R {
    cache.with_borrow_mut(|cached| {
        let frags = match cached {
            Some((o, frags)) if o == observer => frags,
            _ => &mut cached.insert((observer.clone(), make(observer))).1,
        };
        f(frags)
    })
}

/// JSON fragments rendered once per rule (the catalog has about ten rules; a format keeps
/// the parts of a line that depend only on the rule here).
#[derive(Default)]
pub(crate) struct RuleFragments(Vec<(Rule, Vec<u8>)>);

impl RuleFragments {
    /// Rules kept at most; past that the cache starts over.
    const MAX: usize = 64;

    /// The fragment of `rule`, rendered by `render` the first time.
    pub(crate) fn get(&mut self, rule: Rule, render: impl FnOnce(&mut JsonOut<'_>)) -> &[u8] {
        let i = match self.0.iter().position(|(r, _)| *r == rule) {
            Some(i) => i,
            None => {
                if self.0.len() >= Self::MAX {
                    self.0.clear();
                }
                let mut frag = Vec::new();
                render(&mut JsonOut(&mut frag));
                self.0.push((rule, frag));
                self.0.len() - 1
            }
        };
        &self.0[i].1
    }
}

/// Appends JSON text to a buffer: fragments already in JSON form, strings escaped exactly as
/// `serde_json` escapes them, numbers with `itoa`. The hand-written documents (ECS) use it;
/// their tests check them byte for byte against the `serde` documents.
pub(crate) struct JsonOut<'a>(pub &'a mut Vec<u8>);

/// Whether `serde_json` would escape anything in `b` (control characters, `"` and `\`).
fn needs_json_escape(b: &[u8]) -> bool {
    // No early exit: the loop vectorizes, and the strings are short.
    b.iter().fold(0u8, |acc, &c| {
        acc | u8::from(c < 0x20) | u8::from(c == b'"') | u8::from(c == b'\\')
    }) != 0
}

impl JsonOut<'_> {
    /// A fragment that is already JSON (keys, punctuation, constant values).
    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// Bytes that are already JSON (fragments rendered earlier).
    pub(crate) fn frag(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    /// A JSON string.
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        if needs_json_escape(s.as_bytes()) {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.0, s);
        } else {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        }
        self
    }
    /// A JSON string holding what `value` displays, written in place and escaped only when
    /// it needs it.
    pub(crate) fn display(&mut self, value: impl fmt::Display) -> &mut Self {
        use std::io::Write as _;
        // Writing to a Vec fails only if `value` itself fails; the text stays as written.
        self.text(|out| {
            let _ = write!(out, "{value}");
        })
    }
    /// A JSON string of the text that `write` appends (UTF-8), escaped only if it needs it.
    pub(crate) fn text(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.0.push(b'"');
        let start = self.0.len();
        write(self.0);
        if needs_json_escape(&self.0[start..]) {
            let text = self.0.split_off(start);
            self.0.pop();
            let text = String::from_utf8_lossy(&text);
            let _ = serde_json::to_writer(&mut *self.0, text.as_ref());
        } else {
            self.0.push(b'"');
        }
        self
    }
    /// A JSON number.
    pub(crate) fn num(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }
    /// A JSON string holding a number (schemas that want ids as strings).
    pub(crate) fn num_str(&mut self, n: impl itoa::Integer) -> &mut Self {
        self.0.push(b'"');
        self.num(n);
        self.0.push(b'"');
        self
    }
    /// An address as a JSON string (addresses need no escaping).
    pub(crate) fn ip(&mut self, ip: IpAddr) -> &mut Self {
        self.0.push(b'"');
        write_ip(self.0, ip);
        self.0.push(b'"');
        self
    }
}

/// Appends an address as `Display` writes it: IPv4 without the formatting machinery.
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(n.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Serializes any `Display` value as a JSON string, written in place (no intermediate
/// `String`): numbers that a schema wants as strings, timestamps, messages.
pub(crate) struct Text<T>(pub T);

impl<T: fmt::Display> serde::Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// RFC 3339, UTC, microseconds: the same text as [`rfc3339`], serialized in place.
pub(crate) fn rfc3339_text(t: SystemTime) -> Text<humantime::Rfc3339Timestamp> {
    Text(humantime::format_rfc3339_micros(t))
}

/// `node_monitor.sweep` (ECS) / `unmapped.node_monitor.sweep` (OCSF).
#[derive(serde::Serialize)]
pub(crate) struct SweepDoc<'a> {
    pub ports: &'a [u16],
    pub port_count: usize,
    pub window_s: u64,
}

/// `node_monitor.flood` (ECS) / `unmapped.node_monitor.flood` and the evidence (OCSF).
#[derive(serde::Serialize)]
pub(crate) struct FloodDoc {
    /// `"node"`, or the source address.
    pub scope: FloodScopeDoc,
    pub rate_limited: u64,
    pub ringbuf_full: u64,
    pub window_s: u64,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum FloodScopeDoc {
    Node(&'static str),
    Source(IpAddr),
}

/// The sweep and flood details of an alert (at most one is `Some`).
pub(crate) fn sweep_flood(alert: &Alert) -> (Option<SweepDoc<'_>>, Option<FloodDoc>) {
    match &alert.kind {
        AlertKind::Connection { .. } => (None, None),
        AlertKind::Sweep { ports, window, .. } => (
            Some(SweepDoc {
                ports,
                port_count: ports.len(),
                window_s: window.as_secs(),
            }),
            None,
        ),
        AlertKind::Flood {
            scope,
            rate_limited,
            ringbuf_full,
            window,
        } => (
            None,
            Some(FloodDoc {
                scope: match scope {
                    FloodScope::Node => FloodScopeDoc::Node("node"),
                    FloodScope::Source(ip) => FloodScopeDoc::Source(*ip),
                },
                rate_limited: *rate_limited,
                ringbuf_full: *ringbuf_full,
                window_s: window.as_secs(),
            }),
        ),
    }
}

/// The time of an item: the alert's, or the flow record's.
pub(crate) fn item_time(item: &OutputItem) -> SystemTime {
    match item {
        OutputItem::Alert(a) => a.time,
        OutputItem::Flow(r) => record_time(r),
    }
}

/// ECS `rule.category` / CEF `cat`.
pub(crate) fn rule_category(alert: &Alert) -> &'static str {
    rules::category(alert.rule.id)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixtures shared by the format tests: one of each item.
    use std::{collections::BTreeMap, net::IpAddr, time::Duration};

    use super::*;
    use crate::{
        alerts::{model::FloodScope, rules},
        events::{Answer, RecordType},
    };

    pub(crate) fn observer() -> Observer {
        Observer {
            hostname: "node-a".to_owned(),
            product: "node-monitor",
            vendor: "node-monitor",
            version: "0.1.0",
        }
    }

    /// 2024-05-01T12:00:00.123456Z
    pub(crate) const T_MS: u64 = 1_714_564_800_123;

    pub(crate) fn flagged() -> FlowRecord {
        FlowRecord {
            time: humantime::parse_rfc3339("2024-05-01T12:00:00.123456Z").unwrap(),
            record_type: RecordType::Flagged,
            group: "kubelet".into(),
            verdict: "denied",
            action: "would_drop",
            answer: Some(Answer::Refused),
            protocol: "tcp",
            family: "ipv4",
            src_ip: "128.232.110.120".parse().unwrap(),
            src_port: 34855,
            dst_ip: "66.35.250.204".parse().unwrap(),
            dst_port: 80,
            interface: Some("eth0".into()),
            ifindex: 2,
            hook: "xdp",
            vlan: vec![100, 200],
            tcp_flags: Some("SYN"),
            packet_length: 60,
            ktime_ns: 42,
            sampled: false,
        }
    }

    /// The community id of `flagged()` (spec vector).
    pub(crate) const CID: &str = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";

    pub(crate) fn sampled() -> FlowRecord {
        FlowRecord {
            record_type: RecordType::Flow,
            group: "nodeport".into(),
            verdict: "allowed",
            action: "pass",
            answer: None,
            protocol: "udp",
            family: "ipv6",
            src_ip: "2001:470:e5bf:dead:4957:2174:e82c:4887".parse().unwrap(),
            src_port: 63943,
            dst_ip: "2607:f8b0:400c:c03::1a".parse().unwrap(),
            dst_port: 30053,
            vlan: vec![],
            tcp_flags: None,
            sampled: true,
            ..flagged()
        }
    }

    fn base(kind: AlertKind, rule: crate::alerts::Rule) -> Alert {
        Alert {
            id: "3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d".to_owned(),
            time: humantime::parse_rfc3339("2024-05-01T12:00:00.123456Z").unwrap(),
            rule,
            kind,
            suppressed: 0,
            follow_up_of: None,
            losses_since_previous: BTreeMap::new(),
        }
    }

    pub(crate) fn connection_alert() -> Alert {
        let mut a = base(
            AlertKind::Connection { record: flagged() },
            rules::rule_for_group("kubelet"),
        );
        a.losses_since_previous.insert("ringbuf_full".to_owned(), 4);
        a
    }

    pub(crate) fn follow_up() -> Alert {
        let mut a = base(
            AlertKind::Connection { record: flagged() },
            rules::rule_for_group("kubelet"),
        );
        a.id = "0b7c9e2d-1111-4222-8333-444455556666".to_owned();
        a.suppressed = 17;
        a.follow_up_of = Some("3f2b8c1e-7d4a-4e8b-9c1d-2a5e6f7b8c9d".to_owned());
        a
    }

    pub(crate) fn sweep() -> Alert {
        let mut last = flagged();
        last.group = "nodeport".into();
        last.dst_port = 30005;
        last.verdict = "allowed";
        last.action = "pass";
        last.answer = None;
        last.vlan = vec![];
        let source: IpAddr = last.src_ip;
        base(
            AlertKind::Sweep {
                source,
                group: "nodeport".into(),
                ports: vec![30001, 30002, 30003, 30004, 30005],
                window: Duration::from_secs(60),
                last,
            },
            rules::sweep_rule(),
        )
    }

    pub(crate) fn flood() -> Alert {
        base(
            AlertKind::Flood {
                scope: FloodScope::Node,
                rate_limited: 260,
                ringbuf_full: 7,
                window: Duration::from_secs(10),
            },
            rules::flood_rule(),
        )
    }

    /// An observer whose strings need JSON escaping.
    pub(crate) fn hostile_observer() -> Observer {
        Observer {
            hostname: "n\"o\\de\n\u{1}é✓".to_owned(),
            product: "node|monitor",
            vendor: "v=\"x\"",
            version: "1.0-\t",
        }
    }

    /// A broad mix of items: every alert kind, follow-ups, sampled flows, IPv4/IPv6, VLAN
    /// untagged / single / double tagged, with and without losses, every action and answer,
    /// interface known or not, TCP flags or none, strings that need escaping.
    pub(crate) fn variety() -> Vec<OutputItem> {
        let v4: IpAddr = "203.0.113.5".parse().unwrap();
        let v6: IpAddr = "2001:db8::dead:beef".parse().unwrap();
        let mut records = Vec::new();
        for (src, dst) in [
            (flagged().src_ip, flagged().dst_ip),
            (sampled().src_ip, sampled().dst_ip),
            (v4, "10.0.0.1".parse().unwrap()),
            (v6, "fe80::1".parse().unwrap()),
        ] {
            for vlan in [vec![], vec![7], vec![100, 200]] {
                for (verdict, action) in [
                    ("denied", "would_drop"),
                    ("denied", "dropped"),
                    ("allowed", "pass"),
                ] {
                    for answer in [
                        None,
                        Some(Answer::Accepted),
                        Some(Answer::Refused),
                        Some(Answer::NoAnswer),
                    ] {
                        let mut r = flagged();
                        r.src_ip = src;
                        r.dst_ip = dst;
                        r.family = if src.is_ipv6() { "ipv6" } else { "ipv4" };
                        r.vlan = vlan.clone();
                        r.verdict = verdict;
                        r.action = action;
                        r.answer = answer;
                        records.push(r);
                    }
                }
            }
        }
        // Odd ones: UDP without flags, no interface, several flags, escaping-hungry group.
        for (i, r) in records.iter_mut().enumerate() {
            match i % 5 {
                1 => {
                    r.protocol = "udp";
                    r.tcp_flags = None;
                }
                2 => r.interface = None,
                3 => r.tcp_flags = Some("SYN|ACK|FIN|PSH|URG|RST"),
                4 => {
                    r.group = "g\"r\\o=u|p\n✓".into();
                    r.ifindex = u32::MAX;
                    r.src_port = 0;
                    r.dst_port = u16::MAX;
                }
                _ => {}
            }
        }
        let mut items = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let mut a = connection_alert();
            a.kind = AlertKind::Connection { record: r.clone() };
            a.losses_since_previous.clear();
            if i % 2 == 0 {
                a.losses_since_previous.insert("ringbuf_full".to_owned(), 4);
                a.losses_since_previous
                    .insert("output_queue_full".to_owned(), u64::MAX);
            }
            if i % 3 == 0 {
                a.rule = rules::rule_for_group(&r.group);
            }
            if i % 4 == 1 {
                a.suppressed = 1;
                a.follow_up_of = Some("first-\"id".to_owned());
            }
            items.push(OutputItem::Alert(a));
            let mut f = r.clone();
            f.record_type = RecordType::Flow;
            f.sampled = true;
            items.push(OutputItem::Flow(f));
        }
        items.push(OutputItem::Alert(connection_alert()));
        items.push(OutputItem::Alert(follow_up()));
        items.push(OutputItem::Flow(flagged()));
        items.push(OutputItem::Flow(sampled()));
        for last in [flagged(), sampled(), records[37].clone()] {
            let mut s = sweep();
            if let AlertKind::Sweep {
                source,
                last: l,
                ports,
                ..
            } = &mut s.kind
            {
                *source = last.src_ip;
                *l = last;
                ports.push(u16::MAX);
            }
            items.push(OutputItem::Alert(s.clone()));
            s.suppressed = 3;
            s.follow_up_of = Some(s.id.clone());
            s.losses_since_previous.insert("rate_limited".to_owned(), 9);
            items.push(OutputItem::Alert(s));
        }
        for scope in [
            FloodScope::Node,
            FloodScope::Source(v4),
            FloodScope::Source(v6),
        ] {
            let mut f = flood();
            if let AlertKind::Flood { scope: s, .. } = &mut f.kind {
                *s = scope;
            }
            items.push(OutputItem::Alert(f.clone()));
            f.suppressed = 2;
            f.follow_up_of = Some("x".to_owned());
            f.losses_since_previous.insert("ringbuf_full".to_owned(), 1);
            items.push(OutputItem::Alert(f));
        }
        items
    }

    #[test]
    fn message_written_in_place_matches_message() {
        // Every format writes the message straight into its output; `message()` is the text
        // it must be, for every kind of item (CEF's tests check its `msg` the same way).
        let obs = observer();
        for item in &variety() {
            let ecs = crate::alerts::ecs::to_value(item, &obs);
            assert_eq!(ecs["message"], message(item), "{item:?}");
            let ocsf = crate::alerts::ocsf::to_value(item, &obs);
            assert_eq!(ocsf["message"], message(item), "{item:?}");
        }
    }

    #[test]
    fn render_dispatches_one_line_per_format() {
        let items = [
            OutputItem::Alert(connection_alert()),
            OutputItem::Alert(follow_up()),
            OutputItem::Alert(sweep()),
            OutputItem::Alert(flood()),
            OutputItem::Flow(sampled()),
        ];
        for item in &items {
            for format in [Format::Ecs, Format::Ocsf, Format::Cef] {
                let line = render(item, format, &observer());
                assert!(
                    !line.contains('\n') && !line.contains('\r'),
                    "{format:?}: {line}"
                );
                match format {
                    Format::Cef => {
                        assert!(line.starts_with("CEF:0|node-monitor|node-monitor|0.1.0|"))
                    }
                    _ => {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                        assert!(v.is_object());
                    }
                }
            }
        }
    }

    #[test]
    fn outcomes() {
        let mut r = flagged();
        assert_eq!(outcome(Some(&r)), "failure");
        r.answer = Some(Answer::Accepted);
        assert_eq!(outcome(Some(&r)), "success");
        r.answer = Some(Answer::NoAnswer);
        assert_eq!(outcome(Some(&r)), "failure");
        r.answer = None;
        assert_eq!(outcome(Some(&r)), "unknown");
        assert_eq!(outcome(None), "unknown");
        assert!(denied(&flagged()));
        r.action = "dropped";
        assert!(denied(&r));
        r.action = "pass";
        assert!(!denied(&r));
    }

    /// Engine output straight into every format.
    #[test]
    fn engine_to_formats() {
        use crate::alerts::engine::{Engine, LossTotals, tests::settings};
        use std::time::Instant;
        let mut e = Engine::new(&settings(), vec!["nodeport".to_owned()]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        e.on_losses(
            &LossTotals {
                ringbuf_full: 3,
                ..Default::default()
            },
            t0,
            &mut out,
        );
        let mut r = flagged();
        r.group = "etcd-peer".into();
        r.dst_port = 2380;
        e.on_record(&r, t0, &mut out);
        e.on_record(&r, t0 + Duration::from_secs(1), &mut out);
        e.flush(&mut out);
        assert_eq!(out.len(), 3, "first, follow-up, flood");
        let first = crate::alerts::ecs::to_value(&OutputItem::Alert(out[0].clone()), &observer());
        assert_eq!(first["rule"]["id"], "NM-1003");
        assert_eq!(first["event"]["severity"], 99);
        assert_eq!(
            first["node_monitor"]["losses_since_previous"]["ringbuf_full"],
            3
        );
        let up = crate::alerts::ocsf::to_value(&OutputItem::Alert(out[1].clone()), &observer());
        assert_eq!(up["activity_id"], 2);
        assert_eq!(up["finding_info"]["uid"], out[0].id);
        assert_eq!(up["count"], 2);
        let cef = render(&OutputItem::Alert(out[2].clone()), Format::Cef, &observer());
        assert!(
            cef.contains("|NM-1020|event limits reached (flood)|5|"),
            "{cef}"
        );
        assert!(cef.contains("cn3=3 cn3Label=ringbufFull"), "{cef}");
    }

    #[test]
    fn messages() {
        let m = message(&OutputItem::Alert(connection_alert()));
        assert_eq!(
            m,
            "kubelet API access from a source not allowed: 128.232.110.120:34855 -> \
             66.35.250.204:80/tcp (group kubelet, would_drop, answer refused)."
        );
        assert!(
            message(&OutputItem::Alert(follow_up()))
                .ends_with(" 17 more occurrences since the first alert.")
        );
        assert_eq!(
            message(&OutputItem::Alert(sweep())),
            "NodePort sweep: 128.232.110.120 reached 5 distinct ports of group nodeport within 60s."
        );
        assert!(
            message(&OutputItem::Alert(flood()))
                .contains("260 events withheld by the rate limit and 7 lost")
        );
        assert_eq!(
            message(&OutputItem::Flow(sampled())),
            "Sampled flow [2001:470:e5bf:dead:4957:2174:e82c:4887]:63943 -> [2607:f8b0:400c:c03::1a]:30053/udp \
             of group nodeport (allowed, pass)."
        );
        assert_eq!(community_id(&flagged()), CID);
        assert_eq!(epoch_ms(item_time(&OutputItem::Flow(sampled()))), T_MS);
    }
}
