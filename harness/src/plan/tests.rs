use super::*;
use crate::scenario::Scenario;

fn scenario(arrival: &str, stages: &str) -> Scenario {
    let text = format!(
        "version: 1\nname: t\nseed: 42\ntarget:\n  url:\n    base: http://127.0.0.1:1\nload:\n  arrival: {arrival}\n  stages:\n{stages}\n  mix:\n    tiers: {{turbo: 1, fast: 2, relax: 1}}\n    modes: {{sync: 3, async: 1}}\n    prompts: {{unsafe_share: 0.1}}\n"
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn plan(s: &Scenario) -> Plan {
    Plan::compile(s, PlanInputs::default()).unwrap()
}

#[test]
fn profile_follows_the_stages() {
    let s = scenario(
        "{process: constant}",
        "    - {hold: 10, for: 10s}\n    - {ramp: 30, for: 10s}\n    - {step: 60, from: 30, steps: 3, for: 30s}\n    - {spike: 100, for: 4s}",
    );
    let p = plan(&s);
    assert_eq!(p.duration, Duration::from_secs(54));
    assert_eq!(p.value_at(5.0), 10.0);
    assert!((p.value_at(15.0) - 20.0).abs() < 1e-9);
    assert_eq!(p.value_at(25.0), 40.0);
    assert_eq!(p.value_at(45.0), 60.0);
    assert!((p.value_at(52.0) - 100.0).abs() < 1e-9);
    assert!((p.value_at(53.0) - 80.0).abs() < 1e-9);
    assert_eq!(p.value_at(60.0), 0.0);
    let kinds: Vec<_> = p.stages.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["hold", "ramp", "step", "spike"]);
    // 100 + 200 + (400+500+600) + 4 * (60+100)/2
    assert!((p.expected_requests() - 2120.0).abs() < 1e-6);
}

#[test]
fn constant_arrivals_match_the_integrated_rate() {
    let s = scenario(
        "{process: constant}",
        "    - {hold: 10, for: 10s}\n    - {ramp: 30, for: 10s}",
    );
    let p = plan(&s);
    let sends: Vec<Send> = p.sends().collect();
    assert_eq!(sends.len(), 300);
    assert!((sends[0].at.as_secs_f64() - 0.05).abs() < 1e-9);
    assert!((sends[1].at.as_secs_f64() - 0.15).abs() < 1e-9);
    // Within the ramp the count up to t is the integral of the rate.
    let by_15 = sends.iter().filter(|s| s.at.as_secs_f64() < 15.0).count() as f64;
    assert!((by_15 - (100.0 + 5.0 * 15.0)).abs() <= 1.0, "{by_15}");
    assert!(sends.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(sends.last().unwrap().stage, 1);
}

#[test]
fn poisson_and_gamma_have_the_right_counts_and_dispersion() {
    for (arrival, cv2) in [
        ("{process: poisson}", 1.0),
        ("{process: gamma, burstiness: 4.0}", 4.0),
    ] {
        let s = scenario(arrival, "    - {hold: 200, for: 100s}");
        let p = plan(&s);
        let times: Vec<f64> = p.sends().map(|s| s.at.as_secs_f64()).collect();
        let n = times.len() as f64;
        assert!((n / 20_000.0 - 1.0).abs() < 0.05, "{arrival}: {n}");
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let v = gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / gaps.len() as f64;
        let got = v / (m * m);
        assert!(
            (got / cv2 - 1.0).abs() < 0.15,
            "{arrival}: squared CV {got}"
        );
    }
}

#[test]
fn same_seed_same_schedule_other_seed_other_schedule() {
    let s = scenario("{process: poisson}", "    - {ramp: 50, from: 5, for: 20s}");
    let a: Vec<Send> = plan(&s).sends().collect();
    let b: Vec<Send> = plan(&s).sends().collect();
    assert_eq!(a, b);
    let mut s2 = s.clone();
    s2.seed = 43;
    let c: Vec<Send> = plan(&s2).sends().collect();
    assert_ne!(a, c);
}

#[test]
fn the_mix_follows_weights_and_stage_overrides() {
    let s = Scenario::parse(
        "version: 1\nname: t\ntarget: {url: {base: 'http://127.0.0.1:1'}}\nload:\n  arrival: {process: constant}\n  mix:\n    tiers: {turbo: 1, relax: 3}\n    steps: {'8': 1, default: 1}\n  stages:\n    - {hold: 100, for: 100s}\n    - hold: 100\n      for: 100s\n      mix:\n        tiers: {fast: 1}\n        prompts: {unsafe_share: 0.5}\n",
    )
    .unwrap();
    let p = plan(&s);
    let sends: Vec<Send> = p.sends().collect();
    let first: Vec<&Send> = sends.iter().filter(|s| s.stage == 0).collect();
    let relax = first
        .iter()
        .filter(|s| s.spec.tier.as_deref() == Some("relax"))
        .count() as f64;
    assert!((relax / first.len() as f64 - 0.75).abs() < 0.03);
    assert!(first.iter().all(|s| !s.spec.unsafe_prompt));
    let eights = first.iter().filter(|s| s.spec.steps == Some(8)).count() as f64;
    assert!((eights / first.len() as f64 - 0.5).abs() < 0.04);
    let second: Vec<&Send> = sends.iter().filter(|s| s.stage == 1).collect();
    assert!(second
        .iter()
        .all(|s| s.spec.tier.as_deref() == Some("fast")));
    let unsafe_share =
        second.iter().filter(|s| s.spec.unsafe_prompt).count() as f64 / second.len() as f64;
    assert!((unsafe_share - 0.5).abs() < 0.04, "{unsafe_share}");
    for s in &second {
        let prompt = p.corpus().get(s.spec.prompt);
        assert!(!prompt.is_empty());
        assert_eq!(
            s.spec.unsafe_prompt,
            p.corpus().unsafe_prompts.iter().any(|u| u == prompt)
        );
    }
}

#[test]
fn replay_uses_the_trace() {
    let s = Scenario::parse(
        "version: 1\nname: t\ntarget: {url: {base: 'http://127.0.0.1:1'}}\nload:\n  arrival: {process: replay, file: trace.txt}\n  stages: [{hold: 1, for: 10s}]\n",
    )
    .unwrap();
    let inputs = PlanInputs {
        replay: Some(vec![3.0, 0.5, 12.0, 1.0]),
        corpus: None,
    };
    let p = Plan::compile(&s, inputs).unwrap();
    let at: Vec<f64> = p.sends().map(|s| s.at.as_secs_f64()).collect();
    assert_eq!(at, vec![0.5, 1.0, 3.0]);
    assert_eq!(p.expected_requests(), 3.0);
    let bad = PlanInputs {
        replay: Some(vec![1.0, -2.0]),
        corpus: None,
    };
    assert_eq!(
        Plan::compile(&s, bad).unwrap_err().field,
        "load.arrival.file"
    );
}
