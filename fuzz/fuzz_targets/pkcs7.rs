#![no_main]
use layercrypt_ocicrypt::keywrap::pkcs7::Pkcs7KeyWrapper;
use layercrypt_ocicrypt::keywrap::KeyWrapper;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Pkcs7KeyWrapper.recipients(data);
    let _ = Pkcs7KeyWrapper.unwrap(layercrypt_fuzz::decrypt_config(), data);
});
