//! Black-box tests: a real server on port 0, a temporary SQLite file, real
//! HTTP and real SSE.

mod helpers;
mod smoke;
