//! File sinks: rotation keeps exactly `keep` old files in order and loses no record.

use std::{path::PathBuf, sync::Arc, time::Duration};

use node_monitor::{
    detect::OutputItem,
    sinks::{Renderer, Sinks},
};

use crate::{
    common::temp::{TempDir, lines_of},
    fixture::{a, assert_accounted, file_spec, id_of, render},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotation_keeps_exactly_keep_old_files_in_order() {
    let dir = TempDir::new("rotate");
    let path = dir.path().join("sub/dir/alerts.json");
    // Each rendered line is 100 bytes: 10 per 1000-byte file.
    let render: Renderer = Arc::new(|item, _, out| match item {
        OutputItem::Alert(a) => out.extend_from_slice(format!("{:.<99}", a.id).as_bytes()),
        OutputItem::Flow(_) | OutputItem::Finding(_) => unreachable!(),
    });
    let sinks = Sinks::start(&[file_spec("file", &path, 1000, 3, 1000)], render).unwrap();
    for i in 1..=75 {
        sinks.send(a(format!("rec-{i:05}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].sent, 75, "{stats:?}");
    assert_accounted(&stats[0], 75);

    let ids = |p: PathBuf| -> Vec<u32> {
        let content =
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            content.len() <= 1000,
            "{} has {} bytes",
            p.display(),
            content.len()
        );
        content
            .lines()
            .map(|l| l.trim_end_matches('.')[4..].parse().unwrap())
            .collect()
    };
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    assert_eq!(ids(path.clone()), (71..=75).collect::<Vec<_>>());
    assert_eq!(ids(rotated(1)), (61..=70).collect::<Vec<_>>());
    assert_eq!(ids(rotated(2)), (51..=60).collect::<Vec<_>>());
    assert_eq!(ids(rotated(3)), (41..=50).collect::<Vec<_>>());
    assert!(!rotated(4).exists(), "keep: 3 left a 4th old file");
    let files = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(files, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotation_loses_no_record_and_appends_to_an_existing_file() {
    let dir = TempDir::new("rotate-all");
    let path = dir.path().join("alerts.json");
    std::fs::write(&path, "{\"id\":\"old\",\"format\":\"Ecs\"}\n").unwrap();
    let spec = file_spec("file", &path, 2048, 1000, 100_000);
    let sinks = Sinks::start(std::slice::from_ref(&spec), render()).unwrap();
    let n = 6_000;
    for i in 0..n {
        sinks.send(a(format!("r{i}")));
    }
    let stats = sinks.shutdown(Duration::from_secs(60)).await;
    assert_eq!(stats[0].sent, n, "{stats:?}");
    assert_accounted(&stats[0], n);
    // Oldest first: path.<k> ... path.1, path.
    let mut old: Vec<u32> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("alerts.json.")?
                .parse()
                .ok()
        })
        .collect();
    old.sort_unstable_by(|a, b| b.cmp(a));
    assert!(old.len() > 50, "expected many rotations, got {}", old.len());
    let mut all = Vec::new();
    for k in &old {
        let f = lines_of(&PathBuf::from(format!("{}.{k}", path.display())));
        assert!(f.iter().map(|l| l.len() + 1).sum::<usize>() <= 2048);
        all.extend(f);
    }
    all.extend(lines_of(&path));
    let got: Vec<String> = all.iter().map(|l| id_of(l)).collect();
    let want: Vec<String> = std::iter::once("old".to_owned())
        .chain((0..n).map(|i| format!("r{i}")))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "records lost, duplicated or out of order across rotation"
    );
}
