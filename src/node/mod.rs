//! What a running node does beside answering requests: its membership of
//! the cluster on PostgreSQL (heartbeat, shared presence; `cluster`), the
//! follower that feeds its hub from the shared log (`follow`), and the
//! periodic tasks (retention, the lock sweep, checkpoints; `periodic`).

pub mod cluster;
pub mod follow;
pub mod periodic;
