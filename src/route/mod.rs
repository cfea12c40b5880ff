//! Route matching: which configured route a request belongs to.
//!
//! - [`template`]: path templates (`/{version}/{phone_number_id}/messages`,
//!   `/files/{rest*}`) and their captured [`Params`].
//! - [`table`]: the [`RouteTable`] index, most specific match first, with
//!   ambiguous routes refused when the config snapshot is built.
//!
//! Matching runs on a [`NormalizedPath`](crate::request::NormalizedPath)
//! only, so what is matched is exactly what is forwarded. No match means
//! default deny (404 `no_route`). Pure code: the payload type `T` is the
//! caller's compiled route.

pub mod table;
pub mod template;

pub use table::{never_routed, MethodSet, RouteMatch, RouteTable, TableError};
pub use template::{Params, PathTemplate, TemplateError, MAX_TEMPLATE_SEGMENTS};
