//! End-to-end: the database and desktop responders (MySQL, PostgreSQL, Redis, VNC, MongoDB)
//! driven by the real Debian clients against the real binary in a namespace. Each test checks
//! that the client's *second* message (login packet, password, command, DES response, SASL
//! start) reaches the records.

mod common;

use common::*;
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mariadb_login_packet_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns
        .cmd(&[
            "mariadb",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "--connect-timeout=20",
            "-u",
            "SECRET",
            "-phunter2",
            "-D",
            "shop",
            "-e",
            "select 1",
        ])
        .output()
        .expect("mariadb client");
    let err = text(&out.stderr);
    assert!(
        err.contains("ERROR 1045 (28000): Access denied for user 'SECRET'@'127.0.0.1'"),
        "{err}"
    );
    let recs = sensor.wait_for(3306, "the login packet", |r| {
        r["spip"]["mysql"]["packet"] == "login"
    });
    let login = recs
        .iter()
        .find(|r| r["spip"]["mysql"]["packet"] == "login")
        .unwrap_or_else(|| panic!("no login record: {recs:?}"));
    assert_eq!(login["network"]["protocol"], "mysql");
    assert_eq!(login["user"]["name"], "SECRET");
    let m = &login["spip"]["mysql"];
    assert_eq!(m["auth_plugin"], "mysql_native_password");
    assert_eq!(m["auth_response"].as_str().unwrap().len(), 40);
    assert_eq!(m["database"], "shop");
    assert_eq!(m["attributes"]["_client_name"], "libmariadb");
}

fn psql_password_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns
        .cmd(&[
            "env",
            "PGPASSWORD=hunter2",
            "PGCONNECT_TIMEOUT=20",
            "PGAPPNAME=e2e",
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "SECRET",
            "-d",
            "shop",
            "-c",
            "select 1",
        ])
        .output()
        .expect("psql client");
    let err = text(&out.stderr);
    assert!(
        err.contains("password authentication failed for user \"SECRET\""),
        "{err}"
    );
    // The password is the last message: wait for it, then look at the startup before it.
    let recs = sensor.wait_for(5432, "the password", |r| {
        r["spip"]["postgres"]["message"] == "password"
    });
    let find = |message: &str| {
        recs.iter()
            .find(|r| r["spip"]["postgres"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message} record: {recs:?}"))
    };
    let startup = find("startup");
    assert_eq!(startup["network"]["protocol"], "postgresql");
    assert_eq!(startup["user"]["name"], "SECRET");
    assert_eq!(startup["spip"]["postgres"]["database"], "shop");
    assert_eq!(startup["spip"]["postgres"]["application_name"], "e2e");
    assert_eq!(find("password")["spip"]["postgres"]["password"], "hunter2");
}

fn redis_cli_command_after_auth_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns
        .cmd(&[
            "redis-cli",
            "-h",
            "127.0.0.1",
            "-p",
            "6379",
            "-a",
            "pw",
            "--no-auth-warning",
            "CONFIG",
            "SET",
            "dir",
            "/var/lib/SECRET",
        ])
        .output()
        .expect("redis-cli");
    assert_eq!(text(&out.stdout).trim(), "OK", "{}", text(&out.stderr));
    // CONFIG comes after AUTH: wait for it.
    let recs = sensor.wait_for(6379, "the CONFIG command", |r| {
        r["spip"]["redis"]["command"] == "CONFIG"
    });
    let auth = recs
        .iter()
        .find(|r| r["spip"]["redis"]["command"] == "AUTH")
        .unwrap_or_else(|| panic!("no AUTH record: {recs:?}"));
    assert_eq!(auth["spip"]["redis"]["password"], "pw");
    let config = recs
        .iter()
        .find(|r| r["spip"]["redis"]["command"] == "CONFIG")
        .unwrap_or_else(|| panic!("no CONFIG record: {recs:?}"));
    assert_eq!(config["network"]["protocol"], "redis");
    assert_eq!(
        config["spip"]["redis"]["arguments"],
        serde_json::json!(["SET", "dir", "/var/lib/SECRET"])
    );
}

fn vncsnapshot_auth_response_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let dir = TempDir(temp_dir("vnc"));
    // vncpasswd's file for "hunter2" (DES with the fixed VNC key).
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, [0x0e, 0x20, 0x91, 0x4c, 0xff, 0x61, 0x06, 0x3a]).unwrap();
    let out = ns
        .cmd(&[
            "timeout",
            "20",
            "vncsnapshot",
            "-passwd",
            passwd.to_str().unwrap(),
            "127.0.0.1:3",
            dir.join("shot.jpg").to_str().unwrap(),
        ])
        .output()
        .expect("vncsnapshot");
    let err = text(&out.stderr);
    assert!(err.contains("VNC authentication failed"), "{err}");
    // The auth response comes after the version: wait for it.
    let recs = sensor.wait_for(5903, "the auth response", |r| {
        r["spip"]["vnc"]["message"] == "auth_response"
    });
    let version = recs
        .iter()
        .find(|r| r["spip"]["vnc"]["message"] == "version")
        .unwrap_or_else(|| panic!("no version record: {recs:?}"));
    assert_eq!(version["spip"]["vnc"]["client_version"], "RFB 003.003");
    let auth = recs
        .iter()
        .find(|r| r["spip"]["vnc"]["message"] == "auth_response")
        .unwrap_or_else(|| panic!("no auth record: {recs:?}"));
    assert_eq!(auth["network"]["protocol"], "vnc");
    assert_eq!(
        auth["spip"]["vnc"]["auth_response"].as_str().unwrap().len(),
        32
    );
    assert_eq!(auth["spip"]["vnc"]["challenge"].as_str().unwrap().len(), 32);
}

/// pymongo (python3-pymongo) logging in with SCRAM.
const PYMONGO_LOGIN: &str = r#"
import pymongo
c = pymongo.MongoClient("mongodb://SECRET:hunter2@127.0.0.1:27017/shop?authSource=admin&appname=e2e",
                        serverSelectionTimeoutMS=20000, directConnection=True)
try:
    c.shop.list_collection_names()
except Exception as e:
    print(type(e).__name__, e)
"#;

fn pymongo_sasl_start_is_recorded() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let sensor = Sensor::start(&ns, "");
    let out = ns
        .cmd(&["/usr/bin/python3", "-c", PYMONGO_LOGIN])
        .output()
        .expect("python3 with pymongo");
    let said = text(&out.stdout);
    assert!(
        said.contains("Authentication failed"),
        "{said} {}",
        text(&out.stderr)
    );
    // saslStart follows the handshake (with the application name) on its connection.
    let recs = sensor.wait_for(27017, "saslStart", |r| {
        r["spip"]["mongodb"]["command"] == "saslStart"
    });
    let sasl = recs
        .iter()
        .find(|r| r["spip"]["mongodb"]["command"] == "saslStart")
        .unwrap_or_else(|| panic!("no saslStart record: {recs:?}"));
    assert_eq!(sasl["network"]["protocol"], "mongodb");
    assert_eq!(sasl["user"]["name"], "SECRET");
    assert_eq!(sasl["spip"]["mongodb"]["mechanism"], "SCRAM-SHA-256");
    assert_eq!(sasl["spip"]["mongodb"]["database"], "admin");
    assert!(
        recs.iter()
            .any(|r| r["spip"]["mongodb"]["application_name"] == "e2e"),
        "{recs:?}"
    );
}

fn nmap_names_the_services_and_nse_scripts_read_them() {
    let ns = Netns::sensor_host(SENSOR_PORT, &[]);
    let mut sensor = Sensor::start(&ns, "read_timeout_seconds = 3");
    let out = ns.run(&[
        "nmap",
        "-sV",
        "-Pn",
        "-n",
        "-T4",
        "-p",
        "3306,5432,5900,6379,27017",
        "--script",
        "mysql-info,vnc-info,redis-info,mongodb-info",
        "127.0.0.1",
    ]);
    let said = text(&out.stdout);
    println!("{said}");
    for line in [
        "3306/tcp  open  mysql",
        "5432/tcp  open  postgresql",
        "5900/tcp  open  vnc",
        "6379/tcp  open  redis",
        "27017/tcp open  mongodb",
    ] {
        assert!(said.contains(line), "{line} missing in\n{said}");
    }
    assert!(said.contains("8.0.36"), "mysql-info: {said}");
    assert!(said.contains("VNC Authentication"), "vnc-info: {said}");
    assert!(said.contains("7.0.15"), "redis-info: {said}");
    assert!(sensor.alive(), "sensor died: {}", sensor.stderr());
    let (code, _) = sensor.stop();
    assert_eq!(code, 0);
}

common::test_main! {
    needs_root: [
        mariadb_login_packet_is_recorded,
        psql_password_is_recorded,
        redis_cli_command_after_auth_is_recorded,
        vncsnapshot_auth_response_is_recorded,
        pymongo_sasl_start_is_recorded,
        nmap_names_the_services_and_nse_scripts_read_them,
    ],
    no_root: [],
}
