#![no_main]
use layercrypt_ocicrypt::keys::parse_key_material;
use layercrypt_ocicrypt::SecretBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_key_material(data, None, "fuzz");
    let _ = parse_key_material(data, Some(&SecretBytes::from_slice(b"fuzz")), "fuzz");
});
