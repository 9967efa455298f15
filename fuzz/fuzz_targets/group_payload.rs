#![no_main]
// The group payload, which the broker parses from any caller (POST /v1/unwrap) and the CLI
// and nodes read from image annotations; and the broker URL inside it.
use layercrypt_proto::{BrokerUrl, GroupPayload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = GroupPayload::parse(data) {
        // What parses re-serializes and parses to the same payload.
        let again = GroupPayload::parse(&p.to_bytes()).expect("round trip");
        assert_eq!(again, p);
        let _ = BrokerUrl::parse(&p.broker);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = BrokerUrl::parse(s) {
            // The normal form is a fixed point.
            assert_eq!(BrokerUrl::parse(u.as_str()).expect("normal form parses"), u);
        }
    }
});
