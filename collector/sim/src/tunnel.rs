//! The simulator's way through an HTTP CONNECT proxy (`--proxy`): one tunnel per connection, as
//! each agent behind `oqs-agent relay` has. Its own few lines rather than the agent's uplink, so
//! the collector (whose `--demo` runs the simulator) never depends on the agent.
//!
//! Must never be more than a load tool's client: no credentials, no retries, plain errors.

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// The most an answer's head may be.
const MAX_HEAD: usize = 8 * 1024;

/// A connector for `Endpoint::connect_with_connector_lazy` that opens each connection as a
/// tunnel through `proxy` (`HOST:PORT`) to the URI's host and port.
pub fn connector(
    proxy: String,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<TcpStream>,
    Error = std::io::Error,
    Future = impl Send + 'static,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: Uri| open(proxy.clone(), uri))
}

async fn open(proxy: String, uri: Uri) -> std::io::Result<TokioIo<TcpStream>> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other(format!("{uri}: no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    let mut s = TcpStream::connect(proxy.as_str()).await?;
    s.set_nodelay(true)?;
    let target = format!("{host}:{port}");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    // Byte by byte up to the blank line, so nothing of the tunnel is read here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::other(
                "the proxy's answer head is too large",
            ));
        }
        let mut b = [0u8; 1];
        if s.read(&mut b).await? == 0 {
            return Err(std::io::Error::other("the proxy closed without an answer"));
        }
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        let first = line.lines().next().unwrap_or_default().to_owned();
        return Err(std::io::Error::other(format!(
            "the proxy {proxy} refused the tunnel to {target}: {first}"
        )));
    }
    Ok(TokioIo::new(s))
}
