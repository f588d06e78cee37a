//! `switchyard redrive SUB [--sequence N]... [--id ID]... [--wait]`: delivers a
//! subscription's dead letters again (`POST /subscriptions/{id}/dead-letters/redrive`);
//! `--wait` follows each one until it is delivered or dead-lettered again.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::client::segment;
use super::progress::{self, Deadline};
use super::{insert, CliError, Client, Output, ServerArgs};

/// Options of `switchyard redrive`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The subscription id (the ID column of `switchyard subscriptions`).
    #[arg(value_name = "SUB")]
    pub subscription: String,
    /// Only the dead letter of this event sequence (repeat for several). Default: all.
    #[arg(long = "sequence", value_name = "N", conflicts_with = "ids")]
    pub sequences: Vec<u64>,
    /// Only the dead letter of this event id (repeat for several). Default: all.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Wait until every redriven event is delivered or dead-lettered again, with a progress
    /// bar on stderr; exits 1 when any failed again.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up (exit 1) after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<f64>,
    /// Print the result as one JSON object: `subscription`, `redriven` (how many were
    /// queued), and with --wait `delivered` and `failed_again`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: Args) -> Result<(), CliError> {
    let output = Output { json: args.json };
    let result = redrive(&args, output).await;
    output.finish(result)
}

async fn redrive(args: &Args, output: Output) -> Result<(), CliError> {
    let deadline = Deadline::after(args.timeout)?;
    let client = Client::new(&args.server)?;
    let base = format!(
        "/subscriptions/{}/dead-letters",
        segment(&args.subscription)
    );
    // What is dead now, and since when, read before the redrive: an entry redriven and
    // dead-lettered again is told apart from one still waiting by its newer `dead_at_ms`.
    let before = if args.wait {
        chosen(&client.all_pages(&base, "dead_letters").await?, args)
    } else {
        HashMap::new()
    };
    let body = if !args.sequences.is_empty() {
        json!({ "sequences": args.sequences })
    } else if !args.ids.is_empty() {
        json!({ "ids": args.ids })
    } else {
        json!({})
    };
    let mut result = client.post(&format!("{base}/redrive"), &body).await?;
    let mut failed = None;
    if args.wait {
        let outcome =
            progress::until_redriven(&client, &args.subscription, &before, deadline).await?;
        insert(&mut result, "delivered", json!(outcome.delivered));
        insert(&mut result, "failed_again", json!(outcome.failed_again));
        if outcome.failed_again > 0 {
            failed = Some(CliError::FailedAgain {
                failed: outcome.failed_again,
                redriven: before.len(),
            });
        }
    }
    output.emit(&result, render);
    failed.map_or(Ok(()), Err)
}

/// The dead letters the options select, as sequence -> `dead_at_ms`.
fn chosen(letters: &[Value], args: &Args) -> HashMap<u64, i64> {
    letters
        .iter()
        .filter(|d| {
            let sequence = d["sequence"].as_u64();
            let id = d["id"].as_str();
            if !args.sequences.is_empty() {
                sequence.is_some_and(|s| args.sequences.contains(&s))
            } else if !args.ids.is_empty() {
                id.is_some_and(|i| args.ids.iter().any(|want| want.eq_ignore_ascii_case(i)))
            } else {
                true
            }
        })
        .filter_map(|d| Some((d["sequence"].as_u64()?, d["dead_at_ms"].as_i64()?)))
        .collect()
}

fn render(result: &Value) -> String {
    let id = result["subscription"].as_str().unwrap_or("-");
    let redriven = result["redriven"].as_u64().unwrap_or(0);
    let mut out = format!("{id}: {redriven} dead letters redriven\n");
    if let (Some(delivered), Some(failed)) = (
        result["delivered"].as_u64(),
        result["failed_again"].as_u64(),
    ) {
        out.push_str(&format!(
            "{id}: {delivered} delivered, {failed} failed again\n"
        ));
    }
    out
}
