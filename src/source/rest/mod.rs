//! The REST source: HTTP APIs read page by page (`fetch.rs`, [`RestSource`]). Its
//! request building (`extract/request.rs`), pages fetched ahead (`extract/prefetch.rs`)
//! and pagination (`pagination.rs`) are being gathered under `pagination/`; the HTTP
//! client is `http/`.

pub(crate) mod fetch;

pub use fetch::RestSource;
pub(crate) use fetch::interpolate;
