//! `cordon init` (a member's gateway directory) and `cordon serve`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::InitArgs;
use super::ca::{self, DEFAULT_FEDERATION};
use crate::config::{
    CONFIG_FILE, ConfigFile, DecisionLogFile, GatewayConfig, LimitsFile, ScreeningFile, TlsFile,
};
use crate::identity::is_member_id;

pub(super) fn init(args: InitArgs) -> Result<()> {
    if !is_member_id(&args.member) {
        bail!(
            "--member: {:?} is not a member id (2-16 of A-Z, 0-9, '-')",
            args.member
        );
    }
    let config_path = args.dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite it",
            config_path.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let ca_dir = match args.ca {
        Some(dir) => dir,
        None => {
            let dir = args.dir.join("ca");
            ca::init_ca(&dir, DEFAULT_FEDERATION)?;
            dir
        }
    };
    let federation = ca::read_federation(&ca_dir)?;
    ca::issue_for(&ca_dir, &args.member, &args.dir.join("identity"), &args.san)?;
    let signing_key_path = args
        .dir
        .join("identity")
        .join(crate::signing::SIGNING_KEY_FILE);
    crate::signing::generate_signing_key(&signing_key_path)?;
    let signing_key = crate::signing::SigningKey::load(&signing_key_path, &args.member)?;
    let public_key_hex = hex::encode(signing_key.public_key());
    std::fs::write(
        args.dir
            .join("identity")
            .join(crate::signing::PUBLIC_KEY_FILE),
        format!("{public_key_hex}\n"),
    )?;
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let path = args.dir.join("policy").join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let file = ConfigFile {
        member: args.member.clone(),
        federation,
        listen: args.listen,
        database: "sqlite:cordon.db".into(),
        policy: PathBuf::from("policy"),
        tls: TlsFile {
            cert: PathBuf::from("identity/cert.pem"),
            key: PathBuf::from("identity/key.pem"),
            ca: PathBuf::from("identity/ca.pem"),
            crl: None,
        },
        signing_key: PathBuf::from("identity").join(crate::signing::SIGNING_KEY_FILE),
        limits: LimitsFile::default(),
        decision_log: DecisionLogFile::default(),
        watch_policy: true,
        members: Vec::new(),
        peers: Vec::new(),
        admin: None,
        taxii: None,
        screening: ScreeningFile::default(),
        oversight: crate::config::OversightFile::default(),
        administrators: Vec::new(),
    };
    // Validate before writing, so init never leaves a config serve would refuse.
    GatewayConfig::from_file(file.clone(), &args.dir, &HashMap::new())?;
    let text = format!(
        "# Cordon gateway of member {}. Paths are relative to this file.\n# database may also be postgres://user@host/db (or set CORDON_DATABASE_URL).\n{}",
        args.member,
        toml::to_string_pretty(&file)?
    );
    std::fs::write(&config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    println!("member {} set up in {}", args.member, args.dir.display());
    println!("  config:   {}", config_path.display());
    println!("  identity: {}", args.dir.join("identity").display());
    println!(
        "  policy:   {} (reference policy with tests)",
        args.dir.join("policy").display()
    );
    println!("  CA:       {}", ca_dir.display());
    println!(
        "  signing:  key {} (public key {public_key_hex}; partners verify {}'s indicators with it)",
        signing_key.key_id(),
        args.member
    );
    println!(
        "  partners add to their cordon.toml:\n    [[members]]\n    id = \"{}\"\n    signing_keys = [\"{public_key_hex}\"]",
        args.member
    );
    println!("next: cordon serve --config {}", config_path.display());
    Ok(())
}

pub(super) async fn serve(config_path: &Path) -> Result<()> {
    let environment: HashMap<String, String> = std::env::vars().collect();
    let config = GatewayConfig::load(config_path, &environment)?;
    // Registered before the address is announced: a SIGTERM sent as soon as a script or test
    // reads it must shut the gateway down cleanly, not kill it with the default action.
    let shutdown = shutdown_signal().context("registering signal handlers")?;
    if environment
        .get("CORDON_BENCH_AUDIT_LOG")
        .map(String::as_str)
        == Some("off")
    {
        tracing::warn!(
            "the audit log is switched off (CORDON_BENCH_AUDIT_LOG=off, for benchmarks only)"
        );
        cordon_storage::switch_audit_log_off_for_benchmarks();
    }
    if environment
        .get("CORDON_BENCH_COMMITMENTS")
        .map(String::as_str)
        == Some("off")
    {
        tracing::warn!(
            "field commitments are switched off: indicators are signed whole, version 1 (CORDON_BENCH_COMMITMENTS=off, for benchmarks only)"
        );
        crate::signing::switch_commitments_off_for_benchmarks();
    }
    let gateway = crate::server::start(&config, Vec::new()).await?;
    // `[[members]] suspended` applies while the gateway runs.
    let _roster_watcher = crate::roster::watch_config(
        config_path,
        environment.clone(),
        gateway.state.roster.clone(),
    )
    .context("watching the config file")?;
    // Tests and scripts read the bound addresses (the config may say port 0).
    let mut first_line =
        serde_json::json!({"listening": gateway.address.to_string(), "member": config.member});
    if let Some(admin) = gateway.admin_address {
        first_line["admin"] = serde_json::Value::String(admin.to_string());
    }
    if let Some(taxii) = gateway.taxii_address {
        first_line["taxii"] = serde_json::Value::String(taxii.to_string());
    }
    println!("{first_line}");
    std::io::stdout().flush()?;
    gateway.run_until(shutdown).await
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
