//! `switchyard replay SUB --since TIME | --from-sequence N [--wait]`: moves a subscription's
//! cursor back (`POST /subscriptions/{id}/replay`) so that every event from there is
//! delivered again; `--wait` follows its lag down to 0.

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::client::segment;
use super::progress::{self, Deadline};
use super::{insert, CliError, Client, Output, ServerArgs};

/// Options of `switchyard replay`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["since", "from_sequence"])))]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The subscription id (the ID column of `switchyard subscriptions`).
    #[arg(value_name = "SUB")]
    pub subscription: String,
    /// Deliver again every event received at or after TIME: RFC 3339
    /// (2025-01-31T12:00:00Z), or a span back from now (90s, 15m, 2h, 1d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Deliver again every event from sequence N on (0: the oldest retained event).
    #[arg(long, value_name = "N")]
    pub from_sequence: Option<u64>,
    /// Wait until the subscription has caught up again (lag and in-flight 0), with a
    /// progress bar on stderr.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit 1) after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<f64>,
    /// Print the result as one JSON object: `subscription`, `cursor` (where delivery
    /// restarts), and with --wait the final `status`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let output = Output { json: args.json };
    let result = replay(&args, output).await;
    output.finish(result)
}

async fn replay(args: &Args, output: Output) -> Result<(), CliError> {
    let deadline = Deadline::after(args.timeout)?;
    let client = Client::new(&args.server)?;
    let body = match (&args.since, args.from_sequence) {
        (Some(since), None) => json!({ "since": since_time(since, Utc::now())? }),
        (None, Some(sequence)) => json!({ "from_sequence": sequence }),
        // clap's group makes exactly one of them present.
        _ => {
            return Err(CliError::Usage(
                "give one of --since and --from-sequence".into(),
            ))
        }
    };
    let path = format!("/subscriptions/{}/replay", segment(&args.subscription));
    let mut result = client.post(&path, &body).await?;
    if let Some(since) = body.get("since") {
        insert(&mut result, "since", since.clone());
    }
    if args.wait {
        let sub = progress::until_caught_up(&client, &args.subscription, deadline).await?;
        insert(&mut result, "status", sub["status"].clone());
    }
    output.emit(&result, |r| render(r, args.wait));
    Ok(())
}

fn render(result: &Value, waited: bool) -> String {
    let id = result["subscription"].as_str().unwrap_or("-");
    let cursor = result["cursor"].as_u64().unwrap_or(0);
    let mut out = format!("{id}: delivering again from sequence {cursor}");
    if let Some(since) = result["since"].as_str() {
        out.push_str(&format!(" (the first event at or after {since})"));
    }
    out.push('\n');
    if waited {
        out.push_str(&format!("{id}: caught up (lag 0)\n"));
    }
    out
}

/// The RFC 3339 time `--since` means: the text as given, or `now` minus a span such as
/// `15m` (the server takes RFC 3339 only; spans are what an operator types).
fn since_time(text: &str, now: chrono::DateTime<Utc>) -> Result<String, CliError> {
    let text = text.trim();
    let Some(unit) = text.chars().last() else {
        return Err(CliError::Usage("--since is empty".into()));
    };
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        // Anything else is a time for the server to parse (it names the format if wrong).
        _ => return Ok(text.to_string()),
    };
    let amount: i64 = match text[..text.len() - 1].parse() {
        Ok(n) if n >= 0 => n,
        _ => return Ok(text.to_string()),
    };
    let span = amount
        .checked_mul(seconds_per)
        .and_then(chrono::TimeDelta::try_seconds)
        .ok_or_else(|| CliError::Usage(format!("--since {text}: too far back")))?;
    let at = now
        .checked_sub_signed(span)
        .ok_or_else(|| CliError::Usage(format!("--since {text}: too far back")))?;
    Ok(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_span_back() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let since = |text: &str| since_time(text, now).ok();
        assert_eq!(since("15m").as_deref(), Some("2025-01-31T11:45:00.000Z"));
        assert_eq!(since("2h").as_deref(), Some("2025-01-31T10:00:00.000Z"));
        assert_eq!(since("1d").as_deref(), Some("2025-01-30T12:00:00.000Z"));
        assert_eq!(
            since("2025-01-01T00:00:00Z").as_deref(),
            Some("2025-01-01T00:00:00Z")
        );
        assert!(since("").is_none());
        assert!(since("9999999999999d").is_none());
    }
}
