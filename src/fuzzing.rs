//! What the fuzz targets (in `fuzz/`) check on the core crate's parsers, as
//! functions the normal test run replays the committed seeds through.

use crate::config::ConfigFile;
use crate::protocol::{Envelope, parse_request};
use std::path::Path;

/// The request_decoder target's check: the agent's request decoder, fed
/// whatever a local process can write on the socket, never panics, and a
/// request it accepts survives being encoded (as the client does) and
/// decoded again unchanged.
pub fn request_decoder(line: &[u8]) {
    let parsed = parse_request(line);
    // The token op's quick reading accepts only what the full one reads
    // the same.
    if crate::protocol::quick_token(line).is_some() {
        assert_eq!(parsed, crate::protocol::parse_any(line));
    }
    if let Ok(request) = parsed.request {
        let again = serde_json::to_vec(&Envelope {
            id: &parsed.id,
            request: &request,
        })
        .expect("an accepted request encodes");
        let reparsed = parse_request(&again);
        assert_eq!(reparsed.id, parsed.id);
        assert_eq!(reparsed.request, Ok(request));
    }
}

/// The config_parser target's check: a config the parser accepts is read
/// back unchanged from what jwtagent writes of it, its invalid profiles too.
pub fn config_parser(text: &str) {
    let path = Path::new("/fuzz/profiles.toml");
    if let Ok(config) = ConfigFile::parse(text, path) {
        let written = config.to_toml();
        let reread = ConfigFile::parse(&written, path)
            .unwrap_or_else(|e| panic!("jwtagent cannot read what it wrote: {e}\n{written}"));
        assert_eq!(
            (&reread.version, &reread.store, &reread.profiles),
            (&config.version, &config.store, &config.profiles)
        );
        // A profile that is not valid is written back as it was read (its
        // reason names a line, which moves).
        let tables = |c: &ConfigFile| -> Vec<(String, toml::Value)> {
            c.skipped
                .iter()
                .map(|(name, s)| (name.clone(), s.table.clone()))
                .collect()
        };
        assert_eq!(tables(&reread), tables(&config));
    }
}

#[cfg(test)]
mod tests {
    /// Every committed seed of `target` (among them inputs that once
    /// crashed it) still passes its check.
    fn replay(target: &str, check: impl Fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            check(&std::fs::read(entry.unwrap().path()).unwrap());
            seen += 1;
        }
        assert!(seen > 0, "no seeds in {}", dir.display());
    }
    use std::path::Path;

    #[test]
    fn request_decoder_seeds_pass() {
        replay("request_decoder", super::request_decoder);
    }

    #[test]
    fn the_full_config_seed_is_a_valid_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/config_parser/full.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = crate::config::ConfigFile::parse(&text, &path).unwrap();
        assert!(config.profiles.len() >= 6, "{:?}", config.profiles.keys());
    }

    #[test]
    fn config_parser_seeds_pass() {
        replay("config_parser", |bytes| {
            super::config_parser(std::str::from_utf8(bytes).expect("a UTF-8 seed"))
        });
    }
}
