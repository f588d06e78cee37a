//! The Pusher sink: an engine batch as one signed `POST /apps/{app_id}/batch_events`.
//!
//! Why the batch endpoint: the engine's batch is consecutive events of one lane, and Pusher
//! takes up to 10 events per `batch_events` request, so a backlog costs one round trip per
//! 10 events instead of one per event (`/events` takes one event per request for us, since
//! our events go to one channel each). A batch request succeeds or fails as a whole, which
//! is what keeps the lane in order: no later event of the lane can be delivered while an
//! earlier one waits for a retry.

use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Serialize;
use url::Url;

use super::config::PusherConfig;
use super::message::{self, Entry};
use super::settings::check_endpoint;
use super::{sign, PusherApp, PusherTarget};
use crate::delivery::subscription::{SinkTarget, Subscription};
use crate::envelope::LoggedEvent;
use crate::sinks::webhook::{
    check_literal, drain, parse_retry_after, root_cause, screen_proxied, GuardedResolver,
    ProxiedTargetError, Proxies, RefusedTarget,
};
use crate::sinks::{Outcome, Sink};

/// How much of an error answer's body goes into the reason.
const MAX_REASON_BODY: usize = 512;

/// The client could not be built (TLS backend failure).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Pusher HTTP client: {0}")]
pub struct PusherSinkError(#[from] reqwest::Error);

/// Triggers events on Pusher Channels apps: the global one the config describes, or an
/// instance's own.
pub struct PusherSink {
    client: reqwest::Client,
    server_url: String,
    global: Option<PusherApp>,
    request_timeout: Duration,
    max_batch: usize,
    allow_private_targets: bool,
    /// Which targets go through a proxy (from the environment); those are screened here.
    proxies: Arc<Proxies>,
}

/// A `batch_events` body.
#[derive(Serialize)]
struct Batch<'a> {
    batch: &'a [Entry],
}

impl PusherSink {
    /// A sink for the `[pusher]` section; `server_url` is the envelopes' `server_url`.
    pub fn new(config: &PusherConfig, server_url: String) -> Result<PusherSink, PusherSinkError> {
        let request_timeout = Duration::from_millis(config.request_timeout_ms.max(1));
        let proxies = Arc::new(Proxies::from_env(|name| std::env::var(name).ok()));
        // The operator chose the global endpoint and the proxies: they resolve unscreened.
        // An instance's own endpoint goes through the webhook sink's SSRF policy.
        let mut trusted = proxies.hosts();
        if let Some(host) = config
            .global_endpoint
            .as_deref()
            .and_then(|e| Url::parse(e).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            trusted.push(host);
        }
        let route = proxies.clone();
        let client = reqwest::Client::builder()
            .no_proxy()
            .proxy(reqwest::Proxy::custom(move |url| {
                route.for_url(url).cloned()
            }))
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A redirect could lead anywhere, unsigned for its new path anyway.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private_targets,
                trusted: trusted.into(),
            }))
            .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PusherSink {
            client,
            server_url,
            global: config.global_app(),
            request_timeout,
            max_batch: config.max_batch.clamp(1, 10),
            allow_private_targets: config.allow_private_targets,
            proxies,
        })
    }

    /// The app a subscription's events go to, and whether its endpoint is the operator's
    /// (the global app's), or why there is none.
    fn app<'a>(&'a self, target: &'a PusherTarget) -> Result<(&'a PusherApp, bool), String> {
        match (&target.app, &self.global) {
            (Some(app), _) => Ok((app, false)),
            (None, Some(global)) => Ok((global, true)),
            (None, None) => Err("no global Pusher app is configured (PUSHER_GLOBAL_*)".into()),
        }
    }

    /// The URL of `path` on `app`, or why it cannot be used: an instance's endpoint that
    /// is malformed or names an internal address (the resolver screens host names).
    async fn url(&self, app: &PusherApp, trusted: bool, path: &str) -> Result<Url, Outcome> {
        if let (Some(endpoint), false) = (&app.endpoint, trusted) {
            check_endpoint(endpoint)
                .map_err(|rule| permanent(format!("the Pusher endpoint {rule}")))?;
        }
        let url = Url::parse(&format!("{}{path}", app.base_url()))
            .map_err(|e| permanent(format!("invalid Pusher URL for app `{}`: {e}", app.app_id)))?;
        if trusted || self.allow_private_targets {
            return Ok(url);
        }
        if let Some(refused) = refused_literal(&url) {
            return Err(permanent(refusal(&refused)));
        }
        if self.proxies.for_url(&url).is_some() {
            match screen_proxied(&url).await {
                Ok(()) => {}
                Err(ProxiedTargetError::Refused(refused)) => {
                    return Err(permanent(refusal(&refused)))
                }
                Err(unresolved) => return Err(retry(None, unresolved.to_string())),
            }
        }
        Ok(url)
    }

    /// Sends `entries` in one signed `batch_events` request.
    async fn post(&self, app: &PusherApp, trusted: bool, entries: &[Entry]) -> Outcome {
        let path = format!("/apps/{}/batch_events", app.app_id);
        let mut url = match self.url(app, trusted, &path).await {
            Ok(url) => url,
            Err(outcome) => return outcome,
        };
        let body = match serde_json::to_vec(&Batch { batch: entries }) {
            Ok(body) => body,
            Err(e) => return permanent(format!("cannot encode the Pusher batch: {e}")),
        };
        // The timestamp is the attempt's, so a retry stays inside Pusher's 600 s window.
        let signed = sign(
            &path,
            &body,
            &app.key,
            &app.secret,
            chrono::Utc::now().timestamp(),
        );
        url.query_pairs_mut().extend_pairs(signed.params());
        match self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
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
                let answer = if status.is_success() {
                    drain(response).await;
                    String::new()
                } else {
                    read_some(response).await
                };
                classify(status, hint, &answer)
            }
            Err(e) => self.classify_error(&e),
        }
    }

    fn classify_error(&self, e: &reqwest::Error) -> Outcome {
        let mut source = e.source();
        while let Some(err) = source {
            if let Some(refused) = err.downcast_ref::<RefusedTarget>() {
                return permanent(refusal(refused));
            }
            source = err.source();
        }
        // The root cause, not the error itself: its text would carry the signed URL.
        if e.is_timeout() {
            let ms = self.request_timeout.as_millis();
            return retry(None, format!("Pusher timed out after {ms} ms"));
        }
        if e.is_connect() {
            return retry(None, format!("cannot connect to Pusher: {}", root_cause(e)));
        }
        retry(None, format!("Pusher request failed: {}", root_cause(e)))
    }
}

#[async_trait]
impl Sink for PusherSink {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn send(&self, subscription: &Subscription, events: &[LoggedEvent]) -> Vec<Outcome> {
        let app = match &subscription.target {
            SinkTarget::Pusher(target) => self.app(target),
            _ => Err("not a Pusher subscription".to_owned()),
        };
        let (app, trusted) = match app {
            Ok(found) => found,
            Err(reason) => return events.iter().map(|_| permanent(reason.clone())).collect(),
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
        let (mut indices, mut entries) = (Vec::new(), Vec::new());
        for (index, event) in events.iter().enumerate() {
            match message::build(event, &self.server_url, &app.app_id) {
                Ok(entry) => {
                    indices.push(index);
                    entries.push(entry);
                }
                Err(unsendable) => outcomes[index] = Some(permanent(unsendable.to_string())),
            }
        }
        // The engine never hands over more than `max_batch`; should it, the rest go in
        // order, and not at all once a request is to be retried (a later event must not
        // overtake an earlier one of its lane).
        let mut retrying = false;
        for (chunk, at) in entries
            .chunks(self.max_batch)
            .zip(indices.chunks(self.max_batch))
        {
            let outcome = if retrying {
                retry(
                    None,
                    "not sent: an earlier event of the lane is retried".into(),
                )
            } else {
                self.post(app, trusted, chunk).await
            };
            retrying |= matches!(outcome, Outcome::Retry { .. });
            for index in at {
                outcomes[*index] = Some(outcome.clone());
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Delivered))
            .collect()
    }
}

/// Pusher's answer as an outcome: 2xx delivered; 429 retried (after its `Retry-After`);
/// any other 4xx permanent, with the answer's body (what Pusher says is wrong); the rest
/// (5xx, and 3xx, which Pusher does not send) retried.
fn classify(status: StatusCode, hint: Option<Duration>, answer: &str) -> Outcome {
    let code = status.as_u16();
    let said = if answer.is_empty() {
        String::new()
    } else {
        format!(": {answer}")
    };
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        retry(hint, format!("Pusher answered HTTP 429{said}"))
    } else if status.is_client_error() {
        permanent(format!("Pusher answered HTTP {code} (not retried){said}"))
    } else {
        retry(hint, format!("Pusher answered HTTP {code}{said}"))
    }
}

/// An IP-literal host bypasses DNS, so it is checked here; host names are checked by the
/// guarded resolver when connecting.
fn refused_literal(url: &Url) -> Option<RefusedTarget> {
    let ip: IpAddr = match url.host()? {
        url::Host::Ipv4(v4) => v4.into(),
        url::Host::Ipv6(v6) => v6.into(),
        url::Host::Domain(_) => return None,
    };
    check_literal(url.host_str().unwrap_or_default(), ip, false).err()
}

/// Why an internal address is refused, naming this sink's setting (the webhook sink's
/// error names its own).
fn refusal(refused: &RefusedTarget) -> String {
    format!(
        "refusing to send to `{}`: {} is a private, loopback or link-local address (set pusher.allow_private_targets = true to allow)",
        refused.host, refused.addr
    )
}

/// Reads the start of an error answer, for the reason (lossy UTF-8, one line).
async fn read_some(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_REASON_BODY {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text: String = text
        .chars()
        .take(MAX_REASON_BODY)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_owned()
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

    #[test]
    fn answers_are_classified_as_the_contract_says() {
        let c = |code: u16| classify(StatusCode::from_u16(code).unwrap(), None, "why");
        assert_eq!(c(200), Outcome::Delivered);
        assert_eq!(c(202), Outcome::Delivered);
        for code in [400, 401, 403, 404, 413] {
            match c(code) {
                Outcome::Permanent { reason } => {
                    assert!(reason.contains(&code.to_string()) && reason.ends_with(": why"))
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        for code in [429, 500, 502, 503, 504] {
            assert!(matches!(c(code), Outcome::Retry { .. }), "{code}");
        }
        let hinted = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            "",
        );
        assert_eq!(
            hinted,
            Outcome::Retry {
                after: Some(Duration::from_secs(2)),
                reason: "Pusher answered HTTP 429".into()
            }
        );
    }

    #[test]
    fn a_global_target_needs_the_global_app() {
        let sink = PusherSink::new(&PusherConfig::default(), String::new()).unwrap();
        assert!(sink.app(&PusherTarget::default()).is_err());
        let own = PusherTarget {
            app: Some(PusherApp::default()),
        };
        assert!(matches!(sink.app(&own), Ok((_, false))));
    }

    #[tokio::test]
    async fn an_instances_endpoint_may_not_be_internal() {
        let sink = PusherSink::new(&PusherConfig::default(), String::new()).unwrap();
        let app = PusherApp {
            app_id: "1".into(),
            endpoint: Some("http://127.0.0.1:6001".into()),
            ..PusherApp::default()
        };
        match sink.url(&app, false, "/apps/1/batch_events").await {
            Err(Outcome::Permanent { reason }) => {
                assert!(reason.contains("pusher.allow_private_targets"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The operator's own (global) endpoint is trusted.
        assert!(sink.url(&app, true, "/apps/1/batch_events").await.is_ok());
    }
}
