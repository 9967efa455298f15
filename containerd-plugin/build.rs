//! Compiles the minimal CRI proto used by the end-to-end test's gRPC client
//! (`tests/proto/cri.proto`). Needs `protoc` (Debian: `apt-get install protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=tests/proto/cri.proto");
    tonic_build::configure()
        .build_server(false)
        .compile_protos(&["tests/proto/cri.proto"], &["tests/proto"])
        .map_err(|e| {
            format!("compiling tests/proto/cri.proto failed (is protoc installed? apt-get install protobuf-compiler): {e}")
        })?;
    Ok(())
}
