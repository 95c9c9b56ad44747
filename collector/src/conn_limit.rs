//! Open gRPC connections per source (`limits.max_connections_per_source`; a source is an IPv4
//! address or an IPv6 /64, as for failed authentications): a connection over the cap is closed as
//! it is accepted, before TLS or HTTP/2 cost anything, so one peer cannot hold every socket. A
//! connection that sends nothing within `limits.connect_timeout_ms` (no TLS ClientHello, no
//! HTTP/2 preface) is closed too.
//!
//! Must never hold a connection's slot after the connection is gone: the slot lives in the
//! connection's stream and is given back when it drops.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections open per source.
pub struct PerSource {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerSource`].
struct Slot {
    of: Arc<PerSource>,
    source: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.of.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.source);
            }
        }
    }
}

impl PerSource {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let source = crate::failure_limit::source(peer);
        let mut m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(source).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            of: self.clone(),
            source,
        })
    }

    /// Connections open from `peer`'s source now.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        let m = self.open.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&crate::failure_limit::source(peer))
            .copied()
            .unwrap_or(0)
    }
}

/// A connection that is given up if its first byte does not arrive in time (no TLS ClientHello,
/// no HTTP preface or request line): reads fail with `TimedOut` once the deadline passed. On the
/// gRPC side it also holds the connection's place in [`PerSource`].
pub struct FirstByte<T> {
    inner: T,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    _slot: Option<Slot>,
}

impl<T> FirstByte<T> {
    pub fn new(inner: T, within: std::time::Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            _slot: None,
        }
    }
}

/// An accepted gRPC connection holding its slot.
pub type Limited = FirstByte<TcpStream>;

/// The listener's connections, those over their source's cap closed (and told to `refused` with
/// the peer's address).
pub fn incoming(
    listener: TcpListener,
    limit: Arc<PerSource>,
    first_byte_within: std::time::Duration,
    refused: impl Fn(IpAddr) + Send + 'static,
) -> impl Stream<Item = io::Result<Limited>> {
    TcpListenerStream::new(listener).filter_map(move |accepted| match accepted {
        Err(e) => Some(Err(e)),
        Ok(tcp) => {
            let peer = tcp.peer_addr().ok()?.ip();
            match limit.enter(peer) {
                Some(slot) => Some(Ok(FirstByte {
                    _slot: Some(slot),
                    ..FirstByte::new(tcp, first_byte_within)
                })),
                None => {
                    refused(peer);
                    None
                }
            }
        }
    })
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByte<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing received before the connection's deadline",
                    )))
                } else {
                    Poll::Pending
                }
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstByte<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
