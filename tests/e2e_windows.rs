//! End-to-end: the SMB, MSSQL and RDP responders in the real binary (in a network namespace
//! with every port redirected to the sensor), driven by real Debian clients: smbclient,
//! tsql (FreeTDS), xfreerdp (under Xvfb), nmap -sV and its smb-protocols script. Each test
//! asserts that the client's credentials, sent in its second or later message, reach the
//! records; rdp-ntlm-info reads the CHALLENGE we send inside CredSSP, smb2-time our clock in
//! the SMB2 NEGOTIATE response. Not here:
//! ms-sql-ntlm-info (Debian's nmap 7.93 fails in every ms-sql-* script, nmap/nmap#2622; the
//! same NTLM-in-LOGIN7 path is driven by tsql with a domain user).

mod common;

use common::*;

/// A NetNTLMv2 response from a named workstation, in hashcat's format for `user::DOMAIN:`.
fn assert_netntlmv2(ntlm: &serde_json::Value, hashcat_prefix: &str) {
    assert_eq!(ntlm["response"], "v2", "{ntlm}");
    assert!(
        !ntlm["workstation"].as_str().unwrap_or("").is_empty(),
        "{ntlm}"
    );
    assert!(
        ntlm["hashcat"]
            .as_str()
            .unwrap_or("")
            .starts_with(hashcat_prefix),
        "{ntlm}"
    );
}

fn smbclient_user_and_netntlmv2_are_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.client(&[
        "timeout",
        "20",
        "smbclient",
        "-L",
        "//127.0.0.1",
        "-U",
        "CORP/alice%Secret1",
    ]);
    assert!(out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    let r = sensor.record_where(445, |r| r["user"]["name"] == "alice");
    assert_eq!(r["user"]["domain"], "CORP");
    assert_eq!(r["network"]["protocol"], "smb");
    assert_eq!(r["spip"]["smb"]["command"], "session_setup");
    assert_netntlmv2(&r["spip"]["ntlm"], "alice::CORP:");
}

fn smbclient_on_139_speaks_netbios_first() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.client(&[
        "timeout",
        "20",
        "smbclient",
        "-L",
        "//127.0.0.1",
        "-p",
        "139",
        "-U",
        "bob%pw",
    ]);
    assert!(out.contains("NT_STATUS_LOGON_FAILURE"), "{out}");
    sensor.record_where(139, |r| r["user"]["name"] == "bob");
}

fn tsql_login_and_password_are_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.client(&[
        "timeout",
        "20",
        "tsql",
        "-H",
        "127.0.0.1",
        "-p",
        "1433",
        "-U",
        "sa",
        "-P",
        "hunter2",
    ]);
    assert!(out.contains("Login failed for user 'sa'"), "{out}");
    let r = sensor.record_where(1433, |r| r["user"]["name"] == "sa");
    assert_eq!(r["network"]["protocol"], "mssql");
    assert_eq!(r["spip"]["mssql"]["password"], "hunter2");
    assert_eq!(r["spip"]["mssql"]["app_name"], "TSQL");
}

fn tsql_windows_login_yields_ntlm() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    ns.client(&[
        "timeout",
        "20",
        "tsql",
        "-H",
        "127.0.0.1",
        "-p",
        "1433",
        "-U",
        "CORP\\bob",
        "-P",
        "pw",
    ]);
    let r = sensor.record_where(1433, |r| r["user"]["name"] == "bob");
    assert_eq!(r["user"]["domain"], "CORP");
    assert!(
        r["spip"]["ntlm"]["hashcat"]
            .as_str()
            .unwrap()
            .starts_with("bob::CORP:")
    );
}

/// xfreerdp (under Xvfb) against 127.0.0.1:3389 with `extra` arguments; its output.
fn xfreerdp(ns: &Netns, extra: &[&str]) -> String {
    let mut args = vec![
        "timeout",
        "20",
        "xvfb-run",
        "-a",
        "xfreerdp",
        "/v:127.0.0.1:3389",
        "/p:pw",
        "/auth-only",
        "/cert:ignore",
    ];
    args.extend_from_slice(extra);
    ns.client(&args)
}

fn xfreerdp_nla_yields_user_domain_and_netntlmv2() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = xfreerdp(&ns, &["/u:rdpuser", "/d:CORP"]);
    let r = sensor
        .find_record(3389, |r| r["spip"]["ntlm"]["message"] == "authenticate")
        .unwrap_or_else(|e| panic!("{out}\n{e}"));
    assert_eq!(r["user"]["name"], "rdpuser", "{r:#}");
    assert_eq!(r["user"]["domain"], "CORP");
    // Inside TLS, as every record of a TLS layer says.
    assert_eq!(r["network"]["protocol"], "tls");
    assert_eq!(r["spip"]["rdp"]["message"], "credssp");
    assert_netntlmv2(&r["spip"]["ntlm"], "rdpuser::CORP:");
    // Refused as Windows refuses it: CredSSP's errorCode STATUS_LOGON_FAILURE.
    assert!(out.contains("LOGON_FAILURE"), "{out}");
    // The Connection Request before TLS: the cookie and CredSSP asked for.
    let cr = sensor.record_where(3389, |r| {
        r["spip"]["rdp"]["message"] == "connection_request"
    });
    assert_eq!(cr["spip"]["rdp"]["cookie"], "mstshash=rdpuser");
}

fn xfreerdp_tls_and_standard_security_record_the_client_core() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    for sec in ["/sec:tls", "/sec:rdp"] {
        let out = xfreerdp(&ns, &["/u:rdpuser", sec]);
        let r = sensor
            .find_record(3389, |r| {
                r["spip"]["rdp"]["message"] == "mcs_connect_initial"
                    && (sec == "/sec:rdp") == r["tls"].is_null()
            })
            .unwrap_or_else(|e| panic!("{sec}: {out}\n{e}"));
        assert!(
            !r["spip"]["rdp"]["client_name"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{sec}: {r:#}"
        );
    }
}

/// Runs one nmap script against `port`; returns its output and today's date (`YYYY-MM-DD`, as
/// nmap prints times) read before and after.
fn nmap_script(ns: &Netns, port: &str, script: &str) -> (String, String, String) {
    let before = utc_today("%Y-%m-%d");
    let out = ns.run(&[
        "nmap",
        "-Pn",
        "-n",
        "-p",
        port,
        "--script",
        script,
        "127.0.0.1",
    ]);
    let after = utc_today("%Y-%m-%d");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        before,
        after,
    )
}

fn nmap_rdp_ntlm_info_reads_our_challenge() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "banner_hostname = \"fileserver01\"");
    let (scan, before, after) = nmap_script(&ns, "3389", "rdp-ntlm-info");
    // The CHALLENGE's MsvAvTimestamp: our clock, as Windows sends it.
    assert!(
        shows_date(&scan, "System_Time: ", &before, &after),
        "{scan}"
    );
    assert!(scan.contains("Target_Name: FILESERVER01"), "{scan}");
    assert!(
        scan.contains("NetBIOS_Computer_Name: FILESERVER01"),
        "{scan}"
    );
    assert!(scan.contains("DNS_Computer_Name: fileserver01"), "{scan}");
    assert!(scan.contains("Product_Version: 10.0.17763"), "{scan}");
    let r = sensor.record_where(3389, |r| r["spip"]["ntlm"]["message"] == "negotiate");
    assert_eq!(r["spip"]["rdp"]["credssp_version"], 96);
}

fn nmap_names_the_services_and_smb_protocols_runs() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns.run(&[
        "nmap",
        "-sV",
        "-Pn",
        "-n",
        "-p",
        "445,1433,3389",
        "--version-intensity",
        "7",
        "--script",
        "smb-protocols",
        "-T4",
        "127.0.0.1",
    ]);
    let scan = String::from_utf8_lossy(&out.stdout);
    assert!(scan.contains("1433/tcp open  ms-sql-s"), "{scan}");
    assert!(scan.contains("Microsoft SQL Server 2019"), "{scan}");
    assert!(scan.contains("3389/tcp open  ms-wbt-server"), "{scan}");
    // smb-protocols lists the dialects we negotiate (SMB1 is off, as on Windows since 2017).
    assert!(scan.contains("|_    311"), "{scan}");
    sensor.record_where(445, |r| r["spip"]["smb"]["command"] == "negotiate");
}

fn nmap_smb2_time_reads_our_clock() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let (scan, before, after) = nmap_script(&ns, "445", "smb2-time");
    // SystemTime is now; ServerStartTime zero, which nmap prints as N/A (as for Windows 10+).
    assert!(shows_date(&scan, "  date: ", &before, &after), "{scan}");
    assert!(scan.contains("start_date: N/A"), "{scan}");
    sensor.record_where(445, |r| r["spip"]["smb"]["command"] == "negotiate");
}

common::test_main! {
    needs_root: [
        smbclient_user_and_netntlmv2_are_recorded,
        smbclient_on_139_speaks_netbios_first,
        tsql_login_and_password_are_recorded,
        tsql_windows_login_yields_ntlm,
        xfreerdp_nla_yields_user_domain_and_netntlmv2,
        xfreerdp_tls_and_standard_security_record_the_client_core,
        nmap_rdp_ntlm_info_reads_our_challenge,
        nmap_names_the_services_and_smb_protocols_runs,
        nmap_smb2_time_reads_our_clock,
    ],
    no_root: [],
}
