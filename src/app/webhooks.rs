//! What every webhook the server sends shares: the Ed25519 key that signs
//! it (one key in the database, the same on every node and restart,
//! published as a JWK set), the HTTP client that sends it (no redirects, a
//! timeout, and a resolver that refuses the addresses the operator did not
//! allow), and the signed POST itself.
//!
//! A signature is `Webhook-Signature: t=<unix seconds>,kid=<key id>,ed25519=<base64url>`
//! over the bytes `"{t}.{body}"`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::domain::webhook::WebhookPolicy;

/// How long one webhook request may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The key id of a secret key: `ds_` and the RFC 7638 thumbprint of its
/// public JWK.
pub fn key_id(secret: &[u8; 32]) -> String {
    let x = b64(SigningKey::from_bytes(secret).verifying_key().as_bytes());
    let thumbprint = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    format!("ds_{}", b64(&Sha256::digest(thumbprint.as_bytes())))
}

/// The webhook signing key.
pub struct Signer {
    key: SigningKey,
    kid: String,
}

impl Signer {
    /// From stored secret bytes; `None` when they are not 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Option<Signer> {
        let secret: [u8; 32] = secret.try_into().ok()?;
        Some(Signer {
            key: SigningKey::from_bytes(&secret),
            kid: key_id(&secret),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set (`application/jwk-set+json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64(self.key.verifying_key().as_bytes()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }]})
    }

    /// The `Webhook-Signature` header of a body sent at `unix_seconds`.
    pub fn sign(&self, body: &str, unix_seconds: i64) -> String {
        let signature = self.key.sign(format!("{unix_seconds}.{body}").as_bytes());
        format!(
            "t={unix_seconds},kid={},ed25519={}",
            self.kid,
            b64(&signature.to_bytes())
        )
    }
}

/// Resolves host names and keeps only the addresses the policy allows; a
/// name with none left fails to resolve, so nothing is connected.
struct Resolver(WebhookPolicy);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if !policy.lists_host(&host.to_ascii_lowercase()) {
                return Err(format!("{host}: not a host the server allows").into());
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.refuse_address(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let reason = found
                    .first()
                    .and_then(|a| policy.refuse_address(a.ip()))
                    .unwrap_or("the host name has no address");
                return Err(format!("{host}: {reason}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client every webhook is sent with.
pub fn client(policy: &WebhookPolicy) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .dns_resolver(Arc::new(Resolver(policy.clone())))
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the webhook client: {e}"))
}

/// POSTs a JSON body signed now, with `headers` besides; the answer, or why
/// there was none.
pub async fn post_signed(
    client: &reqwest::Client,
    signer: &Signer,
    url: &str,
    body: String,
    headers: &[(&str, &str)],
) -> Result<reqwest::Response, String> {
    let signature = signer.sign(&body, chrono::Utc::now().timestamp());
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-signature", signature);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body).send().await.map_err(|e| {
        // reqwest's Display hides the cause ("error sending request"); the
        // chain names it (refused, timed out, a refused address).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    })
}
