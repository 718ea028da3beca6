//! The REST client of `switchboard mcp`: one agent session talking to a
//! running server. Every request carries the session's identity (and the
//! bearer token); every write carries an `Idempotency-Key` and is sent once
//! more, with the same key, when the network failed — the server answers a
//! repeat from its record, so nothing is published twice.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long one request may take (the stream that wakes waits has none).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server answered instead of a success, or why it could not be
/// reached (`status` 0, code `unreachable`).
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl ApiFailure {
    fn unreachable(what: &str, err: &reqwest::Error) -> Self {
        ApiFailure {
            status: 0,
            code: "unreachable".into(),
            message: format!("{what}: the server cannot be reached ({err})"),
            details: json!({}),
        }
    }

    /// A tool argument the server would refuse, refused here.
    pub fn invalid(field: &str, message: &str) -> Self {
        ApiFailure {
            status: 422,
            code: "validation_failed".into(),
            message: format!("{field} {message}"),
            details: json!({ "field": field }),
        }
    }

    /// The API's error object, `{code, message, details}`.
    pub fn to_json(&self) -> Value {
        json!({
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// An answer's JSON body.
pub struct Answer {
    pub body: Value,
}

/// One request to build: method, path, query, body, `If-Match`.
pub struct Call<'a> {
    method: Method,
    path: String,
    query: Vec<(&'a str, String)>,
    body: Option<Value>,
    if_match: Option<i64>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            if_match: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Call::new(Method::GET, path)
    }

    pub fn query(mut self, name: &'a str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn if_match(mut self, version: Option<i64>) -> Self {
        self.if_match = version;
        self
    }
}

/// The server, and who this process is to it.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: String,
}

/// A path segment, percent-encoded (ids may hold `:` and `.`, channels `/`).
pub fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Api {
    pub fn new(
        base: &str,
        token: Option<String>,
        agent_id: Option<String>,
        session_id: String,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent_id,
            session_id,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request with this session's identity and token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("X-Session-ID", &self.session_id);
        if let Some(agent) = &self.agent_id {
            request = request.header("X-Agent-ID", agent);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `call`; a write is sent once more with the same key if the
    /// network failed.
    pub async fn send(&self, call: Call<'_>) -> Result<Answer, ApiFailure> {
        let write = call.method != Method::GET;
        let key = write.then(|| crate::domain::ids::new_id("mcp-").to_string());
        let what = format!("{} {}", call.method, call.path);
        let mut attempt = 0;
        let response = loop {
            let mut request = self
                .request(call.method.clone(), &call.path)
                .timeout(REQUEST_TIMEOUT);
            if !call.query.is_empty() {
                request = request.query(&call.query);
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            if let Some(version) = call.if_match {
                request = request.header("If-Match", format!("\"{version}\""));
            }
            if let Some(key) = &key {
                request = request.header("Idempotency-Key", key);
            }
            match request.send().await {
                Ok(response) => break response,
                Err(err) if attempt == 0 && (err.is_connect() || err.is_request()) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(err) => return Err(ApiFailure::unreachable(&what, &err)),
            }
        };
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| ApiFailure::unreachable(&what, &err))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Answer { body });
        }
        Err(failure(status, &what, body))
    }
}

fn failure(status: StatusCode, what: &str, body: Value) -> ApiFailure {
    let error = &body["error"];
    ApiFailure {
        status: status.as_u16(),
        code: error["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{}", status.as_u16())),
        message: error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{what}: {status}")),
        details: error.get("details").cloned().unwrap_or_else(|| json!({})),
    }
}
