//! Plain types and rules: identities, channels, events, times, resources and
//! their rules. No actix, no diesel; the JSON views are `crate::views`.
//!
//! Values are parsed at the edge (`ChannelName::parse`, `SessionId::parse`,
//! `EventId::parse`):
//! past a handler, a value that exists is valid.

pub mod conversations;
pub mod ds_subscription;
pub mod durable;
mod error;
pub mod event;
mod event_id;
pub mod files;
mod filter;
pub mod ids;
pub mod mercure;
mod nesting;
pub mod precondition;
mod presence;
pub mod subscription;
mod time;
pub mod webhook;
pub mod work_items;

pub use error::DomainError;
pub use event::{Event, NewEvent};
pub use event_id::EventId;
pub use filter::StreamFilter;
pub use ids::{
    AgentId, ChannelName, ChannelPattern, EventType, IdempotencyKey, ResourceId, ResourceType,
    SessionId, SubscriptionId,
};
pub use nesting::{check_depth, MAX_JSON_DEPTH};
pub use presence::{presence_event, PresenceChange};
pub use time::Timestamp;
