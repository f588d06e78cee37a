//! `switchyard subscriptions`: every subscription the key can see with its delivery status
//! (`GET /subscriptions`, every page): lag, in flight, parked, dead letters, last error.

use serde_json::{json, Value};

use super::table::{truncate, Table};
use super::{CliError, Client, Output, ServerArgs};

/// Options of `switchyard subscriptions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this instance's subscriptions.
    #[arg(long)]
    pub instance: Option<String>,
    /// Print `{"subscriptions": [...]}` as the API answers each one (its `status` object
    /// holds lag, in_flight, parked, dead_letters...), plus `state` (the table's STATE),
    /// instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let output = Output { json: args.json };
    let result = async {
        let client = Client::new(&args.server)?;
        let mut subscriptions = client.all_pages("/subscriptions", "subscriptions").await?;
        if let Some(instance) = &args.instance {
            subscriptions.retain(|s| s["instance"].as_str() == Some(instance));
        }
        // The STATE column's word goes into the JSON too, so scripts need not re-derive it.
        for sub in &mut subscriptions {
            let word = state(sub);
            if let Some(fields) = sub.as_object_mut() {
                fields.insert("state".into(), json!(word));
            }
        }
        output.emit(&json!({ "subscriptions": subscriptions }), render);
        Ok::<(), CliError>(())
    }
    .await;
    output.finish(result)
}

/// One word for what a subscription is doing, the table's STATE column:
/// - `disabled`: switched off in the registry (by a person, or by the engine after a 410 or
///   a failure run; `enable` turns it back on);
/// - `stopped`: enabled, but the engine stopped it (the last error says why);
/// - `idle`: enabled, not running in the process that answered (starting, or delivered by
///   another process of a Kafka-engine cluster);
/// - `parked`: some lanes wait on a failing event while the others flow;
/// - `lagging`: events not yet delivered;
/// - `ok`: caught up.
///
/// `-` when the server reported no status for it (no engine delivers it here).
pub fn state(subscription: &Value) -> &'static str {
    let status = &subscription["status"];
    if subscription["enabled"] == Value::Bool(false) {
        return "disabled";
    }
    if status.is_null() {
        return "-";
    }
    if status["stopped_reason"].is_string() {
        return "stopped";
    }
    if status["running"] == Value::Bool(false) {
        return "idle";
    }
    if status["parked"].as_u64().unwrap_or(0) > 0 {
        return "parked";
    }
    if status["lag"].as_u64().unwrap_or(0) > 0 {
        return "lagging";
    }
    "ok"
}

fn render(value: &Value) -> String {
    let mut table = Table::new(&[
        "ID",
        "INSTANCE",
        "SINK",
        "STATE",
        "LAG",
        "IN FLIGHT",
        "PARKED",
        "DEAD",
        "DELIVERED",
        "LAST ERROR",
    ]);
    let empty = Vec::new();
    for sub in value["subscriptions"].as_array().unwrap_or(&empty) {
        let status = &sub["status"];
        let count = |field: &str| match status[field].as_u64() {
            Some(n) => n.to_string(),
            None => "-".into(),
        };
        let error = status["stopped_reason"]
            .as_str()
            .or(status["last_error"].as_str())
            .unwrap_or("");
        table.row(vec![
            sub["id"].as_str().unwrap_or("-").to_string(),
            // A subscription of every instance (the global sinks) has no instance.
            sub["instance"].as_str().unwrap_or("*").to_string(),
            sub["sink"].as_str().unwrap_or("-").to_string(),
            state(sub).to_string(),
            count("lag"),
            count("in_flight"),
            count("parked"),
            count("dead_letters"),
            count("delivered"),
            truncate(error, 60),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_word_follows_the_status() {
        let sub = |enabled: bool, status: Value| json!({"enabled": enabled, "status": status});
        let running = |lag: u64, parked: u64| json!({"running": true, "lag": lag, "parked": parked, "stopped_reason": null});
        assert_eq!(state(&sub(false, running(0, 0))), "disabled");
        assert_eq!(state(&json!({"enabled": true})), "-");
        assert_eq!(
            state(&sub(
                true,
                json!({"running": false, "stopped_reason": "410 Gone"})
            )),
            "stopped"
        );
        assert_eq!(state(&sub(true, json!({"running": false}))), "idle");
        assert_eq!(state(&sub(true, running(5, 2))), "parked");
        assert_eq!(state(&sub(true, running(5, 0))), "lagging");
        assert_eq!(state(&sub(true, running(0, 0))), "ok");
    }
}
