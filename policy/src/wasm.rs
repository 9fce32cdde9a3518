//! The second engine: OPA policies compiled to WebAssembly (`opa build -t wasm`), run by opa-wasm
//! on wasmtime, with the same fail-closed [`Decision`] as the Rego engine.
//!
//! A bundle is a directory or a `.tar.gz` whose `.manifest` names the module
//! (`{"revision": "r1", "wasm": [{"entrypoint": "cordon/outbound/decision", "module": "/policy.wasm"}]}`)
//! and whose `data.json` / `data.yaml` files are mounted by their directory, as OPA does. Rego
//! files in the bundle are ignored: the compiled module is what runs.
//!
//! The module is compiled once and shared; each evaluation borrows a ready instance (its own
//! wasmtime store, with the data already loaded) from a small pool, so [`WasmPolicy`] is cheap to
//! clone and can be called from many threads at once. Evaluation is synchronous: opa-wasm's API is
//! async, but nothing in it waits on I/O, so a minimal executor drives it to completion on the
//! calling thread. That is safe inside `tokio::task::spawn_blocking` (which is where the gateway
//! should call it from); on an async worker thread it would block that worker for the decision.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use opa_wasm::{DefaultContext, Runtime};
use serde::Deserialize;
use wasmtime::{Config, Engine, Module, Store, StoreLimits, StoreLimitsBuilder};

use crate::decision::json_type;
use crate::files::{FileRole, PolicyFile, file_name, file_role, mounted_data_document};
use crate::source::{MANIFEST, SourceFiles, content_hash};
use crate::{DEFAULT_TIME_LIMIT, Decision, PolicyError};

/// The entrypoint [`WasmPolicy::decide`] evaluates: `data.cordon.outbound.decision`, spelled the
/// way `opa build -e` and the manifest name it.
pub const DECISION_ENTRYPOINT: &str = "cordon/outbound/decision";

/// How often the engine's epoch advances. Time limits are enforced to within one tick; a tick
/// every 10 ms costs one thread wake-up per tick and nothing on the evaluating threads.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instantiating a module and loading its data runs code of the module too, so it is limited as
/// well, but generously: a big data document is parsed once per instance, not per decision.
const SETUP_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Linear memory one instance may grow to. OPA modules allocate for input, data and
/// intermediate values; a policy needing more than this is broken or hostile, and must not
/// take the gateway's memory with it.
const MAX_INSTANCE_MEMORY: usize = 1 << 30;

/// Idle instances kept for reuse. Decisions rarely run on more threads at once than the
/// machine has cores; a few spare instances absorb bursts without holding memory for hundreds.
const MAX_IDLE_INSTANCES: usize = 16;

/// Why a wasm policy could not be loaded or evaluated. [`WasmPolicy::decide`] turns every one of
/// them into a deny.
#[derive(thiserror::Error, Debug)]
pub enum WasmError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bundle's layout or its `.manifest` is wrong; `file` is the file at fault.
    #[error("invalid bundle file {file}: {message}")]
    Bundle { file: String, message: String },
    /// A data document does not parse, is not an object where one is needed, or conflicts with
    /// another data document.
    #[error("invalid data document {file}: {message}")]
    Data { file: String, message: String },
    /// The bytes are not a WebAssembly module, or not one compiled by OPA (missing exports,
    /// unknown ABI, a builtin this build does not provide).
    #[error("cannot load wasm module {module}: {message}")]
    Module { module: String, message: String },
    /// wasmtime itself could not be set up.
    #[error("cannot start the wasm engine: {message}")]
    Engine { message: String },
    /// The module does not define the entrypoint that was asked for.
    #[error("the wasm module has no entrypoint {entrypoint} (it has: {available})")]
    MissingEntrypoint {
        entrypoint: String,
        available: String,
    },
    /// The evaluation trapped, aborted or returned something that is not JSON.
    #[error("evaluation of {entrypoint} failed: {message}")]
    Evaluation { entrypoint: String, message: String },
    /// The evaluation ran longer than the policy's time limit and was interrupted.
    #[error("evaluation of {entrypoint} exceeded the time limit of {limit:?}")]
    TimeLimit { entrypoint: String, limit: Duration },
}

impl WasmError {
    /// A bundle that could not be read as a policy source.
    fn from_source(error: PolicyError) -> WasmError {
        match error {
            PolicyError::Io { path, source } => WasmError::Io { path, source },
            PolicyError::Bundle { path, message } => WasmError::Bundle {
                file: path.display().to_string(),
                message,
            },
            other => WasmError::Bundle {
                file: String::new(),
                message: other.to_string(),
            },
        }
    }
}

/// An OPA policy compiled to WebAssembly, with its data, ready to evaluate.
///
/// Cloning is cheap (an `Arc`): clones share the compiled module and the pool of instances;
/// only the time limit is per clone.
#[derive(Clone)]
pub struct WasmPolicy {
    shared: Arc<Shared>,
    time_limit: Duration,
}

struct Shared {
    module: Module,
    /// Module name for error messages: the file in the bundle, or `from bytes`.
    module_name: String,
    data: serde_json::Value,
    revision: String,
    /// Sorted, for stable listings and error messages.
    entrypoints: Vec<String>,
    idle: Mutex<Vec<Instance>>,
}

/// One instantiated module with its own store: a store is single-threaded, so each evaluation
/// takes one out of the pool for its duration.
struct Instance {
    store: Store<StoreLimits>,
    policy: opa_wasm::Policy<DefaultContext>,
}

// The gateway shares one policy across its worker threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WasmPolicy>();
};

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WasmPolicy")
            .field("revision", &self.shared.revision)
            .field("module", &self.shared.module_name)
            .field("entrypoints", &self.shared.entrypoints)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

impl WasmPolicy {
    /// Loads an OPA bundle: a directory or a `.tar.gz` archive. Its `.manifest` must name one
    /// wasm module (every `wasm` entry the same file); each entrypoint it lists must be in the
    /// module. `data.json`, `data.yaml` and `data.yml` files are mounted by their directory and
    /// merged. The revision is the manifest's, or `sha256:<hex>` over the module and data files
    /// when the manifest has none.
    pub fn load_bundle(path: &Path) -> Result<WasmPolicy, WasmError> {
        // Every file but the Rego sources: the module is named by the manifest, read first.
        let bundle = SourceFiles::read(path, |_, name| !name.ends_with(".rego"))
            .map_err(WasmError::from_source)?;
        let get = |relative_path: &str| bundle.files.get(relative_path).cloned();
        let manifest_file = bundle.display_name(MANIFEST);
        let manifest_bytes = get(MANIFEST).ok_or_else(|| WasmError::Bundle {
            file: manifest_file.clone(),
            message: "is missing; it must name the wasm module".to_owned(),
        })?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|error| WasmError::Bundle {
                file: manifest_file.clone(),
                message: format!("is not a valid manifest: {error}"),
            })?;
        let modules: BTreeSet<String> = manifest
            .wasm
            .iter()
            .map(|entry| bundle_relative(&entry.module))
            .collect();
        let module_path = match modules.len() {
            0 => {
                return Err(WasmError::Bundle {
                    file: manifest_file,
                    message: "names no wasm module (expected \"wasm\": [{\"entrypoint\": ..., \"module\": \"/policy.wasm\"}])".to_owned(),
                });
            }
            1 => modules.into_iter().next().unwrap_or_default(),
            _ => {
                return Err(WasmError::Bundle {
                    file: manifest_file,
                    message: format!(
                        "names {} wasm modules ({}); only one module per bundle is supported",
                        modules.len(),
                        modules.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        };
        let module_bytes = get(&module_path).ok_or_else(|| WasmError::Bundle {
            file: manifest_file.clone(),
            message: format!(
                "names wasm module /{module_path}, which is not in the bundle ({})",
                bundle.display_name(&module_path)
            ),
        })?;

        let mut data_files = Vec::new();
        let data_paths = bundle
            .files
            .keys()
            .filter(|name| matches!(file_role(file_name(name)), FileRole::Data));
        for relative_path in data_paths {
            let relative_path = relative_path.clone();
            let bytes = get(&relative_path).unwrap_or_default();
            let contents = String::from_utf8(bytes).map_err(|_| WasmError::Data {
                file: bundle.display_name(&relative_path),
                message: "is not valid utf-8".to_owned(),
            })?;
            data_files.push(PolicyFile {
                relative_path,
                contents,
            });
        }
        let mut data = serde_json::Value::Object(serde_json::Map::new());
        for file in &data_files {
            let document = mounted_data_document(file).map_err(|error| match error {
                PolicyError::Data { message, .. } => WasmError::Data {
                    file: bundle.display_name(&file.relative_path),
                    message,
                },
                other => WasmError::Data {
                    file: bundle.display_name(&file.relative_path),
                    message: other.to_string(),
                },
            })?;
            merge_data(&mut data, document, &mut String::from("data")).map_err(|message| {
                WasmError::Data {
                    file: bundle.display_name(&file.relative_path),
                    message,
                }
            })?;
        }

        let revision = match manifest.revision {
            Some(revision) if !revision.is_empty() => revision,
            _ => content_revision(&module_path, &module_bytes, &data_files),
        };
        let policy = WasmPolicy::compile(
            &module_bytes,
            data,
            revision,
            bundle.display_name(&module_path),
        )?;
        if let Some(missing) = manifest
            .wasm
            .iter()
            .find(|entry| !policy.shared.entrypoints.contains(&entry.entrypoint))
        {
            return Err(WasmError::Bundle {
                file: manifest_file,
                message: format!(
                    "names entrypoint {} that module /{module_path} does not define (it has: {})",
                    missing.entrypoint,
                    policy.shared.entrypoints.join(", ")
                ),
            });
        }
        Ok(policy)
    }

    /// Builds a policy from the bytes of an OPA-compiled module, one data document (an object)
    /// and the revision the caller computed.
    pub fn from_module_bytes(
        wasm: &[u8],
        data: serde_json::Value,
        revision: String,
    ) -> Result<WasmPolicy, WasmError> {
        if !data.is_object() {
            return Err(WasmError::Data {
                file: "data".to_owned(),
                message: "the data document must be an object".to_owned(),
            });
        }
        WasmPolicy::compile(wasm, data, revision, "from bytes".to_owned())
    }

    fn compile(
        wasm: &[u8],
        data: serde_json::Value,
        revision: String,
        module_name: String,
    ) -> Result<WasmPolicy, WasmError> {
        let module_error = |message: String| WasmError::Module {
            module: module_name.clone(),
            message,
        };
        let module =
            Module::new(engine()?, wasm).map_err(|error| module_error(format!("{error:#}")))?;
        // Instantiating once here finds a module that is not OPA's, lacks a builtin, or cannot
        // take the data, at load time rather than at the first decision.
        let instance =
            Instance::new(&module, &data).map_err(|error| module_error(format!("{error:#}")))?;
        let mut entrypoints: Vec<String> = instance
            .policy
            .entrypoints()
            .into_iter()
            .map(str::to_owned)
            .collect();
        entrypoints.sort();
        Ok(WasmPolicy {
            shared: Arc::new(Shared {
                module,
                module_name,
                data,
                revision,
                entrypoints,
                idle: Mutex::new(vec![instance]),
            }),
            time_limit: DEFAULT_TIME_LIMIT,
        })
    }

    /// The revision recorded with every decision.
    pub fn revision(&self) -> &str {
        &self.shared.revision
    }

    /// The entrypoints the module defines, sorted (`cordon/outbound/decision`, `test/p`).
    pub fn entrypoints(&self) -> &[String] {
        &self.shared.entrypoints
    }

    /// The merged data document the module evaluates against.
    pub fn data(&self) -> &serde_json::Value {
        &self.shared.data
    }

    /// Sets the wall-clock limit of one evaluation; a decision that takes longer is a deny. It
    /// is enforced to within 10 ms.
    pub fn set_time_limit(&mut self, limit: Duration) {
        self.time_limit = limit;
    }

    /// The wall-clock limit of one evaluation.
    pub fn time_limit(&self) -> Duration {
        self.time_limit
    }

    /// Evaluates `entrypoint` (`test/p`, `cordon/outbound/decision`) for `input` and returns
    /// OPA's raw result set: `[{"result": <value>}]`, or `[]` when the rule is undefined.
    pub fn evaluate(
        &self,
        entrypoint: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, WasmError> {
        if !self
            .shared
            .entrypoints
            .iter()
            .any(|known| known == entrypoint)
        {
            return Err(WasmError::MissingEntrypoint {
                entrypoint: entrypoint.to_owned(),
                available: self.shared.entrypoints.join(", "),
            });
        }
        let evaluation_error = |message: String| WasmError::Evaluation {
            entrypoint: entrypoint.to_owned(),
            message,
        };
        let mut instance = self.take_instance().map_err(|error| {
            evaluation_error(format!("cannot instantiate the module: {error:#}"))
        })?;
        instance
            .store
            .set_epoch_deadline(epoch_ticks(self.time_limit));
        // A panic inside the runtime must neither take the caller's thread down nor let
        // anything through; the instance it happened in is dropped, not reused.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let Instance { store, policy } = &mut instance;
            futures::executor::block_on(policy.evaluate::<_, serde_json::Value, _>(
                &mut *store,
                entrypoint,
                input,
            ))
        }));
        match outcome {
            Ok(Ok(result)) => {
                self.return_instance(instance);
                Ok(result)
            }
            // A trapped or aborted instance may have stopped half way through updating its
            // heap, so it is dropped rather than reused.
            Ok(Err(error)) if is_interrupt(&error) => Err(WasmError::TimeLimit {
                entrypoint: entrypoint.to_owned(),
                limit: self.time_limit,
            }),
            Ok(Err(error)) => Err(evaluation_error(format!("{error:#}"))),
            Err(_) => Err(evaluation_error("the wasm runtime panicked".to_owned())),
        }
    }

    /// The decision for `input` from [`DECISION_ENTRYPOINT`]. Never fails: a missing or
    /// undefined entrypoint, an evaluation error, a time-out, a non-boolean `allow` or a
    /// malformed `redact`/`reasons` is a deny with `error` set.
    pub fn decide(&self, input: &serde_json::Value) -> Decision {
        self.decide_entrypoint(DECISION_ENTRYPOINT, input)
    }

    /// [`WasmPolicy::decide`] for another entrypoint whose value is a decision document, for
    /// bundles built with a different package layout. Fails closed in the same way.
    pub fn decide_entrypoint(&self, entrypoint: &str, input: &serde_json::Value) -> Decision {
        let decision = self
            .evaluate(entrypoint, input)
            .map_err(|error| error.to_string())
            .and_then(|result| decision_from_result_set(entrypoint, &result));
        match decision {
            Ok(decision) => decision,
            Err(error) => Decision::fail_closed(error),
        }
    }

    fn take_instance(&self) -> anyhow::Result<Instance> {
        let idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(instance) => Ok(instance),
            None => Instance::new(&self.shared.module, &self.shared.data),
        }
    }

    fn return_instance(&self, instance: Instance) {
        let mut idle = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(instance);
        }
    }
}

impl Instance {
    fn new(module: &Module, data: &serde_json::Value) -> anyhow::Result<Instance> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MAX_INSTANCE_MEMORY)
            .build();
        let mut store = Store::new(module.engine(), limits);
        store.limiter(|limits| limits);
        // With epoch interruption on, a fresh store's deadline has already passed.
        store.set_epoch_deadline(epoch_ticks(SETUP_TIME_LIMIT));
        let policy = futures::executor::block_on(async {
            Runtime::new(&mut store, module)
                .await?
                .with_data(&mut store, data)
                .await
        })?;
        Ok(Instance { store, policy })
    }
}

/// The process-wide wasmtime engine: modules compiled by one engine run only in its stores, and
/// one engine needs only one epoch thread.
fn engine() -> Result<&'static Engine, WasmError> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = Config::new();
            // Epochs rather than fuel: a clock thread bumps a counter that compiled code checks
            // at loop heads and calls, which costs far less than counting every instruction.
            config.epoch_interruption(true);
            let engine = Engine::new(&config).map_err(|error| format!("{error:#}"))?;
            let ticking = engine.weak();
            std::thread::Builder::new()
                .name("cordon-wasm-epoch".to_owned())
                .spawn(move || {
                    while let Some(engine) = ticking.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|error| format!("cannot start the epoch thread: {error}"))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|message| WasmError::Engine {
            message: message.clone(),
        })
}

/// Epoch ticks that cover at least `limit`: the first tick may come at once, hence one more.
/// Zero stays zero, so that a zero limit interrupts at the first check.
fn epoch_ticks(limit: Duration) -> u64 {
    if limit.is_zero() {
        return 0;
    }
    let ticks = limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) + 1;
    // The deadline is added to the current epoch; a day of ticks is effectively no limit.
    let day = (86_400 * 1_000_000_000u128).div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks.min(day)).unwrap_or(u64::MAX)
}

/// Whether an evaluation stopped because its epoch deadline passed.
fn is_interrupt(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        )
    })
}

/// Turns OPA's result set for a complete rule into a decision: `[]` is undefined, and the one
/// result's value must be a decision document.
fn decision_from_result_set(
    entrypoint: &str,
    result_set: &serde_json::Value,
) -> Result<Decision, String> {
    let serde_json::Value::Array(results) = result_set else {
        return Err(format!(
            "result set of {entrypoint} is {}, not an array",
            json_type(result_set)
        ));
    };
    let value = match results.as_slice() {
        [] => return Err(format!("{entrypoint} is undefined")),
        [result] => result.get("result").ok_or_else(|| {
            format!("result set of {entrypoint} holds {result}, which has no \"result\"")
        })?,
        _ => {
            return Err(format!(
                "{entrypoint} has {} results; a decision rule has one value",
                results.len()
            ));
        }
    };
    // Checked here so that the message names the wasm entrypoint rather than the Rego one.
    if !value.is_object() {
        return Err(format!(
            "{entrypoint} is {}, not an object",
            json_type(value)
        ));
    }
    let value = regorus::Value::deserialize(value)
        .map_err(|error| format!("{entrypoint} is not a valid decision value: {error}"))?;
    Decision::from_policy_value(&value)
}

/// The parts of an OPA bundle manifest this engine uses; others (`roots`, `metadata`) are
/// accepted and ignored.
#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    wasm: Vec<ManifestWasm>,
}

#[derive(Deserialize)]
struct ManifestWasm {
    entrypoint: String,
    module: String,
}

/// A module path in the manifest is absolute within the bundle (`/policy.wasm`).
fn bundle_relative(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// Deep-merges `document` into `into`, as OPA merges data files: objects merge key by key, and
/// two documents giving the same key a non-object value conflict.
fn merge_data(
    into: &mut serde_json::Value,
    document: serde_json::Value,
    path: &mut String,
) -> Result<(), String> {
    match (into, document) {
        (serde_json::Value::Object(existing), serde_json::Value::Object(incoming)) => {
            for (key, value) in incoming {
                let length = path.len();
                path.push('.');
                path.push_str(&key);
                match existing.get_mut(&key) {
                    Some(slot) => merge_data(slot, value, path)?,
                    None => {
                        existing.insert(key, value);
                    }
                }
                path.truncate(length);
            }
            Ok(())
        }
        _ => Err(format!("{path} conflicts with another data document")),
    }
}

/// `sha256:<hex>` over the module and the data files in path order, for bundles whose manifest
/// gives no revision.
fn content_revision(module_path: &str, module: &[u8], data: &[PolicyFile]) -> String {
    content_hash(
        data.iter()
            .map(|file| (file.relative_path.as_str(), file.contents.as_bytes()))
            .chain([(module_path, module)]),
    )
}
