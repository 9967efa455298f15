#![no_main]
use layercrypt_ocicrypt::keywrap::jwe::JweKeyWrapper;
use layercrypt_ocicrypt::keywrap::KeyWrapper;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = JweKeyWrapper.recipients(data);
    let _ = JweKeyWrapper.unwrap(layercrypt_fuzz::decrypt_config(), data);
});
