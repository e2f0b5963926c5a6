//! The capture layer's remaining unsafe code: the few syscalls that neither std nor socket2
//! wrap. Each block says why it is sound; everything else in `capture` is safe Rust.

use socket2::{SockAddr, SockRef};
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsFd, RawFd};
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
