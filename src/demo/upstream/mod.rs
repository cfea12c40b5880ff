//! Demo upstreams: a Chatwoot-like CRM and a WhatsApp-Cloud-API-like Graph
//! endpoint, each served over HTTP/1.1 on a listener the caller binds (port 0
//! in tests), with the fixed dataset of [`data`].
//!
//! Both demand the credential the gateway is meant to inject, so a request
//! that reaches them without it proves the gateway did not do its job.

pub mod data;

mod crm;
mod http;
mod whatsapp;

use tokio::net::TcpListener;

pub use crm::{CONTACTS_PER_PAGE, CONVERSATIONS_PER_PAGE};

/// What the gateway injects as the `api_access_token` header for the CRM.
pub const DEMO_CRM_API_TOKEN: &str = "demo-crm-token-3f9c1e7a5b2d4c86";

/// The CRM key user's cable token (Chatwoot's `pubsub_token`): the CRM's
/// live updates stream only to a subscription that names it, which the
/// gateway puts in (`subscribe_as`).
pub const DEMO_CRM_PUBSUB_TOKEN: &str = "demoPubsub7Kq2xW9mRtY4vLcN";

/// What the gateway injects as `Authorization: Bearer …` for the Graph API.
pub const DEMO_META_ACCESS_TOKEN: &str = "EAADemoChatwardenMetaAccessToken0000000000";

/// Serve the Chatwoot-like CRM on `listener` until the task is dropped/aborted.
pub async fn serve_crm(listener: TcpListener) {
    crm::run(listener).await;
}

/// Serve the WhatsApp-Cloud-API-like upstream on `listener` until the task
/// is dropped/aborted.
pub async fn serve_whatsapp(listener: TcpListener) {
    whatsapp::run(listener).await;
}
