//! End-to-end tests: the real `jwtagent` binary, real sockets in private temp
//! directories, real shells and real other users. Nothing here sleeps a fixed
//! time; waits poll for a condition with a deadline.

mod attacks;
mod attacks2;
mod chains;
mod common;
mod controls;
mod docs;
mod dpop;
mod elsewhere;
mod endpoints;
mod filestore;
mod grants;
mod integrations;
mod leaks;
mod lifecycle;
mod load;
mod login;
mod mtls;
mod oauth;
mod pki;
mod profiles;
mod proxy;
mod recipes;
mod refresh;
mod register;
mod security;
mod servers;
mod shells;
mod sinks;
mod ssh;
mod tls;
mod wire;
