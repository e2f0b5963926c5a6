//! A worker thread: its own runtime, its own SO_REUSEPORT listener, its own admission state.

use super::Shared;
use super::conn;
use super::registry::{ConnId, Registry};
use crate::output::RecordSink;
use crate::record::EventIds;
use crate::scan::admission::{Admission, Refusal};
use compio::driver::{DriverType, ProactorBuilder};
use compio::net::{TcpListener, TcpStream};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Which io driver to use (`io_driver` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    Auto,
    IoUring,
    Poll,
}

/// Provided buffers per thread and their size: 2048 x 8 KiB, touched only when used.
const POOL_BUFFERS: u16 = 2048;
const POOL_BUFFER_LEN: usize = 8192;
/// How often pending records are handed to the writer and the stop flag is checked.
const TICK: Duration = Duration::from_millis(100);

/// Per-thread state shared by the accept loop and its connection tasks.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub sink: RefCell<RecordSink>,
    pub ids: RefCell<EventIds>,
    admission: RefCell<Admission>,
    /// Live connections and the deadlines of their first wait.
    pub registry: RefCell<Registry>,
    stop: StopSignal,
    /// Sockets are closed in the ring (io_uring); the poll driver would hand an async close
    /// to its blocking thread pool, so there a socket is closed by close(2) on drop.
    pub close_in_ring: bool,
}

impl Worker {
    pub fn stopping(&self) -> bool {
        self.stop.fired.get()
    }

    /// Resolves when the worker stops (any number of tasks may wait).
    pub async fn stopped(&self) {
        self.stop.wait().await
    }

    pub fn connection_closed(&self, id: ConnId) {
        self.registry.borrow_mut().remove(id);
        self.shared.counters.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A one-shot, single-thread stop notification (the accept loop and the UDP loop wait).
#[derive(Default)]
struct StopSignal {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl StopSignal {
    fn fire(&self) {
        self.fired.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                let mut wakers = self.wakers.borrow_mut();
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        })
        .await
    }
}

/// Creates the listening socket (SO_REUSEPORT, backlog 65535, dual-stack for `::`).
/// `save_syn` (TCP_SAVE_SYN) keeps each client's SYN headers for its SYN facts.
/// `transparent` (mode = "tproxy") sets IP_TRANSPARENT / IPV6_TRANSPARENT, which needs
/// CAP_NET_ADMIN: TPROXY'd connections to any address and port are then accepted here, and
/// their local address is the destination the client dialled.
pub fn bind_listener(
    addr: SocketAddr,
    transparent: bool,
    save_syn: bool,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    if transparent {
        // IP_TRANSPARENT / IPV6_TRANSPARENT set the same socket flag, which covers
        // IPv4-mapped clients of a dual-stack socket too.
        let set = if addr.is_ipv6() {
            socket.set_ip_transparent_v6(true)
        } else {
            socket.set_ip_transparent_v4(true)
        };
        set.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mode = \"tproxy\": cannot set IP_TRANSPARENT ({e}); it needs CAP_NET_ADMIN"
                ),
            )
        })?;
    }
    if save_syn {
        super::sys::set_save_syn(&socket)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(65535)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `taskrun` (`io_uring_taskrun`): how completions' task work runs. By default the kernel
/// interrupts the thread for it at every completion; "coop" runs it at the next syscall into
/// the ring, "defer" only when this (single) thread waits for completions.
pub fn build_runtime(choice: DriverChoice, taskrun: &str) -> io::Result<compio::runtime::Runtime> {
    let mut proactor = ProactorBuilder::new();
    match taskrun {
        "coop" => {
            proactor.coop_taskrun(true).taskrun_flag(true);
        }
        "defer" => {
            proactor.single_issuer(true).defer_taskrun(true);
        }
        _ => {}
    }
    proactor
        .capacity(4096)
        .buffer_pool_size(NonZeroU16::new(POOL_BUFFERS).unwrap_or(NonZeroU16::MIN))
        .buffer_pool_buffer_len(POOL_BUFFER_LEN);
    match choice {
        DriverChoice::Auto => {}
        DriverChoice::IoUring => {
            proactor.driver_type(DriverType::IoUring);
        }
        DriverChoice::Poll => {
            proactor.driver_type(DriverType::Poll);
        }
    }
    compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
}

/// Runs one worker until shutdown; `listener` (and `udp`, with `udp = true`) were bound by the
/// main thread.
pub fn run(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    udp: Option<std::net::UdpSocket>,
    index: usize,
) -> io::Result<()> {
    let runtime = build_runtime(shared.driver, &shared.cfg.io_uring_taskrun)?;
    let close_in_ring = runtime.driver_type() == DriverType::IoUring;
    if index == 0 {
        let driver = match runtime.driver_type() {
            DriverType::IoUring => "io_uring",
            DriverType::Poll => "poll (io_uring unavailable or disabled)",
            DriverType::IOCP => "iocp",
        };
        eprintln!("spip: io driver: {driver}");
    }
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        let threads = shared.cfg.threads.max(1) as f64;
        let cfg = &shared.cfg;
        let worker = Rc::new(Worker {
            sink: RefCell::new(RecordSink::new(shared.output.clone())),
            ids: RefCell::new(EventIds::new()),
            admission: RefCell::new(Admission::new(
                cfg.rate_limit_per_second,
                cfg.rate_limit_burst,
                cfg.per_source_rate_per_second,
                cfg.per_source_burst,
                1.0 / threads,
                Instant::now(),
            )),
            registry: RefCell::new(Registry::new()),
            stop: StopSignal::default(),
            close_in_ring,
            shared: shared.clone(),
        });
        let ticker = compio::runtime::spawn(tick(worker.clone()));
        let udp =
            udp.map(|socket| compio::runtime::spawn(super::udp::serve(worker.clone(), socket)));
        accept_loop(&worker, &listener).await;
        drop(listener);
        if let Some(udp) = udp {
            let _ = udp.await;
        }
        drain(&worker).await;
        worker.sink.borrow_mut().flush();
        drop(ticker);
        Ok(())
    })
}

/// Hands records to the writer every tick and turns the process-wide stop flag into a wake-up.
async fn tick(worker: Rc<Worker>) {
    loop {
        compio::time::sleep(TICK).await;
        worker.sink.borrow_mut().flush();
        let now = Instant::now();
        let evicted = {
            let mut admission = worker.admission.borrow_mut();
            admission.maybe_sweep(now);
            admission.take_evicted()
        };
        let counters = &worker.shared.counters;
        counters.add(&counters.admission_evictions, evicted);
        // The scan table counts its own evictions; copied here so the stats line and /metrics
        // are current (max: workers copy it concurrently and a counter must not step back).
        let scan_evicted = worker.shared.summaries.evicted();
        counters
            .scan_sources_evicted
            .fetch_max(scan_evicted, Ordering::Relaxed);
        worker.registry.borrow_mut().sweep(now);
        if worker.shared.shutdown.load(Ordering::Acquire) && !worker.stopping() {
            worker.stop.fire();
        }
    }
}

async fn accept_loop(worker: &Rc<Worker>, listener: &TcpListener) {
    let mut incoming = listener.incoming();
    let mut stop = std::pin::pin!(worker.stop.wait());
    let mut last_error_report: Option<Instant> = None;
    loop {
        let next = match select(incoming.next(), stop.as_mut()).await {
            Either::Left((Some(next), _)) => next,
            Either::Left((None, _)) | Either::Right(_) => return,
        };
        match next {
            Ok(stream) => admit(worker, stream),
            Err(e) => {
                let counters = &worker.shared.counters;
                counters.inc(&counters.accept_errors);
                let transient = matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO)
                );
                if transient {
                    continue;
                }
                // EMFILE/ENFILE/ENOBUFS/ENOMEM: back off briefly and keep serving.
                if last_error_report.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    eprintln!("spip: accept failed: {e}; backing off (counted in accept_errors)");
                    last_error_report = Some(Instant::now());
                }
                compio::time::sleep(Duration::from_millis(20)).await;
                // A multishot accept that failed is re-armed by the next poll.
                incoming = listener.incoming();
            }
        }
    }
}

/// Admission control, then a task for the connection; refused ones get an RST at once.
fn admit(worker: &Rc<Worker>, stream: TcpStream) {
    let counters = &worker.shared.counters;
    counters.inc(&counters.accepted);
    // The saved SYN (one getsockopt) also says who the client is; without it, ask the kernel.
    let syn = conn::syn_facts(worker, &stream);
    let Some(peer) = syn
        .map(|s| s.source)
        .or_else(|| super::sys::peer_address(stream.as_raw_fd()))
    else {
        return; // not a TCP/IP socket: nothing to record
    };
    let refuse = |counter: &std::sync::atomic::AtomicU64| {
        counters.inc(counter);
        // Shed connections still count in their source's scan summary, at the port dialled.
        let dport = super::sys::original_destination(&stream, peer.is_ipv4())
            .or_else(|| stream.local_addr().ok())
            .map_or(0, |d| d.port());
        let summaries = &worker.shared.summaries;
        summaries.shed(peer.ip(), dport, Instant::now());
        // Linger 0: RST, no TIME_WAIT, nothing kept for a connection we will not serve.
        let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    };
    let live = counters.live.fetch_add(1, Ordering::Relaxed);
    if live >= worker.shared.cfg.max_connections as u64 {
        counters.live.fetch_sub(1, Ordering::Relaxed);
        refuse(&counters.shed_live_cap);
        return;
    }
    match worker
        .admission
        .borrow_mut()
        .admit(peer.ip().to_canonical(), Instant::now())
    {
        Ok(()) => {}
        Err(r) => {
            counters.live.fetch_sub(1, Ordering::Relaxed);
            refuse(match r {
                Refusal::RateLimited => &counters.rate_limited,
                Refusal::PerSourceLimited => &counters.per_source_limited,
                Refusal::OverFairShare => &counters.fair_share_limited,
            });
            return;
        }
    }
    let deadline = Instant::now() + worker.shared.cfg.read_timeout;
    let id = worker
        .registry
        .borrow_mut()
        .insert(stream.as_raw_fd(), deadline);
    compio::runtime::spawn(conn::serve(worker.clone(), stream, peer, syn, id)).detach();
}

/// After accepting stops: live connections get the grace period, then their reads are ended
/// (shutdown(2) makes a pending read return EOF) so each still writes its record.
async fn drain(worker: &Rc<Worker>) {
    let grace_end = Instant::now() + worker.shared.cfg.shutdown_grace;
    while !worker.registry.borrow().is_empty() && Instant::now() < grace_end {
        compio::time::sleep(Duration::from_millis(20)).await;
    }
    let fds = worker.registry.borrow().live_fds();
    for fd in fds {
        // fd belongs to a live connection task that has not closed it yet (tasks leave the
        // registry before dropping the socket).
        super::sys::shutdown(fd, std::net::Shutdown::Both);
    }
    let hard_end = Instant::now() + Duration::from_secs(2);
    while !worker.registry.borrow().is_empty() && Instant::now() < hard_end {
        compio::time::sleep(Duration::from_millis(10)).await;
    }
}
