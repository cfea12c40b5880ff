//! A WhatsApp-Cloud-API-like Graph endpoint: message sending, templates,
//! phone numbers and media, in the shapes of
//! `specs/whatsapp-business-api-v23.0.yaml`.
//!
//! Like Meta's, its answers carry absolute links to itself: a list's
//! `paging.next`, and the download `url` of a media item (Meta's media host,
//! here the same server), which takes the same access token. Through the
//! gateway, those lead back through the gateway (`links`).
//!
//! Errors follow the Graph API: a JSON `{"error":{message,type,code,…}}`
//! body, HTTP 401 for a bad token, and HTTP 400 with code 100 for bad
//! parameters and for ids that name no object (Meta's subcode 33). Nothing
//! is delivered anywhere: a send is validated and answered with a fresh
//! message id from a per-server counter.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::data::{self, BusinessNumber, Template};
use super::http::{serve, Request, Response};
use super::DEMO_META_ACCESS_TOKEN;

/// Serves the Graph endpoint on `listener` until the future is dropped.
pub(super) async fn run(listener: TcpListener) {
    let origin = listener
        .local_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let graph = Graph {
        sent: AtomicU64::new(0),
        origin,
    };
    serve(listener, move |req| graph.handle(req)).await;
}

/// The message types the Cloud API sends; each names the body field that
/// carries its content.
const MESSAGE_TYPES: &[&str] = &[
    "text",
    "template",
    "image",
    "audio",
    "document",
    "video",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "reaction",
];

/// Meta's support-ticket correlation id; fixed, as nothing is traced.
const FBTRACE_ID: &str = "AchatwardenDemoTrace";

/// Fixed paging cursors of a list that fits on one page.
const CURSORS: (&str, &str) = ("MAZDZD", "MjQZD");

/// How long a media download URL works, as Meta's (five minutes).
const MEDIA_URL_SECONDS: u64 = 300;

struct Graph {
    /// Messages accepted so far; numbers the message ids.
    sent: AtomicU64,
    /// `http://127.0.0.1:port`: where its own links point.
    origin: String,
}

/// A Graph API error, rendered as Meta renders it.
struct GraphError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: u32,
    subcode: Option<u32>,
}

impl Graph {
    fn handle(&self, req: &Request) -> Response {
        self.route(req)
            .unwrap_or_else(|error| error.into_response())
    }

    fn route(&self, req: &Request) -> Result<Response, GraphError> {
        let token = req
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "));
        if token != Some(DEMO_META_ACCESS_TOKEN) {
            return Err(GraphError {
                status: StatusCode::UNAUTHORIZED,
                message: "Invalid OAuth access token.".to_owned(),
                kind: "OAuthException",
                code: 190,
                subcode: None,
            });
        }
        let segments = req.segments();
        if segments == ["whatsapp_business", "attachments"] && req.method == Method::GET {
            return download(req);
        }
        let (version, node, edge) = match segments.as_slice() {
            [version, node] => (*version, *node, None),
            [version, node, edge] => (*version, *node, Some(*edge)),
            _ => return Err(unsupported(&req.method, segments.first().copied())),
        };
        if !is_version(version) {
            return Err(invalid_parameter(
                "Invalid version format. Use format like 'v23.0'",
            ));
        }
        let method = &req.method;
        if let Some(media) = data::media_item(node) {
            let other_number = req
                .query("phone_number_id")
                .is_some_and(|n| n != media.phone_number_id);
            return match edge {
                None if method == Method::GET && !other_number => Ok(ok(self.media_json(media))),
                _ => Err(unsupported(method, Some(node))),
            };
        }
        if let Some(number) = data::business_number(node) {
            return match edge {
                None if method == Method::GET => Ok(ok(phone_number_fields(number, req))),
                Some("messages") if method == Method::POST => self.send(req),
                _ => Err(unsupported(method, Some(node))),
            };
        }
        if node == data::WABA_ID {
            return match edge {
                Some("phone_numbers") if method == Method::GET => Ok(ok(json!({
                    "data": data::business_numbers().iter().map(phone_number_json).collect::<Vec<_>>(),
                    "paging": paging(),
                }))),
                Some("message_templates") if method == Method::GET => {
                    let name = req.query("name");
                    let templates: Vec<&Template> = data::templates()
                        .iter()
                        .filter(|t| name.is_none_or(|n| t.name == n))
                        .collect();
                    self.page(req, &templates, |t| template_json(t))
                }
                _ => Err(unsupported(method, Some(node))),
            };
        }
        Err(unsupported(method, Some(node)))
    }

    /// One page of `items` (`limit`, default 25, and the `after` cursor of
    /// the page before), with Graph's `paging`: its `next` an absolute link
    /// to the page after, when there is one.
    fn page<T>(
        &self,
        req: &Request,
        items: &[T],
        render: impl Fn(&T) -> Value,
    ) -> Result<Response, GraphError> {
        let limit = match req.query("limit") {
            None => 25,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    invalid_parameter("(#100) Param limit must be a number between 1 and 1000")
                })?,
        };
        let from = match req.query("after") {
            None => 0,
            Some(cursor) => decode_cursor(cursor)
                .filter(|n| *n <= items.len())
                .ok_or_else(|| invalid_parameter("(#100) Invalid after cursor"))?,
        };
        let to = (from + limit).min(items.len());
        let slice = items.get(from..to).unwrap_or_default();
        let mut paging = if from == 0 && to == items.len() {
            paging()
        } else {
            json!({ "cursors": { "before": encode_cursor(from), "after": encode_cursor(to) } })
        };
        if to < items.len() {
            let mut query: Vec<String> = vec![format!("limit={limit}")];
            if let Some(name) = req.query("name") {
                query.push(format!("name={name}"));
            }
            query.push(format!("after={}", encode_cursor(to)));
            paging["next"] = json!(format!("{}{}?{}", self.origin, req.path, query.join("&")));
        }
        Ok(ok(json!({
            "data": slice.iter().map(render).collect::<Vec<_>>(),
            "paging": paging,
        })))
    }

    /// `GET /{version}/{media_id}`: the item and its download URL, valid
    /// for five minutes.
    fn media_json(&self, media: &data::Media) -> Value {
        let expires = unix_now() + MEDIA_URL_SECONDS;
        json!({
            "messaging_product": "whatsapp",
            "url": format!(
                "{}/whatsapp_business/attachments/?mid={}&ext={expires}&hash={}",
                self.origin,
                media.id,
                media_hash(media.id, expires)
            ),
            "mime_type": media.mime_type,
            "sha256": hex::encode(Sha256::digest(media.bytes)),
            "file_size": media.bytes.len().to_string(),
            "id": media.id,
        })
    }

    /// `POST /{version}/{phone_number_id}/messages`.
    fn send(&self, req: &Request) -> Result<Response, GraphError> {
        let body = match req.json() {
            Ok(Value::Object(body)) => body,
            Ok(_) | Err(_) => {
                return Err(invalid_parameter(
                    "(#100) The request body must be a JSON object.",
                ))
            }
        };
        match body.get("messaging_product").and_then(Value::as_str) {
            Some("whatsapp") => {}
            Some(other) => {
                return Err(invalid_parameter(&format!(
                    "(#100) Param messaging_product must be one of {{WHATSAPP}} - got \"{other}\"."
                )))
            }
            None => return Err(required("messaging_product")),
        }
        // Read receipts and typing indicators go to the same edge.
        if body.get("status").and_then(Value::as_str) == Some("read") {
            return match body.get("message_id").and_then(Value::as_str) {
                Some(_) => Ok(ok(json!({ "success": true }))),
                None => Err(required("message_id")),
            };
        }
        let to = body
            .get("to")
            .and_then(Value::as_str)
            .ok_or_else(|| required("to"))?;
        let wa_id: String = to.chars().filter(char::is_ascii_digit).collect();
        if !(7..=15).contains(&wa_id.len()) {
            return Err(invalid_parameter(
                "(#100) Param to must be a valid phone number.",
            ));
        }
        // Meta defaults the type to text when it is left out.
        let kind = body.get("type").and_then(Value::as_str).unwrap_or("text");
        if !MESSAGE_TYPES.contains(&kind) {
            return Err(invalid_parameter(&format!(
                "(#100) Param type must be one of {{{}}} - got \"{kind}\".",
                MESSAGE_TYPES.join(", ").to_uppercase()
            )));
        }
        let content = match body.get(kind) {
            Some(Value::Object(content)) => content,
            _ => return Err(required(kind)),
        };
        match kind {
            "text" if !content.get("body").is_some_and(Value::is_string) => {
                return Err(required("text['body']"))
            }
            "template" => {
                find_template(content)?;
            }
            _ => {}
        };
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let mut message = Map::new();
        message.insert(
            "id".to_owned(),
            json!(format!("wamid.HBgL{wa_id}FQIAERgS{n:016X}")),
        );
        if kind == "template" {
            message.insert("message_status".to_owned(), json!("accepted"));
        }
        Ok(ok(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": wa_id }],
            "messages": [message],
        })))
    }
}

impl GraphError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("message".to_owned(), json!(self.message));
        error.insert("type".to_owned(), json!(self.kind));
        error.insert("code".to_owned(), json!(self.code));
        if let Some(subcode) = self.subcode {
            error.insert("error_subcode".to_owned(), json!(subcode));
        }
        error.insert("fbtrace_id".to_owned(), json!(FBTRACE_ID));
        super::http::json(self.status, &json!({ "error": error }))
    }
}

/// `GET /whatsapp_business/attachments/?mid=…&ext=…&hash=…`: the file, for
/// a URL this server handed out less than five minutes ago.
fn download(req: &Request) -> Result<Response, GraphError> {
    let not_found = || GraphError {
        status: StatusCode::NOT_FOUND,
        message: "The media URL is invalid or has expired; retrieve it again.".to_owned(),
        kind: "OAuthException",
        code: 100,
        subcode: None,
    };
    let media = req
        .query("mid")
        .and_then(data::media_item)
        .ok_or_else(not_found)?;
    let expires = req
        .query("ext")
        .and_then(|e| e.parse::<u64>().ok())
        .filter(|e| *e >= unix_now())
        .ok_or_else(not_found)?;
    if req.query("hash") != Some(media_hash(media.id, expires).as_str()) {
        return Err(not_found());
    }
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
        media.bytes,
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(media.mime_type),
    );
    Ok(response)
}

/// What a download URL's `hash` must be: bound to the item, its expiry
/// and the server's secret.
fn media_hash(id: &str, expires: u64) -> String {
    let digest = Sha256::digest(format!("{id}:{expires}:{DEMO_META_ACCESS_TOKEN}"));
    hex::encode(&digest[..12])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Graph's cursors are opaque; these are an offset in base64url.
fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}

fn ok(body: Value) -> Response {
    super::http::json(StatusCode::OK, &body)
}

fn invalid_parameter(message: &str) -> GraphError {
    GraphError {
        status: StatusCode::BAD_REQUEST,
        message: message.to_owned(),
        kind: "OAuthException",
        code: 100,
        subcode: None,
    }
}

fn required(parameter: &str) -> GraphError {
    invalid_parameter(&format!("(#100) The parameter {parameter} is required."))
}

/// Meta's answer for an id that names no object, or an object that does not
/// take this request.
fn unsupported(method: &Method, node: Option<&str>) -> GraphError {
    let verb = method.as_str().to_lowercase();
    GraphError {
        status: StatusCode::BAD_REQUEST,
        message: format!(
            "Unsupported {verb} request. Object with ID '{}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
            node.unwrap_or("")
        ),
        kind: "GraphMethodException",
        code: 100,
        subcode: Some(33),
    }
}

/// `v` followed by `major.minor`, as in `v23.0`.
fn is_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Checks that a template send names an approved template in an existing
/// language, as Meta does before accepting it.
fn find_template(content: &Map<String, Value>) -> Result<&'static Template, GraphError> {
    let name = content
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| required("template['name']"))?;
    let language = content
        .get("language")
        .and_then(|l| l.get("code"))
        .and_then(Value::as_str)
        .ok_or_else(|| required("template['language']['code']"))?;
    data::templates()
        .iter()
        .find(|t| t.name == name && t.language == language)
        .ok_or_else(|| GraphError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "(#132001) Template name does not exist in the translation: {name} ({language})"
            ),
            kind: "OAuthException",
            code: 132_001,
            subcode: None,
        })
}

fn paging() -> Value {
    json!({ "cursors": { "before": CURSORS.0, "after": CURSORS.1 } })
}

/// A phone number with every field the `phone_numbers` edge returns.
fn phone_number_json(number: &BusinessNumber) -> Value {
    let (country_code, dial_code) = match number.region {
        data::Region::Uk => ("GB", "44"),
        data::Region::De => ("DE", "49"),
    };
    json!({
        "id": number.phone_number_id,
        "display_phone_number": number.display_phone_number,
        "verified_name": number.verified_name,
        "status": "CONNECTED",
        "quality_rating": number.quality_rating,
        "country_code": country_code,
        "country_dial_code": dial_code,
        "code_verification_status": "VERIFIED",
        "name_status": "APPROVED",
        "account_mode": "LIVE",
        "platform_type": "CLOUD_API",
        "messaging_limit_tier": "TIER_1K",
        "is_official_business_account": false,
        "throughput": { "level": "STANDARD" },
    })
}

/// `GET /{version}/{phone_number_id}`: Meta's default fields, or those named
/// in `fields` (plus `id`, which Graph always returns).
fn phone_number_fields(number: &BusinessNumber, req: &Request) -> Value {
    let full = phone_number_json(number);
    let wanted: Vec<&str> = match req.query("fields") {
        Some(fields) => fields.split(',').map(str::trim).collect(),
        None => vec!["display_phone_number", "verified_name", "quality_rating"],
    };
    let mut picked = Map::new();
    picked.insert("id".to_owned(), json!(number.phone_number_id));
    for field in wanted {
        if let Some(value) = full.get(field) {
            picked.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(picked)
}

fn template_json(template: &Template) -> Value {
    json!({
        "name": template.name,
        "parameter_format": "POSITIONAL",
        "components": [
            { "type": "HEADER", "format": "TEXT", "text": template.header },
            {
                "type": "BODY",
                "text": template.body,
                "example": { "body_text": [template.body_example] },
            },
            { "type": "FOOTER", "text": template.footer },
        ],
        "language": template.language,
        "status": "APPROVED",
        "category": template.category,
        "id": template.id,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};

    use super::*;
    use crate::demo::upstream::http::test_client;
    use crate::demo::upstream::serve_whatsapp;

    const BEARER: &str = "Bearer EAADemoChatwardenMetaAccessToken0000000000";
    const ORIGIN: &str = "http://127.0.0.1:8081";

    fn graph() -> Graph {
        Graph {
            sent: AtomicU64::new(0),
            origin: ORIGIN.to_owned(),
        }
    }

    async fn body_of(response: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default()
    }

    async fn get_json(graph: &Graph, target: &str) -> Value {
        let response = graph
            .route(&request(Method::GET, target, ""))
            .unwrap_or_else(|e| panic!("{target}: {} {}", e.status, e.message));
        serde_json::from_slice(&body_of(response).await).expect("json")
    }

    #[tokio::test]
    async fn lists_page_with_absolute_next_links() {
        let graph = graph();
        let base = format!("/v23.0/{}/message_templates", data::WABA_ID);
        let mut names = Vec::new();
        let mut target = format!("{base}?limit=4");
        loop {
            let page = get_json(&graph, &target).await;
            for t in page["data"].as_array().expect("data") {
                names.push(t["id"].clone());
            }
            let Some(next) = page["paging"]["next"].as_str() else {
                break;
            };
            target = next
                .strip_prefix(ORIGIN)
                .unwrap_or_else(|| panic!("next is absolute, on this server: {next}"))
                .to_owned();
            assert!(
                target.starts_with(&base) && target.contains("limit=4"),
                "{target}"
            );
        }
        let all: Vec<Value> = data::templates().iter().map(|t| json!(t.id)).collect();
        assert_eq!(names, all, "every template once, in order");
        let whole = get_json(&graph, &base).await;
        assert!(whole["paging"]["next"].is_null(), "one page: no next");
        for bad in ["?limit=0", "?limit=x", "?after=nope", "?after=b2Zmc2V0Ojk5"] {
            let (status, _) =
                outcome(graph.route(&request(Method::GET, &format!("{base}{bad}"), "")));
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test]
    async fn media_gives_a_download_url_that_takes_the_token_and_expires() {
        let graph = graph();
        let media = &data::media()[0];
        let item = get_json(&graph, &format!("/v23.0/{}", media.id)).await;
        assert_eq!(item["mime_type"], media.mime_type);
        assert_eq!(item["file_size"], media.bytes.len().to_string());
        let url = item["url"].as_str().expect("url");
        let target = url.strip_prefix(ORIGIN).expect("on this server");
        let file = graph
            .route(&request(Method::GET, target, ""))
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(file.headers()["content-type"], media.mime_type);
        assert_eq!(body_of(file).await, media.bytes);

        // Another number's check, a forged hash, an expired URL, no token.
        let other = format!(
            "/v23.0/{}?phone_number_id={}",
            media.id,
            data::DE_PHONE_NUMBER_ID
        );
        assert_eq!(
            outcome(graph.route(&request(Method::GET, &other, ""))).0,
            StatusCode::BAD_REQUEST
        );
        let own = format!(
            "/v23.0/{}?phone_number_id={}",
            media.id, media.phone_number_id
        );
        assert!(graph.route(&request(Method::GET, &own, "")).is_ok());
        let forged = target.replace("hash=", "hash=0");
        assert_eq!(
            outcome(graph.route(&request(Method::GET, &forged, ""))).0,
            StatusCode::NOT_FOUND
        );
        let expired = format!(
            "/whatsapp_business/attachments/?mid={}&ext=1000&hash={}",
            media.id,
            media_hash(media.id, 1000)
        );
        assert_eq!(
            outcome(graph.route(&request(Method::GET, &expired, ""))).0,
            StatusCode::NOT_FOUND
        );
        let bare = Request::new(Method::GET, target, HeaderMap::new(), Bytes::new());
        assert_eq!(outcome(graph.route(&bare)).0, StatusCode::UNAUTHORIZED);
    }

    fn request(method: Method, target: &str, body: &str) -> Request {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static(BEARER));
        Request::new(method, target, headers, Bytes::from(body.to_owned()))
    }

    fn outcome(result: Result<Response, GraphError>) -> (StatusCode, Value) {
        match result {
            Ok(response) => (response.status(), Value::Null),
            Err(error) => {
                let status = error.status;
                let mut body = Map::new();
                body.insert("code".to_owned(), json!(error.code));
                body.insert("message".to_owned(), json!(error.message));
                (status, Value::Object(body))
            }
        }
    }

    fn send(graph: &Graph, body: &str) -> (StatusCode, Value) {
        outcome(graph.route(&request(
            Method::POST,
            &format!("/v23.0/{}/messages", data::UK_PHONE_NUMBER_ID),
            body,
        )))
    }

    #[test]
    fn the_bearer_constant_matches_the_token() {
        assert_eq!(
            BEARER.strip_prefix("Bearer "),
            Some(DEMO_META_ACCESS_TOKEN),
            "the tests should send the demo token"
        );
    }

    #[test]
    fn versions_look_like_graph_versions() {
        for ok in ["v23.0", "v19.1", "v100.25"] {
            assert!(is_version(ok), "{ok} should be a version");
        }
        for bad in ["23.0", "v23", "v.0", "v23.", "vx.0", "v23.0.1"] {
            assert!(!is_version(bad), "{bad} should not be a version");
        }
    }

    #[test]
    fn sends_are_validated_like_meta() {
        let graph = Graph {
            sent: AtomicU64::new(0),
            origin: ORIGIN.to_owned(),
        };
        let text = r#"{"messaging_product":"whatsapp","to":"+44 7700 900101","type":"text","text":{"body":"Hi"}}"#;
        assert_eq!(
            send(&graph, text).0,
            StatusCode::OK,
            "a text send should be accepted"
        );
        let template = r#"{"messaging_product":"whatsapp","to":"4915155512301","type":"template",
            "template":{"name":"order_confirmation","language":{"code":"de"}}}"#;
        assert_eq!(
            send(&graph, template).0,
            StatusCode::OK,
            "an approved template should be accepted"
        );
        assert_eq!(
            graph.sent.load(Ordering::Relaxed),
            2,
            "each accepted send should take one id"
        );

        let cases = [
            ("{oops", StatusCode::BAD_REQUEST, 100),
            (
                r#"{"to":"447700900101","type":"text","text":{"body":"Hi"}}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"sms","to":"447700900101","text":{"body":"Hi"}}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"whatsapp","type":"text","text":{"body":"Hi"}}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"whatsapp","to":"12","text":{"body":"Hi"}}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"whatsapp","to":"447700900101","type":"fax"}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"whatsapp","to":"447700900101","type":"text","text":{}}"#,
                StatusCode::BAD_REQUEST,
                100,
            ),
            (
                r#"{"messaging_product":"whatsapp","to":"447700900101","type":"template","template":{"name":"order_confirmation","language":{"code":"fr"}}}"#,
                StatusCode::NOT_FOUND,
                132_001,
            ),
        ];
        for (body, status, code) in cases {
            let (got_status, error) = send(&graph, body);
            assert_eq!(got_status, status, "{body} should be refused with {status}");
            assert_eq!(error["code"], code, "{body} should carry Graph code {code}");
        }
        assert_eq!(
            graph.sent.load(Ordering::Relaxed),
            2,
            "refused sends should not take ids"
        );
    }

    #[test]
    fn unknown_objects_and_edges_are_graph_errors() {
        let graph = Graph {
            sent: AtomicU64::new(0),
            origin: ORIGIN.to_owned(),
        };
        for (method, target) in [
            (Method::POST, "/v23.0/111111111111111/messages"),
            (Method::GET, "/v23.0/999"),
            (
                Method::DELETE,
                &format!("/v23.0/{}", data::UK_PHONE_NUMBER_ID),
            ),
            (Method::GET, &format!("/v23.0/{}/flows", data::WABA_ID)),
            (Method::GET, "/"),
        ] {
            let (status, error) = outcome(graph.route(&request(method.clone(), target, "")));
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {target} should be a Graph 400"
            );
            assert_eq!(
                error["code"], 100,
                "{method} {target} should carry code 100"
            );
        }
        let (status, error) =
            outcome(graph.route(&request(Method::GET, "/latest/106540352242922", "")));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            error["message"],
            "Invalid version format. Use format like 'v23.0'"
        );
    }

    #[test]
    fn phone_number_fields_can_be_picked() {
        let number = data::business_numbers()[1];
        let req = request(
            Method::GET,
            "/v23.0/209876543210987?fields=verified_name,status,nope",
            "",
        );
        assert_eq!(
            phone_number_fields(&number, &req),
            json!({ "id": "209876543210987", "verified_name": "Acme Retail Deutschland", "status": "CONNECTED" }),
            "only the requested known fields plus id should come back"
        );
    }

    #[tokio::test]
    async fn serves_over_http_and_demands_the_token() {
        let addr = test_client::start(serve_whatsapp).await;
        let messages = format!("/v23.0/{}/messages", data::UK_PHONE_NUMBER_ID);
        let body = br#"{"messaging_product":"whatsapp","recipient_type":"individual","to":"447700900101","type":"text","text":{"body":"Your sofa is reserved."}}"#;
        let json_type = ("content-type", "application/json");

        let missing = test_client::send(addr, "POST", &messages, &[json_type], body).await;
        assert_eq!(
            missing.status, 401,
            "a send without a token should be refused"
        );
        assert_eq!(
            missing.json()["error"]["code"],
            190,
            "the refusal should be OAuth code 190"
        );
        assert_eq!(missing.json()["error"]["type"], "OAuthException");
        let wrong = test_client::send(
            addr,
            "POST",
            &messages,
            &[("authorization", "Bearer nope")],
            body,
        )
        .await;
        assert_eq!(wrong.status, 401, "a wrong token should be refused");

        let auth = ("authorization", BEARER);
        let first = test_client::send(addr, "POST", &messages, &[auth, json_type], body).await;
        assert_eq!(first.status, 200, "a valid send should be accepted");
        let first = first.json();
        assert_eq!(first["messaging_product"], "whatsapp");
        assert_eq!(
            first["contacts"],
            json!([{ "input": "447700900101", "wa_id": "447700900101" }])
        );
        let second = test_client::send(addr, "POST", &messages, &[auth, json_type], body)
            .await
            .json();
        assert_ne!(
            first["messages"][0]["id"], second["messages"][0]["id"],
            "each send should get its own message id"
        );
        assert!(
            first["messages"][0]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("wamid.")),
            "message ids should look like WhatsApp's"
        );

        let bad = test_client::send(
            addr,
            "POST",
            &messages,
            &[auth, json_type],
            b"{\"messaging_product\":",
        )
        .await;
        assert_eq!(bad.status, 400, "malformed JSON should be a 400");
        assert_eq!(bad.json()["error"]["code"], 100);

        let unknown = test_client::send(
            addr,
            "POST",
            "/v23.0/123456789012345/messages",
            &[auth],
            body,
        )
        .await;
        assert_eq!(
            unknown.status, 400,
            "an unknown phone number id should be refused"
        );
        assert_eq!(unknown.json()["error"]["error_subcode"], 33);

        let templates = test_client::send(
            addr,
            "GET",
            &format!(
                "/v23.0/{}/message_templates?name=delivery_update",
                data::WABA_ID
            ),
            &[auth],
            b"",
        )
        .await
        .json();
        let languages: Vec<&str> = templates["data"]
            .as_array()
            .map(|all| all.iter().filter_map(|t| t["language"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            languages,
            vec!["en_GB", "de"],
            "delivery_update should exist in both languages"
        );

        let numbers = test_client::send(
            addr,
            "GET",
            &format!("/v23.0/{}/phone_numbers", data::WABA_ID),
            &[auth],
            b"",
        )
        .await
        .json();
        let ids: Vec<&str> = numbers["data"]
            .as_array()
            .map(|all| all.iter().filter_map(|n| n["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            ids,
            vec![data::UK_PHONE_NUMBER_ID, data::DE_PHONE_NUMBER_ID]
        );

        let uk = test_client::send(
            addr,
            "GET",
            &format!("/v23.0/{}", data::UK_PHONE_NUMBER_ID),
            &[auth],
            b"",
        )
        .await;
        assert_eq!(
            uk.json(),
            json!({
                "id": data::UK_PHONE_NUMBER_ID,
                "display_phone_number": "+44 7700 900100",
                "verified_name": "Acme Retail UK",
                "quality_rating": "GREEN",
            }),
            "the phone number node should answer Meta's default fields"
        );
    }
}
