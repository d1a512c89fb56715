//! How noise-aware `firedrill compare` is, on real runs: `cargo bench -p firedrill --bench
//! compare [-- PAIRS]` runs a short drill (turbo 64x64 images at a constant 4 requests a second
//! for 40 s, one-second statistics windows) against the embedded reference server, PAIRS times
//! in pairs (default 10) from the same build, and counts the pairs the comparison flags (false
//! alarms); then it runs the drill once more with a VAE decode slowdown sized to lift the
//! baseline's turbo p95 by about 30% and reports whether the comparison flags it. Runs one after
//! another, so give it a quiet machine: ~30 minutes for ten pairs.

use reports::compare::{compare, CompareOptions, Judgement};
use reports::record::RunRecord;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

fn scenario(fault_ms: Option<u64>) -> String {
    let fault = fault_ms.map_or(String::new(), |ms| {
        format!(
            "faults:\n  - {{name: slow, at: 0s, for: 40s, fault: {{kind: stage_latency, stage: vae_decode, added_ms: {ms}}}}}\n"
        )
    });
    format!(
        "version: 1\nname: compare-bench\nseed: 5\ntarget:\n  reference_server: {{workers: 2}}\nload:\n  arrival: {{process: constant}}\n  mix: {{tiers: {{turbo: 1}}, resolutions: {{64x64: 1}}, modes: {{sync: 1}}, prompts: {{unsafe_share: 0}}}}\n  stages: [{{name: steady, hold: 4, for: 40s}}]\n{fault}"
    )
}

fn run(dir: &Path, name: &str, fault_ms: Option<u64>) -> RunRecord {
    let s = dir.join(format!("{name}.yaml"));
    std::fs::write(&s, scenario(fault_ms)).expect("write the scenario");
    let out = dir.join(name);
    let o = Command::new(BIN)
        .args(["run", s.to_str().unwrap(), "--window", "1s", "--out"])
        .arg(&out)
        .output()
        .expect("run firedrill");
    RunRecord::read(&out.join("record.json")).unwrap_or_else(|e| {
        panic!(
            "{name}: no record ({e}): {}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn p95(r: &RunRecord) -> f64 {
    r.totals.per_tier["turbo"].latency.p95_ms
}

fn main() {
    let pairs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    // Kept after the run (replaced by the next), so the records can be compared again.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compare-bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let opts = CompareOptions::default();
    let mut alarms = 0;
    let mut first = None;
    println!("pair  baseline p95  candidate p95  change   95% interval        verdict");
    for i in 0..pairs {
        let a = run(&dir, &format!("a{i}"), None);
        let b = run(&dir, &format!("b{i}"), None);
        let c = compare(&a, &b, &opts).expect("compare");
        let row = c
            .rows
            .iter()
            .find(|r| r.tier == "turbo" && r.metric == "p95")
            .expect("a turbo p95 row");
        let (lo, hi) = row.interval.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "{i:>4}  {:>9.1} ms  {:>10.1} ms  {:>+5.1}%  {:>+6.1}% … {:>+6.1}%  {}",
            p95(&a),
            p95(&b),
            (row.change.unwrap_or(f64::NAN) - 1.0) * 100.0,
            (lo - 1.0) * 100.0,
            (hi - 1.0) * 100.0,
            if c.passed { "pass" } else { "FLAGGED" }
        );
        if !c.passed {
            alarms += 1;
            for r in c
                .rows
                .iter()
                .filter(|r| r.judgement == Judgement::Regression)
            {
                println!("      flagged: {} {}", r.tier, r.metric);
            }
        }
        first.get_or_insert(a);
    }
    let base = first.expect("at least one pair");
    // Every request's decode gets the same added time; the slowest requests' p95 moves by about
    // five sixths of it (measured), so 36% of the baseline p95 lifts it by about 30%.
    let added = (p95(&base) * 0.36).round() as u64;
    let slow = run(&dir, "regressed", Some(added));
    let c = compare(&base, &slow, &opts).expect("compare");
    let row = c
        .rows
        .iter()
        .find(|r| r.tier == "turbo" && r.metric == "p95")
        .expect("a turbo p95 row");
    let (lo, hi) = row.interval.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "\nfalse alarms: {alarms} of {pairs} same-build pairs\ninjected +{added} ms on every decode: turbo p95 {:.1} -> {:.1} ms ({:+.1}%, interval {:+.1}% … {:+.1}%): {}\nrecords: {}",
        p95(&base),
        p95(&slow),
        (row.change.unwrap_or(f64::NAN) - 1.0) * 100.0,
        (lo - 1.0) * 100.0,
        (hi - 1.0) * 100.0,
        if c.passed { "NOT flagged" } else { "flagged" },
        dir.display()
    );
    if c.passed {
        std::process::exit(1);
    }
}
