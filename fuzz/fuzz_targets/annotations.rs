#![no_main]
use std::collections::BTreeMap;

use layercrypt_ocicrypt::annotations::LayerAnnotations;
use libfuzzer_sys::fuzz_target;

// One `key=value` annotation per line.
fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let map: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = LayerAnnotations::parse(&map);
});
