//! Request hygiene: the checks every request passes before routing.
//!
//! - [`normalize`]: the one canonical path that policy matches and the
//!   upstream receives (invariant 2).
//! - [`hygiene`]: framing that two HTTP parsers could disagree on.
//! - [`method_override`]: requests asking the upstream to treat them as
//!   another method.
//! - [`format_suffix`]: a last path segment the upstream reads as a
//!   format (`search.json`) where a route template sees an id.
//! - [`query`]: query parameters as the upstream's parser would read them,
//!   for scope bindings.
//! - [`client_ip`]: the client address, believing `X-Forwarded-For` only
//!   from trusted proxies (invariant 3).
//! - [`request_id`]: the id that ties the audit record, the error body and
//!   the upstream request together.
//!
//! Pure code: no pingora types, no config loader; the gateway adapts.

pub mod client_ip;
pub mod format_suffix;
pub mod hygiene;
pub mod method_override;
pub mod normalize;
pub mod query;
pub mod request_id;

pub use client_ip::{ClientAddr, IpText, TrustedProxies};
pub use hygiene::{check_framing, FramingError};
pub use normalize::{normalize_path, NormalizedPath, PathError, MAX_PATH_LEN};
