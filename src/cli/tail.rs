//! `switchyard tail`: follows the event log of a running server (`GET /events` long polls),
//! one envelope per line, like `kcat -C`.

use std::time::Duration;

use super::{CliError, Client, ServerArgs};

/// How long one long poll waits for new events on the server.
const WAIT_MS: u32 = 30_000;

/// Options of `switchyard tail`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Server and key.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only this instance's events.
    #[arg(long)]
    pub instance: Option<String>,
    /// Start at this sequence (default: the end, like `tail -f`).
    #[arg(long)]
    pub from: Option<u64>,
}

/// Runs the command: prints events until the process is stopped or a request fails.
pub async fn run(args: Args) -> Result<(), CliError> {
    let client = Client::new(&args.server)?;
    let mut next = match args.from {
        Some(from) => from,
        None => client.get("/ready", &[]).await?["next_sequence"]
            .as_u64()
            .unwrap_or(0),
    };
    // The server holds each poll up to WAIT_MS; the request may take that long and more.
    let timeout = Duration::from_millis(u64::from(WAIT_MS)) + Duration::from_secs(30);
    loop {
        let mut query = vec![
            ("limit", "1000".to_string()),
            ("wait_ms", WAIT_MS.to_string()),
            ("from_sequence", next.to_string()),
        ];
        if let Some(instance) = &args.instance {
            query.push(("instance", instance.clone()));
        }
        let body = client.get_within("/events", &query, timeout).await?;
        if let Some(events) = body["events"].as_array() {
            for event in events {
                println!("{event}");
            }
        }
        next = body["next_sequence"].as_u64().unwrap_or(next);
    }
}
