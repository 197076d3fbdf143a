//! The ops, one module per family: each takes the agent's state and a request's
//! fields and answers with a wire body or an error body. The handler only
//! parses, gates and dispatches.

pub mod lock;
pub mod login;
pub mod profiles;
pub mod status;
pub mod token;
