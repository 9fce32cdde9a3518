//! `cordon.toml`: what is accepted, what is refused and the field each refusal names.

use super::*;

fn file(text: &str) -> Result<GatewayConfig> {
    let parsed: ConfigFile = toml::from_str(text)?;
    GatewayConfig::from_file(parsed, Path::new("/etc/cordon"), &HashMap::new())
}

const MINIMAL: &str = "member = \"GH\"\nfederation = \"cordon-dev\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nca = \"ca.pem\"\n";

#[test]
fn defaults_and_relative_paths() {
    let config = file(MINIMAL).unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.database_url, "sqlite:/etc/cordon/cordon.db");
    assert_eq!(config.policy_dir, Path::new("/etc/cordon/policy"));
    assert_eq!(config.tls_ca, Path::new("/etc/cordon/ca.pem"));
}

#[test]
fn errors_name_the_field() {
    for (text, field) in [
        (MINIMAL.replace("\"GH\"", "\"gh\""), "member"),
        (format!("listen = \"nowhere\"\n{MINIMAL}"), "listen"),
        (format!("database = \"mysql://x\"\n{MINIMAL}"), "database"),
        (
            format!("{MINIMAL}[limits]\npolicy_time_limit_ms = 0\n"),
            "policy_time_limit_ms",
        ),
        (
            format!("{MINIMAL}[admin]\nlisten = \"localhost\"\n"),
            "admin.listen",
        ),
        (
            format!("listen = \"127.0.0.1:7443\"\n{MINIMAL}[admin]\nlisten = \"127.0.0.1:7443\"\n"),
            "admin.listen",
        ),
        (
            format!("administrators = [\"GH/focal-point\", \"NG/focal-point\"]\n{MINIMAL}"),
            "administrators[1]",
        ),
        (
            format!("administrators = [\"GH\"]\n{MINIMAL}"),
            "administrators[0]",
        ),
        (
            format!(
                "{MINIMAL}[[members]]\nid = \"NG\"\nsigning_keys = [\"{GH_KEY}\"]\nkey_windows = [{{ key = \"{GH_KEY}\", not_after = \"yesterday\" }}]\n"
            ),
            "members[0].key_windows[0].not_after",
        ),
        (
            format!(
                "{MINIMAL}[[members]]\nid = \"NG\"\nsigning_keys = [\"{GH_KEY}\"]\nkey_windows = [{{ key = \"{}\" }}]\n",
                "ab".repeat(32)
            ),
            "members[0].key_windows[0].key",
        ),
        (
            format!("administrators = [\"GH/\"]\n{MINIMAL}"),
            "administrators[0]",
        ),
    ] {
        let error = format!("{:#}", file(&text).unwrap_err());
        assert!(error.contains(field), "{error} should name {field}");
    }
    let unknown = toml::from_str::<ConfigFile>(&format!("colour = \"red\"\n{MINIMAL}"));
    assert!(unknown.unwrap_err().to_string().contains("colour"));
    let unknown = toml::from_str::<ConfigFile>(&format!(
        "{MINIMAL}[admin]\nlisten = \"127.0.0.1:0\"\nauth = \"none\"\n"
    ));
    assert!(unknown.unwrap_err().to_string().contains("auth"));
}

#[test]
fn rate_limits_default_and_zero_turns_them_off() {
    let defaults = file(MINIMAL).unwrap().rate_limits;
    assert_eq!(defaults, RateLimits::default());
    let off = file(&format!(
        "{MINIMAL}[limits]\nsubscribe_rereads_per_minute = 0\ngets_per_minute = 7\n"
    ))
    .unwrap()
    .rate_limits;
    assert_eq!(off.subscribe_rereads_per_minute, None);
    assert_eq!(off.gets_per_minute.map(|limit| limit.get()), Some(7));
}

#[test]
fn administrators_are_agencies_of_the_member() {
    assert!(file(MINIMAL).unwrap().administrators.is_empty());
    let config = file(&format!("administrators = [\"GH/focal-point\"]\n{MINIMAL}")).unwrap();
    assert_eq!(
        config.administrators,
        BTreeSet::from(["GH/focal-point".to_string()])
    );
}

#[test]
fn the_admin_listener_is_optional() {
    assert_eq!(file(MINIMAL).unwrap().admin_listen, None);
    let config = file(&format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:9464\"\n")).unwrap();
    assert_eq!(
        config.admin_listen.map(|address| address.to_string()),
        Some("127.0.0.1:9464".to_string())
    );
    let config = file(&format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    assert_eq!(config.admin_listen.map(|address| address.port()), Some(0));
}

#[test]
fn the_taxii_listener_is_optional_and_its_address_checked() {
    assert_eq!(file(MINIMAL).unwrap().taxii_listen, None);
    let config = file(&format!("{MINIMAL}[taxii]\nlisten = \"127.0.0.1:9443\"\n")).unwrap();
    assert_eq!(
        config.taxii_listen.map(|address| address.to_string()),
        Some("127.0.0.1:9443".to_string())
    );
    let error = file(&format!("{MINIMAL}[taxii]\nlisten = \"localhost\"\n")).unwrap_err();
    assert!(format!("{error:#}").contains("taxii.listen"), "{error:#}");
    let error = file(&format!(
        "{MINIMAL}[admin]\nlisten = \"127.0.0.1:9443\"\n[taxii]\nlisten = \"127.0.0.1:9443\"\n"
    ))
    .unwrap_err();
    assert!(
        format!("{error:#}").contains("admin listen address"),
        "{error:#}"
    );
    // Every member the federation data names, this one included.
    assert_eq!(config.members, vec![config.member.clone()]);
}

const GH_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

#[test]
fn members_and_peers() {
    let text = format!(
        "{MINIMAL}[[members]]\nid = \"NG\"\nsigning_keys = [\"{GH_KEY}\"]\n[[peers]]\nid = \"NG\"\nendpoint = \"https://127.0.0.1:7444\"\n"
    );
    let config = file(&text).unwrap();
    assert!(config.federation_keys.knows("NG"));
    assert!(config.suspended.is_empty());
    let suspended = text.replace(
        "id = \"NG\"\nsigning_keys",
        "id = \"NG\"\nsuspended = true\nsigning_keys",
    );
    assert_eq!(
        file(&suspended).unwrap().suspended,
        BTreeSet::from(["NG".to_string()])
    );
    assert_eq!(
        config.peers,
        vec![PeerConfig {
            id: "NG".into(),
            endpoint: "https://127.0.0.1:7444".into(),
            authority: "127.0.0.1:7444".into(),
            host: "127.0.0.1".into(),
            follow: true,
        }]
    );
    let member =
        |id: &str, key: &str| format!("[[members]]\nid = \"{id}\"\nsigning_keys = [\"{key}\"]\n");
    let peer =
        |id: &str, endpoint: &str| format!("[[peers]]\nid = \"{id}\"\nendpoint = \"{endpoint}\"\n");
    for (extra, field) in [
        (member("ng", GH_KEY), "members[0].id"),
        (member("NG", "abcd"), "members[0].signing_keys[0]"),
        (member("NG", GH_KEY) + &member("NG", GH_KEY), "listed twice"),
        (member("GH", GH_KEY), "own member"),
        (
            member("NG", GH_KEY) + &member("SN", GH_KEY),
            "listed for member NG",
        ),
        (peer("SN", "https://127.0.0.1:1"), "no signing key"),
        (peer("GH", "https://127.0.0.1:1"), "itself"),
        (
            member("NG", GH_KEY) + &peer("NG", "http://127.0.0.1:1"),
            "peers[0].endpoint",
        ),
        (
            member("NG", GH_KEY) + &peer("NG", "https://127.0.0.1"),
            "no port",
        ),
        (
            member("NG", GH_KEY) + &peer("NG", "https://h:1/x"),
            "no path",
        ),
    ] {
        let error = format!("{:#}", file(&format!("{MINIMAL}{extra}")).unwrap_err());
        assert!(error.contains(field), "{error} should name {field}");
    }
}

#[test]
fn environment_overrides() {
    let parsed: ConfigFile = toml::from_str(MINIMAL).unwrap();
    let environment = HashMap::from([
        (
            "CORDON_DATABASE_URL".to_string(),
            "postgres://db/cordon".to_string(),
        ),
        ("CORDON_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        (
            "CORDON_ADMIN_LISTEN".to_string(),
            "127.0.0.1:9465".to_string(),
        ),
    ]);
    let config = GatewayConfig::from_file(parsed.clone(), Path::new("/x"), &environment).unwrap();
    assert_eq!(config.database_url, "postgres://db/cordon");
    assert_eq!(config.listen.port(), 0);
    assert_eq!(
        config.admin_listen.map(|address| address.port()),
        Some(9465)
    );
    let bad = HashMap::from([("CORDON_ADMIN_LISTEN".to_string(), "9465".to_string())]);
    let error = format!(
        "{:#}",
        GatewayConfig::from_file(parsed, Path::new("/x"), &bad).unwrap_err()
    );
    assert!(error.contains("admin.listen"), "{error}");
}
