#![no_main]
use layercrypt_ocicrypt::options::PublicOptions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PublicOptions::from_json(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = PublicOptions::from_annotation(s);
    }
});
