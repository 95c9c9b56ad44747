//! The client side of an HTTP CONNECT tunnel: asks a proxy (or `oqs-agent relay`) for a byte
//! stream to the collector and says plainly why it was refused.
//!
//! Must never read past the proxy's answer (the bytes after it are the collector's TLS), and
//! never put the credentials in an error or a log.

use super::proxy::{ProxyAddr, ProxyCredentials};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer head may be: a CONNECT's is a status line and a few headers.
const MAX_HEAD: usize = 16 * 1024;

/// The header `oqs-agent relay` adds to its answer, with its host name: the report says the
/// reports came through that relay, not through some proxy.
pub const RELAY_HEADER: &str = "OQS-Relay";

/// Why a tunnel was not opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("the proxy {proxy} cannot be reached: {source}")]
    Unreachable {
        proxy: String,
        source: std::io::Error,
    },
    #[error(
        "the proxy {proxy} asks for credentials ({status}): {}",
        if *.sent { "it refused those in collector.proxy_auth_file" } else { "set collector.proxy_auth_file" }
    )]
    AuthRequired {
        proxy: String,
        status: u16,
        sent: bool,
    },
    #[error("the proxy {proxy} does not allow a tunnel to {target} (403: its allow list)")]
    Forbidden { proxy: String, target: String },
    #[error("the proxy {proxy} could not reach the collector {target} ({status})")]
    Upstream {
        proxy: String,
        target: String,
        status: u16,
    },
    #[error("the proxy {proxy} refused the tunnel to {target}: HTTP {status} {reason}")]
    Status {
        proxy: String,
        target: String,
        status: u16,
        reason: String,
    },
    #[error("the proxy {proxy} answered something that is not HTTP: {what}")]
    Malformed { proxy: String, what: String },
    #[error("the proxy {proxy} did not answer within {0:?}", .after)]
    Timeout { proxy: String, after: Duration },
}

/// An open tunnel, and who carried it.
pub struct Tunnel {
    pub stream: TcpStream,
    /// The relay's host name when `oqs-agent relay` answered (its `OQS-Relay` header).
    pub relay: Option<String>,
}

/// Opens a tunnel through `proxy` to `target` (`host:port`; the proxy resolves the name, which
/// on a closed network the terminal often cannot), within `timeout` for the connection and the
/// answer together.
pub async fn open(
    proxy: &ProxyAddr,
    target: &str,
    credentials: Option<&ProxyCredentials>,
    timeout: Duration,
) -> Result<Tunnel, TunnelError> {
    let p = proxy.to_string();
    match tokio::time::timeout(timeout, open_inner(proxy, target, credentials)).await {
        Ok(r) => r,
        Err(_) => Err(TunnelError::Timeout {
            proxy: p,
            after: timeout,
        }),
    }
}

async fn open_inner(
    proxy: &ProxyAddr,
    target: &str,
    credentials: Option<&ProxyCredentials>,
) -> Result<Tunnel, TunnelError> {
    let p = proxy.to_string();
    let unreachable = |source| TunnelError::Unreachable {
        proxy: p.clone(),
        source,
    };
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(unreachable)?;
    let _ = stream.set_nodelay(true);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(c) = credentials {
        req.push_str("Proxy-Authorization: ");
        req.push_str(&c.header_value());
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(unreachable)?;
    let head = read_head(&mut stream, &p).await?;
    let answer = parse_answer(&head).ok_or_else(|| TunnelError::Malformed {
        proxy: p.clone(),
        what: format!("{:?}", String::from_utf8_lossy(&head[..head.len().min(80)])),
    })?;
    let target = target.to_owned();
    match answer.status {
        200..=299 => Ok(Tunnel {
            stream,
            relay: answer.relay,
        }),
        // 407 is the standard; tinyproxy answers a failed BasicAuth with 401.
        status @ (401 | 407) => Err(TunnelError::AuthRequired {
            proxy: p,
            status,
            sent: credentials.is_some(),
        }),
        403 => Err(TunnelError::Forbidden { proxy: p, target }),
        502..=504 => Err(TunnelError::Upstream {
            proxy: p,
            target,
            status: answer.status,
        }),
        status => Err(TunnelError::Status {
            proxy: p,
            target,
            status,
            reason: answer.reason,
        }),
    }
}

/// Reads the answer's head up to its blank line, a byte at a time: what follows belongs to the
/// tunnel (a proxy may send it at once), and a head is a few hundred bytes.
async fn read_head(stream: &mut TcpStream, proxy: &str) -> Result<Vec<u8>, TunnelError> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HEAD {
            return Err(TunnelError::Malformed {
                proxy: proxy.into(),
                what: format!("an answer head over {MAX_HEAD} bytes"),
            });
        }
        let n = stream
            .read(&mut byte)
            .await
            .map_err(|source| TunnelError::Unreachable {
                proxy: proxy.into(),
                source,
            })?;
        if n == 0 {
            return Err(TunnelError::Malformed {
                proxy: proxy.into(),
                what: if head.is_empty() {
                    "it closed the connection without an answer".into()
                } else {
                    "it closed the connection mid-answer".into()
                },
            });
        }
        head.push(byte[0]);
    }
    Ok(head)
}

struct Answer {
    status: u16,
    reason: String,
    relay: Option<String>,
}

fn parse_answer(head: &[u8]) -> Option<Answer> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = parts
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let relay = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(RELAY_HEADER).then(|| {
            v.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(oqs_proto::text_limits::HOSTNAME)
                .collect()
        })
    });
    Some(Answer {
        status,
        reason,
        relay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A proxy that reads one request head and answers `answer`, then echoes what follows.
    async fn proxy(answer: &'static str) -> (ProxyAddr, tokio::task::JoinHandle<String>) {
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
            s.write_all(answer.as_bytes()).await.unwrap();
            let mut buf = [0u8; 5];
            if answer.starts_with("HTTP/1.1 200") && s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await.unwrap();
            }
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
    async fn a_tunnel_asks_for_the_collector_by_name_and_carries_bytes_both_ways() {
        let (p, task) =
            proxy("HTTP/1.1 200 Connection established\r\nOQS-Relay: relay-pc\r\n\r\n").await;
        let creds = ProxyCredentials::parse("noc:pw").unwrap();
        let mut t = open(
            &p,
            "collector.example:50051",
            Some(&creds),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(t.relay.as_deref(), Some("relay-pc"));
        t.stream.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        t.stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        let req = task.await.unwrap();
        assert!(
            req.starts_with("CONNECT collector.example:50051 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("Host: collector.example:50051\r\n"));
        assert!(req.contains("Proxy-Authorization: Basic bm9jOnB3\r\n"));
    }

    #[tokio::test]
    async fn each_refusal_says_what_to_do() {
        let cases = [
            (
                "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
                "set collector.proxy_auth_file",
            ),
            (
                "HTTP/1.0 401 Unauthorized\r\n\r\n",
                "asks for credentials (401)",
            ),
            ("HTTP/1.1 403 Forbidden\r\n\r\n", "allow list"),
            (
                "HTTP/1.0 502 Bad Gateway\r\n\r\n",
                "could not reach the collector",
            ),
            ("HTTP/1.1 500 Oops\r\n\r\n", "HTTP 500 Oops"),
            ("SSH-2.0-OpenSSH\r\n\r\n", "not HTTP"),
            ("", "without an answer"),
        ];
        for (answer, says) in cases {
            let (p, _task) = proxy(answer).await;
            let e = match open(&p, "c:1", None, Duration::from_secs(5)).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{answer:?} opened a tunnel"),
            };
            assert!(e.contains(says), "{answer:?}: {e}");
        }
        let e = match open(
            &ProxyAddr {
                host: "127.0.0.1".into(),
                port: 1,
            },
            "c:1",
            None,
            Duration::from_secs(5),
        )
        .await
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("port 1 answered"),
        };
        assert!(e.contains("cannot be reached"), "{e}");
    }

    #[tokio::test]
    async fn a_proxy_that_never_answers_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = ProxyAddr {
            host: "127.0.0.1".into(),
            port: l.local_addr().unwrap().port(),
        };
        let e = match open(&p, "c:1", None, Duration::from_millis(200)).await {
            Err(e) => e,
            Ok(_) => panic!("a silent proxy opened a tunnel"),
        };
        assert!(matches!(e, TunnelError::Timeout { .. }), "{e}");
        drop(l);
    }
}
