//! Static analysis of the parsed policy: which parts of `input` it reads (for the decision
//! cache), whether its answers can depend on anything but input and data, which functions it
//! calls that the engine does not provide, and which test inputs are plain enough to reuse.
//!
//! The walk is over regorus' AST (`regorus::unstable`), which the engine exposes for tooling.
//! Every conclusion errs on the safe side: a construct the walk does not understand makes the
//! policy read all of `input` (no cache) rather than a guessed part of it.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Literal, Module, Query, Ref, Rule, RuleHead};

/// Builtins whose result is not a function of their arguments. A policy calling one can give
/// two answers for the same input, so its decisions are never cached, and the two engines may
/// legitimately disagree.
const NON_DETERMINISTIC_BUILTINS: [&str; 6] = [
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "opa.runtime",
    "http.send",
    "net.lookup_ip_addr",
];

/// First components of OPA's builtin names. A call into one of these namespaces that the engine
/// does not provide is a builtin the engine lacks (`io.jwt.decode`), rather than a typo.
const OPA_BUILTIN_NAMESPACES: [&str; 22] = [
    "array",
    "base64",
    "base64url",
    "bits",
    "crypto",
    "glob",
    "graph",
    "graphql",
    "hex",
    "http",
    "io",
    "json",
    "net",
    "numbers",
    "object",
    "opa",
    "providers",
    "regex",
    "rego",
    "strings",
    "time",
    "units",
];

/// OPA builtins named by one word, for the message when the engine lacks one (`walk` needs a
/// regorus feature Cordon does not build; the others are OPA's deprecated spellings).
const OPA_SINGLE_WORD_BUILTINS: [&str; 11] = [
    "walk",
    "re_match",
    "any",
    "all",
    "set_diff",
    "cast_array",
    "cast_set",
    "cast_string",
    "cast_boolean",
    "cast_null",
    "cast_object",
];

/// The parts of `input` a policy reads, as a tree of field names.
///
/// A node marked `whole` is read as a value (compared, passed to a function, iterated), so all of
/// it matters; otherwise only its listed children do. The root marked `whole` means the policy
/// reads `input` as a whole or through a computed key, and nothing can be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadPaths {
    pub whole: bool,
    pub children: BTreeMap<String, ReadPaths>,
}

impl ReadPaths {
    pub(crate) fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for component in path {
            if node.whole {
                return;
            }
            node = node.children.entry(component.clone()).or_default();
        }
        node.whole = true;
        // Everything below a node read whole is covered by it.
        node.children.clear();
    }

    /// The paths as `input.a.b` strings, for reports.
    pub fn describe(&self) -> Vec<String> {
        fn collect(node: &ReadPaths, prefix: &str, out: &mut Vec<String>) {
            if node.whole {
                out.push(prefix.to_owned());
                return;
            }
            for (name, child) in &node.children {
                collect(child, &format!("{prefix}.{name}"), out);
            }
        }
        let mut out = Vec::new();
        collect(self, "input", &mut out);
        out
    }
}

/// A call the engine cannot make, found before any evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnknownCall {
    pub file: String,
    pub line: u32,
    pub name: String,
    /// In an OPA builtin namespace, so most likely a builtin this engine lacks.
    pub missing_builtin: bool,
}

impl UnknownCall {
    pub fn message(&self) -> String {
        if self.missing_builtin {
            format!(
                "{}:{}: calls {}, a builtin this engine (regorus) does not provide",
                self.file, self.line, self.name
            )
        } else {
            format!(
                "{}:{}: calls {}, which is neither a builtin nor a function of the policy",
                self.file, self.line, self.name
            )
        }
    }
}

/// What the walk found in a set of modules.
#[derive(Debug, Default)]
pub(crate) struct Analysis {
    pub reads: ReadPaths,
    /// Calls to builtins such as `time.now_ns`, as `file:line name`.
    pub non_deterministic: Vec<String>,
    pub unknown_calls: Vec<UnknownCall>,
    pub rules: usize,
}

impl Analysis {
    /// Whether equal reads of `input` always give equal decisions.
    pub fn cacheable(&self) -> bool {
        !self.reads.whole && self.non_deterministic.is_empty()
    }

    /// Why decisions cannot be cached, if they cannot.
    pub fn uncacheable_reason(&self) -> Option<String> {
        if let Some(call) = self.non_deterministic.first() {
            Some(format!(
                "the policy calls a non-deterministic builtin ({call})"
            ))
        } else if self.reads.whole {
            Some("the policy reads input as a whole or through a computed key".to_owned())
        } else {
            None
        }
    }
}

/// The rule path components of a reference made only of names and string keys:
/// `data.a["b"].c` is `["data", "a", "b", "c"]`.
pub(crate) fn static_path(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Var { span, .. } => Some(vec![span.text().to_owned()]),
        Expr::RefDot { refr, field, .. } => {
            let mut path = static_path(refr)?;
            path.push(field.0.text().to_owned());
            Some(path)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut path = static_path(refr)?;
            path.push(string_literal(index)?);
            Some(path)
        }
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => {
            value.as_string().ok().map(|text| text.as_ref().to_owned())
        }
        _ => None,
    }
}

/// The functions (rules with arguments) the modules define, by full path (`data.a.b.f`) and by
/// last component, so that calls can be told apart from builtins.
#[derive(Debug, Default)]
pub(crate) struct Functions {
    paths: BTreeSet<String>,
    names: BTreeSet<String>,
}

impl Functions {
    pub fn of(modules: &[Ref<Module>]) -> Functions {
        let mut functions = Functions::default();
        for module in modules {
            let Some(package) = static_path(&module.package.refr) else {
                continue;
            };
            for rule in &module.policy {
                let head_ref = match rule.as_ref() {
                    Rule::Spec {
                        head: RuleHead::Func { refr, .. },
                        ..
                    } => refr,
                    Rule::Default { refr, args, .. } if !args.is_empty() => refr,
                    _ => continue,
                };
                let Some(head) = static_path(head_ref) else {
                    continue;
                };
                if let Some(last) = head.last() {
                    functions.names.insert(last.clone());
                }
                let mut path = vec!["data".to_owned()];
                path.extend(package.iter().cloned());
                path.extend(head);
                functions.paths.insert(path.join("."));
            }
        }
        functions
    }

    /// Whether a call named `name` can be a call of one of these functions. Lenient on purpose:
    /// any function of that last name counts, so that no valid policy is refused; a wrong guess
    /// only leaves the error to the engine at run time.
    fn may_define(&self, name: &str) -> bool {
        self.paths.contains(name)
            || name
                .rsplit('.')
                .next()
                .is_some_and(|last| self.names.contains(last))
    }
}

/// Walks `modules` (all of them, reachable from the entrypoint or not).
///
/// `functions` are the functions callable from these modules (which, for tests, include the
/// policy's).
/// A construct regorus' bytecode VM is known to evaluate without end (a stack overflow, which
/// aborts the process): a function whose parameter is a reference (`f(p.x) := ...`), found by
/// the `bundle` fuzz target. Such a policy runs on the interpreter, which evaluates it.
pub(crate) fn vm_unsafe_construct(modules: &[Ref<Module>]) -> Option<String> {
    for module in modules {
        for rule in &module.policy {
            let (refr, args) = match rule.as_ref() {
                Rule::Spec {
                    head: RuleHead::Func { refr, args, .. },
                    ..
                } => (refr, args),
                Rule::Default { refr, args, .. } => (refr, args),
                Rule::Spec { .. } => continue,
            };
            if args
                .iter()
                .any(|arg| matches!(arg.as_ref(), Expr::RefDot { .. } | Expr::RefBrack { .. }))
            {
                let name = static_path(refr)
                    .map(|path| path.join("."))
                    .unwrap_or_else(|| "a function".to_owned());
                return Some(format!(
                    "function {name} takes a reference as a parameter, which the bytecode VM evaluates without end"
                ));
            }
        }
    }
    None
}

pub(crate) fn analyse(modules: &[Ref<Module>], functions: &Functions) -> Analysis {
    let mut walker = Walker {
        analysis: Analysis::default(),
        functions,
        file: String::new(),
    };
    for module in modules {
        walker.file = module.package.span.source.file().clone();
        walker.analysis.rules += module.policy.len();
        for import in &module.imports {
            // `import input.recipient as r` reads what `r.x` reads: all of input.recipient.
            walker.expr(&import.refr);
        }
        for rule in &module.policy {
            walker.rule(rule);
        }
    }
    walker.analysis
}

struct Walker<'a> {
    analysis: Analysis,
    functions: &'a Functions,
    file: String,
}

impl Walker<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.expr(refr);
                        if let Some(assign) = assign {
                            self.expr(&assign.value);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.expr(refr);
                        if let Some(key) = key {
                            self.expr(key);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        self.expr(refr);
                        for arg in args {
                            self.expr(arg);
                        }
                        if let Some(assign) = assign {
                            self.expr(&assign.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(assign) = &body.assign {
                        self.expr(&assign.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default {
                refr, args, value, ..
            } => {
                self.expr(refr);
                for arg in args {
                    self.expr(arg);
                }
                self.expr(value);
            }
        }
    }

    fn query(&mut self, query: &Query) {
        for statement in &query.stmts {
            for modifier in &statement.with_mods {
                // The target of `with input.x as v` is replaced, not read; the value is read.
                if !is_input_rooted(&modifier.refr) {
                    self.expr(&modifier.refr);
                }
                self.expr(&modifier.r#as);
            }
            match &statement.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(key) = key {
                        self.expr(key);
                    }
                    self.expr(value);
                    self.expr(collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { span, .. } => {
                if span.text() == "input" {
                    // Bare `input`: passed whole to a function, iterated, compared.
                    self.analysis.reads.whole = true;
                }
            }
            Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr),
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for item in items {
                    self.expr(item);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, key, value) in fields {
                    self.expr(key);
                    self.expr(value);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call {
                span, fcn, params, ..
            } => {
                self.call(span.line, fcn);
                self.expr(fcn);
                if !self.field_lookup(fcn, params) {
                    for param in params {
                        self.expr(param);
                    }
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(key) = key {
                    self.expr(key);
                }
                self.expr(value);
                self.expr(collection);
            }
            // Any construct added to the language later is treated as reading all of input.
            #[allow(unreachable_patterns)]
            _ => self.analysis.reads.whole = true,
        }
    }

    /// A chain of `.field` and `[index]` steps, handled from its outermost step so that
    /// `input.a.b` records `a.b` and not also `a` as a whole.
    fn reference(&mut self, expr: &Expr) {
        let mut steps: Vec<&Expr> = Vec::new();
        let mut root = expr;
        while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = root {
            steps.push(root);
            root = refr;
        }
        steps.reverse();
        let rooted_at_input = matches!(root, Expr::Var { span, .. } if span.text() == "input");
        if !rooted_at_input {
            self.expr(root);
        }
        let mut path: Vec<String> = Vec::new();
        let mut static_so_far = rooted_at_input;
        for step in steps {
            match step {
                Expr::RefDot { field, .. } if static_so_far => {
                    path.push(field.0.text().to_owned());
                }
                Expr::RefBrack { index, .. } => {
                    match string_literal(index) {
                        Some(key) if static_so_far => path.push(key),
                        // A computed key (or an array index) reads everything below the
                        // prefix; the index expression is itself walked for reads.
                        _ => static_so_far = false,
                    }
                    self.expr(index);
                }
                _ => {}
            }
        }
        if rooted_at_input {
            if path.is_empty() {
                // `input[x]`: which part is read depends on the evaluation.
                self.analysis.reads.whole = true;
            } else {
                self.analysis.reads.insert(&path);
            }
        }
    }

    /// `object.get(input.a, "k", default)` and `object.filter(input.a, {"k", "l"})` with literal
    /// keys read `input.a.k` (and `input.a.l`), not all of `input.a`: on an object their result
    /// depends only on those fields, and the cache key holds the whole of `input.a` whenever it
    /// is not an object. Records the fields and returns true when the first argument was
    /// handled so; false leaves every argument to the ordinary walk.
    fn field_lookup(&mut self, fcn: &Expr, params: &[Ref<Expr>]) -> bool {
        let Some(name) = static_path(fcn).map(|path| path.join(".")) else {
            return false;
        };
        if self.functions.may_define(&name) {
            return false;
        }
        let keys: Vec<Vec<String>> = match (name.as_str(), params) {
            ("object.get", [_, key, _]) => match key.as_ref() {
                // A list is a path: object.get(x, ["a", "b"], d) is x.a.b.
                Expr::Array { items, .. } => match items
                    .iter()
                    .map(|item| string_literal(item))
                    .collect::<Option<Vec<_>>>()
                {
                    Some(path) if !path.is_empty() => vec![path],
                    _ => return false,
                },
                other => match string_literal(other) {
                    Some(key) => vec![vec![key]],
                    None => return false,
                },
            },
            ("object.filter", [_, keys]) => match keys.as_ref() {
                Expr::Array { items, .. } | Expr::Set { items, .. } => match items
                    .iter()
                    .map(|item| string_literal(item).map(|key| vec![key]))
                    .collect::<Option<Vec<_>>>()
                {
                    Some(keys) => keys,
                    None => return false,
                },
                _ => return false,
            },
            _ => return false,
        };
        let Some(prefix) = input_path(&params[0]) else {
            return false;
        };
        for key in keys {
            let mut path = prefix.clone();
            path.extend(key);
            self.analysis.reads.insert(&path);
        }
        // The keys are literals; nothing else in them to walk.
        if params.len() == 3 {
            self.expr(&params[2]);
        }
        true
    }

    fn call(&mut self, line: u32, fcn: &Expr) {
        let Some(path) = static_path(fcn) else {
            return;
        };
        let name = path.join(".");
        if NON_DETERMINISTIC_BUILTINS.contains(&name.as_str()) {
            self.analysis
                .non_deterministic
                .push(format!("{}:{line} {name}", self.file));
        }
        let is_builtin = name == "print" || regorus::unstable::BUILTINS.contains_key(name.as_str());
        if is_builtin || self.functions.may_define(&name) {
            return;
        }
        let missing_builtin = if path.len() > 1 {
            OPA_BUILTIN_NAMESPACES.contains(&path[0].as_str())
        } else {
            OPA_SINGLE_WORD_BUILTINS.contains(&name.as_str())
        };
        self.analysis.unknown_calls.push(UnknownCall {
            file: self.file.clone(),
            line,
            name,
            missing_builtin,
        });
    }
}

/// The static path of a reference rooted at `input` (`input.a["b"]` is `["a", "b"]`, `input`
/// is `[]`); `None` for anything else, including computed keys.
fn input_path(expr: &Expr) -> Option<Vec<String>> {
    let path = static_path(expr)?;
    let (root, rest) = path.split_first()?;
    (root == "input").then(|| rest.to_vec())
}

fn is_input_rooted(expr: &Expr) -> bool {
    match expr {
        Expr::Var { span, .. } => span.text() == "input",
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => is_input_rooted(refr),
        _ => false,
    }
}

/// A `with input as <expr>` in a test whose value needs nothing but the test package's own
/// rules, constants and builtins: it can be evaluated on its own to give a realistic input.
#[derive(Debug, Clone)]
pub(crate) struct InputLiteral {
    /// The test module's file, whose package and imports the expression needs.
    pub file: String,
    /// The expression's source text.
    pub text: String,
}

/// The `with input as …` values of `modules` that use no local variable.
pub(crate) fn closed_input_literals(modules: &[Ref<Module>]) -> Vec<InputLiteral> {
    // Names a closed expression may use: rules of the package (any module), import aliases,
    // builtin namespaces and `data`.
    let mut package_rules: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for module in modules {
        let Some(package) = static_path(&module.package.refr) else {
            continue;
        };
        let names = package_rules.entry(package).or_default();
        for rule in &module.policy {
            let head = match rule.as_ref() {
                Rule::Spec { head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => refr,
                },
                Rule::Default { refr, .. } => refr,
            };
            if let Some(first) = static_path(head).and_then(|path| path.into_iter().next()) {
                names.insert(first);
            }
        }
    }
    let builtin_roots: BTreeSet<&str> = regorus::unstable::BUILTINS
        .keys()
        .map(|name| name.split('.').next().unwrap_or(name))
        .collect();

    let mut literals = Vec::new();
    for module in modules {
        let Some(package) = static_path(&module.package.refr) else {
            continue;
        };
        let mut allowed: BTreeSet<String> =
            package_rules.get(&package).cloned().unwrap_or_default();
        allowed.insert("data".to_owned());
        for import in &module.imports {
            let alias = match &import.r#as {
                Some(alias) => Some(alias.text().to_owned()),
                None => static_path(&import.refr).and_then(|path| path.last().cloned()),
            };
            if let Some(alias) = alias {
                allowed.insert(alias);
            }
        }
        let mut found = Vec::new();
        for rule in &module.policy {
            if let Rule::Spec { bodies, .. } = rule.as_ref() {
                for body in bodies {
                    collect_with_input(&body.query, &mut found);
                }
            }
        }
        for expr in found {
            let mut names = BTreeSet::new();
            if vars_of(&expr, &mut names)
                && names
                    .iter()
                    .all(|name| allowed.contains(name) || builtin_roots.contains(name.as_str()))
            {
                literals.push(InputLiteral {
                    file: module.package.span.source.file().clone(),
                    text: expr.span().text().to_owned(),
                });
            }
        }
    }
    literals
}

fn collect_with_input(query: &Query, found: &mut Vec<Ref<Expr>>) {
    for statement in &query.stmts {
        for modifier in &statement.with_mods {
            if matches!(modifier.refr.as_ref(), Expr::Var { span, .. } if span.text() == "input") {
                found.push(modifier.r#as.clone());
            }
        }
        match &statement.literal {
            Literal::Every { query, .. } => collect_with_input(query, found),
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                collect_with_input_in_expr(expr, found)
            }
            _ => {}
        }
    }
}

fn collect_with_input_in_expr(expr: &Expr, found: &mut Vec<Ref<Expr>>) {
    match expr {
        Expr::ArrayCompr { query, .. }
        | Expr::SetCompr { query, .. }
        | Expr::ObjectCompr { query, .. } => collect_with_input(query, found),
        Expr::AssignExpr { rhs, .. } => collect_with_input_in_expr(rhs, found),
        _ => {}
    }
}

/// Collects the variable names of `expr` (the roots of references and calls); false when the
/// expression holds constructs that bind variables of their own (comprehensions).
fn vars_of(expr: &Expr, names: &mut BTreeSet<String>) -> bool {
    match expr {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. } => true,
        Expr::Var { span, .. } => {
            names.insert(span.text().to_owned());
            true
        }
        Expr::RefDot { refr, .. } => vars_of(refr, names),
        Expr::RefBrack { refr, index, .. } => vars_of(refr, names) && vars_of(index, names),
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().all(|item| vars_of(item, names))
        }
        Expr::Object { fields, .. } => fields
            .iter()
            .all(|(_, key, value)| vars_of(key, names) && vars_of(value, names)),
        Expr::Call { fcn, params, .. } => {
            if let Some(path) = static_path(fcn) {
                names.insert(path[0].clone());
            } else if !vars_of(fcn, names) {
                return false;
            }
            params.iter().all(|param| vars_of(param, names))
        }
        Expr::UnaryExpr { expr, .. } => vars_of(expr, names),
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. } => vars_of(lhs, names) && vars_of(rhs, names),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis_of(rego: &str) -> Analysis {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("p.rego".to_owned(), rego.to_owned())
            .expect("parses");
        let modules = engine.get_modules().clone();
        let functions = Functions::of(&modules);
        analyse(&modules, &functions)
    }

    fn reads(rego: &str) -> Vec<String> {
        let analysis = analysis_of(rego);
        if analysis.reads.whole {
            vec!["input".to_owned()]
        } else {
            analysis.reads.describe()
        }
    }

    #[test]
    fn static_references_are_paths() {
        assert_eq!(
            reads("package p\nx := input.a.b\ny := input.a.c.d\nz := input[\"e\"]\n"),
            vec!["input.a.b", "input.a.c.d", "input.e"]
        );
        // A prefix read whole covers its children.
        assert_eq!(
            reads("package p\nx := input.a.b\ny := count(input.a)\n"),
            vec!["input.a"]
        );
        // A computed key reads everything under the prefix; the key itself is walked.
        assert_eq!(
            reads("package p\nf(k) := input.r[k]\nx := input.s[input.t.u]\n"),
            vec!["input.r", "input.s", "input.t.u"]
        );
        assert_eq!(
            reads("package p\nimport input.r as recipient\nx := recipient.id\n"),
            vec!["input.r"]
        );
        // Lookups of literal fields read those fields only.
        assert_eq!(
            reads(
                "package p\nx := object.get(input.a, \"k\", input.d)\ny := object.filter(input.b, {\"m\", \"n\"})\nz := object.get(input, [\"c\", \"e\"], 0)\n"
            ),
            vec![
                "input.a.k",
                "input.b.m",
                "input.b.n",
                "input.c.e",
                "input.d"
            ]
        );
        // A computed key or key set reads the whole object.
        assert_eq!(
            reads(
                "package p\nks := {\"m\"}\ny := object.filter(input.b, ks)\nx := object.get(input.a, ks, 1)\n"
            ),
            vec!["input.a", "input.b"]
        );
    }

    #[test]
    fn dynamic_reads_of_input_are_whole() {
        for rego in [
            "package p\nx := input\n",
            "package p\nx := input[k] if k := \"a\"\n",
            "package p\nx := walk(input)\n",
            "package p\nx := object.get(input, input.k, 1)\n",
            "package p\nx := object.keys(input)\n",
            "package p\nimport rego.v1\nx if some k, _ in input\n",
            "package p\nimport input\nx := input.a\n",
        ] {
            assert!(analysis_of(rego).reads.whole, "{rego}");
        }
    }

    #[test]
    fn with_targets_are_not_reads() {
        assert_eq!(
            reads(
                "package p\nimport rego.v1\nx := input.a\ny if {\n\tx with input.b as input.c\n}\n"
            ),
            vec!["input.a", "input.c"]
        );
    }

    #[test]
    fn non_deterministic_builtins() {
        let analysis = analysis_of("package p\nx := time.now_ns()\n");
        assert!(!analysis.cacheable());
        assert!(
            analysis
                .uncacheable_reason()
                .unwrap()
                .contains("time.now_ns")
        );
        assert!(analysis_of("package p\nx := input.a\n").cacheable());
    }

    #[test]
    fn unknown_calls() {
        let analysis = analysis_of(
            "package p\nimport rego.v1\nf(x) := x\nx := f(1)\ny := io.jwt.decode(input.t)\nz := nosuch(1)\nw := count([1])\nv := data.p.f(2)\n",
        );
        let names: Vec<(&str, bool)> = analysis
            .unknown_calls
            .iter()
            .map(|call| (call.name.as_str(), call.missing_builtin))
            .collect();
        assert_eq!(names, vec![("io.jwt.decode", true), ("nosuch", false)]);
        assert!(analysis.unknown_calls[0].message().contains("p.rego:5"));
    }
}
