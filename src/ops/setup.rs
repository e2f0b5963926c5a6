//! `spip-agent setup`: a first-run helper that asks a few questions (or takes flags, with
//! `--non-interactive`) and writes a validated config file.
//!
//! [`render`] is pure (answers → TOML text); [`run`] does the prompting, the optional
//! `gen-cert` call and the file writing. The written text is validated with the same
//! [`Config`] parser the sensor uses before anything touches the disk.

use crate::config::{Config, DEFAULT_LOG_MAX_BYTES, DEFAULT_LOG_MAX_FILES};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What the config will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    pub name: String,
    pub ip: String,
    pub port: u16,
    /// Empty = stdout.
    pub log_file: String,
    pub tproxy: bool,
    /// (cert_path, key_path); None = plain mode.
    pub tls: Option<(String, String)>,
    /// (url, sensor_id, token); None = Loom off.
    pub loom: Option<(String, String, String)>,
}

impl Default for Answers {
    fn default() -> Self {
        Answers {
            name: "spip-sensor".into(),
            ip: "0.0.0.0".into(),
            port: 8080,
            log_file: "/var/log/spip/spip.jsonl".into(),
            tproxy: false,
            tls: None,
            loom: None,
        }
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config file text for `a`.
pub fn render(a: &Answers) -> String {
    let mut s = String::new();
    s.push_str("# spip configuration, written by `spip-agent setup`.\n");
    s.push_str(
        "# Check it with `spip-agent --check --config <this file>`; every key is described\n",
    );
    s.push_str("# in /usr/share/doc/spip/examples/config.toml.\n\n");
    s.push_str("# Sensor name (observer.hostname in records).\n");
    s.push_str(&format!("name = {}\n", toml_str(&a.name)));
    s.push_str("# Listen address and port (\"::\" = IPv4 and IPv6).\n");
    s.push_str(&format!("ip = {}\nport = {}\n", toml_str(&a.ip), a.port));
    s.push_str(
        "# \"redirect\" (NAT REDIRECT) or \"tproxy\" (IP_TRANSPARENT; needs CAP_NET_ADMIN).\n",
    );
    s.push_str(&format!(
        "mode = {}\n",
        toml_str(if a.tproxy { "tproxy" } else { "redirect" })
    ));
    s.push_str("# TLS mode: both set = TLS server handshake first. Empty = plain mode.\n");
    let (cert, key) = a.tls.clone().unwrap_or_default();
    s.push_str(&format!(
        "cert_path = {}\nkey_path = {}\n",
        toml_str(&cert),
        toml_str(&key)
    ));
    s.push_str("# Records, one JSON object a line (empty = stdout), with built-in rotation\n");
    s.push_str("# (log_max_bytes = 0: never rotate by size; use logrotate + SIGHUP).\n");
    s.push_str(&format!("log_file = {}\n", toml_str(&a.log_file)));
    s.push_str(&format!(
        "log_max_bytes = {DEFAULT_LOG_MAX_BYTES}\nlog_max_files = {DEFAULT_LOG_MAX_FILES}\n"
    ));
    s.push_str("\n# Optional: ship records to a Loom server.\n[loom]\n");
    match &a.loom {
        Some((url, id, token)) => s.push_str(&format!(
            "enabled = true\nurl = {}\nsensor_id = {}\ntoken = {}\n",
            toml_str(url),
            toml_str(id),
            toml_str(token)
        )),
        None => s.push_str("enabled = false\nurl = \"\"\nsensor_id = \"\"\ntoken = \"\"\n"),
    }
    s
}

/// Flags of `spip-agent setup`; None = ask (or the default with `--non-interactive`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// Ask nothing: flags, then defaults.
    #[arg(long)]
    pub non_interactive: bool,
    /// Where to write the config.
    #[arg(long, default_value = "/etc/spip/config.toml")]
    pub output: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Log file path ("" = stdout).
    #[arg(long)]
    pub log_file: Option<String>,
    /// mode = "tproxy".
    #[arg(long)]
    pub tproxy: bool,
    /// TLS mode with a new self-signed certificate (`spip-agent gen-cert`) in the config's folder.
    #[arg(long, conflicts_with_all = ["cert_path", "key_path"])]
    pub gen_cert: bool,
    /// TLS mode with an existing certificate (with --key-path).
    #[arg(long)]
    pub cert_path: Option<String>,
    #[arg(long)]
    pub key_path: Option<String>,
    /// Loom shipping (all three together).
    #[arg(long)]
    pub loom_url: Option<String>,
    #[arg(long)]
    pub loom_sensor_id: Option<String>,
    #[arg(long)]
    pub loom_token: Option<String>,
}

struct Prompter<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
}

impl Prompter<'_> {
    fn ask(&mut self, question: &str, default: &str) -> String {
        let _ = write!(self.out, "{question} [{default}]: ");
        let _ = self.out.flush();
        let mut line = String::new();
        match self.input.read_line(&mut line) {
            Ok(0) | Err(_) => default.to_string(),
            Ok(_) => match line.trim() {
                "" => default.to_string(),
                "-" => String::new(),
                v => v.to_string(),
            },
        }
    }

    fn yes(&mut self, question: &str, default: bool) -> bool {
        let d = if default { "y" } else { "n" };
        loop {
            match self.ask(question, d).to_ascii_lowercase().as_str() {
                "y" | "yes" => return true,
                "n" | "no" => return false,
                _ => {
                    let _ = writeln!(self.out, "  please answer y or n");
                }
            }
        }
    }
}

/// Makes a certificate in a folder for a name; returns (cert_path, key_path).
pub type CertMaker<'a> = dyn FnMut(&Path, &str) -> Result<(String, String), String> + 'a;

/// What to write, from flags and (unless non-interactive) answers read from `input`.
/// `gen_cert` is called with the output folder and the sensor name when a certificate is to be
/// generated, and returns (cert_path, key_path).
pub fn collect(
    flags: &Flags,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    gen_cert: &mut CertMaker<'_>,
) -> Result<Answers, String> {
    let d = Answers::default();
    let mut p = Prompter { input, out };
    let ni = flags.non_interactive;
    let pick = |p: &mut Prompter, flag: &Option<String>, q: &str, def: &str| match flag {
        Some(v) => v.clone(),
        None if ni => def.to_string(),
        None => p.ask(q, def),
    };
    let name = pick(&mut p, &flags.name, "Sensor name", &d.name);
    let ip = pick(
        &mut p,
        &flags.ip,
        "Listen address (0.0.0.0, :: or one address)",
        &d.ip,
    );
    let port = match flags.port {
        Some(port) => port,
        None if ni => d.port,
        None => loop {
            let v = p.ask("Listen port", &d.port.to_string());
            match v.parse::<u16>() {
                Ok(n) if n > 0 => break n,
                _ => {
                    let _ = writeln!(p.out, "  {v:?} is not a TCP port (1..65535)");
                }
            }
        },
    };
    let log_file = pick(
        &mut p,
        &flags.log_file,
        "Log file (\"-\" = stdout)",
        &d.log_file,
    );
    let tproxy = flags.tproxy
        || (!ni
            && p.yes(
                "TPROXY mode instead of NAT REDIRECT (needs CAP_NET_ADMIN)?",
                false,
            ));
    let dir = flags
        .output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let tls = match (&flags.cert_path, &flags.key_path) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (Some(_), None) | (None, Some(_)) => {
            return Err("--cert-path and --key-path go together".into());
        }
        (None, None) => {
            let want = flags.gen_cert
                || (!ni && p.yes("TLS mode with a new self-signed certificate?", false));
            if want {
                Some(gen_cert(&dir, &name)?)
            } else {
                None
            }
        }
    };
    let loom = match (&flags.loom_url, &flags.loom_sensor_id, &flags.loom_token) {
        (Some(u), Some(i), Some(t)) => Some((u.clone(), i.clone(), t.clone())),
        (None, None, None) => {
            if !ni && p.yes("Ship records to a Loom server?", false) {
                let url = p.ask("  Loom URL", "https://loom.example.org/api/ingest");
                let id = p.ask("  Sensor ID", &name);
                let token = p.ask("  Token", "");
                Some((url, id, token))
            } else {
                None
            }
        }
        _ => return Err("--loom-url, --loom-sensor-id and --loom-token go together".into()),
    };
    Ok(Answers {
        name,
        ip,
        port,
        log_file,
        tproxy,
        tls,
        loom,
    })
}

/// Runs `spip-agent gen-cert` (this very binary) if this build has it.
fn gen_cert_with_self(dir: &Path, name: &str) -> Result<(String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let out = std::process::Command::new(exe)
        .arg("gen-cert")
        .arg("--out")
        .arg(dir)
        .arg("--cn")
        .arg(name)
        .output()
        .map_err(|e| format!("cannot run gen-cert: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gen-cert failed (does this build have TLS mode?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // gen-cert prints `cert_path = "..."` and `key_path = "..."`.
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_prefix("= "))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    match (value("cert_path"), value("key_path")) {
        (Some(c), Some(k)) => Ok((c, k)),
        _ => Ok((
            dir.join("cert.pem").display().to_string(),
            dir.join("key.pem").display().to_string(),
        )),
    }
}

/// Gives the file (and the TLS key) to group `spip` when it exists and we are root, so the
/// packaged service can read them while others cannot.
fn share_with_service_group(paths: &[&Path]) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    // SAFETY: a NUL-terminated name; getgrnam returns a pointer into static storage or null.
    let gr = unsafe { libc::getgrnam(c"spip".as_ptr()) };
    if gr.is_null() {
        return;
    }
    // SAFETY: gr is non-null and points to a valid group entry.
    let gid = unsafe { (*gr).gr_gid };
    for p in paths {
        let _ = std::os::unix::fs::chown(p, Some(0), Some(gid));
        let _ = std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o640));
    }
}

/// `spip-agent setup`: exit code.
pub fn run(flags: &Flags) -> i32 {
    if flags.output.exists() && !flags.force {
        eprintln!(
            "spip: setup: {} exists; pass --force to replace it",
            flags.output.display()
        );
        return 2;
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    // Prompts go to stderr: stdout stays clean for scripts.
    let mut out = std::io::stderr();
    let answers = match collect(flags, &mut input, &mut out, &mut gen_cert_with_self) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("spip: setup: {e}");
            return 2;
        }
    };
    let text = render(&answers);
    let base = flags.output.parent().unwrap_or(Path::new("."));
    if let Err(e) = Config::from_toml_str(&text, base) {
        eprintln!("spip: setup: the answers do not make a valid config: {e}");
        return 2;
    }
    if let Some(dir) = flags.output.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("spip: setup: cannot create {}: {e}", dir.display());
        return 1;
    }
    let written = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&flags.output)
            .and_then(|mut f| f.write_all(text.as_bytes()))
    };
    if let Err(e) = written {
        eprintln!("spip: setup: cannot write {}: {e}", flags.output.display());
        return 1;
    }
    let mut shared: Vec<PathBuf> = vec![flags.output.clone()];
    if let Some((_, key)) = &answers.tls {
        let key = Path::new(key);
        shared.push(if key.is_absolute() {
            key.to_path_buf()
        } else {
            base.join(key)
        });
    }
    share_with_service_group(&shared.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    eprintln!(
        "spip: setup: wrote {}. Next: `spip-agent --check --config {0}`, then \
         `spip-agent redirect apply --config {0} --exclude-port 22` and `systemctl enable --now spip`.",
        flags.output.display()
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_cert(_: &Path, _: &str) -> Result<(String, String), String> {
        Err("no gen-cert in tests".into())
    }

    #[test]
    fn default_answers_render_a_valid_config() {
        let text = render(&Answers::default());
        let c = Config::from_toml_str(&text, Path::new("/etc/spip")).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.log_file.unwrap(), Path::new("/var/log/spip/spip.jsonl"));
        assert!(!c.loom.enabled && c.tls.is_none());
    }

    #[test]
    fn strings_are_escaped() {
        let a = Answers {
            name: "a \"quoted\" \\ name\u{1}".into(),
            ..Answers::default()
        };
        let c = Config::from_toml_str(&render(&a), Path::new("/")).unwrap();
        assert_eq!(c.name, a.name);
    }

    #[test]
    fn interactive_answers_and_defaults() {
        let flags = Flags {
            output: "/etc/spip/config.toml".into(),
            ..Flags::default()
        };
        // name, ip, port (bad, then good), log (- = stdout), tproxy n, tls n, loom y + 3 answers
        let mut input: &[u8] =
            b"edge-1\n::\nhttp\n2222\n-\nn\nn\ny\nhttps://loom.example/x\n\ntok\n";
        let mut out = Vec::new();
        let mut make_cert = no_cert;
        let a = collect(&flags, &mut input, &mut out, &mut make_cert).unwrap();
        assert_eq!(a.name, "edge-1");
        assert_eq!(a.ip, "::");
        assert_eq!(a.port, 2222);
        assert_eq!(a.log_file, "");
        assert!(!a.tproxy && a.tls.is_none());
        assert_eq!(
            a.loom,
            Some((
                "https://loom.example/x".into(),
                "edge-1".into(),
                "tok".into()
            ))
        );
        let prompts = String::from_utf8(out).unwrap();
        assert!(prompts.contains("is not a TCP port"), "{prompts}");
        let c = Config::from_toml_str(&render(&a), Path::new("/etc/spip")).unwrap();
        assert!(c.loom.enabled && c.log_file.is_none());
    }

    #[test]
    fn non_interactive_uses_flags_and_defaults_and_gen_cert() {
        let flags = Flags {
            non_interactive: true,
            output: "/etc/spip/config.toml".into(),
            port: Some(443),
            gen_cert: true,
            tproxy: true,
            ..Flags::default()
        };
        let mut input: &[u8] = b"";
        let mut out = Vec::new();
        let mut called = None;
        let mut make_cert = |dir: &Path, name: &str| {
            called = Some((dir.to_path_buf(), name.to_string()));
            Ok((
                "/etc/spip/cert.pem".to_string(),
                "/etc/spip/key.pem".to_string(),
            ))
        };
        let a = collect(&flags, &mut input, &mut out, &mut make_cert).unwrap();
        assert!(out.is_empty(), "no prompts when non-interactive");
        assert_eq!(called, Some(("/etc/spip".into(), "spip-sensor".into())));
        assert_eq!(a.port, 443);
        assert!(a.tproxy);
        let c = Config::from_toml_str(&render(&a), Path::new("/etc/spip")).unwrap();
        assert!(c.tls_mode());
        assert_eq!(c.mode, crate::config::Mode::Tproxy);
        let bad = Flags {
            loom_url: Some("https://x/y".into()),
            ..flags
        };
        assert!(collect(&bad, &mut input, &mut out, &mut no_cert).is_err());
    }
}
