//! A gRPC health server for the kubelet's gRPC probe tests: `grpc.health.v1.Health` on the
//! address given as the first argument (default `0.0.0.0:50051`), reporting the whole server
//! (service `""`) SERVING and the service `sick` NOT_SERVING. Tests import it into an image.

use std::net::SocketAddr;

use tonic_health::ServingStatus;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:50051".into())
        .parse()?;
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("sick", ServingStatus::NotServing)
        .await;
    println!("grpc health server on {addr}");
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_shutdown(addr, async {
            // PID 1 in a container gets no default SIGTERM handler: exit on it explicitly.
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        })
        .await?;
    Ok(())
}
