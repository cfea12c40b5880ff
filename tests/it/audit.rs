//! Exactly one audit record per request (invariant 5), including denials,
//! and a hash chain that verifies.

use crate::harness;
use crate::proxy::{self, SECRET};
use crate::upstream::EchoUpstream;

#[tokio::test]
async fn one_record_per_request_with_the_contract_fields() {
    let (gw, _up) = proxy::start().await;
    let client = gw.client();
    let paths = [
        ("/api/v1/accounts/1/contacts?q=+447700900123", 200),
        ("/api/v1/accounts/1/contacts/42", 200),
        ("/no//such/route", 404),
        ("/dead", 502),
    ];
    for (p, status) in paths {
        let resp = client
            .get(gw.url(p))
            .header("authorization", "Bearer not-logged")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), status, "{p}");
    }
    let records = gw.audit_records(paths.len()).await;
    assert_eq!(
        records.len(),
        paths.len(),
        "exactly one record per request: {records:#?}"
    );
    let required = [
        "ts",
        "request_id",
        "config_version",
        "client_ip",
        "method",
        "path",
        "route",
        "upstream",
        "sub",
        "roles",
        "decision",
        "reason",
        "rules",
        "status",
        "bytes_out",
        "duration_ms",
        "redactions",
        "prev_hash",
        "hash",
    ];
    for r in &records {
        for f in required {
            assert!(r.get(f).is_some(), "audit record lacks `{f}`: {r}");
        }
        let line = r.to_string();
        assert!(
            !line.contains(SECRET),
            "the upstream credential must never reach the audit: {line}"
        );
        assert!(
            !line.contains("not-logged"),
            "the client's token must never reach the audit: {line}"
        );
        assert!(
            !line.contains("447700900123"),
            "query strings (customer data) stay out of the audit: {line}"
        );
    }
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[0]["route"], "contacts");
    assert_eq!(records[0]["upstream"], "crm");
    assert_eq!(records[0]["path"], "/api/v1/accounts/1/contacts");
    assert!(records[0]["reason"].is_null());
    assert_eq!(records[2]["decision"], "deny");
    assert_eq!(records[2]["reason"], "no_route");
    assert_eq!(records[2]["status"], 404);
    assert_eq!(
        records[2]["path"], "/no/such/route",
        "the audit shows the normalized path that was decided on"
    );
    assert_eq!(records[3]["decision"], "error");
    assert_eq!(records[3]["reason"], "upstream_error");

    let summary = chatwarden::audit::verify_file(&gw.audit_path).expect("the chain should verify");
    assert_eq!(summary.records, paths.len() as u64);
}

#[tokio::test]
async fn tampering_with_the_audit_file_is_detected() {
    let (gw, _up) = proxy::start().await;
    let client = gw.client();
    for _ in 0..3 {
        let _ = client
            .get(gw.url("/api/v1/accounts/1/contacts"))
            .send()
            .await
            .expect("request");
    }
    let _ = gw.audit_records(3).await;
    let text = std::fs::read_to_string(&gw.audit_path).expect("audit file");
    let edited = text.replacen("\"status\":200", "\"status\":201", 1);
    assert_ne!(text, edited);
    let tampered = gw.dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, edited).expect("write");
    assert!(
        chatwarden::audit::verify_file(&tampered).is_err(),
        "an edited record must fail verification"
    );
}

/// `on_overflow: fail_closed` with an audit target whose writes fail: new
/// requests are refused (503 `audit_unavailable`) before reaching the
/// upstream, `/readyz` says not ready and the metric shows it; once writes
/// work again, traffic resumes by itself.
///
/// The audit path is a named pipe: writes work while the test holds its
/// read end open and fail (EPIPE) once it closes it — a disk that fails
/// and comes back, without sleeping or filling a real disk.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn fail_closed_refuses_requests_while_audit_writes_fail_and_resumes_after() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    const O_NONBLOCK: i32 = 0o4000;
    let pipe_dir = tempfile::tempdir().expect("temp dir");
    let pipe = pipe_dir.path().join("audit.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo should create the pipe");
    let open_reader = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&pipe)
            .expect("open the pipe's read end")
    };
    let drain = |reader: &mut std::fs::File| {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the pipe: {e}"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut reader = open_reader();

    let up = EchoUpstream::start().await;
    let config = proxy::config().replace(
        "audit:\n  path: ${AUDIT}\n  hash_chain: true\n",
        &format!(
            "audit:\n  path: {}\n  hash_chain: true\n  on_overflow: fail_closed\n",
            pipe.display()
        ),
    );
    assert!(
        config.contains("fail_closed"),
        "the test config is rewritten"
    );
    let gw = harness::start(
        &config,
        &[
            ("UP_CRM", up.url()),
            ("UP_DEAD", format!("http://{}", harness::free_addr())),
            ("CRM_KEY", proxy::SECRET.to_string()),
        ],
    )
    .await;
    let client = gw.client();
    let get = || client.get(gw.url("/api/v1/accounts/1/contacts")).send();
    let admin = |path: &'static str| client.get(format!("http://{}{path}", gw.admin)).send();

    // A request's record is submitted in its logging phase, just after the
    // response: poll (bounded) rather than guess how long that takes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let poll = || async move {
        assert!(
            std::time::Instant::now() < deadline,
            "the audit writer should have seen the record by now"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    };

    // Healthy: served and audited.
    assert_eq!(get().await.expect("request").status(), 200);
    let mut trail = String::new();
    while !trail.contains("\"status\":200") {
        assert!(
            gw.handles.audit.flush().await.is_ok(),
            "the record is written"
        );
        trail.push_str(&drain(&mut reader));
        poll().await;
    }
    assert_eq!(admin("/readyz").await.expect("readyz").status(), 200);

    // The audit target fails: the next record cannot be written.
    drop(reader);
    assert_eq!(
        get().await.expect("request").status(),
        200,
        "the failure is not known before a write fails"
    );
    // Its record, once submitted, goes to a pipe without a reader: EPIPE.
    while gw.handles.audit.flush().await.is_ok() {
        poll().await;
    }
    let reached = up.count();
    let resp = get().await.expect("request");
    assert_eq!(resp.status(), 503, "nothing is served unaudited");
    let body: serde_json::Value = resp.json().await.expect("error body");
    assert_eq!(body["reason"], "audit_unavailable", "{body}");
    assert_eq!(
        up.count(),
        reached,
        "the refused request never reached the upstream"
    );
    assert_eq!(
        admin("/readyz").await.expect("readyz").status(),
        503,
        "not ready while refusing"
    );
    let metrics = || async {
        admin("/metrics")
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    };
    let text = metrics().await;
    assert!(text.contains("chatwarden_audit_available 0"), "{text}");
    // Counted in the refused request's logging phase, after its response.
    while !metrics().await.contains("reason=\"audit_unavailable\"} 1") {
        poll().await;
    }

    // The target works again: the next write (here a flush's gap note; in
    // production the refused requests' records or the writer's own retry)
    // succeeds and traffic resumes.
    let mut reader = open_reader();
    assert!(
        gw.handles.audit.flush().await.is_ok(),
        "writes work again once the pipe has a reader"
    );
    assert_eq!(admin("/readyz").await.expect("readyz").status(), 200);
    assert_eq!(
        get().await.expect("request").status(),
        200,
        "traffic resumes"
    );
    assert!(gw.handles.audit.flush().await.is_ok());
    let trail = drain(&mut reader);
    assert!(
        trail.contains("records_lost"),
        "the gap is on record: {trail}"
    );
    let text = metrics().await;
    assert!(text.contains("chatwarden_audit_available 1"), "{text}");
}

/// The proxy test gateway with its audit chain signed by a key made here
/// (`extra` added to its `audit` section), and the public key's path.
async fn signing_gateway(extra: &str) -> (harness::TestGateway, EchoUpstream, std::path::PathBuf) {
    let up = EchoUpstream::start().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let yaml = proxy::config().replace(
        "  hash_chain: true\n",
        &format!("  hash_chain: true\n  signing_key: ${{DIR}}/audit-signing.pem\n{extra}"),
    );
    let gw = harness::start_with_files(
        &yaml,
        &[
            ("UP_CRM", up.url()),
            ("UP_DEAD", format!("http://{}", harness::free_addr())),
            ("CRM_KEY", SECRET.to_string()),
        ],
        &[("audit-signing.pem", &key.serialize_pem())],
    )
    .await;
    let public = gw.dir.path().join("audit-signing.pub.pem");
    std::fs::write(&public, key.public_key_pem()).expect("public key");
    (gw, up, public)
}

/// One request the signing gateway answers (200).
async fn contacts_answered(gw: &harness::TestGateway) {
    let resp = gw
        .client()
        .get(gw.url("/api/v1/accounts/1/contacts"))
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}");
}

/// `chatwarden audit verify FILES --key PUBLIC`: its exit code and output.
fn verify_cli(files: &[std::path::PathBuf], keys: &[&std::path::Path]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chatwarden"));
    cmd.args(["audit", "verify"]).args(files);
    for key in keys {
        cmd.arg("--key").arg(key);
    }
    let out = cmd.output().expect("run chatwarden");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `audit.signing_key`: the running gateway signs checkpoints of the chain,
/// and `chatwarden audit verify --key` (the real binary) tells a file
/// rewritten without the key from the real one, though both chains verify.
#[tokio::test]
async fn signed_checkpoints_show_a_file_rewritten_without_the_key() {
    use std::time::{Duration, Instant};

    let (gw, _up, public) = signing_gateway("  checkpoint_every: 1s\n").await;
    for _ in 0..3 {
        contacts_answered(&gw).await;
    }
    // The file opens with a checkpoint; the writer signs the records
    // within `checkpoint_every`.
    let started = Instant::now();
    while std::fs::read_to_string(&gw.audit_path)
        .expect("audit file")
        .matches(r#""event":"checkpoint""#)
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no checkpoint was written"
        );
        let _ = gw.handles.audit.flush().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let verify = |file: &std::path::Path| verify_cli(&[file.to_path_buf()], &[&public]);
    let (code, out) = verify(&gw.audit_path);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" checkpoint(s) signed by key "), "{out}");

    // An edited status, with every hash recomputed as the file allows.
    let text = std::fs::read_to_string(&gw.audit_path).expect("audit file");
    let lines: Vec<&str> = text.lines().collect();
    let rewritten = rechain(
        lines
            .iter()
            .map(|l| l.replacen("\"status\":200", "\"status\":204", 1)),
    );
    let forged = gw.dir.path().join("forged.jsonl");
    std::fs::write(&forged, rewritten).expect("write");
    assert!(
        chatwarden::audit::verify_file(&forged).is_ok(),
        "the chain alone cannot tell"
    );
    let (code, out) = verify(&forged);
    assert_eq!(code, Some(1), "{out}");
    // The opening checkpoint (line 1) signs the empty chain, which the
    // edits left alone; the next one signs the edited records.
    assert!(lines[0].contains(r#""event":"checkpoint""#), "{}", lines[0]);
    let first_checkpoint = 2 + lines[1..]
        .iter()
        .position(|l| l.contains(r#""event":"checkpoint""#))
        .expect("a checkpoint");
    assert!(
        out.contains(&format!(
            "BROKEN at line {first_checkpoint}: checkpoint: the signature does not match"
        )),
        "{out}"
    );
}

/// A new signing key is a reload: the running writer hands over from the
/// old key to the new in the file, and the file verifies with both public
/// keys (not with the new one alone). Turning signing off is refused.
#[tokio::test]
async fn a_new_signing_key_is_taken_over_by_a_reload() {
    use chatwarden::reload::ReloadOutcome;

    let (gw, _up, old_public) = signing_gateway("  checkpoint_every: 1h\n").await;
    let reloader = gw.handles.reloader.clone().expect("a reloader");
    contacts_answered(&gw).await;
    contacts_answered(&gw).await;
    // Both requests' records (written just after their responses) are in
    // before the key changes.
    assert_eq!(gw.audit_records(3).await.len(), 3);

    // The Secret holding the key is updated.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    std::fs::write(gw.dir.path().join("audit-signing.pem"), key.serialize_pem()).expect("key");
    let new_public = gw.dir.path().join("audit-signing.new.pub.pem");
    std::fs::write(&new_public, key.public_key_pem()).expect("public key");
    let outcome = reloader.reload("test", "").await;
    assert!(
        matches!(outcome, ReloadOutcome::Applied { .. }),
        "{outcome:?}"
    );
    contacts_answered(&gw).await;
    let records = gw.audit_records(7).await;
    let events: Vec<&str> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("request"))
        .collect();
    // Opening checkpoint, two requests, the old key's last checkpoint, the
    // new key's first, the reload, the request after it.
    assert_eq!(
        events,
        [
            "checkpoint",
            "request",
            "request",
            "checkpoint",
            "checkpoint",
            "reload",
            "request"
        ],
        "{records:#?}"
    );
    let key_of = |r: &serde_json::Value| {
        let detail = r["detail"].as_str().expect("detail");
        let at = detail.find("key=").expect("a key id") + 4;
        detail[at..].split(' ').next().expect("id").to_string()
    };
    let (old_id, new_id) = (key_of(&records[3]), key_of(&records[4]));
    assert_ne!(old_id, new_id);
    assert_eq!(key_of(&records[0]), old_id);
    assert!(
        records[3]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("2 records sealed")),
        "the old key signs what it had not: {}",
        records[3]
    );
    assert!(
        records[5]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("test: applied ")
                && d.ends_with(&format!(
                    "; audit signing key {old_id} -> {new_id}, checkpoints every 3600s"
                ))),
        "{}",
        records[5]
    );

    // Clean stop: the new key signs the last request.
    gw.handles
        .audit
        .finish_blocking(std::time::Duration::from_secs(5));
    let (code, out) = verify_cli(
        std::slice::from_ref(&gw.audit_path),
        &[&old_public, &new_public],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("keys {old_id} then {new_id}")),
        "{out}"
    );
    let (code, out) = verify_cli(std::slice::from_ref(&gw.audit_path), &[&new_public]);
    assert_eq!(
        code,
        Some(1),
        "the new key alone cannot vouch for the old: {out}"
    );

    // Signing cannot be turned off by a reload.
    let config = gw.dir.path().join("chatwarden.yaml");
    let yaml = std::fs::read_to_string(&config).expect("config");
    let unsigned: String = yaml
        .lines()
        .filter(|l| !l.contains("signing_key") && !l.contains("checkpoint_every"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, unsigned).expect("write");
    let outcome = reloader.reload("test", "").await;
    let ReloadOutcome::Rejected { problems } = outcome else {
        panic!("turning signing off should be refused: {outcome:?}");
    };
    assert!(
        problems.contains("audit.signing_key added or removed: restart to apply"),
        "{problems}"
    );
}

/// What someone with write access but no key can do: `lines` (edited or
/// not) sealed again into a chain from the genesis hash that verifies.
fn rechain(lines: impl Iterator<Item = String>) -> String {
    use sha2::Digest;
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for line in lines {
        let cut = line.find(r#","prev_hash":"#).expect("chained");
        let canonical = format!("{}}}", &line[..cut]);
        let hash = hex::encode(sha2::Sha256::digest(format!("{prev}\n{canonical}")));
        out.push_str(&format!(
            "{},\"prev_hash\":\"{prev}\",\"hash\":\"{hash}\"}}\n",
            &line[..cut]
        ));
        prev = hash;
    }
    out
}

/// Rotated files verified as a set (oldest first): each continues the one
/// before it, each closed with a signed checkpoint; a file taken out of the
/// middle shows.
#[tokio::test]
async fn a_file_missing_from_a_rotated_set_shows() {
    let (gw, _up, public) = signing_gateway("  rotate: {max_size: 1, keep: 20}\n").await;
    let rotated = || {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(gw.dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit.jsonl."))
            })
            .collect();
        files.sort();
        files
    };
    for n in 1..=3 {
        contacts_answered(&gw).await;
        // Its record is written (then rotated out) after the response:
        // wait for that file before the next request.
        let started = std::time::Instant::now();
        while rotated().len() < n {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "no rotation"
            );
            gw.handles.audit.flush().await.expect("flush");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    let mut files = rotated();
    assert_eq!(files.len(), 3, "{files:?}");
    files.push(gw.audit_path.clone());

    let verify = |files: &[std::path::PathBuf]| verify_cli(files, &[&public]);
    let (code, out) = verify(&files);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().count(), files.len(), "{out}");

    let mut gap = files.clone();
    let removed = gap.remove(1);
    let (code, out) = verify(&gap);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{}: BROKEN: does not continue {}",
            gap[1].display(),
            gap[0].display()
        )),
        "{} taken out: {out}",
        removed.display()
    );
}

/// `chatwarden run` as a child process, on `dir/chatwarden.yaml` (the
/// proxy test config, its audit chain signed with `dir/<key>.pem`), so
/// that it can be stopped the way a process is.
struct Process {
    dir: std::path::PathBuf,
    up: EchoUpstream,
}

/// How a session ends.
#[derive(Clone, Copy)]
enum Stop {
    /// `SIGKILL`: what a crash or an OOM kill leaves.
    Kill,
    /// `SIGTERM`: what systemd and Kubernetes send (pingora: graceful).
    Term,
    /// `SIGINT`: Ctrl-C (pingora: fast, its services are not told).
    Int,
    /// `SIGQUIT`: hand the listeners to a new process (graceful upgrade).
    Quit,
}

impl Process {
    /// A fresh key pair `dir/<name>.pem` and `dir/<name>.pub.pem`; returns
    /// the public key's path.
    fn key(&self, name: &str) -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        std::fs::write(self.dir.join(format!("{name}.pem")), key.serialize_pem()).expect("key");
        let public = self.dir.join(format!("{name}.pub.pem"));
        std::fs::write(&public, key.public_key_pem()).expect("public key");
        public
    }

    fn audit(&self) -> std::path::PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.audit())
            .expect("audit file")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Starts the gateway signing with `key` on `addr` (admin on `admin`);
    /// `upgrade`: as the new process of a graceful upgrade (`run -u`).
    fn start(
        &self,
        key: &str,
        (addr, admin): (std::net::SocketAddr, std::net::SocketAddr),
        upgrade: bool,
    ) -> std::process::Child {
        let config = self.dir.join("chatwarden.yaml");
        std::fs::write(
            &config,
            proxy::config().replace(
                "  hash_chain: true\n",
                &format!(
                    "  hash_chain: true\n  signing_key: ${{DIR}}/{key}.pem\n  checkpoint_every: 1h\n"
                ),
            ),
        )
        .expect("config");
        std::process::Command::new(env!("CARGO_BIN_EXE_chatwarden"))
            .args(["run", "-c"])
            .arg(&config)
            .args(upgrade.then_some("-u"))
            .env("LISTEN", addr.to_string())
            .env("ADMIN", admin.to_string())
            .env("AUDIT", self.audit())
            .env("DIR", &self.dir)
            .env("UP_CRM", self.up.url())
            .env("UP_DEAD", format!("http://{}", harness::free_addr()))
            .env("CRM_KEY", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start chatwarden")
    }

    /// Records of the test route in the audit file.
    fn records(&self) -> usize {
        std::fs::read_to_string(self.audit())
            .unwrap_or_default()
            .matches(r#""route":"contacts""#)
            .count()
    }

    /// `requests` answered 200 at `addr`, trying until the gateway listens.
    async fn serve(&self, addr: std::net::SocketAddr, requests: usize) {
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/api/v1/accounts/1/contacts");
        let started = std::time::Instant::now();
        let mut served = 0;
        while served < requests {
            match client.get(&url).send().await {
                Ok(resp) => {
                    assert_eq!(resp.status(), 200);
                    served += 1;
                }
                Err(_) => {
                    assert!(
                        started.elapsed() < std::time::Duration::from_secs(20),
                        "the gateway did not start"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Waits until `n` records of the test route are in the file.
    async fn wait_records(&self, n: usize) {
        let started = std::time::Instant::now();
        while self.records() < n
            || !std::fs::read_to_string(self.audit())
                .unwrap_or_default()
                .ends_with('\n')
        {
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops `child` with `stop`; a clean stop must exit 0.
    fn stop(child: &mut std::process::Child, stop: Stop) {
        let signal = match stop {
            Stop::Kill => "KILL",
            Stop::Term => "TERM",
            Stop::Int => "INT",
            Stop::Quit => "QUIT",
        };
        let sent = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{signal} {}", child.id()))
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = child.wait().expect("reaped");
        if !matches!(stop, Stop::Kill) {
            assert!(status.success(), "a clean stop exits 0: {status:?}");
        }
    }

    /// Starts the gateway signing with `key`, has it answer `requests`,
    /// and stops it with `stop` (after their records are written, but for
    /// a clean stop, which must write them itself).
    async fn session(&self, key: &str, requests: usize, stop: Stop) {
        let before = self.records();
        let addrs = (harness::free_addr(), harness::free_addr());
        let mut child = self.start(key, addrs, false);
        self.serve(addrs.0, requests).await;
        if let Stop::Kill = stop {
            self.wait_records(before + requests).await;
        }
        Process::stop(&mut child, stop);
        assert_eq!(self.records(), before + requests, "every record written");
    }
}

fn checkpoint(line: &str) -> bool {
    line.contains(r#""event":"checkpoint""#)
}

/// The real binary, stopped the hard way and started again on its own
/// audit file: a file rewritten while it was down is not vouched for by the
/// checkpoints it signs afterwards, and records a crash left unsigned are
/// named as such rather than passed off as signed.
#[tokio::test]
async fn a_restarted_gateway_vouches_only_for_what_it_wrote() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = Process {
        dir: dir.path().to_path_buf(),
        up: EchoUpstream::start().await,
    };
    let public = gw.key("audit-signing");
    let audit = gw.audit();

    // 1. A crash: the opening checkpoint, three records nobody signed.
    gw.session("audit-signing", 3, Stop::Kill).await;
    let first = gw.lines();
    assert_eq!(first.len(), 4, "{first:#?}");
    assert!(checkpoint(&first[0]));
    // Started again, the gateway signs from where it took over: the three
    // stay unvouched (the chain holds), and are named.
    gw.session("audit-signing", 1, Stop::Kill).await;
    let (code, out) = verify_cli(std::slice::from_ref(&audit), &[&public]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("UNVOUCHED: 3 record(s), lines 2-4: vouched for by no signed checkpoint"),
        "{out}"
    );
    assert!(out.contains("the chain holds"), "{out}");

    // 2. Rewritten while stopped: a status edited, the checkpoints
    // dropped, every hash recomputed. The gateway starts on it and signs
    // as usual; none of its checkpoints vouches for the rewritten lines.
    let rewritten = rechain(
        gw.lines()
            .into_iter()
            .filter(|l| !checkpoint(l))
            .map(|l| l.replacen("\"status\":200", "\"status\":204", 1)),
    );
    std::fs::write(&audit, rewritten).expect("rewrite");
    assert!(
        chatwarden::audit::verify_file(&audit).is_ok(),
        "the chain alone cannot tell"
    );
    gw.session("audit-signing", 2, Stop::Kill).await;
    let after = gw.lines();
    assert_eq!(after.len(), 4 + 1 + 2, "{after:#?}");
    let (code, out) = verify_cli(std::slice::from_ref(&audit), &[&public]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("UNVOUCHED: 4 record(s), lines 1-4: vouched for by no signed checkpoint"),
        "{out}"
    );
}

/// `SIGTERM` (systemd, Kubernetes) and `SIGINT` let the writer sign the
/// last records before the process exits, so a restart continues a fully
/// vouched file;
/// and a key rotated between two runs verifies with both public keys.
#[tokio::test]
async fn a_stopped_gateway_signs_its_last_records_and_keys_rotate_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = Process {
        dir: dir.path().to_path_buf(),
        up: EchoUpstream::start().await,
    };
    let old = gw.key("old");
    let new = gw.key("new");
    let audit = gw.audit();

    gw.session("old", 20, Stop::Term).await;
    let lines = gw.lines();
    assert_eq!(lines.len(), 22, "{lines:#?}");
    assert!(
        checkpoint(&lines[21]),
        "the stop signed the records: {}",
        lines[21]
    );
    // Ctrl-C: pingora's fast stop, which tells no service, signs too.
    gw.session("old", 1, Stop::Int).await;
    let lines = gw.lines();
    assert!(checkpoint(&lines[24]), "{}", lines[24]);
    let (code, out) = verify_cli(std::slice::from_ref(&audit), &[&old]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 checkpoint(s) signed by key "), "{out}");
    assert!(out.contains(", 0 record(s) after the last"), "{out}");

    // The key rotated: the next run signs with the new one.
    gw.session("new", 1, Stop::Term).await;
    assert_eq!(gw.lines().len(), 28);
    let (code, out) = verify_cli(std::slice::from_ref(&audit), &[&old, &new]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("6 checkpoint(s) signed by keys "), "{out}");
    assert!(out.contains(" then "), "{out}");
    // One key alone does not vouch for the other's checkpoints.
    let (code, out) = verify_cli(std::slice::from_ref(&audit), &[&new]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("BROKEN at line 1: checkpoint: signed with key "),
        "{out}"
    );
}

/// pingora's graceful upgrade (`run -u`, then `SIGQUIT` to the old
/// process): the old process's last records and the new one's form one
/// chain in the shared audit file, every record vouched for. The new process
/// opened the file at startup; it waits for the old one to let go of it.
#[tokio::test]
async fn a_graceful_upgrade_keeps_one_audit_chain() {
    let dir = tempfile::tempdir().expect("dir");
    let gw = Process {
        dir: dir.path().to_path_buf(),
        up: EchoUpstream::start().await,
    };
    let public = gw.key("audit-signing");
    let addrs = (harness::free_addr(), harness::free_addr());
    let mut old = gw.start("audit-signing", addrs, false);
    gw.serve(addrs.0, 2).await;
    let mut new = gw.start("audit-signing", addrs, true);
    // The old process serves on while the new one waits for the sockets.
    gw.serve(addrs.0, 2).await;
    Process::stop(&mut old, Stop::Quit);
    gw.serve(addrs.0, 2).await;
    Process::stop(&mut new, Stop::Term);
    assert_eq!(gw.records(), 6);
    let (code, out) = verify_cli(&[gw.audit()], &[&public]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(", 0 record(s) after the last"), "{out}");
}
