//! The capture layer's remaining unsafe code: the few syscalls that neither std nor socket2
//! wrap. Each block says why it is sound; everything else in `capture` is safe Rust.

use socket2::{SockAddr, SockRef};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

/// Conntrack's original destination of an accepted connection, if NAT rewrote it.
/// `peer_is_v4` selects the table (an IPv4 client on a dual-stack socket is in the IPv4 one).
pub fn original_destination(socket: &impl AsFd, peer_is_v4: bool) -> Option<SocketAddr> {
    let socket = SockRef::from(socket);
    let addr = if peer_is_v4 {
        socket.original_dst_v4()
    } else {
        socket.original_dst_v6()
    };
    addr.ok()?.as_socket()
}

/// The client's address, even when it already reset the connection.
///
/// getpeername(2) fails with ENOTCONN once a queued connection was reset, which is exactly what
/// port scanners do; SO_PEERNAME reads the same address without that state check (as accept(2)
/// does), so those connections are recorded too.
pub fn peer_address(fd: RawFd) -> Option<SocketAddr> {
    // The kernel wants optlen no larger than the address it has: try IPv6, then IPv4.
    [
        size_of::<libc::sockaddr_in6>(),
        size_of::<libc::sockaddr_in>(),
    ]
    .into_iter()
    .find_map(|want| {
        // SAFETY: try_init hands us zeroed sockaddr_storage and its length to fill; we pass
        // a length no larger than the storage, and getsockopt writes at most that many bytes.
        let (rc, addr) = unsafe {
            SockAddr::try_init(|storage, len| {
                *len = want as libc::socklen_t;
                Ok(libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_PEERNAME,
                    storage.cast(),
                    len,
                ))
            })
        }
        .ok()?;
        if rc != 0 {
            return None;
        }
        addr.as_socket()
    })
}

/// Ends a connection's pending read (it returns EOF), or both directions.
///
/// The caller guarantees `fd` is still the connection's open socket (connections leave the
/// worker's registry before they close their fd, and the registry checks generations).
pub fn shutdown(fd: RawFd, how: std::net::Shutdown) {
    let how = match how {
        std::net::Shutdown::Read => libc::SHUT_RD,
        std::net::Shutdown::Write => libc::SHUT_WR,
        std::net::Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) on a descriptor has no memory effects; see the caller's guarantee
    // for why it is the right socket.
    unsafe { libc::shutdown(fd, how) };
}

/// The signals the main thread handles.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and every thread it starts later), so
    /// that only [`Signals::wait`] sees them. Call before any thread exists.
    pub fn block() -> Signals {
        // SAFETY: sigemptyset/sigaddset initialize and fill a stack sigset_t; pthread_sigmask
        // reads it.
        let set = unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        Signals { set }
    }

    /// Waits up to `timeout` for one of the blocked signals.
    pub fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: set and ts are valid; the siginfo pointer may be null.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// Sends SIGTERM to this process (a worker that failed stops the sensor).
pub fn terminate_self() {
    // SAFETY: raising a signal at our own process is always sound.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
}

/// Keeps freed heap memory instead of trimming it: connection state is allocated and freed
/// at a high rate on the worker threads, and glibc would otherwise trim their heaps and grow
/// them again (an mprotect per cycle, seen in profiles). Call before any worker exists.
pub fn keep_freed_heap() {
    // SAFETY: mallopt only tunes the allocator.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20) };
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every connection is a descriptor.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid rlimit to fill and then pass back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Asks the kernel to keep the headers of each SYN this listener receives, for
/// [`saved_syn`] on the accepted socket (TCP_SAVE_SYN; about 100 bytes per pending socket).
pub fn set_save_syn(socket: &impl AsRawFd) -> std::io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_SAVE_SYN,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Room for the saved IP and TCP headers: IPv4 60 + TCP 60, or IPv6 40 + extension headers.
pub const SAVED_SYN_MAX: usize = 512;

/// Copies the headers of the SYN that opened this accepted socket into `buf` and returns
/// their length; the kernel frees them then, so this works once per socket. `None` when the
/// listener did not save it (SYN cookies, or TCP_SAVE_SYN off) or it does not fit.
pub fn saved_syn(fd: RawFd, buf: &mut [u8; SAVED_SYN_MAX]) -> Option<usize> {
    let mut len = SAVED_SYN_MAX as libc::socklen_t;
    // SAFETY: buf is writable for len bytes and getsockopt writes at most len bytes into it
    // (a longer SYN fails with EINVAL and writes nothing); len is a live socklen_t it updates.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let len = usize::try_from(len).ok()?;
    (rc == 0 && len > 0 && len <= SAVED_SYN_MAX).then_some(len)
}
