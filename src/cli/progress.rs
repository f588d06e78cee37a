//! `--wait`: following a backlog down to nothing by polling the server's status API, with an
//! `indicatif` bar on stderr. indicatif draws only when stderr is a terminal, so a script
//! piping the output sees no bar, only the final result on stdout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::segment;
use super::{CliError, Client};

/// How often the status is read: fast enough for the bar to move smoothly, slow enough to
/// cost the server nothing (one small GET).
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long `--wait` may take; `None` waits until done (or Ctrl-C).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    started: Instant,
    limit: Option<Duration>,
}

impl Deadline {
    /// A deadline `seconds` from now; `None` for none.
    pub fn after(seconds: Option<f64>) -> Result<Deadline, CliError> {
        let limit = seconds
            .map(Duration::try_from_secs_f64)
            .transpose()
            .map_err(|_| {
                CliError::Usage("--timeout must be a positive number of seconds".into())
            })?;
        Ok(Deadline {
            started: Instant::now(),
            limit,
        })
    }

    /// An error saying `what` when the deadline has passed.
    fn check(&self, what: impl FnOnce() -> String) -> Result<(), CliError> {
        match self.limit {
            Some(limit) if self.started.elapsed() >= limit => Err(CliError::TimedOut {
                what: what(),
                seconds: limit.as_secs_f64(),
            }),
            _ => Ok(()),
        }
    }
}

/// A bar counting `unit` on stderr (hidden when stderr is not a terminal).
fn bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let template = format!("{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Waits until the subscription has delivered everything up to the log's end: `lag` and
/// `in_flight` both 0 in `GET /subscriptions/{id}`. The bar's length is the highest lag seen
/// (new events raise it), its position how much of that has drained. Returns the last
/// answer. Fails when the subscription is disabled or stopped meanwhile (it would never
/// drain) and at the deadline.
pub async fn until_caught_up(
    client: &Client,
    id: &str,
    deadline: Deadline,
) -> Result<Value, CliError> {
    let path = format!("/subscriptions/{}", segment(id));
    let bar = bar("events");
    let mut peak = 0u64;
    let result = loop {
        let sub = match client.get(&path, &[]).await {
            Ok(sub) => sub,
            Err(e) => break Err(e),
        };
        let status = &sub["status"];
        if status.is_null() {
            break Err(CliError::Unexpected {
                what: format!(
                    "the server reports no delivery status for `{id}`: no engine delivers it \
                     in the process that answered"
                ),
            });
        }
        let count = |field: &str| status[field].as_u64().unwrap_or(0);
        let (lag, in_flight, parked) = (count("lag"), count("in_flight"), count("parked"));
        peak = peak.max(lag);
        bar.set_length(peak);
        bar.set_position(peak - lag);
        bar.set_message(format!("lag {lag}, in flight {in_flight}, parked {parked}"));
        if lag == 0 && in_flight == 0 {
            break Ok(sub);
        }
        if sub["enabled"] == Value::Bool(false) || status["stopped_reason"].is_string() {
            let why = status["stopped_reason"].as_str().unwrap_or("disabled");
            break Err(CliError::Unexpected {
                what: format!("`{id}` stopped with lag {lag}: {why}"),
            });
        }
        if let Err(e) = deadline.check(|| format!("`{id}` still has lag {lag}")) {
            break Err(e);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    bar.finish_and_clear();
    result
}

/// How the redriven dead letters ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedriveOutcome {
    /// Delivered: they left the dead-letter list.
    pub delivered: usize,
    /// Failed again: back in the list with a newer `dead_at_ms`.
    pub failed_again: usize,
}

/// Waits until each of `redriven` (sequence -> its `dead_at_ms` before the redrive) is
/// finished: gone from `GET /subscriptions/{id}/dead-letters` (delivered, the engine removes
/// an entry only then) or in it with a newer `dead_at_ms` (dead-lettered again).
pub async fn until_redriven(
    client: &Client,
    id: &str,
    redriven: &HashMap<u64, i64>,
    deadline: Deadline,
) -> Result<RedriveOutcome, CliError> {
    let path = format!("/subscriptions/{}/dead-letters", segment(id));
    let bar = bar("dead letters");
    bar.set_length(redriven.len() as u64);
    let result = loop {
        let letters = match client.all_pages(&path, "dead_letters").await {
            Ok(letters) => letters,
            Err(e) => break Err(e),
        };
        let now: HashMap<u64, i64> = letters
            .iter()
            .filter_map(|d| Some((d["sequence"].as_u64()?, d["dead_at_ms"].as_i64()?)))
            .collect();
        let mut outcome = RedriveOutcome::default();
        for (sequence, before) in redriven {
            match now.get(sequence) {
                None => outcome.delivered += 1,
                Some(at) if at != before => outcome.failed_again += 1,
                Some(_) => {}
            }
        }
        let finished = outcome.delivered + outcome.failed_again;
        bar.set_position(finished as u64);
        bar.set_message(format!(
            "{} delivered, {} failed again",
            outcome.delivered, outcome.failed_again
        ));
        if finished == redriven.len() {
            break Ok(outcome);
        }
        let pending = redriven.len() - finished;
        if let Err(e) = deadline.check(|| format!("{pending} redriven events still pending")) {
            break Err(e);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    bar.finish_and_clear();
    result
}
