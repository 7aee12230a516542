//! The REST source: HTTP APIs read page by page (`fetch.rs`, [`RestSource`]), each request
//! built with its bounds and page token (`request.rs`, placing the fields
//! `pagination/inject.rs` gives), pages fetched ahead when the scheme allows it
//! (`prefetch.rs`). Each pagination scheme is `pagination/`; the HTTP client is `http/`.

pub(crate) mod async_job;
pub(crate) mod fetch;
pub(crate) mod prefetch;
pub mod request;

pub use fetch::RestSource;
pub(crate) use fetch::interpolate;
