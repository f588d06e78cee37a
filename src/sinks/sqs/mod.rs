//! SQS sink.
