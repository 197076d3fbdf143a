//! The private-key loader, fed any file given to `--key-file`. It must never
//! panic, and a key it accepts must sign.
#![no_main]

use jwtagent::secret::Secret;
use jwtagent_agent::fuzzing::parse_private_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|pem: &[u8]| {
    let secret = Secret::new(pem.to_vec());
    if let Ok((kind, _key)) = parse_private_key(&secret) {
        let alg = kind.default_alg();
        jwtagent_agent::fuzzing::client_assertion("fuzz", &secret, alg, Default::default(), "https://idp.example")
            .expect("an accepted key signs");
    }
});
