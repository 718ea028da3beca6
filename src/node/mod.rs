//! What a running node does beside answering requests: its membership of
//! the cluster on PostgreSQL (heartbeat, shared presence; `cluster`), the
//! follower that feeds its hub from the shared log (`follow`), the
//! periodic tasks (retention, the lock sweep, checkpoints; `periodic`), and
//! giving memory back after many streams closed (`memory`).

pub mod cluster;
pub mod follow;
pub mod memory;
pub mod periodic;
