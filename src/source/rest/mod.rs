//! The REST source: HTTP requests paged through an API.

pub(crate) mod fetch;
