pub mod api;
pub mod callbacks;
pub mod config;
pub mod pb;
pub mod sandbox;
pub mod server;
pub mod upstream;
pub mod watch;
