//! Concurrent sends to one queue share `SendMessageBatch` requests.
//!
//! The engine calls the sink once per lane (a chat, an instance) with what that lane has
//! queued: one event when events trickle in, a few when a backlog is read in pieces. Sent
//! as they come, 50 chats make 50 requests of 1 to 5 entries where SQS takes 10, and SQS
//! costs (and throttles) per request. So at most [`MAX_IN_FLIGHT`] requests per queue are
//! in flight; chunks that arrive meanwhile wait, and whoever sends next takes the waiting
//! chunks, oldest first, as many whole chunks as fit in one request (10 entries,
//! `max_payload` bytes).
//!
//! Order: a chunk is never split or reordered, and a lane's next chunk is submitted only
//! after its previous one has its outcomes (the sink awaits each; the engine runs one batch
//! per lane at a time), so each lane's events reach its message group in order. Requests
//! are sent by spawned tasks: a cancelled caller never strands the chunks waiting behind it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tokio::sync::oneshot;

use super::entry::Entry;
use super::queues::Queues;
use crate::sinks::Outcome;

/// SQS's limit on entries per `SendMessageBatch`.
pub(crate) const BATCH_ENTRIES: usize = 10;

/// Requests in flight per queue. Enough to keep a queue busy at SQS's per-queue request
/// rates (16 requests of 10 entries at a 20 ms round trip: 8,000 messages/s), few enough
/// that the engine's many small lane batches (50 chats of an instance, a few events each)
/// wait a moment and leave in full requests. 8 and 16 measured alike against moto.
const MAX_IN_FLIGHT: usize = 16;

/// Sends chunks of entries, coalescing those bound for the same queue.
pub(crate) struct Batcher {
    client: aws_sdk_sqs::Client,
    queues: Arc<Queues>,
    max_payload: usize,
    lines: Mutex<HashMap<String, Line>>,
}

/// One queue's waiting chunks and requests in flight.
#[derive(Default)]
struct Line {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

/// A chunk waiting for a request, and where its outcomes go.
struct Waiting {
    entries: Vec<Entry>,
    bytes: usize,
    done: oneshot::Sender<Vec<(Entry, Outcome)>>,
}

impl Batcher {
    /// A batcher sending with `client`; `queues` forgets a queue deleted behind our back;
    /// a request carries at most `max_payload` bytes of bodies.
    pub(crate) fn new(
        client: aws_sdk_sqs::Client,
        queues: Arc<Queues>,
        max_payload: usize,
    ) -> Self {
        Batcher {
            client,
            queues,
            max_payload,
            lines: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `chunk` (at most 10 entries and `max_payload` bytes, in order) to queue `name`
    /// at `url`, possibly in one request with other chunks; each entry with its outcome, in
    /// the chunk's order.
    pub(crate) async fn send(
        self: &Arc<Self>,
        name: &str,
        url: &str,
        chunk: Vec<Entry>,
    ) -> Vec<(Entry, Outcome)> {
        let (done, outcome) = oneshot::channel();
        let bytes = chunk.iter().map(|e| e.body.len()).sum();
        let start = {
            let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            let line = lines.entry(url.to_owned()).or_default();
            line.waiting.push_back(Waiting {
                entries: chunk,
                bytes,
                done,
            });
            let start = line.in_flight < MAX_IN_FLIGHT;
            if start {
                line.in_flight += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().run(name.to_owned(), url.to_owned()));
        }
        // The sender only drops a chunk's channel if its task ended abnormally: the entries
        // are then unknown, and the engine sends them again (same deduplication ids).
        outcome.await.unwrap_or_default()
    }

    /// One request slot of `url`: sends the waiting chunks, request by request, until none
    /// wait.
    async fn run(self: Arc<Self>, name: String, url: String) {
        loop {
            let taken = {
                let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
                let Some(line) = lines.get_mut(&url) else {
                    return;
                };
                let taken = take(line, self.max_payload);
                if taken.is_empty() {
                    line.in_flight = line.in_flight.saturating_sub(1);
                    if line.in_flight == 0 && line.waiting.is_empty() {
                        lines.remove(&url);
                    }
                    return;
                }
                taken
            };
            let entries: Vec<&Entry> = taken.iter().flat_map(|w| &w.entries).collect();
            let mut outcomes = self.request(&name, &url, &entries).await.into_iter();
            for waiting in taken {
                let mine = waiting
                    .entries
                    .into_iter()
                    .map(|entry| {
                        let outcome = outcomes
                            .next()
                            .unwrap_or_else(|| retry("SendMessageBatch reported nothing"));
                        (entry, outcome)
                    })
                    .collect();
                // A caller that went away (cancelled) no longer needs its outcomes.
                let _ = waiting.done.send(mine);
            }
        }
    }

    /// One `SendMessageBatch`; one outcome per entry, in order.
    async fn request(&self, name: &str, url: &str, chunk: &[&Entry]) -> Vec<Outcome> {
        let mut request = self.client.send_message_batch().queue_url(url);
        for (n, e) in chunk.iter().enumerate() {
            let built = SendMessageBatchRequestEntry::builder()
                .id(n.to_string())
                .message_body(e.body.as_str())
                .message_group_id(e.group.as_str())
                .message_deduplication_id(e.dedup_id.as_str())
                .build();
            match built {
                Ok(entry) => request = request.entries(entry),
                Err(err) => {
                    // Only missing required fields fail here, and all are set above.
                    let reason = format!("cannot build the SQS request: {err}");
                    return chunk.iter().map(|_| retry(&reason)).collect();
                }
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist())
                {
                    // Deleted behind our back: the next attempt creates it again.
                    self.queues.forget(name);
                }
                let reason = format!(
                    "SendMessageBatch to `{name}` failed: {}",
                    DisplayErrorContext(&err)
                );
                return chunk.iter().map(|_| retry(&reason)).collect();
            }
        };
        let mut outcomes: Vec<Option<Outcome>> = vec![None; chunk.len()];
        for ok in response.successful() {
            if let Some(slot) = ok
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| outcomes.get_mut(i))
            {
                *slot = Some(Outcome::Delivered);
            }
        }
        for failed in response.failed() {
            let Some(slot) = failed
                .id()
                .parse::<usize>()
                .ok()
                .and_then(|i| outcomes.get_mut(i))
            else {
                continue;
            };
            let reason = format!(
                "SQS refused the message: {} {}",
                failed.code(),
                failed.message().unwrap_or_default()
            );
            // A sender fault (invalid content, ...) fails the same way every time.
            *slot = Some(if failed.sender_fault() {
                Outcome::Permanent { reason }
            } else {
                retry(&reason)
            });
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| retry("SendMessageBatch reported nothing for this entry")))
            .collect()
    }
}

/// The oldest waiting chunks that fit in one request together (always at least one).
fn take(line: &mut Line, max_payload: usize) -> Vec<Waiting> {
    let (mut entries, mut bytes) = (0, 0);
    let mut taken = Vec::new();
    while let Some(next) = line.waiting.front() {
        let fits =
            entries + next.entries.len() <= BATCH_ENTRIES && bytes + next.bytes <= max_payload;
        if !taken.is_empty() && !fits {
            break;
        }
        entries += next.entries.len();
        bytes += next.bytes;
        taken.extend(line.waiting.pop_front());
    }
    taken
}

/// A `Retry` outcome for `reason`.
pub(crate) fn retry(reason: &str) -> Outcome {
    Outcome::Retry {
        after: None,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiting chunk of `n` entries of `bytes` bytes each, the first with index `first`.
    fn chunk(first: usize, n: usize, bytes: usize) -> Waiting {
        let entries = (first..first + n)
            .map(|index| Entry {
                index,
                group: "g".into(),
                dedup_id: index.to_string(),
                body: "x".repeat(bytes),
            })
            .collect();
        Waiting {
            entries,
            bytes: n * bytes,
            done: oneshot::channel().0,
        }
    }

    fn indices(taken: &[Waiting]) -> Vec<usize> {
        taken
            .iter()
            .flat_map(|w| w.entries.iter().map(|e| e.index))
            .collect()
    }

    #[test]
    fn whole_chunks_oldest_first_up_to_ten_entries() {
        let mut line = Line::default();
        for (first, n) in [(0, 4), (10, 5), (20, 3), (30, 1)] {
            line.waiting.push_back(chunk(first, n, 10));
        }
        // 4 + 5 fit, the next 3 would make 12: it waits for the next request, in order.
        let taken = take(&mut line, 1000);
        assert_eq!(indices(&taken), vec![0, 1, 2, 3, 10, 11, 12, 13, 14]);
        assert_eq!(indices(&take(&mut line, 1000)), vec![20, 21, 22, 30]);
        assert!(take(&mut line, 1000).is_empty());
    }

    #[test]
    fn bytes_bound_a_request_but_one_chunk_always_goes() {
        let mut line = Line::default();
        for first in [0, 10, 20] {
            line.waiting.push_back(chunk(first, 2, 100));
        }
        // 250 bytes: the first chunk (200) goes alone, and the second alone after it.
        assert_eq!(indices(&take(&mut line, 250)), vec![0, 1]);
        assert_eq!(indices(&take(&mut line, 150)), vec![10, 11]);
        assert_eq!(indices(&take(&mut line, 400)), vec![20, 21]);
    }
}
