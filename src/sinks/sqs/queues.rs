//! Queue names per mode, and queue URLs: cached, created as FIFO when missing.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;

use super::error::SqsError;
use super::SqsConfig;
use crate::catalog::EventKind;

/// SQS's limit on a queue name, `.fifo` included.
const MAX_NAME: usize = 80;

/// Which queue an event goes to.
#[derive(Debug, Clone)]
pub(crate) enum Naming {
    /// `{instance}_{event}.fifo`.
    PerInstance,
    /// `{prefix}_{event}.fifo`, or one `{prefix}_singlequeue.fifo`.
    Global {
        /// `SQS_GLOBAL_PREFIX_NAME`.
        prefix: String,
        /// `SQS_GLOBAL_FORCE_SINGLE_QUEUE`.
        single: bool,
    },
}

impl Naming {
    /// The global naming from the configuration.
    pub(crate) fn global(cfg: &SqsConfig) -> Naming {
        Naming::Global {
            prefix: cfg.global_prefix_name.clone(),
            single: cfg.global_force_single_queue,
        }
    }

    /// The queue of `event` (any catalog spelling) of `instance`. The single global queue
    /// takes custom events too; per-event queues exist only for catalog events.
    pub(crate) fn queue(&self, instance: &str, event: &str) -> Result<String, SqsError> {
        let name = match self {
            Naming::Global {
                prefix,
                single: true,
            } => EventKind::sqs_single_queue(prefix),
            _ => {
                // Stored events carry the dotted name: match it without the allocating parse.
                let kind = EventKind::all()
                    .find(|k| k.dotted() == event)
                    .or_else(|| EventKind::parse(event).ok())
                    .ok_or_else(|| SqsError::NotInCatalog(event.to_owned()))?;
                self.queue_of_kind(instance, kind)
            }
        };
        if !valid_name(&name) {
            return Err(SqsError::InvalidQueueName(name));
        }
        Ok(name)
    }

    /// The queue of a catalog event kind.
    pub(crate) fn queue_of_kind(&self, instance: &str, kind: EventKind) -> String {
        match self {
            Naming::PerInstance => kind.sqs_instance_queue(instance),
            Naming::Global {
                prefix,
                single: false,
            } => kind.sqs_global_queue(prefix),
            Naming::Global { prefix, .. } => EventKind::sqs_single_queue(prefix),
        }
    }
}

/// Whether SQS accepts `name` as a FIFO queue name.
pub(crate) fn valid_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".fifo") else {
        return false;
    };
    name.len() <= MAX_NAME
        && !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Queue URLs by name. A queue is looked up first, so an existing queue (created by
/// Evolution, perhaps with other attributes) is used as it is; only a missing one is
/// created.
pub(crate) struct Queues {
    client: aws_sdk_sqs::Client,
    account_id: Option<String>,
    urls: Mutex<HashMap<String, String>>,
}

impl Queues {
    /// An empty cache over `client`; `account_id` owns the queues when set (`SQS_ACCOUNT_ID`).
    pub(crate) fn new(client: aws_sdk_sqs::Client, account_id: Option<String>) -> Queues {
        Queues {
            client,
            account_id: account_id.filter(|a| !a.is_empty()),
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The URL of `name`, creating the FIFO queue if it does not exist.
    pub(crate) async fn url(&self, name: &str) -> Result<String, SqsError> {
        if let Some(url) = self.urls.lock().ok().and_then(|u| u.get(name).cloned()) {
            return Ok(url);
        }
        let lookup = self
            .client
            .get_queue_url()
            .queue_name(name)
            .set_queue_owner_aws_account_id(self.account_id.clone())
            .send()
            .await;
        let url = match lookup {
            Ok(out) => out.queue_url,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                None
            }
            Err(e) => return Err(queue_error(name, e)),
        };
        let url = match url {
            Some(url) => url,
            None => self.create(name).await?,
        };
        if let Ok(mut urls) = self.urls.lock() {
            urls.insert(name.to_owned(), url.clone());
        }
        Ok(url)
    }

    /// Drops a cached URL whose queue is gone, so the next use creates it again.
    pub(crate) fn forget(&self, name: &str) {
        if let Ok(mut urls) = self.urls.lock() {
            urls.remove(name);
        }
    }

    async fn create(&self, name: &str) -> Result<String, SqsError> {
        let out = self
            .client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            // Our dedup id is the event id; content-based dedup would merge two distinct
            // events with equal bodies.
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .send()
            .await
            .map_err(|e| queue_error(name, e))?;
        tracing::info!(queue = name, "created SQS FIFO queue");
        out.queue_url.ok_or_else(|| SqsError::Queue {
            name: name.to_owned(),
            message: "CreateQueue returned no URL".into(),
        })
    }
}

fn queue_error<E: std::error::Error + 'static>(name: &str, e: E) -> SqsError {
    SqsError::Queue {
        name: name.to_owned(),
        message: DisplayErrorContext(&e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_evolution() {
        let per = Naming::PerInstance;
        assert_eq!(
            per.queue("shop", "messages.upsert").unwrap(),
            "shop_messages_upsert.fifo"
        );
        let global = Naming::Global {
            prefix: "global".into(),
            single: false,
        };
        assert_eq!(
            global.queue("shop", "group-participants.update").unwrap(),
            "global_group_participants_update.fifo"
        );
        let single = Naming::Global {
            prefix: "global".into(),
            single: true,
        };
        assert_eq!(
            single.queue("shop", "linq.custom").unwrap(),
            "global_singlequeue.fifo"
        );
        assert!(per.queue("shop", "linq.custom").is_err());
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(!valid_name("a b_call.fifo"));
        assert!(!valid_name(&format!("{}_call.fifo", "x".repeat(80))));
        assert!(valid_name("shop-1_call.fifo"));
    }
}
