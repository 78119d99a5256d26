//! Reloads, and what the logs say about files that hold secrets: the file, never its contents.

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use super::{testing::TestPki, *};

const SECRET: &str = "Zm9yYmlkZGVuLXNlY3JldA";

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!("nm-tls-unit-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything logged while `f` runs on this thread, as the daemon's formatter writes it.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || out.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

/// A change to each file: what was changed is logged (by file and problem), never what the
/// files hold; the last good token and configuration stay in use until the files are fixed.
#[test]
fn reloads_keep_the_last_good_files_and_never_log_what_they_hold() {
    let dir = Dir::new();
    let pki = TestPki::write(&dir.0);
    let token_path = dir.0.join("token");
    std::fs::write(&token_path, "first-token\n").unwrap();
    let token = TokenFile::open(&token_path).unwrap();
    assert!(token.current().matches(b"first-token"));
    assert!(!format!("{token:?}").contains("first-token"));

    let files = ServerFiles {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
    };
    let server = ReloadingServer::open(&files).unwrap();
    assert!(server.client_auth());
    let before = server.config.current();

    let key_text = std::fs::read_to_string(&pki.server_key).unwrap();
    let log = logged(|| {
        // A token the file cannot hold, then a key file damaged with the secret in it.
        std::fs::write(&token_path, format!("{SECRET} {SECRET}\n")).unwrap();
        assert!(
            token.current().matches(b"first-token"),
            "the last good token stays"
        );
        std::fs::write(
            &pki.server_key,
            key_text.replacen('\n', &format!("\n{SECRET}\n"), 1),
        )
        .unwrap();
        assert!(
            Arc::ptr_eq(&server.config.current(), &before),
            "the last good config stays"
        );
        // Fixed: both are read again.
        std::fs::write(&token_path, format!("{SECRET}\n")).unwrap();
        assert!(token.current().matches(SECRET.as_bytes()));
        std::fs::write(&pki.server_key, &key_text).unwrap();
        assert!(!Arc::ptr_eq(&server.config.current(), &before));
    });
    assert!(log.contains("keeping the last good ones"), "{log}");
    assert!(log.contains(&token_path.display().to_string()), "{log}");
    assert!(log.contains(&pki.server_key.display().to_string()), "{log}");
    assert!(log.contains("reloaded"), "{log}");
    assert!(!log.contains(SECRET), "a secret was logged:\n{log}");
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!log.contains(key_body), "key material was logged:\n{log}");
}

#[test]
fn pem_errors_name_the_problem_not_the_line() {
    let dir = Dir::new();
    let cases = [
        ("begin", format!("-----BEGIN {SECRET}\n")),
        (
            "base64",
            format!("-----BEGIN PRIVATE KEY-----\n{SECRET}!*\n-----END PRIVATE KEY-----\n"),
        ),
        ("no-end", format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n")),
        ("not-pem", format!("{SECRET}\n")),
    ];
    for (name, text) in cases {
        let p = dir.0.join(name);
        std::fs::write(&p, &text).unwrap();
        assert!(load_key(&p).is_err(), "{name}");
        assert!(load_certs(&p).is_err(), "{name}");
        for e in [
            load_key(&p).err(),
            load_certs(&p).err(),
            load_roots(&p).err(),
            load_token(&p).err(),
        ]
        .into_iter()
        .flatten()
        {
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(!msg.contains(SECRET), "{name}: {msg}");
        }
    }
    // A directory, a missing file and a huge file are clear errors too.
    assert!(
        load_certs(&dir.0)
            .unwrap_err()
            .to_string()
            .contains("not a regular file")
    );
    let missing = dir.0.join("missing.pem");
    assert!(
        load_key(&missing)
            .unwrap_err()
            .to_string()
            .contains("No such file")
    );
    let big = dir.0.join("big.pem");
    std::fs::write(&big, vec![b'a'; (MAX_FILE_BYTES + 1) as usize]).unwrap();
    assert!(
        load_certs(&big)
            .unwrap_err()
            .to_string()
            .contains("is larger than")
    );
}
