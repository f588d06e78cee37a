//! The HTTP client every operator command shares: where the server is, which key to send
//! (resolved once, the same way for every command), and the server's error envelope turned
//! into an error a person can read.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::CliError;

/// The server URL `--url` defaults to (the server's own default `server.listen`).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Where `serve` keeps the key it generates when none is configured, relative to the
/// working directory (the default data dir), so that a command run next to the server finds it.
const STORED_KEY: &str = "data/api-key";

/// How long an ordinary request may take; a server slower than this is reported, not
/// waited for forever. Long polls pass their own.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The server and key options of every command that talks to a running server.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Server URL.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,
    /// API key: the global key, or an instance token (sees only its instance). Default:
    /// AUTHENTICATION_API_KEY, or the key the server stored in ./data/api-key.
    #[arg(long, env = "AUTHENTICATION_API_KEY", hide_env_values = true)]
    pub apikey: Option<String>,
}

impl ServerArgs {
    /// The key to send: `--apikey` (or its environment variable), else the stored one.
    pub fn key(&self) -> Result<String, CliError> {
        if let Some(key) = &self.apikey {
            return Ok(key.clone());
        }
        std::fs::read_to_string(Path::new(STORED_KEY))
            .map(|k| k.trim().to_string())
            .map_err(|source| CliError::NoKey {
                path: STORED_KEY,
                source,
            })
    }
}

/// `id` as one path segment: subscription ids hold `:` (named webhooks) and could hold
/// anything else, so every byte outside the unreserved set is percent-encoded.
pub fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'@' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A connection to one server with one key.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// A client for the server and key `args` name.
    pub fn new(args: &ServerArgs) -> Result<Client, CliError> {
        let key = args.key()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: args.url.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// GET `path` with `query`, authenticated; the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.get_within(path, query, REQUEST_TIMEOUT).await
    }

    /// GET like [`Client::get`], with its own timeout (a long poll waits longer).
    pub async fn get_within(
        &self,
        path: &str,
        query: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Value, CliError> {
        let request = self
            .http
            .get(self.url(path))
            .header("apikey", &self.key)
            .query(query)
            .timeout(timeout);
        self.send("GET", path, request).await
    }

    /// POST `body` as JSON to `path`, authenticated; the JSON body of a 2xx answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let request = self
            .http
            .post(self.url(path))
            .header("apikey", &self.key)
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        self.send("POST", path, request).await
    }

    /// Every item of a paginated list route (`?page=&limit=`, answering
    /// `{field: [...], pagination: {totalPages}}`), all pages in order.
    pub async fn all_pages(&self, path: &str, field: &str) -> Result<Vec<Value>, CliError> {
        self.all_pages_with(path, field, &[]).await
    }

    /// [`Client::all_pages`] with more query parameters.
    pub async fn all_pages_with(
        &self,
        path: &str,
        field: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut page = 1u64;
        loop {
            let mut params = query.to_vec();
            params.push(("page", page.to_string()));
            params.push(("limit", "100".to_string()));
            let body = self.get(path, &params).await?;
            let Some(list) = body[field].as_array() else {
                return Err(CliError::Unexpected {
                    what: format!("GET {path}: no `{field}` list in {body}"),
                });
            };
            items.extend(list.iter().cloned());
            let pages = body["pagination"]["totalPages"].as_u64().unwrap_or(1);
            if page >= pages {
                return Ok(items);
            }
            page += 1;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        method: &'static str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, CliError> {
        let url = self.url(path);
        let response = request
            .send()
            .await
            .map_err(|source| CliError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| CliError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if !status.is_success() {
            return Err(CliError::Api(ApiFailure::from_answer(
                method,
                path,
                status.as_u16(),
                body,
                &text,
            )));
        }
        body.ok_or_else(|| CliError::Unexpected {
            what: format!("{method} {url} answered {status} with a body that is not JSON"),
        })
    }
}

/// A non-2xx answer, read from the server's envelope
/// (`{"error":{"status","code","message"},"success":false}`) when it sent one.
#[derive(Debug)]
pub struct ApiFailure {
    /// `GET`, `POST`.
    pub method: &'static str,
    /// The route called.
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// The envelope's stable code, when the body was the envelope.
    pub code: Option<u64>,
    /// The envelope's message, or the start of whatever else the body was.
    pub message: String,
    /// The body as JSON, when it was JSON (printed as it is for `--json`).
    pub body: Option<Value>,
}

impl ApiFailure {
    fn from_answer(
        method: &'static str,
        path: &str,
        status: u16,
        body: Option<Value>,
        text: &str,
    ) -> ApiFailure {
        let envelope = body.as_ref().map(|b| &b["error"]);
        let code = envelope.and_then(|e| e["code"].as_u64());
        let message = match envelope.and_then(|e| e["message"].as_str()) {
            Some(message) => message.to_string(),
            // Not our envelope (a proxy's page, say): enough of it to recognise.
            None => text
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        };
        ApiFailure {
            method,
            path: path.to_string(),
            status,
            code,
            message,
            body,
        }
    }
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        write!(
            f,
            "{} {} answered {} {reason}",
            self.method, self.path, self.status
        )?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_path_segment() {
        assert_eq!(segment("linq:0b6f-9a"), "linq:0b6f-9a");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
