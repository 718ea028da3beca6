//! The use cases: one function per command a client can give — work items,
//! files, conversations, events. Each runs inside a writer transaction
//! (`Tx`), takes a typed command built from domain types, applies the
//! domain's rule, appends the events and writes the rows through the one
//! `record` helper, and returns a typed result (a domain value, never JSON).
//!
//! Every edge calls these to change state — the REST handlers today, other
//! protocols later — and so do the background jobs (the lock sweeper).
//! Nothing here knows HTTP, renders an answer, or writes SQL.

pub mod conversations;
pub mod deliveries;
pub mod ds_claims;
pub mod ds_subscriptions;
pub mod ds_wakes;
pub mod durable;
pub mod durable_read;
pub mod events;
pub mod files;
pub mod mercure;
mod record;
pub mod subscriptions;
pub mod webhooks;
pub mod work_items;

pub use record::{record, Actor, Resource};
