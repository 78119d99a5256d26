//! Alerts: the rule catalog, dedup and aggregation (sweeps, floods), and the SIEM formats
//! (ECS, OCSF, CEF) with Community ID flow hashes.
pub mod cef;
pub mod community_id;
pub mod ecs;
pub mod engine;
pub mod format;
pub mod model;
pub mod ocsf;
pub mod rules;

pub use engine::{Engine, EngineStats, LossTotals};
pub use format::render;
pub use model::{Alert, AlertKind, FloodScope, Observer, OutputItem, Rule, Severity};
