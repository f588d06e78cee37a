//! Provider adapters: one module per gateway dialect, each a pure function from a webhook
//! body to [`IncomingEvent`](super::IncomingEvent)s in Evolution's names and shapes.
