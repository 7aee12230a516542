//! HMAC request signing: a signature over a canonical string built from the request
//! (method, path, timestamp, body hash, ...) by a configurable template, sent in a header.

use std::time::SystemTime;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::SignedParts;
use crate::http::config::{AuthConfig, HmacAlgorithm, HmacEncoding, HmacSecretEncoding, HmacTimestampFormat};

/// Placeholders the canonical string may use.
pub const CANONICAL_PLACEHOLDERS: &[&str] = &[
    "method",
    "path",
    "query",
    "path_and_query",
    "host",
    "timestamp",
    "body_sha256",
    "body",
    "key_id",
];

/// Placeholders the signature header's value may use.
pub const HEADER_PLACEHOLDERS: &[&str] = &["signature", "key_id", "timestamp"];

/// Checks that every `{name}` in `template` is one of `allowed`.
pub fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed `{{` in `{template}`"));
        };
        let name = &after[..end];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}`; use {}",
                allowed
                    .iter()
                    .map(|name| format!("{{{name}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Replaces each `{name}` in `template` with `value(name)`.
fn render(template: &str, value: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&value(&after[..end]));
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The key bytes of an HMAC secret as the config writes it.
pub fn decode_hmac_secret(secret: &str, encoding: HmacSecretEncoding) -> Result<Vec<u8>, String> {
    match encoding {
        HmacSecretEncoding::Raw => Ok(secret.as_bytes().to_vec()),
        HmacSecretEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .map_err(|_| "the secret is not valid base64 (secret_encoding: base64)".to_owned()),
        HmacSecretEncoding::Hex => {
            hex::decode(secret.trim()).map_err(|_| "the secret is not valid hex (secret_encoding: hex)".to_owned())
        }
    }
}

/// Signs requests as `source.auth` (type `hmac`) says.
#[derive(Debug)]
pub(crate) struct HmacSigner {
    key: Vec<u8>,
    header: String,
    header_value: String,
    key_id: Option<String>,
    algorithm: HmacAlgorithm,
    encoding: HmacEncoding,
    canonical: String,
    timestamp_header: Option<String>,
    timestamp_format: HmacTimestampFormat,
}

impl HmacSigner {
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let AuthConfig::Hmac {
            secret,
            secret_encoding,
            header,
            header_value,
            key_id,
            algorithm,
            encoding,
            canonical,
            timestamp_header,
            timestamp_format,
        } = config
        else {
            unreachable!("HmacSigner::new is called with an hmac config")
        };
        Ok(Self {
            key: decode_hmac_secret(secret.expose(), *secret_encoding)?,
            header: header.clone(),
            header_value: header_value.clone(),
            key_id: key_id.clone(),
            algorithm: *algorithm,
            encoding: *encoding,
            canonical: canonical.clone(),
            timestamp_header: timestamp_header.clone(),
            timestamp_format: *timestamp_format,
        })
    }

    /// The canonical string of a request at `timestamp`.
    pub fn canonical_string(&self, parts: &SignedParts<'_>, timestamp: &str) -> String {
        let url = parts.url;
        let body = parts.body.unwrap_or_default();
        render(&self.canonical, &|name| match name {
            "method" => parts.method.to_owned(),
            "path" => url.path().to_owned(),
            "query" => url.query().unwrap_or_default().to_owned(),
            "path_and_query" => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            },
            "host" => match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            },
            "timestamp" => timestamp.to_owned(),
            "body_sha256" => hex::encode(Sha256::digest(body)),
            "body" => String::from_utf8_lossy(body).into_owned(),
            "key_id" => self.key_id.clone().unwrap_or_default(),
            _ => String::new(),
        })
    }

    /// The signature of `message`, encoded as configured.
    pub fn signature(&self, message: &[u8]) -> String {
        let digest = match self.algorithm {
            HmacAlgorithm::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            HmacAlgorithm::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        };
        match self.encoding {
            HmacEncoding::Hex => hex::encode(digest),
            HmacEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(digest),
        }
    }

    fn timestamp(&self, now: SystemTime) -> String {
        let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        match self.timestamp_format {
            HmacTimestampFormat::Unix => since_epoch.as_secs().to_string(),
            HmacTimestampFormat::UnixMs => since_epoch.as_millis().to_string(),
            HmacTimestampFormat::Rfc3339 => {
                chrono::DateTime::<chrono::Utc>::from(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }
        }
    }

    /// The headers of a signed request: `(name, value, is_secret)`.
    pub fn sign(&self, parts: &SignedParts<'_>, now: SystemTime) -> Vec<(String, String, bool)> {
        let timestamp = self.timestamp(now);
        let signature = self.signature(self.canonical_string(parts, &timestamp).as_bytes());
        let value = render(&self.header_value, &|name| match name {
            "signature" => signature.clone(),
            "key_id" => self.key_id.clone().unwrap_or_default(),
            "timestamp" => timestamp.clone(),
            _ => String::new(),
        });
        let mut headers = vec![(self.header.clone(), value, true)];
        if let Some(name) = &self.timestamp_header {
            headers.push((name.clone(), timestamp, false));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Secret;
    use url::Url;

    fn signer(secret: &str, canonical: &str) -> HmacSigner {
        HmacSigner::new(&AuthConfig::Hmac {
            secret: Secret::new(secret),
            secret_encoding: HmacSecretEncoding::Raw,
            header: "X-Signature".into(),
            header_value: "v1={signature}".into(),
            key_id: Some("key-7".into()),
            algorithm: HmacAlgorithm::Sha256,
            encoding: HmacEncoding::Hex,
            canonical: canonical.into(),
            timestamp_header: Some("X-Timestamp".into()),
            timestamp_format: HmacTimestampFormat::Unix,
        })
        .unwrap()
    }

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let signer = signer("Jefe", "{body}");
        assert_eq!(
            signer.signature(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn canonical_string_follows_the_template() {
        let signer = signer(
            "s3cr3t-hmac",
            "{method}\n{path_and_query}\n{host}\n{timestamp}\n{body_sha256}\n{key_id}",
        );
        let url = Url::parse("https://api.test:8443/v1/orders?limit=5").unwrap();
        let parts = SignedParts {
            method: "POST",
            url: &url,
            body: Some(b"{}"),
        };
        assert_eq!(
            signer.canonical_string(&parts, "1700000000"),
            format!(
                "POST\n/v1/orders?limit=5\napi.test:8443\n1700000000\n{}\nkey-7",
                hex::encode(Sha256::digest(b"{}"))
            )
        );
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let headers = signer.sign(&parts, now);
        let expected = signer.signature(signer.canonical_string(&parts, "1700000000").as_bytes());
        assert_eq!(headers[0], ("X-Signature".into(), format!("v1={expected}"), true));
        assert_eq!(headers[1], ("X-Timestamp".into(), "1700000000".into(), false));
    }

    #[test]
    fn templates_are_checked() {
        assert!(check_template("{method}\n{path}", CANONICAL_PLACEHOLDERS).is_ok());
        let message = check_template("{verb}", CANONICAL_PLACEHOLDERS).unwrap_err();
        assert!(message.contains("unknown placeholder `{verb}`"), "{message}");
        assert!(check_template("{method", CANONICAL_PLACEHOLDERS).is_err());
    }

    #[test]
    fn secrets_decode_by_encoding() {
        assert_eq!(decode_hmac_secret("YWJj", HmacSecretEncoding::Base64).unwrap(), b"abc");
        assert_eq!(decode_hmac_secret("616263", HmacSecretEncoding::Hex).unwrap(), b"abc");
        assert!(decode_hmac_secret("zz", HmacSecretEncoding::Hex).is_err());
    }
}
