//! The webhook sink: builds Evolution's envelope, signs it, POSTs it through a pooled
//! client within a per-endpoint concurrency limit, and classifies the response.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use url::Url;

use super::jwt::{self, JWT_KEY_HEADER};
use super::retry_after::parse_retry_after;
use super::signing::SigningKey;
use super::ssrf::{
    check_literal, screen_proxied, GuardedResolver, ProxiedTargetError, Proxies, RefusedTarget,
};
use super::target::{SigningScheme, WebhookTarget};
use super::WebhookOptions;
use crate::catalog::EventKind;
use crate::delivery::subscription::{Policy, SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::{Answer, Outcome, Sink, ANSWER_BODY_BYTES};

/// The client could not be built (TLS backend failure).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookSinkError(#[from] reqwest::Error);

/// Delivers events to HTTP endpoints, one request per event.
pub struct WebhookSink {
    client: reqwest::Client,
    options: WebhookOptions,
    /// Which targets go through a proxy (from the environment); those are screened here.
    proxies: Arc<Proxies>,
    /// One semaphore per `host:port`, so one slow endpoint cannot take every connection.
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Each destination URL checked once: parsed, screened and tied to its endpoint's
    /// semaphore, or the permanent reason it cannot be used. Per event this would be a
    /// URL parse, a host check and a map look-up by a formatted key.
    destinations: BoundedCache<Destination>,
    /// Signing keys by secret, decoded and keyed once: one cache per scheme, because the
    /// schemes derive different keys from the same secret.
    standard_keys: BoundedCache<Result<Arc<SigningKey>, String>>,
    linq_keys: BoundedCache<Result<Arc<SigningKey>, String>>,
}

/// A destination URL as `WebhookSink::destination` resolved it.
type Destination = Result<(Url, Arc<Semaphore>), String>;

/// Past this many entries a cache starts over, so keys that came and went (edited
/// webhooks, custom event names with `byEvents`, rotated secrets) cannot grow it forever.
const MAX_CACHED: usize = 4096;

/// Values computed once per string key, forgotten all at once past `MAX_CACHED` entries.
struct BoundedCache<V>(Mutex<HashMap<String, V>>);

impl<V: Clone> BoundedCache<V> {
    fn new() -> Self {
        BoundedCache(Mutex::new(HashMap::new()))
    }

    /// The value for `key`, computed by `make` (outside the lock) when it is not cached.
    fn get_or_insert_with(&self, key: &str, make: impl FnOnce() -> V) -> V {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = lock().get(key) {
            return value.clone();
        }
        let value = make();
        let mut map = lock();
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key.to_owned(), value.clone());
        value
    }
}

impl WebhookSink {
    /// A sink with a keep-alive connection pool and the options' timeout.
    pub fn new(options: WebhookOptions) -> Result<WebhookSink, WebhookSinkError> {
        let proxies = Arc::new(Proxies::from_env(|name| std::env::var(name).ok()));
        // The client proxies exactly what `proxies` says, so the screening in `send_one`
        // and the client's choice of route can never disagree.
        let route = proxies.clone();
        let client = reqwest::Client::builder()
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| {
                route.for_url(url).cloned()
            }))
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout)
            .pool_max_idle_per_host(options.max_concurrency_per_endpoint.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A redirect could lead to an internal address the resolver never sees (an IP
            // literal); Svix and Evolution users expect 3xx to count as a failure anyway.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: options.allow_private_targets,
                trusted: proxies.hosts().into(),
            }))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSink {
            client,
            options,
            proxies,
            endpoints: Mutex::new(HashMap::new()),
            destinations: BoundedCache::new(),
            standard_keys: BoundedCache::new(),
            linq_keys: BoundedCache::new(),
        })
    }

    /// The key `scheme` signs with for `secret`, or why the secret is unusable.
    fn signing_key(&self, scheme: SigningScheme, secret: &str) -> Result<Arc<SigningKey>, String> {
        match scheme {
            SigningScheme::StandardWebhooks => {
                self.standard_keys.get_or_insert_with(secret, || {
                    SigningKey::from_secret(secret)
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
            }
            SigningScheme::Linq => self.linq_keys.get_or_insert_with(secret, || {
                Ok(Arc::new(SigningKey::from_linq_secret(secret)))
            }),
        }
    }

    /// The parsed URL and endpoint limit of `destination`, or why it is refused.
    fn destination(&self, destination: &str) -> Destination {
        self.destinations
            .get_or_insert_with(destination, || match Url::parse(destination) {
                Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                    Err(format!("unsupported URL scheme `{}`", url.scheme()))
                }
                Ok(url) => match refused_literal(&url, self.options.allow_private_targets) {
                    Some(refused) => Err(refused.to_string()),
                    None => {
                        let limit = self.endpoint_limit(&url);
                        Ok((url, limit))
                    }
                },
                Err(e) => Err(format!("invalid webhook URL `{destination}`: {e}")),
            })
    }

    fn endpoint_limit(&self, url: &Url) -> Arc<Semaphore> {
        let key = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(0)
        );
        let permits = self
            .options
            .max_concurrency_per_endpoint
            .clamp(1, Semaphore::MAX_PERMITS);
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        endpoints
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }

    /// Posts one event; `policy` is the subscription's (its timeout and non-retryable
    /// statuses replace the sink's defaults).
    async fn send_one(
        &self,
        target: &WebhookTarget,
        policy: &Policy,
        event: &LoggedEvent,
    ) -> (Outcome, Answer) {
        let destination = destination_url(target, &event.event.event);
        let (url, limit) = match self.destination(&destination) {
            Ok(resolved) => resolved,
            Err(reason) => return (permanent(reason), Answer::default()),
        };
        if !self.options.allow_private_targets && self.proxies.for_url(&url).is_some() {
            match screen_proxied(&url).await {
                Ok(()) => {}
                Err(ProxiedTargetError::Refused(refused)) => {
                    return (permanent(refused.to_string()), Answer::default())
                }
                Err(unresolved) => return (retry(None, unresolved.to_string()), Answer::default()),
            }
        }
        let mut envelope = event.envelope(&self.options.server_url);
        envelope.destination = Some(&destination);
        let body = envelope.to_vec();
        let headers = match headers(target, event, &body, self) {
            Ok(headers) => headers,
            Err(reason) => return (permanent(reason), Answer::default()),
        };
        let Ok(_permit) = limit.acquire_owned().await else {
            return (
                retry(None, "endpoint limiter closed".into()),
                Answer::default(),
            );
        };
        let timeout = policy
            .timeout_ms
            .map_or(self.options.request_timeout, Duration::from_millis);
        let non_retryable = policy
            .non_retryable_status_codes
            .as_deref()
            .unwrap_or(&self.options.non_retryable_status_codes);
        match self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                let hint = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                // Read the (small) body so the connection goes back to the pool, keeping
                // its start for the attempt log.
                let body = drain_kept(response, ANSWER_BODY_BYTES).await;
                let answer = Answer {
                    http_status: Some(status.as_u16()),
                    body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
                };
                (classify(status, hint, non_retryable), answer)
            }
            Err(e) => (classify_error(&e, timeout), Answer::default()),
        }
    }
}

/// The outcome of an HTTP answer; `non_retryable` statuses dead-letter at once.
fn classify(status: StatusCode, hint: Option<Duration>, non_retryable: &[u16]) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::GONE {
        Outcome::Disable {
            reason: "the endpoint answered 410 Gone".into(),
        }
    } else if non_retryable.contains(&code) {
        permanent(format!("HTTP {code} (not retried)"))
    } else {
        retry(hint, format!("HTTP {code}"))
    }
}

/// The outcome of a request that got no answer (`timeout` was the request's).
fn classify_error(e: &reqwest::Error, timeout: Duration) -> Outcome {
    let mut source = e.source();
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RefusedTarget>() {
            return permanent(refused.to_string());
        }
        source = err.source();
    }
    if e.is_timeout() {
        let ms = timeout.as_millis();
        return retry(None, format!("timed out after {ms} ms"));
    }
    if e.is_connect() {
        return retry(None, format!("cannot connect: {}", root_cause(e)));
    }
    retry(None, format!("request failed: {}", root_cause(e)))
}

#[async_trait]
impl Sink for WebhookSink {
    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        self.send_answered(subscription, events)
            .await
            .into_iter()
            .map(|(outcome, _)| outcome)
            .collect()
    }

    async fn send_answered(
        &self,
        subscription: &Subscription,
        events: &[LoggedEvent],
    ) -> Vec<(Outcome, Answer)> {
        let SinkTarget::Webhook(target) = &subscription.target else {
            let reason = "not a webhook subscription".to_owned();
            return events
                .iter()
                .map(|_| (permanent(reason.clone()), Answer::default()))
                .collect();
        };
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(self.send_one(target, &subscription.policy, event).await);
        }
        outcomes
    }
}

/// The URL an event is posted to: the target URL, plus `/{kebab-event}` with `byEvents`
/// (`/messages-upsert`); custom events follow the same rule.
pub fn destination_url<'t>(target: &'t WebhookTarget, event: &str) -> Cow<'t, str> {
    if !target.by_events {
        return Cow::Borrowed(&target.url);
    }
    let kebab = match EventKind::parse(event) {
        Ok(kind) => kind.kebab(),
        Err(_) => event.replace(['.', '_'], "-").to_ascii_lowercase(),
    };
    Cow::Owned(format!("{}/{kebab}", target.url.trim_end_matches('/')))
}

/// Content type, custom headers, Evolution's bearer JWT when the headers hold a `jwt_key`
/// (which is itself never sent) and, with a secret, the signature headers of the target's
/// scheme (the key from `sink`'s caches).
fn headers(
    target: &WebhookTarget,
    event: &LoggedEvent,
    body: &[u8],
    sink: &WebhookSink,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(target.headers.len() + 4);
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &target.headers {
        if name == JWT_KEY_HEADER {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}`"))?;
        map.insert(name, value);
    }
    if let Some(key) = target.headers.get(JWT_KEY_HEADER) {
        // Minted per attempt (Evolution mints per emit): a retry after the token's 10
        // minutes still carries one its receiver accepts. Inserted after the custom
        // headers, so it replaces an `Authorization` among them, as in Evolution.
        let token = jwt::mint(key, chrono::Utc::now().timestamp())?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the minted JWT is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        map.insert(AUTHORIZATION, value);
    }
    let Some(secret) = &target.secret else {
        return Ok(map);
    };
    // The timestamp is the attempt's, so retries stay inside verifiers' tolerance.
    let timestamp = chrono::Utc::now().timestamp();
    let key = sink.signing_key(target.signing, secret)?;
    let signed = match target.signing {
        SigningScheme::StandardWebhooks => {
            let id = event.event.id.to_string();
            let signature = key.sign(&id, timestamp, body);
            [
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ]
        }
        SigningScheme::Linq => [
            ("x-webhook-signature", key.sign_linq(timestamp, body)),
            ("x-webhook-timestamp", timestamp.to_string()),
            ("x-webhook-event", event.event.event.clone()),
        ],
    };
    for (name, value) in signed {
        let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        map.insert(HeaderName::from_static(name), value);
    }
    Ok(map)
}

/// An IP-literal host bypasses DNS, so it is checked here; hostnames are checked by the
/// guarded resolver when connecting.
fn refused_literal(url: &Url, allow_private: bool) -> Option<RefusedTarget> {
    let ip: IpAddr = match url.host()? {
        url::Host::Ipv4(v4) => v4.into(),
        url::Host::Ipv6(v6) => v6.into(),
        url::Host::Domain(_) => return None,
    };
    check_literal(url.host_str().unwrap_or_default(), ip, allow_private).err()
}

/// Reads up to 64 KiB of the response so keep-alive can reuse the connection; a larger
/// body is dropped with its connection. Shared with the other HTTP sinks.
pub(crate) async fn drain(response: reqwest::Response) {
    drain_kept(response, 0).await;
}

/// [`drain`], keeping the body's first `keep` bytes.
async fn drain_kept(mut response: reqwest::Response, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Ok(Some(chunk)) = response.chunk().await {
        if kept.len() < keep {
            let take = (keep - kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..take]);
        }
        read += chunk.len();
        if read > 64 * 1024 {
            break;
        }
    }
    kept
}

/// The innermost error of a failed request (what went wrong, without reqwest's wrapping).
pub(crate) fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &dyn std::error::Error = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn permanent(reason: String) -> Outcome {
    Outcome::Permanent { reason }
}

fn retry(after: Option<Duration>, reason: String) -> Outcome {
    Outcome::Retry { after, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, by_events: bool) -> WebhookTarget {
        WebhookTarget {
            url: url.into(),
            by_events,
            ..WebhookTarget::default()
        }
    }

    #[test]
    fn by_events_appends_the_kebab_suffix() {
        let t = target("https://x.test/hook/", true);
        assert_eq!(
            destination_url(&t, "messages.upsert"),
            "https://x.test/hook/messages-upsert"
        );
        assert_eq!(
            destination_url(&t, "group-participants.update"),
            "https://x.test/hook/group-participants-update"
        );
        assert_eq!(
            destination_url(&t, "linq.message_received"),
            "https://x.test/hook/linq-message-received"
        );
        let plain = target("https://x.test/hook", false);
        assert_eq!(destination_url(&plain, "call"), "https://x.test/hook");
    }

    #[test]
    fn status_codes_are_classified_as_evolution_and_svix_do() {
        let codes = WebhookOptions::default().non_retryable_status_codes;
        let c = |code: u16| classify(StatusCode::from_u16(code).unwrap(), None, &codes);
        assert_eq!(c(200), Outcome::Delivered);
        assert_eq!(c(204), Outcome::Delivered);
        assert!(matches!(c(410), Outcome::Disable { .. }));
        for code in [400, 401, 403, 404, 422] {
            assert!(matches!(c(code), Outcome::Permanent { .. }), "{code}");
        }
        for code in [301, 408, 429, 500, 502, 503, 504] {
            assert!(matches!(c(code), Outcome::Retry { .. }), "{code}");
        }
        let hinted = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            &codes,
        );
        assert_eq!(
            hinted,
            Outcome::Retry {
                after: Some(Duration::from_secs(3)),
                reason: "HTTP 429".into()
            }
        );
    }

    #[test]
    fn linq_scheme_sends_linq_headers_only() {
        let event = LoggedEvent {
            apikey: None,
            message_id: None,
            sequence: 1,
            received_at: chrono::Utc::now(),
            event: crate::envelope::StoredEvent {
                id: uuid::Uuid::nil(),
                instance: "inst".into(),
                event: "messages.update".into(),
                data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
                sender: None,
                source: None,
                raw: None,
                instance_id: None,
                key: None,
                request: None,
                chat: None,
            },
        };
        let linq = WebhookTarget {
            secret: Some("s3cret".into()),
            signing: SigningScheme::Linq,
            ..target("https://x.test/hook", false)
        };
        let body = br#"{"event":"messages.update"}"#;
        let sink = WebhookSink::new(WebhookOptions::default()).unwrap();
        let map = headers(&linq, &event, body, &sink).unwrap();
        let get = |name: &str| map.get(name).unwrap().to_str().unwrap().to_owned();
        let timestamp: i64 = get("x-webhook-timestamp").parse().unwrap();
        assert_eq!(
            get("x-webhook-signature"),
            SigningKey::from_linq_secret("s3cret").sign_linq(timestamp, body)
        );
        assert_eq!(get("x-webhook-event"), "messages.update");
        assert!(map.get("webhook-signature").is_none());

        let standard = WebhookTarget {
            secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..target("https://x.test/hook", false)
        };
        let map = headers(&standard, &event, body, &sink).unwrap();
        assert!(map.get("webhook-signature").is_some());
        assert!(map.get("x-webhook-signature").is_none());
    }

    #[test]
    fn literal_private_targets_are_refused_unless_allowed() {
        let url = Url::parse("http://127.0.0.1:9/x").unwrap();
        assert!(refused_literal(&url, false).is_some());
        assert!(refused_literal(&url, true).is_none());
        let v6 = Url::parse("http://[::1]:9/x").unwrap();
        assert!(refused_literal(&v6, false).is_some());
        let name = Url::parse("http://example.com/x").unwrap();
        assert!(
            refused_literal(&name, false).is_none(),
            "names are checked on connect"
        );
    }
}
