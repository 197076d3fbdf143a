//! Who wrote what a connection carries: every read takes the writer's
//! credentials (SCM_CREDENTIALS, with SO_PASSCRED on the listening socket), so a
//! caller policy judges each process that wrote to the connection, not only
//! the one that connected. A process that connects, forks and execs an allowed
//! binary while its child keeps the socket is seen as the child it is.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

/// A process that wrote to the connection, with when its bytes were read
/// (boot ticks), which bounds when it may have started (pid reuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Writer {
    /// 0 when the kernel could not tell (another pid namespace).
    pub pid: u32,
    pub seen_at: u64,
}

/// The read half of a connection, read with `recvmsg` to learn the writer of
/// each chunk. A stream read never returns bytes of two writers at once.
pub(crate) struct CredReader {
    inner: OwnedReadHalf,
    /// Distinct writers seen so far, in order; a handful at most in practice,
    /// bounded so that a hostile peer cannot grow it.
    writers: Vec<Writer>,
    /// Writers were added since [`CredReader::take_new`] last looked.
    fresh: usize,
}

/// More distinct writers than this on one connection is not a client.
const MAX_WRITERS: usize = 16;

impl CredReader {
    pub(crate) fn new(inner: OwnedReadHalf) -> CredReader {
        CredReader {
            inner,
            writers: Vec::new(),
            fresh: 0,
        }
    }

    /// Every distinct writer seen; `None` once there were more than
    /// [`MAX_WRITERS`] (the connection cannot pass any caller policy).
    pub(crate) fn writers(&self) -> Option<&[Writer]> {
        (self.writers.len() <= MAX_WRITERS).then_some(&self.writers[..])
    }

    /// Whether writers were added since the last call.
    pub(crate) fn take_new(&mut self) -> bool {
        let new = self.fresh != self.writers.len();
        self.fresh = self.writers.len();
        new
    }

    fn record(&mut self, pid: u32) {
        if self.writers.len() > MAX_WRITERS || self.writers.iter().any(|w| w.pid == pid) {
            return;
        }
        let seen_at = crate::peer::boot_ticks_now().unwrap_or(u64::MAX);
        self.writers.push(Writer { pid, seen_at });
    }
}

impl AsyncRead for CredReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.inner.as_ref().poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let stream = this.inner.as_ref();
            let result = stream.try_io(Interest::READABLE, || {
                crate::sys::recv_with_sender(stream.as_fd(), unfilled)
            });
            match result {
                Ok((n, sender)) => {
                    if n > 0 {
                        // Bytes with no credentials cannot be attributed:
                        // recorded as pid 0, which no policy admits.
                        this.record(sender.unwrap_or(0));
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
