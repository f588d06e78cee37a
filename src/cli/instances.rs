//! `switchyard instances`: the instances the key can see, with their sinks
//! (`GET /instance/fetchInstances`, every page).

use serde_json::{json, Value};

use super::table::Table;
use super::{CliError, Client, Output, ServerArgs};

/// Options of `switchyard instances`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print `{"instances": [...]}` as the API answers each one (tokens included for the
    /// global key) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let output = Output { json: args.json };
    let result = async {
        let client = Client::new(&args.server)?;
        let instances = client
            .all_pages("/instance/fetchInstances", "instances")
            .await?;
        output.emit(&json!({ "instances": instances }), render);
        Ok::<(), CliError>(())
    }
    .await;
    output.finish(result)
}

/// The table: one row per instance. The token is left out: a table ends up on screens and
/// in tickets.
fn render(value: &Value) -> String {
    let mut table = Table::new(&["NAME", "NUMBER", "SINKS", "CREATED", "ID"]);
    let empty = Vec::new();
    for instance in value["instances"].as_array().unwrap_or(&empty) {
        let text = |field: &str| instance[field].as_str().unwrap_or("-").to_string();
        table.row(vec![
            text("name"),
            text("number"),
            sinks(instance),
            text("createdAt"),
            text("id"),
        ]);
    }
    table.render()
}

/// The instance's sinks, `webhook rabbitmq(off)`: the API puts each set sink under its kind
/// as an object with `enabled` and `instanceId`, so any sink kind is found without a list.
fn sinks(instance: &Value) -> String {
    let Some(fields) = instance.as_object() else {
        return "-".into();
    };
    let mut names: Vec<String> = fields
        .iter()
        .filter(|(_, v)| v.get("instanceId").is_some())
        .filter_map(|(kind, v)| {
            let enabled = v.get("enabled")?.as_bool()?;
            Some(if enabled {
                kind.clone()
            } else {
                format!("{kind}(off)")
            })
        })
        .collect();
    names.sort();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_are_found_by_shape() {
        let instance = json!({
            "name": "shop",
            "settings": {"rejectCall": false},
            "webhook": {"enabled": true, "instanceId": "x", "events": []},
            "rabbitmq": {"enabled": false, "instanceId": "x", "events": []},
        });
        assert_eq!(sinks(&instance), "rabbitmq(off) webhook");
        assert_eq!(sinks(&json!({"name": "bare"})), "-");
    }
}
