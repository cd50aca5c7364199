//! WatchSession engine: one shared poller per watched session, fanned out to
//! every watcher through a `tokio::sync::watch` channel (latest value wins)
//! relayed once to each serving thread, plus write-through of what the
//! facade learns itself and callback nudges.

mod budget;
mod hub;
mod poller;
mod relay;
mod schedule;

pub use budget::PollBudget;
pub use hub::{Hub, Observation, SessionKey, Source, WatchConfig, WatchEnd, WatchState};
pub use schedule::PollSchedule;
