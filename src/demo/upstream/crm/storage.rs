//! The CRM's stored files, as Rails' ActiveStorage serves them: a message's
//! attachment names a `data_url` on the CRM's own host
//! (`/rails/active_storage/blobs/redirect/<signed id>/<filename>`), which
//! redirects to the file (`/rails/active_storage/disk/<key>/<filename>`).
//! Neither takes the API token: the signed id and the key are the
//! capability, as in Rails.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::super::data::{self, Attachment};
use super::super::http::{empty, Response};

/// What signs the demo's blob ids and disk keys (Rails' `secret_key_base`).
const SECRET: &str = "demo-active-storage-secret";

/// An attachment as Chatwoot renders it in a message.
pub(super) fn attachment_json(origin: &str, a: &Attachment) -> Value {
    let url = format!(
        "{origin}/rails/active_storage/blobs/redirect/{}/{}",
        signed_id(a.id),
        a.filename
    );
    json!({
        "id": a.id,
        "message_id": a.message_id,
        "file_type": "image",
        "account_id": data::ACCOUNT_ID,
        "extension": null,
        "data_url": url,
        "thumb_url": url,
        "file_size": a.bytes.len(),
        "width": null,
        "height": null,
    })
}

/// Answers `GET /rails/active_storage/…` (`rest`: the segments after it).
/// A forged or unknown id, or another path, is a 404.
pub(super) fn serve(origin: &str, rest: &[&str]) -> Response {
    match rest {
        ["blobs", "redirect", signed, filename] => {
            match data::attachments()
                .iter()
                .find(|a| signed_id(a.id) == *signed && a.filename == *filename)
            {
                Some(a) => {
                    let mut response = empty(StatusCode::FOUND);
                    let location = format!(
                        "{origin}/rails/active_storage/disk/{}/{}",
                        key(a.id),
                        a.filename
                    );
                    if let Ok(v) = HeaderValue::from_str(&location) {
                        response.headers_mut().insert(header::LOCATION, v);
                    }
                    response
                }
                None => empty(StatusCode::NOT_FOUND),
            }
        }
        ["disk", k, filename] => {
            match data::attachments()
                .iter()
                .find(|a| key(a.id) == *k && a.filename == *filename)
            {
                Some(a) => {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(a.bytes)));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(a.content_type),
                    );
                    response
                }
                None => empty(StatusCode::NOT_FOUND),
            }
        }
        _ => empty(StatusCode::NOT_FOUND),
    }
}

/// A blob's signed id: its id and a digest only the CRM can make.
fn signed_id(id: u64) -> String {
    let digest = Sha256::digest(format!("blob:{id}:{SECRET}"));
    format!(
        "{}--{}",
        URL_SAFE_NO_PAD.encode(format!("{{\"blob_id\":{id}}}")),
        hex::encode(&digest[..10])
    )
}

/// Where the file is on the storage service.
fn key(id: u64) -> String {
    hex::encode(&Sha256::digest(format!("disk:{id}:{SECRET}"))[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_url_redirects_to_its_file_and_forgeries_do_not() {
        let a = &data::attachments()[0];
        let json = attachment_json("http://crm", a);
        let url = json["data_url"].as_str().unwrap_or_default();
        let path = url
            .strip_prefix("http://crm/rails/active_storage/")
            .unwrap_or_default();
        let parts: Vec<&str> = path.split('/').collect();
        let redirect = serve("http://crm", &parts);
        assert_eq!(redirect.status(), StatusCode::FOUND);
        let location = redirect.headers()[header::LOCATION]
            .to_str()
            .unwrap_or_default();
        let file_path = location
            .strip_prefix("http://crm/rails/active_storage/")
            .unwrap_or_default();
        let file_parts: Vec<&str> = file_path.split('/').collect();
        let file = serve("http://crm", &file_parts);
        assert_eq!(file.status(), StatusCode::OK);
        assert_eq!(file.headers()[header::CONTENT_TYPE], a.content_type);

        let mut forged = parts.clone();
        let other = signed_id(a.id + 1);
        forged[2] = &other;
        assert_eq!(serve("http://crm", &forged).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            serve("http://crm", &["disk", "00", a.filename]).status(),
            StatusCode::NOT_FOUND
        );
    }
}
