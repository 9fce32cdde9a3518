//! A loaded, compiled policy and the per-decision evaluation that fails closed.

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use regorus::languages::rego::compiler::{Compiler, CompilerError};
use regorus::utils::limits::ExecutionTimerConfig;
use serde::Deserialize;

use crate::files::{PolicyDirectory, mounted_data_document};
use crate::{Decision, ENTRYPOINT, ENTRYPOINT_PACKAGE, ENTRYPOINT_RULE, PolicyError};

/// Per-decision time limit unless [`Policy::set_time_limit`] says otherwise. Decisions take
/// tens of microseconds; a policy that needs 100 ms is broken or hostile.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(100);

/// Interpreter work units between clock reads: often enough to stop a runaway loop within a
/// fraction of a millisecond, rare enough that reading the clock costs nothing measurable.
const TIMER_CHECK_INTERVAL: NonZeroU32 = NonZeroU32::new(32).expect("32 is not zero");

/// A board's policy, compiled once and shared by every decision.
///
/// Cloning is cheap (an `Arc`); each decision clones the prepared template engine, which shares
/// the parsed modules and the data document, so no decision re-parses or re-analyses anything.
#[derive(Clone)]
pub struct Policy {
    shared: Arc<CompiledPolicy>,
    time_limit: Duration,
}

struct CompiledPolicy {
    /// Prepared (analysed and scheduled) engine with modules and data but no input.
    template: regorus::Engine,
    revision: String,
    /// The merged data document, for the gateway's lookups of recipient facts.
    data: serde_json::Value,
}

// The gateway shares one policy across its worker threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
};

impl std::fmt::Debug for Policy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Policy")
            .field("revision", &self.shared.revision)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads a policy directory: every `*.rego` except `*_test.rego` is policy; `data.json` and
    /// `data.yaml` files are mounted by their directory as OPA does (`a/b/data.json` is
    /// `data.a.b`). The revision is `sha256:<hex>` over the sorted relative paths and contents
    /// of the policy and data files; tests are excluded.
    ///
    /// Fails when a module does not parse or compile, a data file does not parse, data
    /// documents conflict, or package `cordon.outbound` does not define `decision`.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        let directory = PolicyDirectory::read(dir)?;
        let revision = directory.revision();
        let modules: Vec<(String, String)> = directory
            .modules
            .iter()
            .map(|file| (file.relative_path.clone(), file.contents.clone()))
            .collect();
        let data = directory
            .data
            .iter()
            .map(|file| Ok((file.relative_path.clone(), mounted_data_document(file)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        Policy::compile(&modules, data, revision)
    }

    /// Builds a policy from in-memory modules `(name, text)` and one data document (an object),
    /// with the revision the caller computed (for example a bundle's manifest revision).
    pub fn from_modules(
        modules: Vec<(String, String)>,
        data: serde_json::Value,
        revision: String,
    ) -> Result<Policy, PolicyError> {
        if !data.is_object() {
            return Err(PolicyError::Data {
                file: "data".to_owned(),
                message: "the data document must be an object".to_owned(),
            });
        }
        Policy::compile(&modules, vec![("data".to_owned(), data)], revision)
    }

    fn compile(
        modules: &[(String, String)],
        data: Vec<(String, serde_json::Value)>,
        revision: String,
    ) -> Result<Policy, PolicyError> {
        let template = prepared_engine(modules, data)?;
        check_entrypoint(&template)?;
        check_with_bytecode_compiler(&template)?;
        let data =
            serde_json::to_value(template.get_data()).map_err(|error| PolicyError::Data {
                file: "data".to_owned(),
                message: error.to_string(),
            })?;
        Ok(Policy {
            shared: Arc::new(CompiledPolicy {
                template,
                revision,
                data,
            }),
            time_limit: DEFAULT_TIME_LIMIT,
        })
    }

    /// The revision recorded with every decision.
    pub fn revision(&self) -> &str {
        &self.shared.revision
    }

    /// Sets the wall-clock limit of one evaluation; a decision that takes longer is a deny.
    pub fn set_time_limit(&mut self, limit: Duration) {
        self.time_limit = limit;
    }

    /// The wall-clock limit of one evaluation.
    pub fn time_limit(&self) -> Duration {
        self.time_limit
    }

    /// The merged data document.
    pub fn data(&self) -> &serde_json::Value {
        &self.shared.data
    }

    /// `data.recipients[id]`, if it is an object: the facts the gateway merges into
    /// `input.recipient`.
    pub fn recipient_data(&self, id: &str) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.shared.data.get("recipients")?.get(id)?.as_object()
    }

    /// Evaluates the entrypoint for `input`. Never fails: an undefined decision, an evaluation
    /// error, a time-out, a non-boolean `allow` or a malformed `redact`/`reasons` is a deny with
    /// `error` set.
    pub fn decide(&self, input: &serde_json::Value) -> Decision {
        // A panic inside the engine must not take the gateway's worker down, nor let anything
        // through; the engine clone that panicked is discarded with the closure.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.evaluate(input)));
        match outcome {
            Ok(Ok(decision)) => decision,
            Ok(Err(error)) => Decision::fail_closed(error),
            Err(_) => Decision::fail_closed(format!("evaluation of {ENTRYPOINT} panicked")),
        }
    }

    fn evaluate(&self, input: &serde_json::Value) -> Result<Decision, String> {
        let input = regorus::Value::deserialize(input)
            .map_err(|error| format!("input is not a valid rego value: {error}"))?;
        let mut engine = self.shared.template.clone();
        engine.set_execution_timer_config(timer_config(self.time_limit));
        engine.set_input(input);
        let value = engine
            .eval_rule(ENTRYPOINT.to_owned())
            .map_err(|error| evaluation_error(ENTRYPOINT, &error, self.time_limit))?;
        Decision::from_policy_value(&value)
    }
}

pub(crate) fn timer_config(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: TIMER_CHECK_INTERVAL,
    }
}

/// Names a time-out plainly; other errors keep regorus' message, which points at the file, line
/// and column. `rule` is the rule that was evaluated.
pub(crate) fn evaluation_error(rule: &str, error: &anyhow::Error, limit: Duration) -> String {
    let timed_out = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<regorus::LimitError>(),
            Some(regorus::LimitError::TimeLimitExceeded { .. })
        )
    }) || error.to_string().contains("exceeded time limit");
    if timed_out {
        format!("evaluation of {rule} exceeded the time limit of {limit:?}")
    } else {
        format!("evaluation of {rule} failed: {}", error.to_string().trim())
    }
}

/// An engine holding `modules` and `data`, analysed once so that clones start evaluating at once.
pub(crate) fn prepared_engine(
    modules: &[(String, String)],
    data: Vec<(String, serde_json::Value)>,
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    // print() output goes nowhere rather than to the gateway's stderr on every decision.
    engine.set_gather_prints(true);
    let mut names = std::collections::HashSet::new();
    for (name, text) in modules {
        if !names.insert(name.as_str()) {
            return Err(PolicyError::Compile {
                message: format!("two modules are named {name}"),
            });
        }
        engine
            .add_policy(name.clone(), text.clone())
            .map_err(|error| PolicyError::Parse {
                file: name.clone(),
                message: error.to_string().trim().to_owned(),
            })?;
    }
    let packages =
        engine
            .get_policy_package_components()
            .map_err(|error| PolicyError::Compile {
                message: error.to_string(),
            })?;
    for (file, document) in data {
        check_data_shadows_no_rule(&engine, &packages, &file, &document)?;
        let value: regorus::Value =
            serde_json::from_value(document).map_err(|error| PolicyError::Data {
                file: file.clone(),
                message: error.to_string(),
            })?;
        engine.add_data(value).map_err(|error| PolicyError::Data {
            file: file.clone(),
            message: format!("conflicts with another data document: {error}"),
        })?;
    }
    // A trivial query runs the analysis (rule scheduling, imports, loop hoisting) and marks the
    // engine prepared; every clone inherits that.
    engine
        .eval_query("true".to_owned(), false)
        .map_err(|error| PolicyError::Compile {
            message: error.to_string().trim().to_owned(),
        })?;
    let _ = engine.take_prints();
    Ok(engine)
}

/// The interpreter lets a data value at a rule's path win over the rule, so a data file holding
/// `cordon.outbound.decision` would replace the policy's decision unseen. OPA rejects such
/// overlaps when it compiles a bundle; so does this.
fn check_data_shadows_no_rule(
    engine: &regorus::Engine,
    packages: &[regorus::PolicyPackageComponents],
    file: &str,
    document: &serde_json::Value,
) -> Result<(), PolicyError> {
    let conflict = |message: String| PolicyError::Data {
        file: file.to_owned(),
        message,
    };
    'packages: for package in packages {
        let mut value = document;
        let mut path = String::from("data");
        for component in &package.components {
            let serde_json::Value::Object(object) = value else {
                return Err(conflict(format!(
                    "{path} is not an object, so it hides package {} of {}",
                    package.components.join("."),
                    package.source_file
                )));
            };
            let Some(inner) = object.get(component) else {
                // This document holds nothing under the package.
                continue 'packages;
            };
            value = inner;
            path.push('.');
            path.push_str(component);
        }
        let serde_json::Value::Object(object) = value else {
            return Err(conflict(format!(
                "{path} is not an object, so it hides package {} of {}",
                package.components.join("."),
                package.source_file
            )));
        };
        for key in object.keys() {
            // A key that is not a valid rule name cannot collide with a rule.
            let declared = engine
                .has_declared_rule_rooted_at(&package.source_file, key)
                .unwrap_or(false);
            if declared {
                return Err(conflict(format!(
                    "{path}.{key} conflicts with the rule {key} of {}",
                    package.source_file
                )));
            }
        }
    }
    Ok(())
}

fn check_entrypoint(engine: &regorus::Engine) -> Result<(), PolicyError> {
    let packages =
        engine
            .get_policy_package_components()
            .map_err(|error| PolicyError::Compile {
                message: error.to_string(),
            })?;
    for package in packages {
        if package.components != ENTRYPOINT_PACKAGE {
            continue;
        }
        let declared = engine
            .has_declared_rule_rooted_at(&package.source_file, ENTRYPOINT_RULE)
            .map_err(|error| PolicyError::Compile {
                message: format!("{}: {error}", package.source_file),
            })?;
        if declared {
            return Ok(());
        }
    }
    Err(PolicyError::MissingEntrypoint)
}

/// The interpreter finds unknown functions and unsafe variables only when evaluation reaches
/// them, which for a rarely taken branch may be months after activation. The bytecode compiler
/// resolves everything the entrypoint can reach, so its verdict on those errors is taken at load
/// time. It does not support every construct (`with`, some partial object rules); when it gives
/// up for such a reason the policy still loads and runs on the interpreter.
fn check_with_bytecode_compiler(template: &regorus::Engine) -> Result<(), PolicyError> {
    let mut engine = template.clone();
    let compiled = engine
        .compile_with_entrypoint(&ENTRYPOINT.into())
        .map_err(|error| PolicyError::Compile {
            message: error.to_string().trim().to_owned(),
        })?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Compiler::compile_from_policy(&compiled, &[ENTRYPOINT]).map(|_| ())
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if is_policy_defect(&error.error) => Err(PolicyError::Compile {
            message: error.to_string().trim().to_owned(),
        }),
        Ok(Err(error)) => {
            tracing::debug!(%error, "bytecode compiler does not support this policy; checked by the interpreter only");
            Ok(())
        }
        Err(_) => {
            tracing::debug!("bytecode compiler panicked; policy checked by the interpreter only");
            Ok(())
        }
    }
}

/// Errors that mean the policy itself is wrong, as opposed to the compiler's own limits. Some
/// arrive wrapped in a general error, so their text is matched too.
fn is_policy_defect(error: &CompilerError) -> bool {
    const DEFECT_MESSAGES: [&str; 3] = [
        "Unknown function",
        "Unknown builtin function",
        "Undefined variable",
    ];
    match error {
        CompilerError::UnknownFunction { .. }
        | CompilerError::UnknownBuiltinFunction { .. }
        | CompilerError::NotBuiltinFunction { .. }
        | CompilerError::UndefinedVariable { .. } => true,
        CompilerError::General { message } => DEFECT_MESSAGES
            .iter()
            .any(|defect| message.contains(defect)),
        _ => false,
    }
}
