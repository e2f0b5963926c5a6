//! The port the client really dialled: conntrack's original destination, read with
//! getsockopt on the raw fd. Without NAT (TPROXY, a direct connection) there is none and the
//! local address is the destination; a connection is never dropped for lack of one.

use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

const SO_ORIGINAL_DST: libc::c_int = 80;
const IP6T_SO_ORIGINAL_DST: libc::c_int = 80;

/// Conntrack's original destination of an accepted connection, if NAT rewrote it.
/// `peer_is_v4` selects the table (an IPv4 client on a dual-stack socket is in the IPv4 one).
pub fn original_destination(fd: RawFd, peer_is_v4: bool) -> Option<SocketAddr> {
    if peer_is_v4 {
        let mut sa = MaybeUninit::<libc::sockaddr_in>::zeroed();
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sa` is a writable sockaddr_in and `len` its size; the kernel writes at most len.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IP,
                SO_ORIGINAL_DST,
                sa.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: getsockopt succeeded and filled the structure.
        let sa = unsafe { sa.assume_init() };
        if sa.sin_family != libc::AF_INET as libc::sa_family_t {
            return None;
        }
        let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sa.sin_port),
        )))
    } else {
        let mut sa = MaybeUninit::<libc::sockaddr_in6>::zeroed();
        let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: as above, for sockaddr_in6.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_IPV6,
                IP6T_SO_ORIGINAL_DST,
                sa.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: getsockopt succeeded and filled the structure.
        let sa = unsafe { sa.assume_init() };
        if sa.sin6_family != libc::AF_INET6 as libc::sa_family_t {
            return None;
        }
        let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
        Some(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sa.sin6_port),
            0,
            sa.sin6_scope_id,
        )))
    }
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
        let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        let mut len = want as libc::socklen_t;
        // SAFETY: storage is writable and larger than len.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERNAME,
                storage.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: the kernel filled `len` bytes of the structure; the rest stays zeroed.
        let storage = unsafe { storage.assume_init() };
        sockaddr_to_std(&storage, len)
    })
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in, and it is large enough.
            let sa =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sa.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sa = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sa.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sa.sin6_port),
                0,
                sa.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
