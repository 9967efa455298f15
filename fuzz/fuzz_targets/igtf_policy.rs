#![no_main]
// The IGTF policy files of a CA directory (`<hash>.namespaces`, `<hash>.signing_policy`), which
// decide which subject DNs a CA may sign; and the check of a DN against what parsed.
use std::path::Path;

use layercrypt_igtf::namespaces::{Namespaces, SigningPolicy};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "/DC=eu/DC=rcauth/O=Certification Authorities/CN=Example CA";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line doubles as a subject DN to check.
    let subject = text.lines().next().unwrap_or("");
    if let Ok(p) = SigningPolicy::parse(text, Path::new("fuzz.signing_policy")) {
        let _ = p.check(ISSUER, subject);
    }
    if let Ok(n) = Namespaces::parse(text, Path::new("fuzz.namespaces")) {
        let _ = n.check(ISSUER, subject);
    }
});
