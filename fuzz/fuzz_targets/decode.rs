//! The ring-buffer record decoder: any bytes in, an event or a typed error out; a decoded
//! event renders in all three formats, ECS and OCSF as JSON equal to their serde documents.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use node_monitor::{
    config::Format,
    detect::OutputItem,
    record::{self, Answer, Family, FlowRecord, Hook, TcpFlags, Verdict},
    render::{self, Observer},
};

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = record::decode(data) else {
        return;
    };
    let mut r: FlowRecord = record::fixture::flagged();
    r.verdict = Verdict::from_raw(ev.verdict);
    r.answer = Answer::from_raw(ev.answer);
    r.family = Family::from_raw(ev.family);
    r.src_ip = ev.src_addr.to_ip(ev.family);
    r.dst_ip = ev.dst_addr.to_ip(ev.family);
    r.src_port = ev.src_port;
    r.dst_port = ev.dst_port;
    r.hook = Hook::from_raw(ev.hook);
    r.tcp_flags = Some(TcpFlags::from_bits(ev.tcp_flags));
    r.vlan = [ev.vlan_outer, ev.vlan_inner]
        .into_iter()
        .take_while(|v| *v != 0)
        .collect();
    r.packet_length = ev.pkt_len;
    r.ktime_ns = ev.ts_ns;
    r.group = Arc::from("kubelet");
    let item = OutputItem::Flow(r);
    let observer = Observer::local();
    for f in [Format::Ecs, Format::Ocsf] {
        let line = render::render(&item, f, &observer);
        serde_json::from_str::<serde_json::Value>(&line).expect("valid JSON");
    }
    let cef = render::render(&item, Format::Cef, &observer);
    assert!(cef.starts_with("CEF:0|") && !cef.contains('\n'));
});
