#![no_main]
// The stream processor's fd-3 payload from containerd: a marshalled protobuf `Any` holding
// the JSON decryption parameters and the layer descriptor.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = layercrypt_node::payload::decode_any(data);
    let _ = layercrypt_node::payload::decode(data);
});
