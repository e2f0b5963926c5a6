//! The benchmark's baseline: the least a sensor can do per connection, with plain epoll.
//!
//! One thread per core, each with its own SO_REUSEPORT listener and epoll set:
//! accept -> getsockopt(SO_ORIGINAL_DST) -> read once -> reply the client IP -> close.
//! No records, no parsing, no timeouts: the floor that spip's cost is compared with.
//!
//! Usage: flood_baseline PORT [THREADS]

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

const SO_ORIGINAL_DST: libc::c_int = 80;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn listener(port: u16) -> io::Result<RawFd> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_only_v6(false)?;
    s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into())?;
    s.listen(65535)?;
    s.set_nonblocking(true)?;
    Ok(s.into_raw_fd())
}

fn serve(port: u16) -> io::Result<()> {
    let lfd = listener(port)?;
    // SAFETY: plain epoll syscalls on descriptors this thread owns.
    unsafe {
        let ep = check(libc::epoll_create1(0))?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: lfd as u64,
        };
        check(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev))?;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1);
            if n < 0 {
                continue;
            }
            for e in &events[..n as usize] {
                let fd = e.u64 as RawFd;
                if fd == lfd {
                    loop {
                        let mut addr = MaybeUninit::<libc::sockaddr_in6>::zeroed();
                        let mut alen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                        let c = libc::accept4(
                            lfd,
                            addr.as_mut_ptr().cast(),
                            &mut alen,
                            libc::SOCK_NONBLOCK,
                        );
                        if c < 0 {
                            break;
                        }
                        let mut od = MaybeUninit::<libc::sockaddr_in>::zeroed();
                        let mut olen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                        libc::getsockopt(
                            c,
                            libc::SOL_IP,
                            SO_ORIGINAL_DST,
                            od.as_mut_ptr().cast(),
                            &mut olen,
                        );
                        let mut cev = libc::epoll_event {
                            events: libc::EPOLLIN as u32,
                            u64: c as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut cev);
                    }
                } else {
                    let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    if r > 0 {
                        // Reply the client's IP, as a sensor would.
                        let mut peer = MaybeUninit::<libc::sockaddr_in6>::zeroed();
                        let mut plen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                        libc::getpeername(fd, peer.as_mut_ptr().cast(), &mut plen);
                        let p = peer.assume_init();
                        let ip = std::net::Ipv6Addr::from(p.sin6_addr.s6_addr);
                        let ip = ip
                            .to_ipv4_mapped()
                            .map(|v4: Ipv4Addr| v4.to_string())
                            .unwrap_or(ip.to_string());
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ip}",
                            ip.len()
                        );
                        libc::write(fd, reply.as_ptr().cast(), reply.len());
                    }
                    libc::close(fd);
                }
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                if let Err(e) = serve(port) {
                    eprintln!("baseline: {e}");
                }
            })
        })
        .collect();
    eprintln!("baseline: listening on [::]:{port} with {threads} threads");
    let _ = std::io::stderr().as_raw_fd();
    for h in handles {
        let _ = h.join();
    }
}
