//! The pure parts of switchyard the fuzz targets exercise, compiled from the main crate's
//! own source files: the event catalog and `ingest` (adapters, limits). `ingest` must stay
//! free of HTTP and broker types (its module doc says so) for this to keep building; if
//! it ever is not, depend on `switchyard = { path = ".." }` instead.

#[path = "../../src/catalog.rs"]
pub mod catalog;

#[path = "../../src/ingest/mod.rs"]
pub mod ingest;
