//! Where credentials that change during a run are kept for the next one: the landing
//! zone's `{source}/_state/_auth.json`, beside the checkpoints. The HTTP layer decides what
//! goes in it (a rotated OAuth 2.0 refresh token, encrypted under a key derived from the
//! client secret); this module only stores the document. Because of it, the landing
//! zone's `_state/` is secret-bearing: grant it no wider access than the credentials.

use bytes::Bytes;

use crate::error::Classify;
use crate::http::{CredentialStore, CredentialStoreError};
use crate::landing::{Landing, LandingError, layout};

/// Keeps a source's credential document in its landing zone.
#[derive(Clone, Debug)]
pub struct LandingCredentialStore {
    landing: Landing,
    path: String,
}

impl LandingCredentialStore {
    pub fn new(landing: Landing, source: &str) -> Self {
        Self {
            landing,
            path: layout::auth_state(source),
        }
    }
}

fn store_error(error: LandingError) -> CredentialStoreError {
    CredentialStoreError {
        retryable: error.retryable(),
        message: error.to_string(),
    }
}

#[async_trait::async_trait]
impl CredentialStore for LandingCredentialStore {
    async fn load(&self) -> Result<Option<Vec<u8>>, CredentialStoreError> {
        self.landing
            .get(&self.path)
            .await
            .map(|bytes| bytes.map(|bytes| bytes.to_vec()))
            .map_err(store_error)
    }

    async fn save(&self, document: Vec<u8>) -> Result<(), CredentialStoreError> {
        self.landing
            .put_replace(&self.path, Bytes::from(document))
            .await
            .map(|_| ())
            .map_err(store_error)
    }
}
