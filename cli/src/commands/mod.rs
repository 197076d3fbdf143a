//! One module per subcommand.

pub mod agent;
pub mod audit;
pub mod env;
pub mod integrations;
pub mod lock;
pub mod login;
pub mod profiles;
pub mod sinks;
pub mod status;
pub mod stop;
pub mod token;
