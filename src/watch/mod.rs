//! WatchSession engine: one shared poller per watched session, fanned out to
//! every watcher through a `tokio::sync::watch` channel (latest value wins),
//! plus write-through of what the facade learns itself and callback nudges.

mod budget;
mod hub;
mod poller;
mod remote;
mod schedule;
mod state;

pub use budget::PollBudget;
pub use hub::Hub;
pub use schedule::PollSchedule;
pub use state::{Observation, SessionKey, Source, WatchConfig, WatchEnd, WatchState};
