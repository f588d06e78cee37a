//! `switchyard deliveries --message-id ID | --event-id ID`: what became of an event at each
//! subscription (`GET /deliveries`, every page): its status and every attempt with the
//! destination's answer.

use serde_json::{json, Value};

use super::table::{truncate, Table};
use super::{CliError, Client, Output, ServerArgs};

/// Options of `switchyard deliveries`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["message_id", "event_id"])))]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The WhatsApp message id (`data.key.id`, e.g. 3EB0...): every event about it.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// The event id (the `webhook-id` a receiver got).
    #[arg(long, value_name = "ID")]
    pub event_id: Option<String>,
    /// Only this subscription.
    #[arg(long, value_name = "SUB")]
    pub subscription: Option<String>,
    /// Only these statuses: delivered, in_flight, parked, dead, filtered (comma-separated).
    #[arg(long, value_name = "LIST")]
    pub status: Option<String>,
    /// Print `{"deliveries": [...]}` as the API answers them (each with `status` and every
    /// attempt), all pages, instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let output = Output { json: args.json };
    let result = async {
        let client = Client::new(&args.server)?;
        let mut query = Vec::new();
        for (key, value) in [
            ("message_id", &args.message_id),
            ("event_id", &args.event_id),
            ("subscription", &args.subscription),
            ("status", &args.status),
        ] {
            if let Some(value) = value {
                query.push((key, value.clone()));
            }
        }
        let deliveries = client
            .all_pages_with("/deliveries", "deliveries", &query)
            .await?;
        output.emit(&json!({ "deliveries": deliveries }), render);
        Ok::<(), CliError>(())
    }
    .await;
    output.finish(result)
}

fn render(value: &Value) -> String {
    let empty = Vec::new();
    let deliveries = value["deliveries"].as_array().unwrap_or(&empty);
    if deliveries.is_empty() {
        return "no deliveries found\n".into();
    }
    let mut summary = Table::new(&[
        "EVENT",
        "SEQUENCE",
        "MESSAGE",
        "SUBSCRIPTION",
        "STATUS",
        "ATTEMPTS",
    ]);
    let mut attempts = Table::new(&[
        "EVENT",
        "SUBSCRIPTION",
        "#",
        "AT",
        "MS",
        "OUTCOME",
        "HTTP",
        "ERROR / RESPONSE",
    ]);
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    for d in deliveries {
        let tries = d["attempts"].as_array().unwrap_or(&empty);
        summary.row(vec![
            text(&d["event_id"]),
            d["sequence"].as_u64().map_or("-".into(), |s| s.to_string()),
            text(&d["message_id"]),
            text(&d["subscription"]),
            text(&d["status"]),
            tries.len().to_string(),
        ]);
        for a in tries {
            let detail = a["error"].as_str().or(a["response"].as_str()).unwrap_or("");
            attempts.row(vec![
                text(&d["event_id"]),
                text(&d["subscription"]),
                a["attempt"].as_u64().map_or("-".into(), |n| n.to_string()),
                text(&a["at"]),
                a["duration_ms"]
                    .as_u64()
                    .map_or("-".into(), |n| n.to_string()),
                text(&a["outcome"]),
                a["http_status"]
                    .as_u64()
                    .map_or("-".into(), |n| n.to_string()),
                truncate(detail, 60),
            ]);
        }
    }
    let mut out = summary.render();
    out.push('\n');
    out.push_str(&attempts.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_and_its_attempts_are_tabled() {
        let value = json!({"deliveries": [{
            "event_id": "e1", "sequence": 7, "message_id": "3EB0", "subscription": "webhook:a",
            "status": "delivered",
            "attempts": [
                {"attempt": 1, "at": "2025-01-15T10:30:00.000Z", "duration_ms": 12,
                 "outcome": "retry", "http_status": 500, "error": "HTTP 500", "response": "boom"},
                {"attempt": 2, "at": "2025-01-15T10:30:05.000Z", "duration_ms": 9,
                 "outcome": "delivered", "http_status": 200, "error": null, "response": null}
            ]
        }]});
        let text = render(&value);
        assert!(text.contains("webhook:a     delivered  2"), "{text}");
        assert!(text.contains("retry      500   HTTP 500"), "{text}");
        assert_eq!(render(&json!({"deliveries": []})), "no deliveries found\n");
    }
}
