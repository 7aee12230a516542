//! Where credentials that change during a run are kept for the next one: the landing
//! zone's `{source}/_state/_auth.json`, beside the checkpoints. The HTTP layer decides what
//! goes in it (a rotated OAuth 2.0 refresh token, encrypted under a key derived from the
//! client secret); this module only stores the document. Because of it, the landing
//! zone's `_state/` is secret-bearing: grant it no wider access than the credentials.

use bytes::Bytes;

use crate::error::Classify;
use crate::http::{CredentialStore, CredentialStoreError, Saved, StoredCredentials};
use crate::landing::{Landing, LandingError, ObjectVersion, layout};
use crate::state::{StateStore, Written};

/// Keeps a source's credential document in its landing zone, through the one writer of
/// `_state/` (conditional writes).
#[derive(Clone, Debug)]
pub struct LandingCredentialStore {
    state: StateStore,
    path: String,
}

impl LandingCredentialStore {
    pub fn new(landing: Landing, source: &str) -> Self {
        Self {
            state: StateStore::new(landing, source),
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

fn encode_version(version: &ObjectVersion) -> String {
    serde_json::to_string(version).expect("versions serialize")
}

#[async_trait::async_trait]
impl CredentialStore for LandingCredentialStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, CredentialStoreError> {
        Ok(self
            .state
            .read_object(&self.path)
            .await
            .map_err(store_error)?
            .map(|(bytes, version)| StoredCredentials {
                document: bytes.to_vec(),
                version: encode_version(&version),
            }))
    }

    async fn save(&self, document: Vec<u8>, expected: Option<&str>) -> Result<Saved, CredentialStoreError> {
        // A version this store did not hand out matches nothing: the save conflicts and
        // the caller reads again.
        let expected = match expected.map(serde_json::from_str::<ObjectVersion>) {
            Some(Ok(version)) => Some(version),
            Some(Err(_)) => return Ok(Saved::Conflict),
            None => None,
        };
        match self
            .state
            .write_object(&self.path, Bytes::from(document), expected.as_ref())
            .await
            .map_err(store_error)?
        {
            Written::Stored(version) => Ok(Saved::Stored(encode_version(&version))),
            Written::Conflict => Ok(Saved::Conflict),
        }
    }
}
