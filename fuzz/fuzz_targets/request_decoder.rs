//! The agent's request decoder, fed whatever a local process can write on the
//! socket. It must never panic, and a request it accepts must survive being
//! encoded (as the client does) and decoded again unchanged.
#![no_main]

use jwtagent::protocol::{Envelope, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let parsed = parse_request(line);
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
});
