//! The socket of a connection actix-http serves, wrapped so that a request
//! whose body was left unfinished can end its reading side
//! ([`Hangup`](crate::http::hangup::Hangup)).
//!
//! It must never change a byte that passes through, nor end the writing
//! side: the answer to the request that hung up still has to leave.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::http::hangup::Hangup;

/// An actix-http connection's socket: reads end (as at the client's close)
/// once its [`Hangup`] time has come; writes pass through.
pub(crate) struct Guarded {
    io: TcpStream,
    pub(super) hangup: Rc<Hangup>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    pub(super) fn new(io: TcpStream) -> Guarded {
        Guarded {
            io,
            hangup: Rc::new(Hangup::default()),
            timer: None,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.hangup.poll_due(&mut this.timer, cx) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
