#![no_main]
use layercrypt_ocicrypt::options::{PrivateOptions, PublicOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PrivateOptions::from_json(data, &PublicOptions::new([0; 32]));
});
