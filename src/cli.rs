//! Command line: `spip-agent [--config PATH] [--check]`, `inspect`, and friends.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. stdout carries only records
//! (and the output of `--check`/`inspect`); every diagnostic goes to stderr.

use crate::capture::{self, DriverChoice};
use crate::config::Config;
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "spip-agent",
    version,
    about = "spip: an io_uring network sensor (honeypot) that records and fingerprints every client",
    after_help = "The Go agent's single-dash `-config PATH` is accepted too."
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short = 'c', global = true, default_value = "config.toml")]
    config: PathBuf,
    /// Validate the configuration, print the effective settings and exit (0 ok, 2 bad).
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sensor (the default).
    Run,
    /// Parse a captured client payload and print the record fields it yields, as one JSON line.
    Inspect {
        /// The payload as hex (e.g. a record's event.original_payload_hex).
        #[arg(long, conflicts_with = "file")]
        hex: Option<String>,
        /// A file with the raw payload bytes, or `-` for stdin (the default).
        file: Option<PathBuf>,
    },
    /// Install, remove or show the firewall rules that send every TCP port to the sensor
    /// (PREROUTING, IPv4 and IPv6, in spip's own nft table / iptables chain).
    Redirect {
        #[arg(value_enum)]
        action: RedirectAction,
        /// A TCP port left alone (repeatable): your SSH port! The sensor port is always excluded.
        #[arg(long = "exclude-port", value_name = "PORT")]
        exclude_port: Vec<u16>,
        #[arg(long, value_enum, default_value = "nftables")]
        backend: BackendArg,
        /// Print the commands and ruleset instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// TPROXY rules plus policy routing instead of REDIRECT (nftables only; the sensor needs
        /// mode = "tproxy"). Implied when the config says mode = "tproxy".
        #[arg(long)]
        tproxy: bool,
        /// The sensor port (default: `port` from --config).
        #[arg(long)]
        port: Option<u16>,
        /// Also log each new connection's SYN to this NFLOG group (default 7) before the
        /// redirect, for SYN-only scan counts; the sensor reads it with `syn_log_group`.
        #[arg(long, value_name = "GROUP", num_args = 0..=1,
              default_missing_value = "7")]
        syn_log: Option<u16>,
    },
    /// First-run helper: asks a few questions (or takes flags) and writes a validated config.
    Setup(crate::ops::setup::Flags),
    /// Generate a self-signed ECDSA P-256 certificate and key for TLS mode
    /// (DIR/cert.pem, DIR/key.pem with mode 0600) and print the config lines.
    GenCert {
        /// Directory to write cert.pem and key.pem into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Subject common name (and DNS subject alternative name).
        #[arg(long, default_value = "localhost")]
        cn: String,
    },
    /// Print the Elasticsearch/OpenSearch index template for spip's records.
    ///
    /// ECS mappings for `logs-spip-*` data streams. Install it with
    /// `spip-agent elasticsearch-template | curl -X PUT "$ES/_index_template/spip"
    /// -H 'Content-Type: application/json' --data-binary @-`.
    ElasticsearchTemplate {
        /// The OpenSearch variant (`flat_object` instead of `flattened`).
        #[arg(long)]
        opensearch: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RedirectAction {
    Apply,
    Remove,
    Show,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Nftables,
    Iptables,
}

/// Rewrites the Go agent's `-config X` / `-config=X` into `--config`.
fn normalize_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|a| match a.to_str() {
        Some("-config") => "--config".into(),
        Some(s) if s.starts_with("-config=") => format!("-{s}").into(),
        _ => a,
    })
    .collect()
}

pub fn main() -> i32 {
    let cli = match Cli::try_parse_from(normalize_args(std::env::args_os())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Some(Command::Inspect { hex, file }) => inspect(hex, file),
        Some(Command::Redirect {
            action,
            exclude_port,
            backend,
            dry_run,
            tproxy,
            port,
            syn_log,
        }) => redirect(
            &cli.config,
            action,
            backend,
            dry_run,
            port,
            crate::ops::redirect::Rules {
                port: 0, // from --port or the config, below
                exclude: exclude_port,
                tproxy,
                syn_log,
            },
        ),
        Some(Command::Setup(flags)) => crate::ops::setup::run(&flags),
        Some(Command::GenCert { out, cn }) => gen_cert(&out, &cn),
        Some(Command::ElasticsearchTemplate { opensearch }) => {
            use crate::sinks::elastic::{INDEX_TEMPLATE, OPENSEARCH_INDEX_TEMPLATE};
            let template = if opensearch {
                OPENSEARCH_INDEX_TEMPLATE
            } else {
                INDEX_TEMPLATE
            };
            match std::io::stdout().lock().write_all(template.as_bytes()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("spip: elasticsearch-template: {e}");
                    1
                }
            }
        }
        Some(Command::Run) | None => run(&cli.config, cli.check),
    }
}

fn load(path: &std::path::Path) -> Result<Config, i32> {
    Config::load(path).map_err(|e| {
        eprintln!("spip: bad config {}: {e}", path.display());
        2
    })
}

fn run(path: &std::path::Path, check: bool) -> i32 {
    let cfg = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if check {
        if let Some(files) = &cfg.tls
            && let Err(e) = crate::engine::tls::TlsConfigs::load(files)
        {
            eprintln!("spip: {e}");
            return 2;
        }
        print!("{}", cfg.describe());
        return 0;
    }
    let driver = match cfg.io_driver.as_str() {
        "io_uring" => DriverChoice::IoUring,
        "poll" => DriverChoice::Poll,
        _ => DriverChoice::Auto,
    };
    capture::run(cfg, driver)
}

fn redirect(
    config: &std::path::Path,
    action: RedirectAction,
    backend: BackendArg,
    dry_run: bool,
    port: Option<u16>,
    mut rules: crate::ops::redirect::Rules,
) -> i32 {
    use crate::ops::redirect::{self as r, Action, Backend};
    let port = match port {
        Some(0) => {
            eprintln!("spip: redirect: --port must be 1..=65535");
            return 2;
        }
        Some(p) => p,
        None => match load(config) {
            Ok(cfg) => {
                rules.tproxy |= cfg.mode == crate::config::Mode::Tproxy;
                cfg.port
            }
            Err(code) => {
                eprintln!("spip: redirect: pass --port or a valid --config");
                return code;
            }
        },
    };
    rules.port = port;
    if rules.exclude.contains(&0) {
        eprintln!("spip: redirect: --exclude-port 0 is not a TCP port");
        return 2;
    }
    let action = match action {
        RedirectAction::Apply => Action::Apply,
        RedirectAction::Remove => Action::Remove,
        RedirectAction::Show => Action::Show,
    };
    let backend = match backend {
        BackendArg::Nftables => Backend::Nftables,
        BackendArg::Iptables => Backend::Iptables,
    };
    if action == Action::Apply && !rules.exclude.contains(&22) {
        eprintln!(
            "spip: redirect: note: port 22 (SSH) is redirected to the sensor too; \
             pass --exclude-port 22 (or your SSH port) to keep remote access"
        );
    }
    let steps = match r::plan(action, backend, &rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spip: redirect: {e}");
            return 2;
        }
    };
    if dry_run {
        for s in &steps {
            println!("{}", s.to_shell());
        }
        return 0;
    }
    match r::execute(&steps, action == Action::Show) {
        Ok(()) => {
            if action != Action::Show {
                eprintln!(
                    "spip: redirect {}: done",
                    if action == Action::Apply {
                        "apply"
                    } else {
                        "remove"
                    }
                );
            }
            0
        }
        Err(e) => {
            eprintln!("spip: redirect: {e}");
            1
        }
    }
}

fn gen_cert(dir: &std::path::Path, cn: &str) -> i32 {
    use std::os::unix::fs::OpenOptionsExt;
    let (cert, key) = match crate::engine::tls::generate_self_signed(cn) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("spip: gen-cert: {e}");
            return 2;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("spip: gen-cert: cannot create {}: {e}", dir.display());
        return 1;
    }
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let write = |path: &std::path::Path, mode: u32, data: &str| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        // An existing file keeps its mode through open(): set it explicitly.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(data.as_bytes())
    };
    for (path, mode, data) in [(&key_path, 0o600, &key), (&cert_path, 0o644, &cert)] {
        if let Err(e) = write(path, mode, data) {
            eprintln!("spip: gen-cert: cannot write {}: {e}", path.display());
            return 1;
        }
    }
    let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    println!("cert_path = {:?}", abs(&cert_path).display().to_string());
    println!("key_path = {:?}", abs(&key_path).display().to_string());
    0
}

fn inspect(hex: Option<String>, file: Option<PathBuf>) -> i32 {
    let payload = match (hex, file) {
        (Some(h), _) => match crate::inspect::decode_hex(&h) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("spip: inspect: --hex: {e}");
                return 2;
            }
        },
        (None, Some(p)) if p.as_os_str() != "-" => match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("spip: inspect: cannot read {}: {e}", p.display());
                return 2;
            }
        },
        _ => {
            let mut b = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut b) {
                eprintln!("spip: inspect: cannot read stdin: {e}");
                return 1;
            }
            b
        }
    };
    let mut out = Vec::new();
    crate::inspect::inspect(&payload, &mut out);
    let _ = std::io::stdout().lock().write_all(&out);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_config_flag() {
        let args = ["spip-agent", "-config", "/etc/spip/c.toml"].map(std::ffi::OsString::from);
        let cli = Cli::try_parse_from(normalize_args(args.into_iter())).unwrap();
        assert_eq!(cli.config, PathBuf::from("/etc/spip/c.toml"));
        let args = ["spip-agent", "-config=/x.toml"].map(std::ffi::OsString::from);
        let cli = Cli::try_parse_from(normalize_args(args.into_iter())).unwrap();
        assert_eq!(cli.config, PathBuf::from("/x.toml"));
    }

    #[test]
    fn redirect_arguments_parse() {
        let args = [
            "spip-agent",
            "redirect",
            "apply",
            "--exclude-port",
            "22",
            "--exclude-port",
            "2222",
            "--backend",
            "iptables",
            "--dry-run",
            "--port",
            "9000",
        ]
        .map(std::ffi::OsString::from);
        let cli = Cli::try_parse_from(normalize_args(args.into_iter())).unwrap();
        match cli.command {
            Some(Command::Redirect {
                action: RedirectAction::Apply,
                exclude_port,
                backend: BackendArg::Iptables,
                dry_run: true,
                tproxy: false,
                port: Some(9000),
                syn_log: None,
            }) => assert_eq!(exclude_port, [22, 2222]),
            other => panic!("{other:?}"),
        }
    }
}
