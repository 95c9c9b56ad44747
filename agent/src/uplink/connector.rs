//! Opens the byte stream one way to the collector starts with: a TCP connection to the collector,
//! or a tunnel through a proxy (configured, or the machine's as it stands at each attempt). tonic
//! puts TLS and HTTP/2 on top, so the collector's name is what TLS verifies, never the proxy's.
//!
//! Must never resolve the collector's name itself when a proxy carries the connection (on a
//! closed network the terminal often cannot; the proxy can), and never hide why a way failed:
//! each attempt's outcome is kept in [`WayStatus`] for the log and the report.

use super::proxy::{NoProxy, ProxyAddr, ProxyCredentials, SystemProxy};
use super::tunnel;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// How a way reaches the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through this proxy, except for hosts in `no_proxy`.
    Proxy {
        addr: ProxyAddr,
        credentials: Option<ProxyCredentials>,
        no_proxy: NoProxy,
    },
    /// Through the machine's proxy as it stands at each attempt (WinHTTP; `HTTPS_PROXY`).
    System {
        credentials: Option<ProxyCredentials>,
        no_proxy: NoProxy,
    },
}

/// How the last connection of a way went through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Path {
    #[default]
    Direct,
    /// Through an HTTP proxy (its address).
    Proxy(String),
    /// Through `oqs-agent relay` (its host name, as it says in its answer).
    Relay(String),
}

/// What a way's attempts found: the path of the last connection and the last error, if the last
/// attempt failed.
#[derive(Debug, Clone, Default)]
pub struct WayStatus {
    pub path: Path,
    pub last_error: Option<String>,
    /// Connection attempts that failed since the last one that worked.
    pub failed_attempts: u32,
}

/// The tower service tonic's channel connects with (`Endpoint::connect_with_connector_lazy`).
#[derive(Clone)]
pub struct WayConnector {
    route: Arc<Route>,
    timeout: Duration,
    status: Arc<Mutex<WayStatus>>,
    /// The machine's proxy, read afresh at each attempt (a function so tests can set it).
    system: Arc<dyn Fn() -> SystemProxy + Send + Sync>,
}

impl WayConnector {
    pub fn new(route: Route, timeout: Duration) -> Self {
        Self {
            route: Arc::new(route),
            timeout,
            status: Arc::default(),
            system: Arc::new(SystemProxy::read),
        }
    }

    /// The same, reading "the machine's proxy" from `system` (tests).
    pub fn with_system(mut self, system: impl Fn() -> SystemProxy + Send + Sync + 'static) -> Self {
        self.system = Arc::new(system);
        self
    }

    /// This way's status, shared with every clone (the channel keeps one).
    pub fn status(&self) -> Arc<Mutex<WayStatus>> {
        self.status.clone()
    }
}

/// The collector's host (no brackets) and port from the URL (`https`: 443, `http`: 80 when the
/// URL names none).
fn host_port(uri: &Uri) -> std::io::Result<(String, u16)> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::other(format!("{uri}: no host")))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Ok((host, port))
}

/// `host:port` as a CONNECT names it (an IPv6 address in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect(
    route: &Route,
    system: &(dyn Fn() -> SystemProxy + Send + Sync),
    uri: Uri,
    timeout: Duration,
) -> std::io::Result<(TcpStream, Path)> {
    let (host, port) = host_port(&uri)?;
    let via = match route {
        Route::Direct => None,
        Route::Proxy {
            addr,
            credentials,
            no_proxy,
        } => (!no_proxy.bypasses(&host)).then(|| (addr.clone(), credentials.clone())),
        Route::System {
            credentials,
            no_proxy,
        } => {
            let sys = system();
            if let Some(p) = &sys.problem {
                tracing::warn!(source = sys.source, problem = %p, "the machine's proxy setting is not understood; connecting direct");
            }
            sys.proxy
                .filter(|_| !no_proxy.bypasses(&host) && !sys.bypass.bypasses(&host))
                .map(|p| (p, credentials.clone()))
        }
    };
    match via {
        None => {
            let s = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {} timed out", authority(&host, port)),
                    )
                })?
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", authority(&host, port)))
                })?;
            let _ = s.set_nodelay(true);
            Ok((s, Path::Direct))
        }
        Some((proxy, credentials)) => {
            let t = tunnel::open(
                &proxy,
                &authority(&host, port),
                credentials.as_ref(),
                timeout,
            )
            .await
            .map_err(std::io::Error::other)?;
            let path = match t.relay {
                Some(name) => Path::Relay(name),
                None => Path::Proxy(proxy.to_string()),
            };
            Ok((t.stream, path))
        }
    }
}

impl tower::Service<Uri> for WayConnector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let route = self.route.clone();
        let system = self.system.clone();
        let status = self.status.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let r = connect(&route, system.as_ref(), uri, timeout).await;
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok((stream, path)) => {
                    s.path = path;
                    s.last_error = None;
                    s.failed_attempts = 0;
                    Ok(TokioIo::new(stream))
                }
                Err(e) => {
                    s.last_error = Some(e.to_string());
                    s.failed_attempts = s.failed_attempts.saturating_add(1);
                    Err(e)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tower::Service;

    #[test]
    fn the_collectors_host_and_port_come_from_its_url() {
        let u: Uri = "https://[2001:db8::1]:50051".parse().unwrap();
        assert_eq!(host_port(&u).unwrap(), ("2001:db8::1".into(), 50051));
        assert_eq!(authority("2001:db8::1", 50051), "[2001:db8::1]:50051");
        let u: Uri = "https://collector.example".parse().unwrap();
        assert_eq!(host_port(&u).unwrap(), ("collector.example".into(), 443));
    }

    /// A CONNECT proxy that answers 200 and then echoes; it records the CONNECT line.
    async fn echo_proxy() -> (ProxyAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut b).await.unwrap();
                req.push(b[0]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            String::from_utf8(req).unwrap()
        });
        (
            ProxyAddr {
                host: "127.0.0.1".into(),
                port,
            },
            task,
        )
    }

    #[tokio::test]
    async fn a_way_through_a_proxy_names_the_collector_and_keeps_its_path() {
        let (addr, task) = echo_proxy().await;
        let mut c = WayConnector::new(
            Route::Proxy {
                addr: addr.clone(),
                credentials: None,
                no_proxy: NoProxy::default(),
            },
            Duration::from_secs(5),
        );
        let io = c
            .call("https://collector.invalid:50051".parse().unwrap())
            .await
            .unwrap();
        let mut s = io.into_inner();
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        assert!(task
            .await
            .unwrap()
            .starts_with("CONNECT collector.invalid:50051 "));
        assert_eq!(
            c.status().lock().unwrap().path,
            Path::Proxy(addr.to_string())
        );
    }

    #[tokio::test]
    async fn the_system_proxy_is_read_at_each_attempt_and_its_bypass_list_obeyed() {
        let (addr, task) = echo_proxy().await;
        let direct = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let direct_port = direct.local_addr().unwrap().port();
        let sys = addr.clone();
        let mut c = WayConnector::new(
            Route::System {
                credentials: None,
                no_proxy: NoProxy::default(),
            },
            Duration::from_secs(5),
        )
        .with_system(move || SystemProxy {
            proxy: Some(sys.clone()),
            bypass: NoProxy::parse(["127.0.0.0/8"]).unwrap(),
            source: "test",
            problem: None,
        });
        // 127.0.0.1 is bypassed: direct.
        c.call(format!("http://127.0.0.1:{direct_port}").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(c.status().lock().unwrap().path, Path::Direct);
        // A name is not: through the machine's proxy.
        c.call("https://collector.invalid:1".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            c.status().lock().unwrap().path,
            Path::Proxy(addr.to_string())
        );
        task.abort();
    }

    #[tokio::test]
    async fn a_failed_attempt_is_counted_with_its_reason() {
        let mut c = WayConnector::new(
            Route::Proxy {
                addr: ProxyAddr {
                    host: "127.0.0.1".into(),
                    port: 1,
                },
                credentials: None,
                no_proxy: NoProxy::default(),
            },
            Duration::from_secs(5),
        );
        for _ in 0..2 {
            assert!(c
                .call("https://c.invalid:1".parse().unwrap())
                .await
                .is_err());
        }
        let s = c.status().lock().unwrap().clone();
        assert_eq!(s.failed_attempts, 2);
        assert!(
            s.last_error.unwrap().contains("cannot be reached"),
            "the reason is kept"
        );
    }
}
