//! The profiles a derived profile's token is made from: its JWT-bearer
//! assertion, token-exchange subject and actor, and theirs in turn. One walk,
//! without recursion, bounded in depth: `add`, the config loader, the fetcher
//! and the caller check all ask it, so they agree on what a chain is.

use std::collections::BTreeMap;

/// What the walk needs to know of a profile: the profiles it takes tokens
/// from (the config's `Profile` says; the walk needs nothing else of it).
pub trait Inputs {
    /// Each input profile's name with its role: `assertion`, `subject` or
    /// `actor`.
    fn input_roles(&self) -> impl Iterator<Item = (&'static str, &str)>;
}

/// Profiles shared (the config's map holds them so, to be cheap to copy).
impl<T: Inputs> Inputs for std::sync::Arc<T> {
    fn input_roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        (**self).input_roles()
    }
}

/// The longest chain of inputs a profile may have: `a` made from `b` made
/// from `c` is two links. Deeper chains are refused at `add` and when the
/// config is read; a real deployment uses one or two.
pub const MAX_DEPTH: usize = 8;

/// One profile a token is made from, directly or further down the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The input profile.
    pub name: String,
    /// What it is to the profile it feeds: `assertion`, `subject` or `actor`.
    pub role: &'static str,
    /// The profiles from the one asked about down to this one, both included.
    pub path: Vec<String>,
}

/// A chain that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Profiles feed each other tokens in a circle (`[a, b, a]`).
    #[error("profiles feed each other tokens in a circle: {}", .path.join(" -> "))]
    Cycle {
        path: Vec<String>,
        /// The role of the first link from the profile asked about.
        role: &'static str,
    },
    /// A chain longer than [`MAX_DEPTH`] links (the path that is).
    #[error(
        "the chain of profiles feeding each other tokens is longer than {MAX_DEPTH} links: {}",
        .path.join(" -> ")
    )]
    TooDeep {
        path: Vec<String>,
        role: &'static str,
    },
}

impl ChainError {
    /// The path the error is about.
    pub fn path(&self) -> &[String] {
        match self {
            ChainError::Cycle { path, .. } | ChainError::TooDeep { path, .. } => path,
        }
    }

    /// The config field of the profile asked about that starts the chain.
    pub fn field(&self) -> &'static str {
        let (ChainError::Cycle { role, .. } | ChainError::TooDeep { role, .. }) = self;
        field_of(role)
    }
}

/// The profiles.toml field that names an input in `role`.
pub fn field_of(role: &str) -> &'static str {
    match role {
        "assertion" => "assertion_profile",
        "actor" => "actor_profile",
        _ => "subject_profile",
    }
}

/// Every profile `start`'s token is made from, each once, nearest first in
/// the order of the walk; an error for a circle or a chain deeper than
/// [`MAX_DEPTH`]. Inputs that do not exist are listed but not walked (using
/// them fails on its own, with its own error).
///
/// The walk visits each path once: with at most three inputs a profile and
/// [`MAX_DEPTH`] links, that is bounded whatever the config holds.
pub fn inputs<P: Inputs>(
    profiles: &BTreeMap<String, P>,
    start: &str,
) -> Result<Vec<Link>, ChainError> {
    let mut found: Vec<Link> = Vec::new();
    let mut path = vec![start.to_string()];
    // One frame per profile on `path`: its inputs not walked yet.
    let mut frames = vec![roles(profiles, start)];
    let mut first_role = "subject";
    while let Some(frame) = frames.last_mut() {
        let Some((role, next)) = frame.pop() else {
            frames.pop();
            path.pop();
            continue;
        };
        if path.len() == 1 {
            first_role = role;
        }
        let mut to_next = path.clone();
        to_next.push(next.clone());
        if let Some(at) = path.iter().position(|p| *p == next) {
            return Err(ChainError::Cycle {
                path: to_next.split_off(at),
                role: first_role,
            });
        }
        if path.len() > MAX_DEPTH {
            return Err(ChainError::TooDeep {
                path: to_next,
                role: first_role,
            });
        }
        if !found.iter().any(|l| l.name == next) {
            found.push(Link {
                name: next.clone(),
                role,
                path: to_next,
            });
        }
        frames.push(roles(profiles, &next));
        path.push(next);
    }
    Ok(found)
}

/// Checks every profile's chain; the first bad one, by name, with its error.
pub fn check_all<P: Inputs>(profiles: &BTreeMap<String, P>) -> Result<(), (String, ChainError)> {
    for name in profiles.keys() {
        inputs(profiles, name).map_err(|e| (name.clone(), e))?;
    }
    Ok(())
}

/// `name`'s inputs with their roles, reversed so that popping takes them in
/// the profile's order.
fn roles<P: Inputs>(profiles: &BTreeMap<String, P>, name: &str) -> Vec<(&'static str, String)> {
    let Some(profile) = profiles.get(name) else {
        return Vec::new();
    };
    let mut roles: Vec<_> = profile
        .input_roles()
        .map(|(role, input)| (role, input.to_string()))
        .collect();
    roles.reverse();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Assertion, AuthMethod, Exchange, Grant, Profile};

    fn plain() -> Profile {
        Profile::new("https://idp.example/token", "c", AuthMethod::None)
    }

    fn exchange(subject: &str) -> Profile {
        let mut p = plain();
        p.grant = Grant::TokenExchange(Box::new(Exchange::of(subject)));
        p
    }

    /// `p`, a token exchange, with `actor` as its actor.
    fn with_actor(mut p: Profile, actor: &str) -> Profile {
        if let Grant::TokenExchange(exchange) = &mut p.grant {
            exchange.actor_profile = Some(actor.into());
        }
        p
    }

    /// `p0` made from `p1` ... made from `p{links}`, which is plain.
    fn chain(links: usize) -> BTreeMap<String, Profile> {
        let mut profiles = BTreeMap::new();
        for i in 0..links {
            profiles.insert(format!("p{i}"), exchange(&format!("p{}", i + 1)));
        }
        profiles.insert(format!("p{links}"), plain());
        profiles
    }

    #[test]
    fn a_plain_profile_has_no_inputs() {
        assert_eq!(inputs(&chain(0), "p0"), Ok(vec![]));
    }

    #[test]
    fn every_input_down_the_chain_is_listed_once_with_its_path() {
        let mut profiles = chain(2);
        // p0 also takes its actor from p2: listed once.
        let p0 = profiles.remove("p0").unwrap();
        profiles.insert("p0".into(), with_actor(p0, "p2"));
        let found = inputs(&profiles, "p0").unwrap();
        let names: Vec<_> = found.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["p1", "p2"]);
        assert_eq!(found[0].role, "subject");
        assert_eq!(found[1].path, ["p0", "p1", "p2"]);
    }

    #[test]
    fn a_chain_of_the_maximum_depth_is_fine_and_one_more_link_is_refused() {
        assert_eq!(inputs(&chain(MAX_DEPTH), "p0").unwrap().len(), MAX_DEPTH);
        let err = inputs(&chain(MAX_DEPTH + 1), "p0").unwrap_err();
        assert!(matches!(err, ChainError::TooDeep { .. }), "{err:?}");
        assert_eq!(err.path().len(), MAX_DEPTH + 2);
        assert_eq!(err.field(), "subject_profile");
        assert!(err.to_string().contains("p0 -> p1"), "{err}");
    }

    #[test]
    fn a_very_long_chain_is_refused_without_walking_it_all() {
        // 400 links (the attack that overflowed the stack): refused at the
        // depth limit.
        let err = inputs(&chain(400), "p0").unwrap_err();
        assert_eq!(err.path().len(), MAX_DEPTH + 2);
        let (name, _) = check_all(&chain(400)).unwrap_err();
        assert_eq!(name, "p0");
    }

    #[test]
    fn a_circle_is_named_from_where_it_closes() {
        let mut profiles = chain(2);
        profiles.insert("p2".into(), exchange("p1"));
        let err = inputs(&profiles, "p0").unwrap_err();
        assert_eq!(
            err,
            ChainError::Cycle {
                path: vec!["p1".into(), "p2".into(), "p1".into()],
                role: "subject"
            }
        );
        profiles.insert("p0".into(), exchange("p0"));
        let err = inputs(&profiles, "p0").unwrap_err();
        assert_eq!(err.path(), ["p0", "p0"]);
    }

    #[test]
    fn an_error_names_the_field_of_the_first_link_of_its_chain() {
        // p0's actor is p1, whose subject closes a circle: the config field
        // to fix, seen from p0, is its actor_profile.
        // (Its subject is a profile that does not exist: listed, not walked.)
        let p0 = with_actor(exchange("absent"), "p1");
        let p1 = exchange("p0");
        let profiles = BTreeMap::from([("p0".to_string(), p0.clone()), ("p1".to_string(), p1)]);
        assert_eq!(
            inputs(&profiles, "p0").unwrap_err().field(),
            "actor_profile"
        );
        let mut p0 = plain();
        p0.grant = Grant::JwtBearer(Assertion::Profile("p1".into()));
        let mut profiles = profiles;
        profiles.insert("p0".into(), p0);
        let err = inputs(&profiles, "p0").unwrap_err();
        assert_eq!(err.field(), "assertion_profile");
        // And from p1's side, its subject_profile.
        assert_eq!(
            inputs(&profiles, "p1").unwrap_err().field(),
            "subject_profile"
        );
    }

    #[test]
    fn a_missing_input_is_listed_and_not_walked() {
        let profiles = BTreeMap::from([("a".to_string(), exchange("gone"))]);
        let found = inputs(&profiles, "a").unwrap();
        assert_eq!(found[0].name, "gone");
    }

    #[test]
    fn a_wide_diamond_is_walked_within_bounds() {
        // Every level takes its subject and its actor from the next: 2^8
        // paths.
        let mut profiles = BTreeMap::new();
        for i in 0..MAX_DEPTH {
            let next = format!("p{}", i + 1);
            profiles.insert(format!("p{i}"), with_actor(exchange(&next), &next));
        }
        profiles.insert(format!("p{MAX_DEPTH}"), plain());
        assert_eq!(inputs(&profiles, "p0").unwrap().len(), MAX_DEPTH);
    }
}
