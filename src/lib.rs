//! switchboard: clients write over REST, every change is committed together
//! with its event into a durable log, and every other session sees it over a
//! Server-Sent-Events stream that resumes exactly with `Last-Event-ID`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod mcp;
pub mod metrics;
pub mod node;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod views;
pub mod wake;
