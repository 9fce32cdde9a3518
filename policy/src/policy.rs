//! A loaded, compiled policy and the per-decision evaluation that fails closed.

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;

use crate::analysis::{Analysis, Functions, analyse};
use crate::cache::{CacheStats, DEFAULT_CACHE_ENTRIES, DecisionCache};
use crate::files::{Manifest, PolicyDirectory};
use crate::rvm::{Compiled, RvmEngine};
use crate::{Decision, ENTRYPOINT, ENTRYPOINT_PACKAGE, ENTRYPOINT_RULE, PolicyError};

/// Per-decision time limit unless [`Policy::set_time_limit`] says otherwise. Decisions take
/// tens of microseconds; a policy that needs 100 ms is broken or hostile.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_millis(100);

/// Interpreter work units between clock reads: often enough to stop a runaway loop within a
/// fraction of a millisecond, rare enough that reading the clock costs nothing measurable.
const TIMER_CHECK_INTERVAL: NonZeroU32 = NonZeroU32::new(32).expect("32 is not zero");

/// How long loading may spend comparing the engines. The reference policy needs a few
/// milliseconds for the whole corpus (more in a debug build on a loaded machine); a policy
/// whose every decision times out gets a handful of comparisons instead of minutes, and
/// stays on the interpreter, since the VM is activated only after a complete comparison.
const LOAD_VERIFICATION_BUDGET: Duration = Duration::from_secs(5);

/// Mismatches kept in an [`EngineVerification`]; one is enough to refuse the VM.
const MAX_REPORTED_MISMATCHES: usize = 10;

/// The two ways regorus can evaluate a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// The tree-walking interpreter: runs every policy, and is the reference for answers.
    Interpreter,
    /// The bytecode VM: several times faster, used only where it compiles the policy and
    /// gives the interpreter's answers.
    Rvm,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Interpreter => "interpreter",
            EngineKind::Rvm => "rvm",
        }
    }
}

/// One input on which the two engines disagreed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineMismatch {
    pub input: serde_json::Value,
    pub interpreter: Decision,
    pub rvm: Decision,
}

/// The outcome of comparing the engines on a set of inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineVerification {
    /// The engine [`Policy::decide`] uses after the comparison.
    pub engine: EngineKind,
    /// Inputs evaluated by both engines (none when the VM is not available).
    pub compared: usize,
    /// The first few inputs where they disagreed; any disagreement retires the VM for this
    /// policy.
    pub mismatches: Vec<EngineMismatch>,
}

/// A board's policy, compiled once and shared by every decision.
///
/// Cloning is cheap (an `Arc`); each decision clones the prepared template engine, which shares
/// the parsed modules and the data document, so no decision re-parses or re-analyses anything.
/// The time limit and whether the cache is used belong to each clone; the cache and the engine
/// choice are shared by all clones of one loaded policy.
#[derive(Clone)]
pub struct Policy {
    shared: Arc<CompiledPolicy>,
    time_limit: Duration,
    use_cache: bool,
}

struct CompiledPolicy {
    /// Prepared (analysed and scheduled) engine with modules and data but no input.
    template: regorus::Engine,
    revision: String,
    /// The merged data document, for the gateway's lookups of recipient facts.
    data: serde_json::Value,
    modules: usize,
    rules: usize,
    /// The bytecode program, when the policy compiles to one.
    rvm: Option<RvmEngine>,
    /// [`RVM_UNVERIFIED`], [`RVM_ACTIVE`] once the VM has matched the interpreter on a corpus,
    /// or [`RVM_RETIRED`] for good after the first disagreement.
    rvm_state: AtomicU8,
    /// Why the interpreter runs this policy, when it does.
    interpreter_reason: Mutex<Option<String>>,
    cache: Option<DecisionCache>,
    cache_disabled_reason: Option<String>,
    /// The parts of the input the engines are given: only what the policy reads, which is
    /// cheaper to convert and yields the same decision. `None` when it reads input whole.
    projection: Option<Projection>,
    read_paths: Vec<String>,
    /// What the sharing decision reads of `input.indicator`: `None` when it reads all of it.
    indicator_reads: Option<crate::analysis::ReadPaths>,
    /// Whether `data.cordon.risk.assessment` is defined.
    has_risk: bool,
    /// The risk entrypoint's bytecode program, used once it has matched the interpreter on
    /// the policy's own risk tests and the built-in risk inputs ([`RVM_UNVERIFIED`] until
    /// then, [`RVM_RETIRED`] for good after a disagreement).
    risk_rvm: Option<RvmEngine>,
    risk_rvm_state: AtomicU8,
    /// VM decisions (uncached, or cache misses of a shape compared already) and VM risk
    /// assessments, for sampling the live comparison.
    vm_decisions: std::sync::atomic::AtomicU64,
    vm_assessments: std::sync::atomic::AtomicU64,
    /// The shapes ([`crate::shape`]) of the cache misses on which the VM agreed with the
    /// interpreter, at most [`MAX_COMPARED_SHAPES`], and the key they are hashed with.
    compared_shapes: Mutex<std::collections::HashSet<u64>>,
    shape_keys: foldhash::quality::RandomState,
    /// Whether the warning that no more shapes are remembered was given.
    shapes_full_warned: std::sync::atomic::AtomicBool,
}

/// One in this many of the VM's uncached decisions, of its cache misses whose input shape
/// ([`crate::shape`]) it has been compared on already, and of its risk assessments is made
/// again by the interpreter and compared. Every miss of a shape not compared yet is (cache
/// hits never are: their answer was the VM's on the same input).
pub const LIVE_COMPARISON_EVERY: u64 = 64;

/// Shapes of cache misses remembered as compared, per loaded policy; past this, a new shape
/// is compared only when sampled (a few hundred are usual; a flood of crafted ones must not
/// grow memory or make every decision an interpreter's).
pub const MAX_COMPARED_SHAPES: usize = 16_384;

const RVM_UNVERIFIED: u8 = 0;
const RVM_ACTIVE: u8 = 1;
const RVM_RETIRED: u8 = 2;

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
            .field("engine", &self.engine_name())
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads a policy source: a directory, or any other file as an OPA bundle (`.tar.gz` with an
    /// optional `.manifest`; see [`crate::bundle_from_dir`]). A bundle is read into memory,
    /// never extracted, and refused when it is larger than [`crate::MAX_BUNDLE_BYTES`],
    /// decompresses to more than [`crate::MAX_UNCOMPRESSED_BYTES`], has an entry larger than
    /// [`crate::MAX_ENTRY_BYTES`] or more than [`crate::MAX_ENTRIES`] entries, or holds a path
    /// with `..`, a link or a special file.
    ///
    /// Every `*.rego` except `*_test.rego` is policy; `data.json` and `data.yaml` files are
    /// mounted by their directory as OPA does (`a/b/data.json` is `data.a.b`). The revision is
    /// a bundle manifest's non-empty `revision`, otherwise `sha256:<hex>` over the sorted
    /// relative paths and contents of the policy and data files (tests excluded).
    ///
    /// Fails when a module does not parse or compile, calls a function or builtin the engine
    /// does not have, a data file does not parse, data documents conflict, a bundle is
    /// malformed or defines something outside its manifest's roots, or package
    /// `cordon.outbound` does not define `decision`.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let directory = PolicyDirectory::read_source(path)?;
        Policy::from_directory(&directory)
    }

    /// [`Policy::load`], kept under its first name; it takes a bundle as well.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        Policy::load(dir)
    }

    pub(crate) fn from_directory(directory: &PolicyDirectory) -> Result<Policy, PolicyError> {
        let policy = Policy::compile(
            &directory.module_pairs(false),
            directory.mounted_data()?,
            directory.revision(),
            directory.manifest.as_ref(),
        )?;
        let tests = crate::corpus::test_inputs(directory);
        if policy.shared.rvm.is_some() {
            let mut inputs = crate::corpus::builtin_inputs(&policy.shared.data);
            inputs.extend(tests.iter().cloned());
            policy.verify_engine_within(&inputs, Some(LOAD_VERIFICATION_BUDGET));
        }
        policy.verify_risk_engine(&tests);
        Ok(policy)
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
        let policy = Policy::compile(&modules, vec![("data".to_owned(), data)], revision, None)?;
        if policy.shared.rvm.is_some() {
            policy.verify_engine_within(
                &crate::corpus::builtin_inputs(&policy.shared.data),
                Some(LOAD_VERIFICATION_BUDGET),
            );
        }
        policy.verify_risk_engine(&[]);
        Ok(policy)
    }

    fn compile(
        modules: &[(String, String)],
        data: Vec<(String, serde_json::Value)>,
        revision: String,
        manifest: Option<&Manifest>,
    ) -> Result<Policy, PolicyError> {
        if let Some(manifest) = manifest {
            let (_, packages) = parsed_modules(modules)?;
            crate::bundle::check_roots(manifest, &packages, &data)?;
        }
        let template = prepared_engine(modules, data)?;
        check_entrypoint(&template)?;
        let has_risk = declares_rule(
            &template,
            &crate::risk::RISK_PACKAGE,
            crate::risk::RISK_RULE,
        )?;
        if let Some(call) = analyse_engine(&template).unknown_calls.first() {
            return Err(PolicyError::Compile {
                message: call.message(),
            });
        }
        // What the sharing decision reads decides its cache key and projection: the risk
        // package reads other parts of the input (and `context.now`), which must not make
        // every release decision miss the cache.
        let analysis = analyse_sharing(&template);
        let vm_unsafe = {
            let mut engine = template.clone();
            crate::analysis::vm_unsafe_construct(&engine.get_modules().clone())
        };
        let risk_rvm = if has_risk && vm_unsafe.is_none() {
            match RvmEngine::compile_risk(&template) {
                Compiled::Program(engine) => Some(engine),
                Compiled::Unsupported(reason) => {
                    tracing::debug!(%reason, "the risk assessment runs on the interpreter");
                    None
                }
            }
        } else {
            None
        };
        let (rvm, interpreter_reason) = match vm_unsafe {
            Some(reason) => {
                tracing::debug!(%reason, "policy runs on the interpreter");
                (None, Some(reason))
            }
            None => match RvmEngine::compile(&template)? {
                Compiled::Program(engine) => (Some(engine), None),
                Compiled::Unsupported(reason) => {
                    tracing::debug!(%reason, "policy runs on the interpreter");
                    (None, Some(reason))
                }
            },
        };
        let data =
            serde_json::to_value(template.get_data()).map_err(|error| PolicyError::Data {
                file: "data".to_owned(),
                message: error.to_string(),
            })?;
        let cache_disabled_reason = analysis.uncacheable_reason();
        let cache = analysis
            .cacheable()
            .then(|| DecisionCache::new(analysis.reads.clone(), DEFAULT_CACHE_ENTRIES));
        let projection = (!analysis.reads.whole).then(|| Projection::new(&analysis.reads));
        let indicator_reads = if analysis.reads.whole {
            None
        } else {
            Some(
                analysis
                    .reads
                    .children
                    .get("indicator")
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        let read_paths = if analysis.reads.whole {
            vec!["input".to_owned()]
        } else {
            analysis.reads.describe()
        };
        Ok(Policy {
            shared: Arc::new(CompiledPolicy {
                template,
                revision,
                data,
                modules: modules.len(),
                rules: analysis.rules,
                rvm,
                rvm_state: AtomicU8::new(RVM_UNVERIFIED),
                interpreter_reason: Mutex::new(interpreter_reason),
                cache,
                cache_disabled_reason,
                projection,
                read_paths,
                indicator_reads,
                has_risk,
                risk_rvm,
                risk_rvm_state: AtomicU8::new(RVM_UNVERIFIED),
                vm_decisions: std::sync::atomic::AtomicU64::new(0),
                vm_assessments: std::sync::atomic::AtomicU64::new(0),
                compared_shapes: Mutex::new(std::collections::HashSet::new()),
                shape_keys: foldhash::quality::RandomState::default(),
                shapes_full_warned: std::sync::atomic::AtomicBool::new(false),
            }),
            time_limit: DEFAULT_TIME_LIMIT,
            use_cache: true,
        })
    }

    /// The prepared engine every evaluation clones.
    pub(crate) fn template(&self) -> &regorus::Engine {
        &self.shared.template
    }

    pub(crate) fn shared_has_risk(&self) -> bool {
        self.shared.has_risk
    }

    /// The risk entrypoint's bytecode program, once verified.
    pub(crate) fn risk_vm(&self) -> Option<&RvmEngine> {
        self.shared
            .risk_rvm
            .as_ref()
            .filter(|_| self.shared.risk_rvm_state.load(Ordering::Acquire) == RVM_ACTIVE)
    }

    /// Which engine assesses risk: the VM once it has given the interpreter's assessment on
    /// every risk input of the policy's tests and the built-in ones, within the load budget.
    pub fn risk_engine(&self) -> EngineKind {
        if self.risk_vm().is_some() {
            EngineKind::Rvm
        } else {
            EngineKind::Interpreter
        }
    }

    /// Compares the two engines' assessments on the risk inputs among `tests` (those with a
    /// `declaration`) and the built-in ones; the VM assesses only if all were compared in
    /// the load budget and all agreed.
    fn verify_risk_engine(&self, tests: &[serde_json::Value]) {
        let Some(vm) = &self.shared.risk_rvm else {
            return;
        };
        let started = std::time::Instant::now();
        let mut inputs = crate::risk::builtin_risk_inputs();
        inputs.extend(
            tests
                .iter()
                .filter(|input| input.get("declaration").is_some())
                .cloned(),
        );
        for input in &inputs {
            if started.elapsed() > LOAD_VERIFICATION_BUDGET {
                tracing::debug!("the risk VM was not compared on every input in time");
                return;
            }
            // Neither engine can take an input that is not a Rego value (both would answer
            // UNASSESSED alike): nothing to compare.
            let Ok(input) = to_rego_value(input) else {
                continue;
            };
            let interpreter = self.assess_with(None, input.clone());
            if interpreter
                .error
                .as_deref()
                .is_some_and(|error| error.contains("exceeded the time limit"))
            {
                // Comparing time-outs costs a time limit per input and proves nothing.
                tracing::debug!("a risk assessment timed out; the interpreter assesses");
                return;
            }
            let bytecode = self.assess_with(Some(vm), input);
            if !crate::risk::same_assessment(&interpreter, &bytecode) {
                tracing::warn!(
                    revision = %self.shared.revision,
                    ?interpreter,
                    ?bytecode,
                    "the bytecode VM disagreed with the interpreter on a risk assessment; the interpreter assesses"
                );
                self.shared
                    .risk_rvm_state
                    .store(RVM_RETIRED, Ordering::Release);
                return;
            }
        }
        let _ = self.shared.risk_rvm_state.compare_exchange(
            RVM_UNVERIFIED,
            RVM_ACTIVE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether this VM assessment is one of the sampled for the live comparison.
    pub(crate) fn sample_assessment(&self) -> bool {
        self.shared
            .vm_assessments
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LIVE_COMPARISON_EVERY)
    }

    /// The risk VM gave another assessment than the interpreter on live input: the
    /// interpreter assesses from now on, for every clone of this revision.
    pub(crate) fn retire_risk_vm(
        &self,
        interpreter: &crate::risk::Assessment,
        bytecode: &crate::risk::Assessment,
    ) {
        tracing::warn!(
            revision = %self.shared.revision,
            ?interpreter,
            ?bytecode,
            "the bytecode VM disagreed with the interpreter on a live risk assessment; the interpreter assesses"
        );
        self.shared
            .risk_rvm_state
            .store(RVM_RETIRED, Ordering::Release);
    }

    /// The revision recorded with every decision.
    pub fn revision(&self) -> &str {
        &self.shared.revision
    }

    /// Sets the wall-clock limit of one evaluation; a decision that takes longer is a deny.
    /// Both engines honour it.
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

    /// How many policy modules (test files excluded) and rule definitions the policy has.
    pub fn counts(&self) -> (usize, usize) {
        (self.shared.modules, self.shared.rules)
    }

    /// The engine [`Policy::decide`] uses: `"rvm"` or `"interpreter"`.
    pub fn engine_name(&self) -> &'static str {
        self.engine().name()
    }

    /// The engine [`Policy::decide`] uses.
    pub fn engine(&self) -> EngineKind {
        if self.shared.rvm.is_some() && self.shared.rvm_state.load(Ordering::Acquire) == RVM_ACTIVE
        {
            EngineKind::Rvm
        } else {
            EngineKind::Interpreter
        }
    }

    /// Why the interpreter runs this policy rather than the VM: the compiler does not support
    /// it, or the VM disagreed with the interpreter on some input. `None` when the VM runs it.
    pub fn interpreter_reason(&self) -> Option<String> {
        match self.engine() {
            EngineKind::Rvm => None,
            EngineKind::Interpreter => self
                .shared
                .interpreter_reason
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone()
                .or_else(|| Some("the bytecode VM has not been verified".to_owned())),
        }
    }

    /// Compares the two engines on `inputs` (the gateway's own sample of real inputs, say).
    ///
    /// The VM is used only while every compared decision is identical to the interpreter's
    /// (two fail-closed decisions count as identical whatever their errors say). The first
    /// disagreement moves this policy, and every clone of it, to the interpreter for good and
    /// empties the decision cache, which may hold the VM's answers. Calling it again with more
    /// inputs never brings the VM back.
    pub fn verify_engine(&self, inputs: &[serde_json::Value]) -> EngineVerification {
        self.verify_engine_within(inputs, None)
    }

    /// [`Policy::verify_engine`], stopping after `budget` (at load, a slow policy must not make
    /// loading slow: each of its inputs may take a whole time limit on each engine). The VM is
    /// activated only when every input was compared and all agreed.
    fn verify_engine_within(
        &self,
        inputs: &[serde_json::Value],
        budget: Option<Duration>,
    ) -> EngineVerification {
        let started = std::time::Instant::now();
        let Some(rvm) = &self.shared.rvm else {
            return EngineVerification {
                engine: EngineKind::Interpreter,
                compared: 0,
                mismatches: Vec::new(),
            };
        };
        let mut mismatches = Vec::new();
        let mut disagreements = 0usize;
        let mut compared = 0;
        for input in inputs {
            if budget.is_some_and(|budget| started.elapsed() > budget) {
                break;
            }
            compared += 1;
            let interpreter = self.decide_with(EngineKind::Interpreter, input);
            let vm = self.evaluate_guarded(|input| self.evaluate_rvm(rvm, input), input);
            if !same_decision(&interpreter, &vm) {
                disagreements += 1;
                if mismatches.len() < MAX_REPORTED_MISMATCHES {
                    mismatches.push(EngineMismatch {
                        input: input.clone(),
                        interpreter,
                        rvm: vm,
                    });
                }
            }
        }
        if disagreements > 0 {
            let first = &mismatches[0];
            let reason = format!(
                "the bytecode VM disagreed with the interpreter on {disagreements} of {compared} inputs; for example the interpreter gave {:?} and the VM {:?}",
                first.interpreter, first.rvm
            );
            tracing::warn!(revision = %self.shared.revision, %reason, "policy moved to the interpreter");
            // Retire the VM before emptying the cache; the cache refuses answers computed before
            // it was emptied.
            self.shared.rvm_state.store(RVM_RETIRED, Ordering::Release);
            *self
                .shared
                .interpreter_reason
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
            if let Some(cache) = &self.shared.cache {
                cache.clear();
            }
        } else if compared > 0 && compared < inputs.len() {
            // The budget ran out: inputs the VM was never checked on (the RED branch, say)
            // could take paths the comparison did not cover. Stay on the interpreter.
            let reason = format!(
                "the bytecode VM was compared on only {compared} of {} inputs within the load budget",
                inputs.len()
            );
            *self
                .shared
                .interpreter_reason
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason);
        } else if compared > 0 {
            // Never over a retirement, even one made by another thread meanwhile.
            let _ = self.shared.rvm_state.compare_exchange(
                RVM_UNVERIFIED,
                RVM_ACTIVE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        EngineVerification {
            engine: self.engine(),
            compared,
            mismatches,
        }
    }

    /// Whether [`Policy::decide`] on this handle uses the decision cache (default: yes, when the
    /// policy allows caching).
    pub fn set_cache_enabled(&mut self, enabled: bool) {
        self.use_cache = enabled;
    }

    /// How the decision cache of this policy is doing.
    pub fn cache_stats(&self) -> CacheStats {
        let (entries, hits, misses) = self
            .shared
            .cache
            .as_ref()
            .map_or((0, 0, 0), DecisionCache::stats);
        CacheStats {
            enabled: self.shared.cache.is_some(),
            disabled_reason: self.shared.cache_disabled_reason.clone(),
            key_paths: self
                .shared
                .cache
                .as_ref()
                .map(DecisionCache::key_paths)
                .unwrap_or_default(),
            entries,
            hits,
            misses,
        }
    }

    /// `indicator` serialized as this policy's `input.indicator`: its JSON form holding only
    /// what the sharing decision reads (all of it when the policy reads the indicator whole).
    /// Decisions, the cache key and the shape of a comparison are the same as for the full
    /// JSON, which the engines never see beyond the read paths anyway; the rest is not built.
    pub fn indicator_input<T: serde::Serialize + ?Sized>(
        &self,
        indicator: &T,
    ) -> Result<serde_json::Value, serde_json::Error> {
        match &self.shared.indicator_reads {
            Some(reads) => crate::project::to_value_projected(indicator, reads),
            None => serde_json::to_value(indicator),
        }
    }

    /// Whether `other` is this same loaded policy (a clone of it), not another load, even of
    /// the same revision: what was built for one (its input) is valid for the other.
    pub fn same_load(&self, other: &Policy) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The parts of `input` the policy reads, as `input.a.b` paths (`input` alone when it reads
    /// input as a whole).
    pub fn input_paths(&self) -> &[String] {
        &self.shared.read_paths
    }

    /// Evaluates the entrypoint for `input`. Never fails: an undefined decision, an evaluation
    /// error, a time-out, a non-boolean `allow` or a malformed `redact`/`reasons` is a deny with
    /// `error` set.
    ///
    /// Uses the decision cache when the policy allows it, and the VM when it has been verified.
    pub fn decide(&self, input: &serde_json::Value) -> Decision {
        let cache = self.shared.cache.as_ref().filter(|_| self.use_cache);
        let Some(cache) = cache else {
            return self.decide_uncached(input);
        };
        match cache.lookup(input) {
            Ok(decision) => decision,
            Err(key) => {
                let shape = self.new_shape(input);
                let compare = shape.is_some() || self.sampled_vm_decision();
                let decision = self.decide_compared(input, compare);
                if let Some(shape) = shape {
                    self.shape_compared(shape, &decision);
                }
                // Only answers the policy gave are kept: a time-out may not recur. An answer from
                // a VM retired meanwhile is refused by the cache, which was emptied since.
                if let Some(key) = key
                    && decision.error.is_none()
                {
                    cache.insert(key, &decision);
                }
                decision
            }
        }
    }

    fn compared_shapes(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.shared
            .compared_shapes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shape of a cache miss the VM would decide and has not been compared on yet (so
    /// this miss is), when there is room to remember it. Every miss of a shape is compared
    /// until one agrees: misses that meet during the first comparison are compared too.
    fn new_shape(&self, input: &serde_json::Value) -> Option<u64> {
        if self.shared.rvm_state.load(Ordering::Acquire) != RVM_ACTIVE {
            return None;
        }
        let shape = crate::shape::shape_of(input, &self.shared.shape_keys);
        let shapes = self.compared_shapes();
        if shapes.contains(&shape) {
            return None;
        }
        if shapes.len() >= MAX_COMPARED_SHAPES {
            drop(shapes);
            if !self.shared.shapes_full_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    revision = %self.shared.revision,
                    shapes = MAX_COMPARED_SHAPES,
                    "the policy's VM has been compared on as many input shapes as are remembered; decisions of new shapes are compared one in {LIVE_COMPARISON_EVERY}"
                );
            }
            return None;
        }
        Some(shape)
    }

    /// Remembers `shape` as compared when its comparison gave a decision both engines agreed
    /// on (both failing alike checked nothing) and the VM still decides.
    fn shape_compared(&self, shape: u64, decision: &Decision) {
        if decision.error.is_none() && self.engine() == EngineKind::Rvm {
            let mut shapes = self.compared_shapes();
            if shapes.len() < MAX_COMPARED_SHAPES {
                shapes.insert(shape);
            }
        }
    }

    /// Whether this VM decision is one of the sampled for the live comparison.
    fn sampled_vm_decision(&self) -> bool {
        self.shared.rvm_state.load(Ordering::Acquire) == RVM_ACTIVE
            && self
                .shared
                .vm_decisions
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(LIVE_COMPARISON_EVERY)
    }

    /// [`Policy::decide`] without the cache.
    pub fn decide_uncached(&self, input: &serde_json::Value) -> Decision {
        self.decide_compared(input, self.sampled_vm_decision())
    }

    /// The decision of the engine in use; when `compare` and that is the VM, the interpreter
    /// decides too, and on any disagreement the VM is retired for this revision (as a
    /// load-time disagreement would) and the interpreter's decision stands.
    fn decide_compared(&self, input: &serde_json::Value, compare: bool) -> Decision {
        let engine = self.engine();
        let decision = self.decide_with(engine, input);
        if !compare || engine != EngineKind::Rvm {
            return decision;
        }
        let reference = self.decide_with(EngineKind::Interpreter, input);
        if !same_decision(&reference, &decision) {
            self.verify_engine(std::slice::from_ref(input));
            return reference;
        }
        decision
    }

    /// Evaluates with the given engine, without the cache: for comparisons and benchmarks.
    /// Asking for the VM when the policy does not compile to it gives a fail-closed deny.
    pub fn decide_with(&self, engine: EngineKind, input: &serde_json::Value) -> Decision {
        match engine {
            EngineKind::Interpreter => {
                self.evaluate_guarded(|input| self.evaluate_interpreter(input), input)
            }
            EngineKind::Rvm => match &self.shared.rvm {
                Some(rvm) => self.evaluate_guarded(|input| self.evaluate_rvm(rvm, input), input),
                None => Decision::fail_closed(
                    "the policy does not compile to the bytecode VM".to_owned(),
                ),
            },
        }
    }

    fn evaluate_guarded(
        &self,
        evaluate: impl FnOnce(regorus::Value) -> Result<Decision, String>,
        input: &serde_json::Value,
    ) -> Decision {
        // A panic inside the engine must not take the gateway's worker down, nor let anything
        // through; the engine clone that panicked is discarded with the closure.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let input = match &self.shared.projection {
                Some(projection) => projection.convert(input)?,
                None => to_rego_value(input)?,
            };
            evaluate(input)
        }));
        match outcome {
            Ok(Ok(decision)) => decision,
            Ok(Err(error)) => Decision::fail_closed(error),
            Err(_) => Decision::fail_closed(format!("evaluation of {ENTRYPOINT} panicked")),
        }
    }

    fn evaluate_interpreter(&self, input: regorus::Value) -> Result<Decision, String> {
        let mut engine = self.shared.template.clone();
        engine.set_execution_timer_config(timer_config(self.time_limit));
        engine.set_input(input);
        let value = engine
            .eval_rule(ENTRYPOINT.to_owned())
            .map_err(|error| evaluation_error(ENTRYPOINT, &error, self.time_limit))?;
        Decision::from_policy_value(&value)
    }

    fn evaluate_rvm(&self, rvm: &RvmEngine, input: regorus::Value) -> Result<Decision, String> {
        let value = rvm.evaluate(input, self.time_limit)?;
        Decision::from_policy_value(&value)
    }
}

/// Equal decisions. Two fail-closed decisions are equal when they failed the same way (a
/// time-out, an undefined decision, an evaluation error, the same malformed document): the
/// engines word their evaluation errors differently, but a VM that says "undefined" where the
/// interpreter names a failing builtin would make the decision log less useful.
fn same_decision(a: &Decision, b: &Decision) -> bool {
    match (&a.error, &b.error) {
        (Some(a), Some(b)) => failure_kind(a, ENTRYPOINT) == failure_kind(b, ENTRYPOINT),
        (None, None) => a == b,
        _ => false,
    }
}

/// How an evaluation of `entrypoint` failed, as far as the two engines must agree.
pub(crate) fn failure_kind<'a>(error: &'a str, entrypoint: &str) -> &'a str {
    if error.contains("exceeded the time limit") {
        "time-out"
    } else if error.starts_with(&format!("evaluation of {entrypoint} failed")) {
        "evaluation error"
    } else {
        // Undefined, a malformed decision document, an input that is not a value: worded by
        // this crate, the same for both engines.
        error
    }
}

/// The static analysis of the policy modules of a prepared engine.
pub(crate) fn analyse_engine(template: &regorus::Engine) -> Analysis {
    let mut engine = template.clone();
    let modules = engine.get_modules().clone();
    let functions = Functions::of(&modules);
    analyse(&modules, &functions)
}

/// The static analysis of what the sharing decision can reach: every module but those of the
/// risk package, unless another module refers to that package (then all of them, to be safe).
fn analyse_sharing(template: &regorus::Engine) -> Analysis {
    let mut engine = template.clone();
    let modules = engine.get_modules().clone();
    let is_risk = |module: &regorus::unstable::Ref<regorus::unstable::Module>| {
        crate::analysis::static_path(&module.package.refr).is_some_and(|path| {
            let path = path.strip_prefix(&["data".to_owned()]).unwrap_or(&path);
            path.iter()
                .map(String::as_str)
                .eq(crate::risk::RISK_PACKAGE)
        })
    };
    let others_refer_to_risk = modules.iter().any(|module| {
        !is_risk(module)
            && module
                .package
                .span
                .source
                .contents()
                .contains("cordon.risk")
    });
    let sharing: Vec<_> = if others_refer_to_risk {
        modules.clone()
    } else {
        modules
            .iter()
            .filter(|module| !is_risk(module))
            .cloned()
            .collect()
    };
    let functions = Functions::of(&modules);
    analyse(&sharing, &functions)
}

/// The read paths of a policy, with the engine's key values made once (each is a shared string
/// the conversion only has to reference).
struct Projection {
    whole: bool,
    children: Vec<(String, regorus::Value, Projection)>,
}

impl Projection {
    fn new(reads: &crate::analysis::ReadPaths) -> Projection {
        Projection {
            whole: reads.whole,
            children: reads
                .children
                .iter()
                .map(|(name, child)| {
                    (
                        name.clone(),
                        regorus::Value::String(name.as_str().into()),
                        Projection::new(child),
                    )
                })
                .collect(),
        }
    }

    /// The input with only the read fields. Where the policy looks for fields of something that
    /// is not an object, all of it is kept, as the cache key does.
    fn convert(&self, value: &serde_json::Value) -> Result<regorus::Value, String> {
        match value {
            serde_json::Value::Object(object) if !self.whole => {
                let mut map = std::collections::BTreeMap::new();
                for (name, key, child) in &self.children {
                    if let Some(item) = object.get(name) {
                        map.insert(key.clone(), child.convert(item)?);
                    }
                }
                Ok(regorus::Value::from(map))
            }
            other => to_rego_value(other),
        }
    }
}

/// Converts the gateway's JSON input into the engine's value directly, as regorus' own
/// deserializer would (integers stay integers, floats stay floats).
pub(crate) fn to_rego_value(value: &serde_json::Value) -> Result<regorus::Value, String> {
    Ok(match value {
        serde_json::Value::Null => regorus::Value::Null,
        serde_json::Value::Bool(flag) => regorus::Value::Bool(*flag),
        serde_json::Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                regorus::Value::from(unsigned)
            } else if let Some(signed) = number.as_i64() {
                regorus::Value::from(signed)
            } else {
                match number.as_f64() {
                    Some(float) if float.is_finite() => regorus::Value::from(float),
                    _ => return Err(format!("input holds a number that is not finite: {number}")),
                }
            }
        }
        serde_json::Value::String(text) => regorus::Value::String(text.as_str().into()),
        serde_json::Value::Array(items) => regorus::Value::from(
            items
                .iter()
                .map(to_rego_value)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        serde_json::Value::Object(object) => {
            let mut map = std::collections::BTreeMap::new();
            for (key, item) in object {
                map.insert(
                    regorus::Value::String(key.as_str().into()),
                    to_rego_value(item)?,
                );
            }
            regorus::Value::from(map)
        }
    })
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

/// An engine holding `modules` (unique names, each parsed), and the packages they define.
fn parsed_modules(
    modules: &[(String, String)],
) -> Result<(regorus::Engine, Vec<regorus::PolicyPackageComponents>), PolicyError> {
    let mut engine = regorus::Engine::new();
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
    Ok((engine, packages))
}

/// An engine holding `modules` and `data`, analysed once so that clones start evaluating at once.
pub(crate) fn prepared_engine(
    modules: &[(String, String)],
    data: Vec<(String, serde_json::Value)>,
) -> Result<regorus::Engine, PolicyError> {
    let (mut engine, packages) = parsed_modules(modules)?;
    // print() output goes nowhere rather than to the gateway's stderr on every decision.
    engine.set_gather_prints(true);
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
    if declares_rule(engine, &ENTRYPOINT_PACKAGE, ENTRYPOINT_RULE)? {
        Ok(())
    } else {
        Err(PolicyError::MissingEntrypoint)
    }
}

/// Whether a module of package `package` declares the rule `rule`.
fn declares_rule(
    engine: &regorus::Engine,
    package: &[&str],
    rule: &str,
) -> Result<bool, PolicyError> {
    let packages =
        engine
            .get_policy_package_components()
            .map_err(|error| PolicyError::Compile {
                message: error.to_string(),
            })?;
    for found in packages {
        if !found
            .components
            .iter()
            .map(String::as_str)
            .eq(package.iter().copied())
        {
            continue;
        }
        let declared = engine
            .has_declared_rule_rooted_at(&found.source_file, rule)
            .map_err(|error| PolicyError::Compile {
                message: format!("{}: {error}", found.source_file),
            })?;
        if declared {
            return Ok(true);
        }
    }
    Ok(false)
}
