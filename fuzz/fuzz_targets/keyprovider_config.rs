#![no_main]
use std::path::Path;

use layercrypt_ocicrypt::keywrap::keyprovider::parse_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_config(data, Path::new("fuzz"));
});
