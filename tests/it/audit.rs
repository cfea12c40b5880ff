//! Exactly one audit record per request (invariant 5), including denials,
//! and a hash chain that verifies.

use crate::proxy::{self, SECRET};

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
