//! The ops, one module per family: each takes the agent's state and a request's
//! fields and answers with a wire body or an error body. The handler only
//! parses, gates and dispatches.

pub(crate) mod controls;
pub(crate) mod endpoints;
pub(crate) mod lock;
pub(crate) mod login;
pub(crate) mod profiles;
pub(crate) mod register;
pub(crate) mod sinks;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod token;
