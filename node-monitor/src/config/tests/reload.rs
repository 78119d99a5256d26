//! Tests: Reload plans.

use super::*;

#[test]
fn reload_plan_separates_restart_fields() {
    let base = parse(FULL);
    assert!(base.reload_plan(&base).is_noop());
    let next = parse(&format!(
        "{FULL}limits: {{ flows: 2048, ring_buffer_bytes: 4096, answer_timeout_ms: 5, events_per_source_per_second: 3 }}\n"
    ));
    let plan = base.reload_plan(&next);
    assert_eq!(
        plan.restart_required,
        ["limits.flows", "limits.ring_buffer_bytes"]
    );
    assert!(plan.datapath && plan.answer_timeout);
    assert!(!plan.reattach && !plan.sinks && !plan.metrics && !plan.interfaces);

    let next = parse(&FULL.replace("attach: tc", "attach: xdp"));
    assert_eq!(
        base.reload_plan(&next),
        ReloadPlan {
            reattach: true,
            ..ReloadPlan::default()
        }
    );
    // `attach` left out means xdp: no re-attach between the two.
    let xdp = parse("attach: xdp\n");
    assert!(parse("").reload_plan(&xdp).is_noop());

    let next = parse(&FULL.replace("detect_sweeps: true", "detect_sweeps: false"));
    let plan = base.reload_plan(&next);
    assert!(plan.alerts && plan.datapath && plan.restart_required.is_empty());

    let next = parse(
        &FULL
            .replace("\"ens5\"", "\"ens6\"")
            .replace("keep: 5", "keep: 6")
            .replace("[::]:9100", "[::]:9101")
            .replace("min_ports: 20", "min_ports: 21"),
    );
    let plan = base.reload_plan(&next);
    assert!(plan.interfaces && plan.sinks && plan.metrics && plan.alerts);
    assert!(!plan.datapath && !plan.reattach && plan.restart_required.is_empty());

    let next = parse(&format!(
        "{FULL}limits: {{ sources: 512, allow_entries: 10 }}\n"
    ));
    assert_eq!(
        base.reload_plan(&next).restart_required,
        ["limits.sources", "limits.allow_entries"]
    );
}
