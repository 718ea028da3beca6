use super::*;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

fn settings() -> JwtSettings {
    JwtSettings {
        secret: Some(SECRET.to_owned()),
        leeway: Duration::from_secs(5),
        agent_claim: "sub".into(),
        scopes_claim: "switchboard".into(),
        default_read: vec!["user:{agent}:*".into()],
        ..JwtSettings::default()
    }
}

fn sign(alg: Algorithm, claims: Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_hmac_jwt_names_its_agent_and_gets_the_default_scopes() {
    let verifier = JwtVerifier::new(&settings()).unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, json!({"sub": "alice", "exp": unix_now() + 60}));
        let principal = verifier
            .verify(&token, crate::auth::digest(&token))
            .await
            .unwrap();
        assert_eq!(principal.agent_id.unwrap().as_str(), "alice");
        assert!(principal.read.allows("user:alice:notes"));
        assert!(!principal.read.allows("user:bob:notes"));
        assert!(!principal.write.allows("user:alice:notes"));
    }
}

#[tokio::test]
async fn the_scopes_claim_wins_over_the_defaults() {
    let verifier = JwtVerifier::new(&settings()).unwrap();
    let token = sign(
        Algorithm::HS256,
        json!({"sub": "bob", "exp": unix_now() + 60,
               "switchboard": {"read": ["*"], "write": ["team:{agent}:*"]}}),
    );
    let principal = verifier
        .verify(&token, crate::auth::digest(&token))
        .await
        .unwrap();
    assert!(principal.read.allows("anything"));
    assert!(principal.write.allows("team:bob:x") && !principal.write.allows("team:eve:x"));
}

#[tokio::test]
async fn expired_unsigned_and_confused_jwts_are_refused_with_the_reason() {
    let verifier = JwtVerifier::new(&settings()).unwrap();
    let expired = sign(
        Algorithm::HS256,
        json!({"sub": "a", "exp": unix_now() - 60}),
    );
    let err = verifier
        .verify(&expired, crate::auth::digest(&expired))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let no_exp = sign(Algorithm::HS256, json!({"sub": "a"}));
    assert!(verifier
        .verify(&no_exp, crate::auth::digest(&no_exp))
        .await
        .unwrap_err()
        .to_string()
        .contains("exp"));
    // alg: none, hand-made.
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"sub": "a", "exp": unix_now() + 60}))
    );
    assert!(verifier
        .verify(&none, crate::auth::digest(&none))
        .await
        .is_err());
    // An RS256 header on an HMAC-signed token: no RSA key answers it.
    let rs = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "typ": "JWT"})),
        sign(
            Algorithm::HS256,
            json!({"sub": "a", "exp": unix_now() + 60})
        )
        .split_once('.')
        .unwrap()
        .1
    );
    let err = verifier
        .verify(&rs, crate::auth::digest(&rs))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no key"), "{err}");
}

#[tokio::test]
async fn a_jwt_verified_before_is_taken_from_memory_only_until_it_ends() {
    let verifier = JwtVerifier::new(&JwtSettings {
        leeway: Duration::ZERO,
        ..settings()
    })
    .unwrap();
    let token = sign(
        Algorithm::HS256,
        json!({"sub": "alice", "exp": unix_now() + 2}),
    );
    let first = verifier
        .verify(&token, crate::auth::digest(&token))
        .await
        .unwrap();
    assert_eq!(verifier.verified().len(), 1);
    let again = verifier
        .verify(&token, crate::auth::digest(&token))
        .await
        .unwrap();
    assert_eq!(again.expires, first.expires);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = verifier
        .verify(&token, crate::auth::digest(&token))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn cache_control_sets_how_long_keys_stay_fresh() {
    let mut headers = reqwest::header::HeaderMap::new();
    assert_eq!(max_age(&headers), DEFAULT_MAX_AGE);
    headers.insert("cache-control", "public, max-age=3600".parse().unwrap());
    assert_eq!(max_age(&headers), Duration::from_secs(3600));
    headers.insert("cache-control", "max-age=0".parse().unwrap());
    assert_eq!(max_age(&headers), REFETCH_EVERY);
    headers.insert("cache-control", "no-store".parse().unwrap());
    assert_eq!(max_age(&headers), REFETCH_EVERY);
}
