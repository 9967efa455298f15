#![no_main]
// The stream processor's fd-3 payload from containerd: a marshalled protobuf `Any` holding
// the JSON decryption parameters and the layer descriptor. The input is tried as the whole
// `Any`, and as the JSON inside a well-formed one (so that the fuzzer does not have to find
// the type URL first).
use layercrypt_node::payload::{decode, decode_any, encode_any, PAYLOAD_TYPE_URL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_any(data);
    let _ = decode(data);
    let _ = decode(&encode_any(PAYLOAD_TYPE_URL, data));
});
