//! Tests: Reading files, and how errors are displayed and collected.

use super::*;

#[test]
fn load_reads_files_and_names_the_path_in_errors() {
    let dir = std::env::temp_dir().join(format!("node-monitor-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(&good, EXAMPLE).unwrap();
    assert_eq!(Config::load(&good).unwrap(), parse(EXAMPLE));

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "limits:\n  flows: 1\n").unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:10: limits.flows: 1 is out of range: must be between 1024 and 16777216",
            bad.display()
        )
    );

    let missing = dir.join("missing.yaml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!((e.line, e.column), (None, None));
    assert_eq!(e.origin, missing.display().to_string());
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn error_display_without_location() {
    let e = ConfigError {
        origin: "c.yaml".into(),
        line: None,
        column: None,
        field: "limits.flows".into(),
        message: "bad".into(),
    };
    assert_eq!(e.to_string(), "c.yaml: limits.flows: bad");
}
