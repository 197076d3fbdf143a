//! jwtagent's shared core: the wire protocol, socket paths, and a client for the
//! agent's socket. Other Rust programs can use [`client::Client`] to get tokens
//! from a running agent without going through the CLI.

#![forbid(unsafe_code)]

pub mod chain;
pub mod client;
pub mod config;
pub mod duration;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod paths;
pub mod process;
pub mod protocol;
pub mod secret;
pub mod text;
pub mod time;

#[cfg(test)]
mod proptests;

pub use client::{Client, ClientError};
pub use protocol::PROTOCOL_VERSION;
