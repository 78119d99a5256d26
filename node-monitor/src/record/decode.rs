//! Ring-buffer bytes → a checked [`Event`] → a typed [`FlowRecord`] (each kernel code becomes
//! its enum here, once), with names and wall-clock times.
use std::sync::Arc;

use node_monitor_common::{
    COMPLETES_REPORTED, EVENT_ANSWER, EVENT_FLAGGED, EVENT_REVOKED, EVENT_SAMPLED, EVENT_UNSEEN,
    Event, FAMILY_V4, FAMILY_V6, FRAGMENT_FIRST, FRAGMENT_FIRST_NO_FLAGS, FlowKey, HOOK_TC_EGRESS,
    IPPROTO_TCP, IPPROTO_UDP,
};

use super::{
    Clock, FlowRecord,
    codes::{Action, Answer, Family, Hook, Protocol, RecordType, TcpFlags, Verdict},
    ifnames::cached_ifname,
};

/// Why a ring-buffer record could not be decoded (counted, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {expected}", expected = std::mem::size_of::<Event>())]
    Size(usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown protocol {0}")]
    Protocol(u8),
}

/// Decodes one ring-buffer record, checking every enumerated field.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    if bytes.len() != std::mem::size_of::<Event>() {
        return Err(DecodeError::Size(bytes.len()));
    }
    // SAFETY: the length matches and Event is plain old data (every bit pattern valid).
    let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if !matches!(
        ev.kind,
        EVENT_FLAGGED | EVENT_SAMPLED | EVENT_ANSWER | EVENT_REVOKED | EVENT_UNSEEN
    ) {
        return Err(DecodeError::Kind(ev.kind));
    }
    if !matches!(ev.family, FAMILY_V4 | FAMILY_V6) {
        return Err(DecodeError::Family(ev.family));
    }
    if !matches!(ev.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Err(DecodeError::Protocol(ev.proto));
    }
    Ok(ev)
}

/// The flow key of an event (ingress orientation).
pub(crate) fn flow_key(ev: &Event) -> FlowKey {
    FlowKey {
        src_addr: ev.src_addr,
        dst_addr: ev.dst_addr,
        src_port: ev.src_port,
        dst_port: ev.dst_port,
        proto: ev.proto,
        family: ev.family,
        _pad: 0,
    }
}

/// Builds the record for a flagged, sampled or unseen-acceptance event. `group` is the
/// group's name.
pub(crate) fn from_event(
    ev: &Event,
    group: Arc<str>,
    clock: &Clock,
    answer: Option<Answer>,
) -> FlowRecord {
    let protocol = super::codes::protocol_from_raw(ev.proto);
    let vlan = [ev.vlan_outer, ev.vlan_inner];
    FlowRecord {
        time: clock.wall(ev.ts_ns),
        record_type: match ev.kind {
            EVENT_FLAGGED => RecordType::Flagged,
            EVENT_REVOKED => RecordType::Revoked,
            EVENT_UNSEEN => RecordType::Unseen,
            _ => RecordType::Sampled,
        },
        group,
        verdict: Verdict::from_raw(ev.verdict),
        action: Action::from_raw(ev.action),
        answer,
        answer_corrects: None,
        answer_corrects_alert: None,
        protocol,
        family: Family::from_raw(ev.family),
        src_ip: ev.src_addr.to_ip(ev.family),
        src_port: ev.src_port,
        dst_ip: ev.dst_addr.to_ip(ev.family),
        dst_port: ev.dst_port,
        interface: cached_ifname(ev.ifindex, clock.taken_ns()),
        ifindex: ev.ifindex,
        hook: Hook::from_raw(ev.hook),
        vlan: vlan.into_iter().take_while(|v| *v != 0).collect(),
        tcp_flags: (protocol == Protocol::Tcp).then(|| {
            if ev.fragment == FRAGMENT_FIRST_NO_FLAGS {
                TcpFlags::FRAGMENTED
            } else {
                TcpFlags::from_bits(ev.tcp_flags)
            }
        }),
        fragmented: matches!(ev.fragment, FRAGMENT_FIRST | FRAGMENT_FIRST_NO_FLAGS),
        handshake_completed: ev.kind == EVENT_UNSEEN && ev.hook != HOOK_TC_EGRESS,
        completes_reported: ev.kind == EVENT_UNSEEN
            && ev.hook != HOOK_TC_EGRESS
            && ev.completes == COMPLETES_REPORTED,
        packet_length: ev.pkt_len,
        ktime_ns: ev.ts_ns,
        sampled: ev.kind == EVENT_SAMPLED && ev.sampled != 0,
        identity: None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use node_monitor_common::{
        ACTION_WOULD_DROP, Addr, HOOK_XDP, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TCP_URG,
        VERDICT_DENIED,
    };

    use super::*;

    fn event() -> Event {
        let mut e = Event {
            kind: EVENT_FLAGGED,
            family: FAMILY_V4,
            proto: IPPROTO_TCP,
            src_port: 40000,
            dst_port: 10250,
            tcp_flags: TCP_SYN,
            verdict: VERDICT_DENIED,
            action: ACTION_WOULD_DROP,
            hook: HOOK_XDP,
            vlan_outer: 100,
            ..Default::default()
        };
        e.src_addr = Addr::from_ip([203, 0, 113, 9].into());
        e.dst_addr = Addr::from_ip([198, 51, 100, 1].into());
        e
    }

    fn bytes(e: &Event) -> Vec<u8> {
        // SAFETY: Event is plain old data.
        unsafe {
            std::slice::from_raw_parts(
                (e as *const Event).cast::<u8>(),
                std::mem::size_of::<Event>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decode_round_trips_and_rejects_garbage() {
        let e = event();
        assert_eq!(decode(&bytes(&e)), Ok(e));
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Size(10)));
        let mut bad = e;
        bad.kind = 9;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Kind(9)));
        bad = e;
        bad.family = 5;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Family(5)));
        bad = e;
        bad.proto = 1;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Protocol(1)));
    }

    #[test]
    fn record_fields() {
        let r = from_event(
            &event(),
            "kubelet".into(),
            &Clock::fixed(1_700_000_000_000_000_000, 0),
            Some(Answer::Refused),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["type"], "flagged");
        assert_eq!(v["group"], "kubelet");
        assert_eq!(v["verdict"], "denied");
        assert_eq!(v["action"], "would_drop");
        assert_eq!(v["answer"], "refused");
        assert_eq!(v["src_ip"], "203.0.113.9");
        assert_eq!(v["dst_ip"], "198.51.100.1");
        assert_eq!(v["dst_port"], 10250);
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["family"], "ipv4");
        assert_eq!(v["hook"], "xdp");
        assert_eq!(v["vlan"], serde_json::json!([100]));
        assert_eq!(v["tcp_flags"], "SYN");
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn first_fragments_and_unseen_acceptances() {
        let clock = Clock::fixed(1_700_000_000_000_000_000, 0);
        // A first fragment cut before the flags: flags "fragmented", and marked fragmented.
        let mut e = event();
        e.tcp_flags = 0;
        e.fragment = FRAGMENT_FIRST_NO_FLAGS;
        assert_eq!(decode(&bytes(&e)), Ok(e));
        let r = from_event(&e, "kubelet".into(), &clock, None);
        assert_eq!(r.record_type, RecordType::Flagged);
        assert_eq!(r.tcp_flags, Some(TcpFlags::FRAGMENTED));
        assert!(r.fragmented);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["tcp_flags"], "fragmented");
        assert_eq!(v["fragmented"], true);
        // Cut after the flags: the flags are the fragment's.
        e.tcp_flags = TCP_SYN;
        e.fragment = FRAGMENT_FIRST;
        let r = from_event(&e, "kubelet".into(), &clock, None);
        assert_eq!(r.tcp_flags.map(TcpFlags::as_str), Some("SYN"));
        assert!(r.fragmented);
        // UDP: no flags whatever the fragment says.
        e.proto = IPPROTO_UDP;
        e.fragment = FRAGMENT_FIRST_NO_FLAGS;
        let r = from_event(&e, "g".into(), &clock, None);
        assert_eq!((r.tcp_flags, r.fragmented), (None, true));
        // A whole packet is not fragmented, and says nothing about it.
        let r = from_event(&event(), "kubelet".into(), &clock, None);
        assert!(!r.fragmented);
        assert!(
            serde_json::to_value(&r)
                .unwrap()
                .get("fragmented")
                .is_none()
        );
        // The node's acceptance nobody saw asked for.
        let mut u = event();
        u.kind = EVENT_UNSEEN;
        u.tcp_flags = TCP_SYN | TCP_ACK;
        u.answer = node_monitor_common::ANSWER_ACCEPTED;
        u.hook = node_monitor_common::HOOK_TC_EGRESS;
        assert_eq!(decode(&bytes(&u)), Ok(u));
        let r = from_event(&u, "kubelet".into(), &clock, Some(Answer::Accepted));
        assert_eq!(r.record_type, RecordType::Unseen);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["type"], "unseen_accepted");
        assert_eq!(v["answer"], "accepted");
        assert_eq!(v["hook"], "tc");
        assert!(!r.handshake_completed && v.get("handshake_completed").is_none());
        // The peer's ACK completing a withheld acceptance, seen on ingress.
        let mut h = u;
        h.tcp_flags = TCP_ACK;
        h.hook = node_monitor_common::HOOK_XDP;
        let r = from_event(&h, "kubelet".into(), &clock, Some(Answer::Accepted));
        assert_eq!(r.record_type, RecordType::Unseen);
        assert!(r.handshake_completed);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["handshake_completed"],
            true
        );
        // Kind 6 is still unknown.
        u.kind = 6;
        assert_eq!(decode(&bytes(&u)), Err(DecodeError::Kind(6)));
    }

    #[test]
    fn ipv6_and_flags() {
        let raw = Addr::from_octets("2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(raw.to_ip(FAMILY_V6).to_string(), "2001:db8::7");
        let v4 = Addr::from_ip("203.0.113.9".parse().unwrap());
        assert_eq!(v4.to_ip(FAMILY_V4).to_string(), "203.0.113.9");
        assert_eq!(v4.octets()[4..], [0; 12]);
        let mut e = event();
        e.tcp_flags = TCP_FIN | TCP_PSH | TCP_URG | 0xc0;
        let r = from_event(&e, "g".into(), &Clock::now(), None);
        assert_eq!(r.tcp_flags.map(TcpFlags::as_str), Some("FIN|PSH|URG"));
        e.proto = IPPROTO_UDP;
        e.tcp_flags = TCP_SYN | TCP_ACK;
        assert_eq!(
            from_event(&e, "g".into(), &Clock::now(), None).tcp_flags,
            None
        );
    }
}
