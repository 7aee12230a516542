//! Google service-account credentials: the JSON key, and the RS256-signed JWT assertion
//! (RFC 7523 §2.1) that the token endpoint exchanges for an access token. The exchange,
//! caching and refresh are the OAuth 2.0 client's ([`super::oauth2`]).
//!
//! Signing uses `aws-lc-rs`, the crypto backend rustls already links: no second RSA
//! implementation (`jsonwebtoken` would bring `rsa` or `ring` and an ASN.1 parser) for a
//! JWT that is two base64url-encoded JSON objects and one signature.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use serde::Deserialize;

/// Where the access token is requested when neither the config nor the key names a place.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The lifetime Google allows an assertion (and asks for): one hour.
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The JWT bearer grant type (RFC 7523 §2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a service-account JSON key that are used.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A parsed service-account key. Its private key never leaves this struct.
pub struct ServiceAccountKey {
    client_email: String,
    token_uri: String,
    key: KeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads a service-account JSON key. The messages never quote the key's content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|error| {
            format!(
                "is not a Google service-account JSON key (line {}, column {})",
                error.line(),
                error.column()
            )
        })?;
        if let Some(kind) = &file.kind
            && kind != "service_account"
        {
            let kind = if kind.len() <= 40 {
                kind.as_str()
            } else {
                "another kind"
            };
            return Err(format!(
                "is a `{kind}` credential, not a service-account key (\"type\": \"service_account\")"
            ));
        }
        let client_email = file
            .client_email
            .filter(|email| !email.trim().is_empty())
            .ok_or("is not a service-account key: it has no client_email")?;
        let pem = file
            .private_key
            .filter(|key| !key.trim().is_empty())
            .ok_or("is not a service-account key: it has no private_key")?;
        // Never printed; registered in the form the JSON unescapes it to, in case a
        // message ever quotes it (the key file's text as a whole is registered on load).
        crate::redact::register(pem.trim());
        let key = parse_rsa_pem(&pem)?;
        Ok(Self {
            client_email,
            token_uri: file
                .token_uri
                .filter(|uri| !uri.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned()),
            key,
        })
    }

    /// The service account's email (the assertion's issuer).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's token endpoint (the default when it names none).
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The signed assertion for one token request, issued at `now`.
    pub fn assertion(&self, claims: &AssertionClaims<'_>, now: SystemTime) -> Result<String, String> {
        let issued_at = now.duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
        let mut body = serde_json::json!({
            "iss": self.client_email,
            "scope": claims.scopes.join(" "),
            "aud": claims.audience,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME_SECS,
        });
        if let Some(subject) = claims.subject {
            body["sub"] = subject.into();
        }
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let header = encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let signing_input = format!("{header}.{}", encode(body.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the service-account assertion failed".to_owned())?;
        Ok(format!("{signing_input}.{}", encode(&signature)))
    }
}

/// What an assertion asks for besides its issuer.
pub struct AssertionClaims<'a> {
    pub scopes: &'a [String],
    /// The token endpoint the assertion is sent to (`aud`).
    pub audience: &'a str,
    /// The user to act as (`sub`).
    pub subject: Option<&'a str>,
}

/// An RSA private key from PEM: PKCS#8 (`PRIVATE KEY`, what Google issues) or PKCS#1
/// (`RSA PRIVATE KEY`).
fn parse_rsa_pem(pem: &str) -> Result<KeyPair, String> {
    const NOT_PEM: &str = "has a private_key that is not a PEM RSA private key";
    let pem = pem.trim();
    let (label, rest) = pem
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .ok_or(NOT_PEM)?;
    let end = format!("-----END {label}-----");
    let body = rest.trim_end().strip_suffix(end.as_str()).ok_or(NOT_PEM)?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| NOT_PEM.to_owned())?;
    let key = match label {
        "PRIVATE KEY" => KeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => KeyPair::from_der(&der),
        _ => {
            return Err(format!(
                "{NOT_PEM} (it is a PEM `{}`)",
                label.chars().take(30).collect::<String>()
            ));
        }
    };
    key.map_err(|_| format!("{NOT_PEM} (the key was rejected: RSA keys of 2048 to 8192 bits are accepted)"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    /// A fresh 2048-bit key as a service-account JSON key, and its public key (PKCS#1 DER).
    pub(crate) fn test_key(token_uri: Option<&str>) -> (String, Vec<u8>) {
        let pair = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let mut key = serde_json::json!({
            "type": "service_account",
            "project_id": "landfall-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": "extractor@landfall-test.iam.gserviceaccount.com",
            "client_id": "1234567890",
        });
        if let Some(uri) = token_uri {
            key["token_uri"] = uri.into();
        }
        (key.to_string(), pair.public_key().as_ref().to_vec())
    }

    fn decode(part: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()
    }

    #[test]
    fn the_assertion_carries_googles_claims_and_verifies_with_the_public_key() {
        let (json, public) = test_key(None);
        let key = ServiceAccountKey::parse(&json).unwrap();
        assert_eq!(key.token_uri(), DEFAULT_TOKEN_URL);
        let scopes = vec!["https://a.test/one".to_owned(), "https://a.test/two".to_owned()];
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let jwt = key
            .assertion(
                &AssertionClaims {
                    scopes: &scopes,
                    audience: "https://token.test/token",
                    subject: Some("user@example.com"),
                },
                now,
            )
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "extractor@landfall-test.iam.gserviceaccount.com",
                "scope": "https://a.test/one https://a.test/two",
                "aud": "https://token.test/token",
                "iat": 1_800_000_000u64,
                "exp": 1_800_003_600u64,
                "sub": "user@example.com",
            })
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(signed.as_bytes(), &decode(parts[2]))
            .expect("the signature verifies with the key's public key");
        let (_, other_public) = test_key(None);
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &other_public)
                .verify(signed.as_bytes(), &decode(parts[2]))
                .is_err()
        );
        // Without a subject there is no `sub`.
        let jwt = key
            .assertion(
                &AssertionClaims {
                    scopes: &scopes,
                    audience: "https://token.test/token",
                    subject: None,
                },
                now,
            )
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&decode(jwt.split('.').nth(1).unwrap())).unwrap();
        assert!(claims.get("sub").is_none());
    }

    #[test]
    fn keys_that_are_not_service_account_rsa_keys_are_refused_without_quoting_them() {
        let (json, _) = test_key(Some("http://127.0.0.1:9/token"));
        assert_eq!(
            ServiceAccountKey::parse(&json).unwrap().token_uri(),
            "http://127.0.0.1:9/token"
        );
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pem = value["private_key"].as_str().unwrap().to_owned();
        let secret_line = pem.lines().nth(3).unwrap().to_owned();
        let cases = [
            (
                "not json at all: MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ".to_owned(),
                "not a Google service-account JSON key",
            ),
            (
                r#"{"type":"authorized_user","client_id":"x","refresh_token":"1//secret-refresh"}"#.to_owned(),
                "`authorized_user` credential",
            ),
            (
                {
                    let mut v = value.clone();
                    v.as_object_mut().unwrap().remove("client_email");
                    v.to_string()
                },
                "no client_email",
            ),
            (
                {
                    value["private_key"] = pem.replace("PRIVATE KEY", "EC PRIVATE KEY").into();
                    value.to_string()
                },
                "not a PEM RSA private key",
            ),
            (
                {
                    value["private_key"] = pem.replacen(&secret_line, &secret_line[..40], 1).into();
                    value.to_string()
                },
                "not a PEM RSA private key",
            ),
            (
                {
                    value["private_key"] = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ".into();
                    value.to_string()
                },
                "not a PEM RSA private key",
            ),
        ];
        for (text, expected) in cases {
            let error = ServiceAccountKey::parse(&text).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("MIIE") && !error.contains(&secret_line[..20]) && !error.contains("secret-refresh"),
                "{error}"
            );
        }
    }
}
