//! Generates the gRPC service of `mlart serve` (the Open Inference Protocol's
//! `inference.GRPCInferenceService`, server side only) from its .proto, with the protoc that
//! the protoc-bin-vendored crate carries: nothing is downloaded and no protoc is needed on the
//! machine.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // `mlart serve` is part of the `validate` feature; without it there is nothing to generate.
    #[cfg(feature = "validate")]
    grpc_service();
}

#[cfg(feature = "validate")]
fn grpc_service() {
    let proto = "src/serve/proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    if std::env::var_os("PROTOC").is_none() {
        match protoc_bin_vendored::protoc_bin_path() {
            // Build scripts run single-threaded: setting the variable here is sound.
            Ok(p) => std::env::set_var("PROTOC", p),
            Err(e) => {
                panic!("no vendored protoc for this platform ({e}): set PROTOC to a protoc binary")
            }
        }
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(&[proto], &["src/serve/proto"])
        .unwrap_or_else(|e| panic!("compiling {proto}: {e}"));
}
