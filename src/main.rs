//! The `switchyard` binary: `serve`, the operator commands (`instances`, `subscriptions`,
//! `replay`, `redrive`, `tail`: clients of a running server, in `cli/`), `check-config`,
//! `config-reference`, `health`. Thin: parse, load, call.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchyard::config::Config;
use tokio_util::sync::CancellationToken;

/// glibc's malloc took a fifth of the CPU of a webhook delivery (and consolidated its free
/// lists on every allocation over 1 KiB); mimalloc halves the CPU per delivery. Built
/// without transparent huge pages (`no_thp`): with them every re-use of purged memory
/// faulted in and zeroed 2 MiB pages, a sixth to a third of the CPU with 1,000 instances,
/// and RSS after delivery was twice as high (`benches/delivery_scale.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Durable, ordered delivery of WhatsApp gateway events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on the embedded log (defaults need nothing else running).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the instances the key can see, with their sinks.
    Instances(cli::instances::Args),
    /// List subscriptions with their delivery status: state, lag, in flight, parked, dead
    /// letters, last error.
    Subscriptions(cli::subscriptions::Args),
    /// Deliver a subscription's events again from a time or a sequence.
    Replay(cli::replay::Args),
    /// Deliver a subscription's dead letters again.
    Redrive(cli::redrive::Args),
    /// What became of an event at each subscription (by WhatsApp message id or event id):
    /// status and every attempt with the destination's answer.
    Deliveries(cli::deliveries::Args),
    /// Follow the event log of a running server, one envelope per line (like `kcat -C`).
    Tail(cli::tail::Args),
    /// Validate the configuration (file + environment) and exit.
    CheckConfig {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print every config key with its env names, default and description (Markdown).
    ConfigReference,
    /// Probe a running server (for container health checks: the image has no curl).
    Health {
        /// URL to GET; exits 0 when it answers 2xx within the timeout. Default: `/health`
        /// on the configured `server.listen` (0.0.0.0 probed as 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
        /// Timeout in seconds.
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(
        config.map(PathBuf::as_path),
        std::env::vars(),
    )?)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SWITCHYARD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = load(file.as_ref())?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(dir) = data_dir {
        config.server.data_dir = dir;
    }
    config.validate()?;
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    switchyard::app::serve(config, shutdown, |addr| {
        // Scripts and tests read this line to learn the port (with --listen 127.0.0.1:0).
        println!("switchyard listening on http://{addr}");
    })
    .await
    .context("server failed")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn health(url: Option<String>, timeout: f64) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => {
            let listen = load(None)?.server.listen;
            let mut addr: std::net::SocketAddr =
                listen.parse().context("server.listen is not an address")?;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}/health")
        }
    };
    let timeout = std::time::Duration::try_from_secs_f64(timeout).context("bad --timeout")?;
    let response = reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("GET {url} answered {status}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve {
            listen,
            data_dir,
            config,
        } => serve(listen, data_dir, config).await,
        Command::Instances(args) => cli::instances::run(args).await.map_err(anyhow::Error::from),
        Command::Subscriptions(args) => cli::subscriptions::run(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Replay(args) => cli::replay::run(args).await.map_err(anyhow::Error::from),
        Command::Redrive(args) => cli::redrive::run(args).await.map_err(anyhow::Error::from),
        Command::Deliveries(args) => cli::deliveries::run(args)
            .await
            .map_err(anyhow::Error::from),
        Command::Tail(args) => cli::tail::run(args).await.map_err(anyhow::Error::from),
        Command::CheckConfig { config } => {
            load(config.as_ref()).map(|_| println!("configuration is valid"))
        }
        Command::ConfigReference => {
            print!("{}", switchyard::config::reference::markdown_table());
            Ok(())
        }
        Command::Health { url, timeout } => health(url, timeout).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
