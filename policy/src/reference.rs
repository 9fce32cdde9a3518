//! The reference policy that `cordon init` installs in a new member's policy directory.

/// The reference policy's files as `(relative path, contents)`: the outbound (sharing) rules and
/// the risk rules of screening, their tests, and sample data. The gateway writes them into a new policy directory; `Policy::load_dir` on
/// that directory gives the reference policy.
pub fn reference_policy_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "cordon/outbound.rego",
            include_str!("../reference/cordon/outbound.rego"),
        ),
        (
            "cordon/outbound_test.rego",
            include_str!("../reference/cordon/outbound_test.rego"),
        ),
        (
            "cordon/risk.rego",
            include_str!("../reference/cordon/risk.rego"),
        ),
        (
            "cordon/risk_test.rego",
            include_str!("../reference/cordon/risk_test.rego"),
        ),
        ("data.json", include_str!("../reference/data.json")),
    ]
}

/// Writes the reference policy's files into `dir` (creating its folders), as `cordon init`
/// does; benchmarks, fuzz targets and tests load it from there.
pub fn write_reference_policy(dir: &std::path::Path) -> std::io::Result<()> {
    for (relative, contents) in reference_policy_files() {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}
