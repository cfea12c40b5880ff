//! The built binary: `check` exit codes and output.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatwarden"))
}

#[test]
fn check_accepts_the_example_and_rejects_a_broken_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let pki = tempfile::tempdir().expect("dir");
    crate::harness::make_pki(pki.path());
    let out = bin()
        .args(["check", "-c", &format!("{root}/config/chatwarden.yaml")])
        .env("TLS_CERT_FILE", pki.path().join("cert.pem"))
        .env("TLS_KEY_FILE", pki.path().join("key.pem"))
        .env("CRM_API_TOKEN", "x")
        .env("META_ACCESS_TOKEN", "y")
        .env("CHATWARDEN_ADMIN_TOKEN", "admin-token-0123456789")
        .output()
        .expect("run chatwarden");
    assert!(
        out.status.success(),
        "example config should pass check: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "routes:\n  - {name: r, upstream: ghost, path: /x, auth: none}\n",
    )
    .expect("write");
    let out = bin()
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .expect("run chatwarden");
    assert_eq!(out.status.code(), Some(1), "a broken config exits 1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:2:25: route `r` names unknown upstream `ghost`",
            bad.display()
        )),
        "check prints file:line:col: message, got: {stdout}"
    );
}
