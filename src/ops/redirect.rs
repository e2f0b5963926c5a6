//! `spip-agent redirect apply|remove|show`: the firewall rules that send every TCP port to the
//! sensor, in spip's OWN table (`nft`: `table inet spip`) or chain (`iptables`/`ip6tables`: a
//! `SPIP` chain in the nat table, jumped to from PREROUTING), so `remove` is exact and nothing
//! else in the firewall is touched.
//!
//! The rule text is built by pure functions ([`plan`]); [`execute`] is a thin runner.
//! Only traffic addressed to this host (`fib daddr type local` / `addrtype --dst-type LOCAL`)
//! is redirected, so forwarded traffic (containers, a router) is left alone. PREROUTING does not
//! see locally generated connections.
//!
//! TPROXY (`--tproxy`, nftables only): a mangle-priority `tproxy` rule that marks packets with
//! [`TPROXY_MARK`], plus the policy routing TPROXY needs (`ip rule add fwmark 1 lookup 100`,
//! `ip route add local 0.0.0.0/0 dev lo table 100`, and the IPv6 twins). The listener must run
//! with `mode = "tproxy"` (IP_TRANSPARENT).

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The fwmark TPROXY'd packets carry, and the routing table that delivers them locally.
pub const TPROXY_MARK: u32 = 1;
pub const TPROXY_TABLE: u32 = 100;
/// The nft table and the iptables chain spip owns.
pub const NFT_TABLE: &str = "spip";
pub const IPT_CHAIN: &str = "SPIP";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nftables,
    Iptables,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Apply,
    Remove,
    Show,
}

/// What to redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The sensor's port: the target, and never redirected itself.
    pub port: u16,
    /// Ports left alone (SSH!), besides `port`.
    pub exclude: Vec<u16>,
    pub tproxy: bool,
    /// NFLOG group that gets each new connection's SYN before the redirect (`--syn-log`):
    /// the sensor reads it (`syn_log_group`) to count SYN-only scans.
    pub syn_log: Option<u16>,
}

/// The NFLOG group `--syn-log` uses when none is given.
pub const DEFAULT_SYN_LOG_GROUP: u16 = 7;
/// Bytes of each logged SYN copied to the reader: IP header (with options) plus TCP ports.
pub const SYN_LOG_SNAPLEN: u32 = 80;

impl Rules {
    /// Excluded ports, with the sensor port, sorted and deduplicated.
    fn excluded(&self) -> Vec<u16> {
        let mut v = self.exclude.clone();
        v.push(self.port);
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// One command to run: argv, optional stdin, and whether a failure is expected and ignored
/// (deleting what may not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub argv: Vec<String>,
    pub stdin: Option<String>,
    pub may_fail: bool,
}

fn step(argv: &[&str]) -> Step {
    Step {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        may_fail: false,
    }
}

fn may_fail(argv: &[&str]) -> Step {
    Step {
        may_fail: true,
        ..step(argv)
    }
}

impl Step {
    /// The step as a shell line (a here-document for stdin).
    pub fn to_shell(&self) -> String {
        let mut s = self.argv.join(" ");
        if self.may_fail {
            s.push_str(" 2>/dev/null || true");
        }
        if let Some(input) = &self.stdin {
            s.push_str(" <<'EOF'\n");
            s.push_str(input);
            if !input.ends_with('\n') {
                s.push('\n');
            }
            s.push_str("EOF");
        }
        s
    }
}

/// The nft ruleset for `table inet spip` (what `apply` loads with `nft -f -`).
pub fn nft_table(r: &Rules) -> String {
    let ports = r
        .excluded()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = String::new();
    let _ = writeln!(s, "table inet {NFT_TABLE} {{");
    if r.tproxy {
        let _ = writeln!(s, "\tchain prerouting {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook prerouting priority mangle; policy accept;"
        );
        let _ = writeln!(s, "\t\ttcp dport {{ {ports} }} return");
        nft_syn_log(&mut s, r);
        // Packets of connections that already have a transparent socket: just deliver them.
        let _ = writeln!(
            s,
            "\t\tmeta l4proto tcp socket transparent 1 meta mark set {TPROXY_MARK} accept"
        );
        let _ = writeln!(
            s,
            "\t\tfib daddr type local meta l4proto tcp meta mark set {TPROXY_MARK} tproxy ip to :{} accept",
            r.port
        );
        let _ = writeln!(
            s,
            "\t\tfib daddr type local meta l4proto tcp meta mark set {TPROXY_MARK} tproxy ip6 to :{} accept",
            r.port
        );
    } else {
        let _ = writeln!(s, "\tchain prerouting {{");
        let _ = writeln!(
            s,
            "\t\ttype nat hook prerouting priority dstnat; policy accept;"
        );
        let _ = writeln!(s, "\t\ttcp dport {{ {ports} }} return");
        nft_syn_log(&mut s, r);
        let _ = writeln!(
            s,
            "\t\tfib daddr type local meta l4proto tcp redirect to :{}",
            r.port
        );
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(s, "}}");
    s
}

/// The SYN log rule: the first SYN of each new connection to a local address (retransmits
/// are not new), headers only.
fn nft_syn_log(s: &mut String, r: &Rules) {
    if let Some(group) = r.syn_log {
        let _ = writeln!(
            s,
            "\t\tfib daddr type local tcp flags & (fin | syn | rst | ack) == syn ct state new \
             log group {group} snaplen {SYN_LOG_SNAPLEN}"
        );
    }
}

/// Policy routing for TPROXY: marked packets are delivered locally.
fn tproxy_routing(apply: bool) -> Vec<Step> {
    let mark = TPROXY_MARK.to_string();
    let table = TPROXY_TABLE.to_string();
    let mut steps = Vec::new();
    for (fam, any) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
        // Delete first (apply is idempotent), ignoring "not found".
        steps.push(may_fail(&[
            "ip", fam, "rule", "del", "fwmark", &mark, "lookup", &table,
        ]));
        steps.push(may_fail(&[
            "ip", fam, "route", "del", "local", any, "dev", "lo", "table", &table,
        ]));
        if apply {
            steps.push(step(&[
                "ip", fam, "rule", "add", "fwmark", &mark, "lookup", &table,
            ]));
            steps.push(step(&[
                "ip", fam, "route", "add", "local", any, "dev", "lo", "table", &table,
            ]));
        }
    }
    steps
}

fn nft_steps(action: Action, r: &Rules) -> Vec<Step> {
    match action {
        Action::Apply => {
            // One transaction: create (if missing), delete, define. Re-applying replaces.
            let text = format!(
                "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n{}",
                nft_table(r)
            );
            let mut steps = vec![Step {
                stdin: Some(text),
                ..step(&["nft", "-f", "-"])
            }];
            if r.tproxy {
                steps.extend(tproxy_routing(true));
            }
            steps
        }
        Action::Remove => {
            let mut steps = vec![may_fail(&["nft", "delete", "table", "inet", NFT_TABLE])];
            if r.tproxy {
                steps.extend(tproxy_routing(false));
            }
            steps
        }
        Action::Show => {
            let mut steps = vec![may_fail(&["nft", "list", "table", "inet", NFT_TABLE])];
            if r.tproxy {
                let t = TPROXY_TABLE.to_string();
                steps.push(may_fail(&["ip", "-4", "rule", "show"]));
                steps.push(may_fail(&["ip", "-4", "route", "show", "table", &t]));
                steps.push(may_fail(&["ip", "-6", "rule", "show"]));
                steps.push(may_fail(&["ip", "-6", "route", "show", "table", &t]));
            }
            steps
        }
    }
}

fn iptables_steps(action: Action, r: &Rules) -> Vec<Step> {
    let port = r.port.to_string();
    let mut steps = Vec::new();
    for tool in ["iptables", "ip6tables"] {
        let nat = |args: &[&str]| {
            let mut v = vec![tool, "-w", "-t", "nat"];
            v.extend_from_slice(args);
            v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        let jump = ["-D", "PREROUTING", "-p", "tcp", "-j", IPT_CHAIN];
        match action {
            Action::Show => steps.push(Step {
                argv: nat(&["-S", IPT_CHAIN]),
                stdin: None,
                may_fail: true,
            }),
            Action::Apply | Action::Remove => {
                // Remove: the jump, then the chain. Apply starts with the same, so it replaces.
                steps.push(Step {
                    argv: nat(&jump),
                    stdin: None,
                    may_fail: true,
                });
                steps.push(Step {
                    argv: nat(&["-F", IPT_CHAIN]),
                    stdin: None,
                    may_fail: true,
                });
                steps.push(Step {
                    argv: nat(&["-X", IPT_CHAIN]),
                    stdin: None,
                    may_fail: true,
                });
                if action == Action::Apply {
                    let strict = |argv| Step {
                        argv,
                        stdin: None,
                        may_fail: false,
                    };
                    steps.push(strict(nat(&["-N", IPT_CHAIN])));
                    for p in r.excluded() {
                        let p = p.to_string();
                        steps.push(strict(nat(&[
                            "-A", IPT_CHAIN, "-p", "tcp", "--dport", &p, "-j", "RETURN",
                        ])));
                    }
                    if let Some(group) = r.syn_log {
                        let (group, size) = (group.to_string(), SYN_LOG_SNAPLEN.to_string());
                        steps.push(strict(nat(&[
                            "-A",
                            IPT_CHAIN,
                            "-p",
                            "tcp",
                            "--syn",
                            "-m",
                            "addrtype",
                            "--dst-type",
                            "LOCAL",
                            "-j",
                            "NFLOG",
                            "--nflog-group",
                            &group,
                            "--nflog-size",
                            &size,
                        ])));
                    }
                    steps.push(strict(nat(&[
                        "-A",
                        IPT_CHAIN,
                        "-p",
                        "tcp",
                        "-m",
                        "addrtype",
                        "--dst-type",
                        "LOCAL",
                        "-j",
                        "REDIRECT",
                        "--to-ports",
                        &port,
                    ])));
                    steps.push(strict(nat(&[
                        "-A",
                        "PREROUTING",
                        "-p",
                        "tcp",
                        "-j",
                        IPT_CHAIN,
                    ])));
                }
            }
        }
    }
    steps
}

/// The commands for `action`. TPROXY is nftables-only.
pub fn plan(action: Action, backend: Backend, r: &Rules) -> Result<Vec<Step>, String> {
    match backend {
        Backend::Nftables => Ok(nft_steps(action, r)),
        Backend::Iptables if r.tproxy => Err(
            "--tproxy needs --backend nftables (iptables TPROXY rules are not generated)".into(),
        ),
        Backend::Iptables => Ok(iptables_steps(action, r)),
    }
}

/// Runs the steps in order; stops at the first unexpected failure. `show` steps print their
/// output. Returns a message on failure.
pub fn execute(steps: &[Step], show_output: bool) -> Result<(), String> {
    for s in steps {
        let mut cmd = Command::new(&s.argv[0]);
        cmd.args(&s.argv[1..])
            .stdin(if s.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if show_output {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if s.may_fail && !show_output {
                Stdio::null()
            } else {
                Stdio::inherit()
            });
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", s.argv[0]))?;
        if let Some(input) = &s.stdin
            && let Some(mut stdin) = child.stdin.take()
        {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| format!("{}: {e}", s.argv[0]))?;
        }
        let status = child.wait().map_err(|e| format!("{}: {e}", s.argv[0]))?;
        if !status.success() && !s.may_fail {
            return Err(format!("`{}` failed ({status})", s.argv.join(" ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(tproxy: bool) -> Rules {
        Rules {
            port: 8080,
            exclude: vec![22, 22, 443],
            tproxy,
            syn_log: None,
        }
    }

    #[test]
    fn syn_log_rule_comes_after_the_exclusions_and_before_the_redirect() {
        for tproxy in [false, true] {
            let t = nft_table(&Rules {
                syn_log: Some(9),
                ..rules(tproxy)
            });
            let log = t
                .find("ct state new log group 9 snaplen 80")
                .expect("log rule");
            assert!(t.find("return").unwrap() < log, "{t}");
            let target = if tproxy {
                "tproxy ip to"
            } else {
                "redirect to"
            };
            assert!(log < t.find(target).unwrap(), "{t}");
        }
        assert!(!nft_table(&rules(false)).contains("log group"));
        let steps = plan(
            Action::Apply,
            Backend::Iptables,
            &Rules {
                syn_log: Some(9),
                ..rules(false)
            },
        )
        .unwrap();
        let lines: Vec<String> = steps.iter().map(Step::to_shell).collect();
        let log = lines
            .iter()
            .position(|l| l.contains("-j NFLOG --nflog-group 9"));
        let redirect = lines.iter().position(|l| l.contains("-j REDIRECT"));
        assert!(log.is_some() && log < redirect, "{lines:#?}");
    }

    #[test]
    fn nft_redirect_table_excludes_ssh_and_the_sensor_port() {
        let t = nft_table(&rules(false));
        assert_eq!(
            t,
            "table inet spip {\n\tchain prerouting {\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\ttcp dport { 22, 443, 8080 } return\n\
             \t\tfib daddr type local meta l4proto tcp redirect to :8080\n\t}\n}\n"
        );
    }

    #[test]
    fn nft_apply_is_one_replacing_transaction_and_remove_is_exact() {
        let s = plan(Action::Apply, Backend::Nftables, &rules(false)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].argv, ["nft", "-f", "-"]);
        let text = s[0].stdin.as_deref().unwrap();
        assert!(text.starts_with("table inet spip\ndelete table inet spip\ntable inet spip {"));
        let r = plan(Action::Remove, Backend::Nftables, &rules(false)).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].argv, ["nft", "delete", "table", "inet", "spip"]);
        assert!(r[0].may_fail);
        assert!(
            s[0].to_shell()
                .starts_with("nft -f - <<'EOF'\ntable inet spip\n")
        );
        assert!(s[0].to_shell().ends_with("}\nEOF"));
    }

    #[test]
    fn iptables_uses_its_own_chain_for_both_families() {
        let s = plan(Action::Apply, Backend::Iptables, &rules(false)).unwrap();
        let lines: Vec<String> = s.iter().map(Step::to_shell).collect();
        for tool in ["iptables", "ip6tables"] {
            let want = [
                format!("{tool} -w -t nat -D PREROUTING -p tcp -j SPIP 2>/dev/null || true"),
                format!("{tool} -w -t nat -F SPIP 2>/dev/null || true"),
                format!("{tool} -w -t nat -X SPIP 2>/dev/null || true"),
                format!("{tool} -w -t nat -N SPIP"),
                format!("{tool} -w -t nat -A SPIP -p tcp --dport 22 -j RETURN"),
                format!("{tool} -w -t nat -A SPIP -p tcp --dport 443 -j RETURN"),
                format!("{tool} -w -t nat -A SPIP -p tcp --dport 8080 -j RETURN"),
                format!(
                    "{tool} -w -t nat -A SPIP -p tcp -m addrtype --dst-type LOCAL -j REDIRECT --to-ports 8080"
                ),
                format!("{tool} -w -t nat -A PREROUTING -p tcp -j SPIP"),
            ];
            let got: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{tool} ")))
                .collect();
            assert_eq!(got, want.iter().collect::<Vec<_>>());
        }
        // Nothing outside the SPIP chain but the single PREROUTING jump.
        for l in &lines {
            assert!(l.contains("SPIP"), "{l}");
            assert!(!l.contains(" -F PREROUTING") && !l.contains("-F\n"), "{l}");
        }
        let r = plan(Action::Remove, Backend::Iptables, &rules(false)).unwrap();
        assert_eq!(r.len(), 6);
        assert!(r.iter().all(|s| s.may_fail));
    }

    #[test]
    fn tproxy_rules_and_policy_routing() {
        let t = nft_table(&rules(true));
        assert!(
            t.contains("type filter hook prerouting priority mangle;"),
            "{t}"
        );
        assert!(t.contains("tcp dport { 22, 443, 8080 } return"), "{t}");
        assert!(
            t.contains("meta mark set 1 tproxy ip to :8080 accept"),
            "{t}"
        );
        assert!(
            t.contains("meta mark set 1 tproxy ip6 to :8080 accept"),
            "{t}"
        );
        let s = plan(Action::Apply, Backend::Nftables, &rules(true)).unwrap();
        let lines: Vec<String> = s.iter().map(Step::to_shell).collect();
        for want in [
            "ip -4 rule add fwmark 1 lookup 100",
            "ip -4 route add local 0.0.0.0/0 dev lo table 100",
            "ip -6 rule add fwmark 1 lookup 100",
            "ip -6 route add local ::/0 dev lo table 100",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want} in {lines:#?}");
        }
        let r = plan(Action::Remove, Backend::Nftables, &rules(true)).unwrap();
        let lines: Vec<String> = r.iter().map(Step::to_shell).collect();
        assert!(lines.contains(&"ip -4 rule del fwmark 1 lookup 100 2>/dev/null || true".into()));
        assert!(plan(Action::Apply, Backend::Iptables, &rules(true)).is_err());
    }
}
