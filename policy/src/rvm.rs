//! The second way to run the same Rego: regorus' bytecode VM (RVM), several times faster than
//! the interpreter, used only for policies where it has shown that it gives the interpreter's
//! answers.
//!
//! The RVM takes a time limit like the interpreter (checked every few instructions) and an
//! instruction limit; the instruction limit is set far above any sane policy so that the time
//! limit is what stops a runaway evaluation, exactly as on the interpreter. A VM is not
//! cheap to set up (program, data, registers), so finished VMs go back to a small pool.

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::languages::rego::compiler::{Compiler, CompilerError};
use regorus::rvm::RegoVM;
use regorus::rvm::program::Program;
use regorus::rvm::vm::VmError;
use regorus::utils::limits::ExecutionTimerConfig;

use crate::{ENTRYPOINT, PolicyError};

/// Instructions one decision may execute. The time limit ends runaway loops first; this only
/// keeps the VM's own default (25,000) from denying a legitimate policy that the interpreter
/// would allow.
const MAX_INSTRUCTIONS: usize = 1_000_000_000;

/// VM instructions between clock reads (each instruction is a tick).
const TIMER_CHECK_INTERVAL: NonZeroU32 = NonZeroU32::new(256).expect("256 is not zero");

/// VMs kept for reuse; more threads than this simply build a VM now and then.
const POOL_SIZE: usize = 64;

pub(crate) struct RvmEngine {
    /// The rule the program evaluates.
    entrypoint: &'static str,
    program: Arc<Program>,
    data: regorus::Value,
    pool: Mutex<Vec<RegoVM>>,
}

/// What compiling the entrypoint to bytecode gave.
pub(crate) enum Compiled {
    Program(RvmEngine),
    /// The compiler does not support a construct of this policy (`with`, some partial object
    /// rules); the interpreter runs it.
    Unsupported(String),
}

impl RvmEngine {
    /// Compiles the sharing entrypoint. The compiler resolves every function and variable the
    /// entrypoint can reach, which the interpreter only does when evaluation gets there, so its
    /// verdict on unknown functions and unsafe variables is a load error.
    pub fn compile(template: &regorus::Engine) -> Result<Compiled, PolicyError> {
        RvmEngine::compile_entrypoint(template, ENTRYPOINT)
    }

    /// Compiles the risk entrypoint. Its failures never refuse the policy: an assessment the
    /// VM cannot compute is the interpreter's, which fails closed at run time on its own.
    pub fn compile_risk(template: &regorus::Engine) -> Compiled {
        match RvmEngine::compile_entrypoint(template, crate::risk::RISK_ENTRYPOINT) {
            Ok(compiled) => compiled,
            Err(error) => Compiled::Unsupported(format!(
                "the bytecode compiler refused {}: {error}",
                crate::risk::RISK_ENTRYPOINT
            )),
        }
    }

    fn compile_entrypoint(
        template: &regorus::Engine,
        entrypoint: &'static str,
    ) -> Result<Compiled, PolicyError> {
        let mut engine = template.clone();
        let compiled = engine
            .compile_with_entrypoint(&entrypoint.into())
            .map_err(|error| PolicyError::Compile {
                message: error.to_string().trim().to_owned(),
            })?;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            Compiler::compile_from_policy(&compiled, &[entrypoint])
        }));
        let program = match outcome {
            Ok(Ok(program)) => program,
            Ok(Err(error)) if is_policy_defect(&error.error) => {
                return Err(PolicyError::Compile {
                    message: error.to_string().trim().to_owned(),
                });
            }
            Ok(Err(error)) => {
                return Ok(Compiled::Unsupported(format!(
                    "the bytecode compiler does not support this policy: {}",
                    error.to_string().trim()
                )));
            }
            Err(_) => {
                return Ok(Compiled::Unsupported(
                    "the bytecode compiler failed on this policy".to_owned(),
                ));
            }
        };
        let data = template.get_data();
        let engine = RvmEngine {
            entrypoint,
            program,
            data,
            pool: Mutex::new(Vec::new()),
        };
        // A VM refuses data that collides with a rule path; find out now, not per decision.
        match engine.new_vm() {
            Ok(vm) => engine.release(vm),
            Err(error) => {
                return Ok(Compiled::Unsupported(format!(
                    "the bytecode VM does not accept the data: {error}"
                )));
            }
        }
        Ok(Compiled::Program(engine))
    }

    fn new_vm(&self) -> Result<RegoVM, String> {
        let mut vm = RegoVM::new();
        vm.load_program(Arc::clone(&self.program));
        vm.set_data(self.data.clone())
            .map_err(|error| error.to_string())?;
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        // The interpreter raises builtin errors by default; so must the VM, or the two would
        // disagree on `to_number("x")`.
        vm.set_strict_builtin_errors(true);
        Ok(vm)
    }

    fn release(&self, vm: RegoVM) {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(vm);
        }
    }

    /// Evaluates the entrypoint. A VM that panicked is dropped, not reused.
    pub fn evaluate(
        &self,
        input: regorus::Value,
        limit: Duration,
    ) -> Result<regorus::Value, String> {
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let mut vm = match pooled {
            Some(vm) => vm,
            None => self.new_vm()?,
        };
        vm.set_execution_timer_config(Some(ExecutionTimerConfig {
            limit,
            check_interval: TIMER_CHECK_INTERVAL,
        }));
        vm.set_input(input);
        let result = vm.execute();
        // Do not keep the input alive in the pool.
        vm.set_input(regorus::Value::Null);
        match result {
            Ok(value) => {
                self.release(vm);
                Ok(value)
            }
            Err(error) => {
                self.release(vm);
                Err(match error {
                    VmError::TimeLimitExceeded { .. } => {
                        format!(
                            "evaluation of {} exceeded the time limit of {limit:?}",
                            self.entrypoint
                        )
                    }
                    other => format!("evaluation of {} failed: {other}", self.entrypoint),
                })
            }
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
