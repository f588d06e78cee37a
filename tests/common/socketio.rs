//! Runs `tests/socketio/listen.js`, an unmodified socket.io-client from npm, and reads what it
//! prints. Fails (never skips) when node or the package is missing.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A running node listener.
pub struct NodeListener {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/socketio")
}

/// Starts `node listen.js URL KEY MODE COUNT EVENTS...` (see the script for the modes).
pub fn listen(url: &str, key: &str, mode: &str, count: usize, events: &[&str]) -> NodeListener {
    let dir = client_dir();
    assert!(
        dir.join("node_modules/socket.io-client/package.json")
            .exists(),
        "socket.io-client is not installed in {}: run scripts/services.sh \
         (npm install --prefix tests/socketio)",
        dir.display()
    );
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg("listen.js")
        .args([url, key, mode, &count.to_string()])
        .args(events)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run node (install Node.js, see scripts/services.sh): {e}")
        });
    let stdout = child.stdout.take().expect("stdout");
    NodeListener {
        child,
        lines: BufReader::new(stdout).lines(),
    }
}

impl NodeListener {
    /// The next line the client prints; panics after `within` or when it exits.
    pub async fn line(&mut self, within: Duration) -> String {
        match tokio::time::timeout(within, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("the socket.io client exited: {:?}", self.child.try_wait()),
            Ok(Err(e)) => panic!("reading the socket.io client: {e}"),
            Err(_) => panic!("the socket.io client printed nothing within {within:?}"),
        }
    }

    /// Reads `n` `event NAME INSTANCE SEQUENCE` lines as (name, instance, sequence).
    pub async fn events(&mut self, n: usize, within: Duration) -> Vec<(String, String, u64)> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self.line(left).await;
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["event", name, instance, seq] => out.push((
                    name.to_string(),
                    instance.to_string(),
                    seq.parse().expect("sequence"),
                )),
                _ => panic!("after {} events, unexpected line: {line}", out.len()),
            }
        }
        out
    }

    /// Waits for the client to exit and returns its code.
    pub async fn exit_code(mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the socket.io client did not exit")
            .expect("wait")
            .code()
    }
}
