//! Black-box tests: a real server on port 0, a temporary SQLite file, real
//! HTTP and real SSE.

mod browser;
mod cli;
mod client;
mod client_offline;
mod client_tabs;
mod connections;
mod conversations;
mod dashboard;
mod ds_client;
mod ds_subscriptions;
mod durable;
mod errors;
mod faults;
mod files;
mod hardening;
mod helpers;
mod history;
mod identity;
mod mcp;
mod mercure;
mod netcut;
mod openapi;
mod ops;
mod process;
mod publish;
mod scale_out;
mod scopes;
mod security;
mod smoke;
mod storage;
mod stream;
mod subscriptions;
mod work_items;
mod writer;
