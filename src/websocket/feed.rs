//! One subscription's stream of frames: replay from the log from its start sequence, then
//! the live broadcast, each event exactly once and in order.
//!
//! The seam: the feed subscribes to the broadcast *before* reading the log, reads the log to
//! its end, then takes live batches, skipping every frame below its next expected sequence
//! (no duplicate). A live batch that starts past that sequence (the feed missed batches) or a
//! lagged receiver sends it back to the log from its next expected sequence (no gap).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::connection::{Outbox, Outgoing};
use super::filter::Filter;
use super::hub::{Batch, Frame};
use super::Hub;
use axum::extract::ws::Message;

/// Turns an accepted frame into the message the protocol sends.
pub type Render = Box<dyn Fn(&Frame) -> Message + Send + Sync>;

/// A running subscription.
pub struct Feed {
    hub: Arc<Hub>,
    filter: Filter,
    render: Render,
    outbox: Outbox,
    /// The next sequence this feed has not yet looked at.
    next: u64,
    /// When this feed replaces another without a new start: frames below the sequence still
    /// follow the replaced feed's filter, so the switch happens at one point in the log.
    handover: Option<(u64, Filter)>,
}

/// Why a feed stopped: the outbox is closing or the log failed; either way, stop quietly.
struct Stop;

impl Feed {
    /// A feed starting at `from` (`None`: at the log's end, live only).
    pub fn new(
        hub: Arc<Hub>,
        filter: Filter,
        render: Render,
        outbox: Outbox,
        from: Option<u64>,
    ) -> Feed {
        let next = from.unwrap_or_else(|| hub.next_sequence());
        Feed {
            hub,
            filter,
            render,
            outbox,
            next,
            handover: None,
        }
    }

    /// Makes frames below `until` follow `previous` (the filter of the feed this one replaces).
    pub fn with_handover(mut self, until: u64, previous: Filter) -> Feed {
        self.handover = Some((until, previous));
        self
    }

    /// The next sequence the feed will look at.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Runs until `cancel` fires, the connection closes, or the log fails; returns the next
    /// sequence it had not looked at, where a replacing feed continues.
    pub async fn run(mut self, cancel: CancellationToken) -> u64 {
        self.stream(&cancel).await;
        self.next
    }

    async fn stream(&mut self, cancel: &CancellationToken) {
        self.outbox.hint_resume(self.next);
        // Subscribe before the first log read: everything published from now on is in
        // `live`, everything before is in the log.
        let mut live = self.hub.subscribe();
        if self.catch_up(None, cancel).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.outbox.closer().closed() => return,
                received = live.recv() => received,
            };
            let step = match received {
                Ok(batch) => self.live(&batch, cancel).await,
                Err(RecvError::Lagged(_)) => self.catch_up(None, cancel).await,
                Err(RecvError::Closed) => return,
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn live(&mut self, batch: &Batch, cancel: &CancellationToken) -> Result<(), Stop> {
        if batch.first > self.next {
            self.catch_up(Some(batch.first), cancel).await?;
        }
        self.deliver(&batch.frames, cancel).await?;
        self.next = self.next.max(batch.next);
        Ok(())
    }

    /// Reads the log from `next` until `until` (or the log's end).
    async fn catch_up(
        &mut self,
        until: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        while until.is_none_or(|until| self.next < until) {
            let batch = match self.hub.read(self.next).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "websocket feed could not read the log");
                    return Err(Stop);
                }
            };
            if batch.next <= self.next {
                break;
            }
            self.deliver(&batch.frames, cancel).await?;
            self.next = self.next.max(batch.next);
        }
        Ok(())
    }

    /// Queues the accepted frames at or past `next`, advancing `next` frame by frame so a
    /// stop in the middle reports exactly where a replacing feed must continue.
    async fn deliver(&mut self, frames: &[Frame], cancel: &CancellationToken) -> Result<(), Stop> {
        for frame in frames {
            if frame.sequence < self.next {
                continue;
            }
            let filter = match &self.handover {
                Some((until, previous)) if frame.sequence < *until => previous,
                _ => &self.filter,
            };
            if filter.accepts(frame) {
                let item = Outgoing {
                    sequence: Some(frame.sequence),
                    message: (self.render)(frame),
                };
                let queued = tokio::select! {
                    _ = cancel.cancelled() => false,
                    queued = self.outbox.push(item) => queued,
                };
                if !queued {
                    return Err(Stop);
                }
            }
            self.next = frame.sequence + 1;
        }
        Ok(())
    }
}
