fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/config.proto",
            "proto/ca.proto",
            "proto/peering.proto",
            "proto/grpcecho.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
