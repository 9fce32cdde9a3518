//! Decisions per second on the reference policy, single thread (so: per core), for each way of
//! deciding: the interpreter, the bytecode VM, the decision cache under a realistic reuse
//! pattern, and a hand-written Rust function implementing the same rules, which is the
//! baseline every ratio is taken against.
//!
//! Run: `cargo bench -p cordon-policy --bench decisions` (release profile). Before measuring,
//! it checks that the hand-written rules, both engines and the cache give the same decisions on
//! the whole corpus, and stops if they do not. Set `CORDON_BENCH_SECONDS` to change how long
//! each measurement runs (default 2 seconds).
//!
//! Rates are given per second of the measuring thread's CPU time (from /proc, so "per core"
//! even when other work shares the machine) and per second of wall-clock time.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cordon_policy::{Decision, EngineKind, Policy, write_reference_policy};
use serde_json::{Map, Value, json};

const GATEWAY: &str = "GH";
const RECIPIENTS: [&str; 7] = [
    "NG",
    "CI",
    "ECOWAS",
    "SS",
    "GH/customs",
    "GH/police",
    "NG/customs",
];
const CHANNELS: [&str; 3] = ["subscribe", "federation", "circle"];

fn main() {
    let seconds: f64 = std::env::var("CORDON_BENCH_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(seconds);

    let dir = tempfile::tempdir().expect("temporary directory");
    write_reference_policy(dir.path()).expect("reference policy written");
    let loading = Instant::now();
    let policy = Policy::load(dir.path()).expect("reference policy loads");
    let load_time = loading.elapsed();

    println!("cordon-policy decision benchmark");
    println!(
        "machine: {} cores, load average {}; single thread per measurement, {seconds} s each",
        std::thread::available_parallelism().map_or(0, |cores| cores.get()),
        std::fs::read_to_string("/proc/loadavg")
            .map(|load| load
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "))
            .unwrap_or_else(|_| "unknown".into()),
    );
    println!(
        "policy: reference, revision {}, loaded in {load_time:.1?}, engine {}, cache key {:?}",
        &policy.revision()[..19],
        policy.engine_name(),
        policy.cache_stats().key_paths,
    );

    if let Some(reason) = policy.interpreter_reason() {
        println!("interpreter because: {reason}");
    }

    // The corpus: every example indicator to every kind of recipient on every channel.
    let indicators = example_indicators();
    let corpus: Vec<Value> = indicators
        .iter()
        .flat_map(|indicator| {
            RECIPIENTS.iter().flat_map(move |recipient| {
                CHANNELS
                    .iter()
                    .map(move |channel| (indicator, *recipient, *channel))
            })
        })
        .map(|(indicator, recipient, channel)| {
            input(indicator, policy.recipient_input(recipient), channel, 0)
        })
        .collect();

    check_agreement(&policy, &corpus);
    println!(
        "correctness: hand-written rules, interpreter{}, and cache agree on all {} corpus inputs",
        if policy.engine_name() == "rvm" {
            ", RVM"
        } else {
            ""
        },
        corpus.len()
    );

    // A reuse pattern: many indicators, a few recipients, decided again and again (every
    // subscriber reconnecting, every resend), with a fresh `context.now` each round. Each
    // indicator differs from the others in a field the policy reads (its subject), so the
    // 2,000 × 5 pairs are 10,000 distinct cache entries.
    let reuse_indicators: Vec<Value> = (0..2_000)
        .map(|index| {
            let mut indicator = indicators[index % indicators.len()].clone();
            indicator["id"] = json!(format!("00000000-0000-4000-9000-{index:012}"));
            let object = indicator.as_object_mut().expect("indicator object");
            for kind in KINDS {
                if let Some(subject) = object.get_mut(kind).and_then(Value::as_object_mut) {
                    subject.insert("name".into(), json!(format!("subject {index}")));
                }
            }
            indicator
        })
        .collect();
    let reuse_recipients: Vec<Value> = ["NG", "CI", "ECOWAS", "GH/customs", "NG/customs"]
        .iter()
        .map(|id| policy.recipient_input(id))
        .collect();

    let baseline = measure("hand-written Rust rules", budget, &corpus, |input| {
        hand_written(policy.data(), input)
    });
    let mut results = vec![("hand-written Rust rules (baseline)", baseline)];
    let baseline = baseline.cpu;
    let interpreter = measure("interpreter", budget, &corpus, |input| {
        policy.decide_with(EngineKind::Interpreter, input)
    });
    results.push(("interpreter (uncached)", interpreter));
    if policy.engine_name() == "rvm" {
        let rvm = measure("rvm", budget, &corpus, |input| {
            policy.decide_with(EngineKind::Rvm, input)
        });
        results.push(("RVM (uncached)", rvm));
    }
    let uncached = measure("decide_uncached", budget, &corpus, |input| {
        policy.decide_uncached(input)
    });
    results.push(("Policy::decide_uncached (active engine)", uncached));

    // Warm the cache with a first round, then measure later rounds (new `now`, same pairs).
    // The gateway builds each input just before deciding, so inputs are made in batches
    // outside the timed part and decided while still in the processor's cache; the cache's
    // own 10,000 entries are not.
    let make_batch = |first: usize, round: u32| -> Vec<Value> {
        reuse_indicators[first..(first + BATCH).min(reuse_indicators.len())]
            .iter()
            .flat_map(|indicator| {
                reuse_recipients
                    .iter()
                    .map(move |recipient| input(indicator, recipient.clone(), "subscribe", round))
            })
            .collect()
    };
    for first in (0..reuse_indicators.len()).step_by(BATCH) {
        for input in make_batch(first, 0) {
            black_box(policy.decide(&input));
        }
    }
    let before = policy.cache_stats();
    let cached = measure_batched(
        "cached",
        budget,
        reuse_indicators.len(),
        make_batch,
        |input| policy.decide(input),
    );
    let after = policy.cache_stats();
    let hits = after.hits - before.hits;
    let lookups = hits + after.misses - before.misses;
    results.push(("Policy::decide, cached (10,000 pairs repeated)", cached));

    println!();
    println!(
        "{:<48} {:>16} {:>12} {:>16} {:>14}",
        "mode", "decisions/cpu-s", "us/decision", "decisions/wall-s", "vs hand-written"
    );
    for (name, rate) in &results {
        println!(
            "{name:<48} {:>16} {:>12.2} {:>16} {:>14}",
            group(rate.cpu),
            1e6 / rate.cpu,
            group(rate.wall),
            ratio(rate.cpu, baseline)
        );
    }
    println!();
    println!(
        "cache: {} of {} lookups hit during the cached run ({:.2} %), {} entries",
        hits,
        lookups,
        100.0 * hits as f64 / lookups.max(1) as f64,
        after.entries
    );
    println!(
        "targets per core: uncached >= 50,000/s: {} ({}/s); reusable >= 1,000,000/s: {} ({}/s)",
        if uncached.cpu >= 50_000.0 {
            "met"
        } else {
            "NOT met"
        },
        group(uncached.cpu),
        if cached.cpu >= 1_000_000.0 {
            "met"
        } else {
            "NOT met"
        },
        group(cached.cpu),
    );

    // Both cores, for the record: decisions scale with threads because nothing is shared but
    // the cache shards.
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    if threads > 1 {
        let total = parallel(threads, budget, &corpus, |input| {
            policy.decide_uncached(input)
        });
        println!(
            "{threads} threads, decide_uncached: {}/s in total ({}/s per thread)",
            group(total),
            group(total / threads as f64)
        );
        let hot: Vec<Value> = (0..reuse_indicators.len())
            .step_by(BATCH)
            .take(2)
            .flat_map(|first| make_batch(first, 1))
            .collect();
        let total = parallel(threads, budget, &hot, |input| policy.decide(input));
        println!(
            "{threads} threads, decide cached: {}/s in total ({}/s per thread)",
            group(total),
            group(total / threads as f64)
        );
    }
}

/// Indicators per batch of inputs built before being decided (times five recipients).
const BATCH: usize = 20;

const KINDS: [&str; 8] = [
    "vessel",
    "aircraft",
    "entity",
    "endUserCertificate",
    "consignment",
    "weapon",
    "account",
    "route",
];

/// Decisions per CPU-second of the measuring thread and per wall-clock second.
#[derive(Clone, Copy)]
struct Rate {
    cpu: f64,
    wall: f64,
}

/// CPU time of the calling thread (user and system), from /proc/thread-self/stat, in clock
/// ticks of 10 ms: over a run of seconds that is precise to a fraction of a percent.
fn thread_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields
        .get(11)
        .and_then(|utime| utime.parse().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|stime| stime.parse().ok())
            .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Decisions per second of `decide` over `inputs`, repeated until `budget` has passed.
fn measure(
    name: &str,
    budget: Duration,
    inputs: &[Value],
    decide: impl Fn(&Value) -> Decision,
) -> Rate {
    // A short warm-up: pools, caches, branch predictors.
    for input in inputs.iter().take(200) {
        black_box(decide(input));
    }
    let started = Instant::now();
    let cpu_started = thread_cpu_time();
    let mut decisions = 0u64;
    while started.elapsed() < budget {
        for input in inputs {
            black_box(decide(black_box(input)));
        }
        decisions += inputs.len() as u64;
    }
    let wall = started.elapsed();
    let cpu = thread_cpu_time()
        .saturating_sub(cpu_started)
        .max(Duration::from_millis(10));
    eprintln!("  measured {name}: {decisions} decisions, {cpu:?} cpu, {wall:?} wall");
    Rate {
        cpu: decisions as f64 / cpu.as_secs_f64(),
        wall: decisions as f64 / wall.as_secs_f64(),
    }
}

/// Like [`measure`], over batches that `make_batch(first, round)` builds untimed. Only the
/// deciding is timed (wall clock); the CPU rate scales it by the share of the processor the
/// thread had over the whole run, since 10 ms CPU-time ticks cannot time short batches.
fn measure_batched(
    name: &str,
    budget: Duration,
    indicators: usize,
    make_batch: impl Fn(usize, u32) -> Vec<Value>,
    decide: impl Fn(&Value) -> Decision,
) -> Rate {
    let run_started = Instant::now();
    let run_cpu_started = thread_cpu_time();
    let mut timed = Duration::ZERO;
    let mut decisions = 0u64;
    let mut round = 1;
    while timed < budget {
        for first in (0..indicators).step_by(BATCH) {
            let batch = make_batch(first, round);
            let started = Instant::now();
            for input in &batch {
                black_box(decide(black_box(input)));
            }
            timed += started.elapsed();
            decisions += batch.len() as u64;
        }
        round += 1;
    }
    let share = (thread_cpu_time()
        .saturating_sub(run_cpu_started)
        .as_secs_f64()
        / run_started.elapsed().as_secs_f64())
    .clamp(0.05, 1.0);
    eprintln!(
        "  measured {name}: {decisions} decisions in {timed:?} of deciding, {:.0} % of a core",
        share * 100.0
    );
    Rate {
        cpu: decisions as f64 / (timed.as_secs_f64() * share),
        wall: decisions as f64 / timed.as_secs_f64(),
    }
}

fn parallel(
    threads: usize,
    budget: Duration,
    inputs: &[Value],
    decide: impl Fn(&Value) -> Decision + Sync,
) -> f64 {
    // Wall-clock: the point is what two threads get done together.
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut decisions = 0u64;
                    while started.elapsed() < budget {
                        for input in inputs {
                            black_box(decide(black_box(input)));
                        }
                        decisions += inputs.len() as u64;
                    }
                    decisions
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

fn ratio(rate: f64, baseline: f64) -> String {
    let ratio = rate / baseline;
    if ratio >= 1.0 {
        format!("{ratio:.2}x")
    } else {
        format!("1/{:.1}", 1.0 / ratio)
    }
}

fn group(rate: f64) -> String {
    let digits = format!("{:.0}", rate);
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The policy, both engines and the cache must agree with the hand-written rules.
fn check_agreement(policy: &Policy, corpus: &[Value]) {
    for input in corpus {
        let expected = hand_written(policy.data(), input);
        let interpreter = policy.decide_with(EngineKind::Interpreter, input);
        assert_eq!(
            interpreter, expected,
            "interpreter vs hand-written on {input}"
        );
        if policy.engine_name() == "rvm" {
            let rvm = policy.decide_with(EngineKind::Rvm, input);
            assert_eq!(rvm, expected, "rvm vs hand-written on {input}");
        }
        // Twice: a miss, then a hit.
        assert_eq!(policy.decide(input), expected, "decide (miss) on {input}");
        assert_eq!(policy.decide(input), expected, "decide (hit) on {input}");
    }
}

fn example_indicators() -> Vec<Value> {
    include_str!("../tests/data/indicators.jsonl")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            let mut indicator: Value = serde_json::from_str(line).expect("example indicator");
            let object = indicator.as_object_mut().expect("indicator object");
            object.insert(
                "id".into(),
                json!(format!("00000000-0000-4000-8000-{index:012}")),
            );
            object.insert("originator".into(), json!(GATEWAY));
            object.insert("publisher".into(), json!("GH/customs"));
            object.insert("created".into(), json!("2026-11-01T00:00:00Z"));
            indicator
        })
        .collect()
}

fn input(indicator: &Value, recipient: Value, channel: &str, round: u32) -> Value {
    let now = format!("2026-11-15T12:{:02}:00Z", round % 60);
    let context = cordon_policy::InputContext {
        gateway: GATEWAY,
        channel: cordon_policy::Channel::parse(channel).expect("a channel name"),
        now: &now,
    };
    cordon_policy::decision_input(indicator.clone(), recipient, context)
}

/// The reference policy's rules (policy/reference/cordon/outbound.rego), written by hand on
/// JSON values, reasons and all: what the fastest possible decision costs.
fn hand_written(data: &Value, input: &Value) -> Decision {
    let empty = Map::new();
    let indicator = input
        .get("indicator")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let recipient = input
        .get("recipient")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let context = input
        .get("context")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let text = |object: &Map<String, Value>, key: &str, default: &'static str| -> String {
        match object.get(key) {
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => default.to_owned(),
        }
    };

    let tlp = text(indicator, "tlp", "TLP_UNSPECIFIED");
    let tlp_name = match tlp.as_str() {
        "TLP_CLEAR" => Some("TLP:CLEAR"),
        "TLP_GREEN" => Some("TLP:GREEN"),
        "TLP_AMBER" => Some("TLP:AMBER"),
        "TLP_AMBER_STRICT" => Some("TLP:AMBER+STRICT"),
        "TLP_RED" => Some("TLP:RED"),
        _ => None,
    };
    let kinds: Vec<&str> = [
        "vessel",
        "aircraft",
        "entity",
        "endUserCertificate",
        "consignment",
        "weapon",
        "account",
        "route",
    ]
    .into_iter()
    .filter(|kind| indicator.get(*kind).is_some_and(|value| !value.is_null()))
    .collect();
    let indicator_kind = (kinds.len() == 1).then(|| kinds[0]);
    let source_protected =
        indicator.get("protection").and_then(Value::as_str) == Some("PROTECTION_SOURCE_PROTECTED");
    let has_source = indicator
        .get("source")
        .is_some_and(|source| !source.is_null());

    let id = text(recipient, "id", "");
    let kind = text(recipient, "kind", "");
    let member = text(recipient, "member", "");
    let own_member = text(context, "gateway", "");
    let channel = text(context, "channel", "");
    let own_agency = kind == "agency" && member == own_member;
    let other_agency = kind == "agency" && member != own_member;
    let attribute = |name: &str| -> Option<&Value> {
        recipient
            .get(name)
            .or_else(|| data.get("recipients")?.get(&member)?.get(name))
    };
    let trust = attribute("trust")
        .filter(|trust| trust.is_number())
        .cloned()
        .unwrap_or(json!(0));
    let country = attribute("country");
    let source_min_trust = data
        .get("settings")
        .and_then(|settings| settings.get("source_min_trust"))
        .cloned()
        .unwrap_or(json!(3));
    let crisis = data.pointer("/crisis/active") == Some(&Value::Bool(true));
    let embargoed = data.pointer("/embargoes/un_arms").and_then(Value::as_array);
    let agreement = data
        .get("agreements")
        .and_then(|agreements| agreements.get(&member));
    let amber_kinds: BTreeSet<&str> = agreement
        .and_then(|agreement| agreement.get("amber_kinds"))
        .and_then(Value::as_array)
        .map(|kinds| kinds.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let partner_covers = indicator_kind.is_some_and(|kind| amber_kinds.contains(kind));

    let mut prohibitions = BTreeSet::new();
    if let (Some(country), Some(embargoed)) = (country, embargoed)
        && embargoed.contains(country)
    {
        let country = country
            .as_str()
            .map_or_else(|| country.to_string(), str::to_owned);
        prohibitions.insert(format!(
            "recipient country {country} is under a UN arms embargo"
        ));
    }
    if source_protected && channel != "circle" {
        prohibitions
            .insert("source-protected indicator is released only inside a circle".to_owned());
    }

    let mut releases = BTreeSet::new();
    match tlp.as_str() {
        "TLP_CLEAR" => {
            releases.insert("TLP:CLEAR released to everyone".to_owned());
        }
        "TLP_GREEN" => {
            if kind == "member" {
                releases.insert(format!("TLP:GREEN shared with federation member {id}"));
            }
            if kind == "organization" {
                releases.insert(format!("TLP:GREEN shared with regional organisation {id}"));
            }
            if other_agency && crisis {
                releases.insert(format!(
                    "TLP:GREEN shared with agency {id} during a declared crisis"
                ));
            }
        }
        "TLP_AMBER" if !own_agency && partner_covers => {
            releases.insert(format!(
                "TLP:AMBER shared with bilateral partner {member} for {}",
                indicator_kind.unwrap_or_default()
            ));
        }
        "TLP_RED" => {
            if let Some(named) = indicator.get("releasableTo").and_then(Value::as_array) {
                for named in named.iter().filter_map(Value::as_str) {
                    if named == id || named == member {
                        releases.insert(format!("TLP:RED released to named recipient {named}"));
                    }
                }
            }
            if indicator.get("publisher").and_then(Value::as_str) == Some(id.as_str()) {
                releases.insert(format!("TLP:RED returned to its publisher {id}"));
            }
        }
        _ => {}
    }
    if matches!(tlp.as_str(), "TLP_GREEN" | "TLP_AMBER" | "TLP_AMBER_STRICT") && own_agency {
        releases.insert(format!(
            "{} shared with own agency {id}",
            tlp_name.unwrap_or_default()
        ));
    }

    let allowed = !releases.is_empty() && prohibitions.is_empty();
    if allowed {
        // Inside a circle the source travels whole (the board chose every member).
        let redact_source = has_source
            && !own_agency
            && channel != "circle"
            && number(&trust) < number(&source_min_trust);
        let mut reasons: Vec<String> = releases.into_iter().collect();
        let mut redact = Vec::new();
        if redact_source {
            redact.push("source".to_owned());
            reasons.push(format!(
                "source redacted: trust {trust} below {source_min_trust}"
            ));
        }
        return Decision {
            allow: true,
            redact,
            reasons,
            error: None,
        };
    }
    let denial: BTreeSet<String> = if !prohibitions.is_empty() {
        prohibitions
    } else {
        let mut refusals = BTreeSet::new();
        if tlp == "TLP_UNSPECIFIED" {
            refusals.insert("indicator has no TLP label".to_owned());
        } else if tlp_name.is_none() {
            refusals.insert(format!("unknown TLP label {tlp}"));
        }
        if !matches!(kind.as_str(), "member" | "agency" | "organization") {
            refusals.insert(format!("recipient {id} has unknown kind {kind}"));
        }
        match tlp.as_str() {
            "TLP_GREEN" if other_agency && !crisis => {
                refusals.insert(format!(
                    "TLP:GREEN reaches agencies of other members only during a declared crisis, not {id}"
                ));
            }
            "TLP_AMBER" if !own_agency => {
                if agreement.is_none_or(|agreement| agreement == &Value::Bool(false)) {
                    refusals.insert(format!(
                        "TLP:AMBER not shared with {id}: no bilateral agreement"
                    ));
                } else if !partner_covers {
                    refusals.insert(format!(
                        "TLP:AMBER not shared with {id}: its agreement does not cover {}",
                        indicator_kind.unwrap_or("indicators of unknown kind")
                    ));
                }
            }
            "TLP_AMBER_STRICT" if !own_agency => {
                refusals.insert(format!(
                    "TLP:AMBER+STRICT is shared only with agencies of {own_member}, not {id}"
                ));
            }
            "TLP_RED" => {
                refusals.insert(format!(
                    "TLP:RED not released to {id}: not named in releasableTo"
                ));
            }
            _ => {}
        }
        refusals
    };
    if denial.is_empty() {
        return Decision::deny("no rule releases this indicator to this recipient");
    }
    Decision {
        allow: false,
        redact: vec![],
        reasons: denial.into_iter().collect(),
        error: None,
    }
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}
