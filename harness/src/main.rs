//! `firedrill`: the command line.

use clap::{Parser, Subcommand};
use firedrill::plan::Plan;
use firedrill::scenario::{json_schema, read_inputs, LoadModel, Scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Load-testing and chaos harness for GPU generation services.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a scenario, compile its plan and print a summary; sends nothing.
    Validate {
        /// The scenario file.
        scenario: PathBuf,
    },
    /// Run a scenario: drive the target, scrape it, judge thresholds, write the record.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Output folder (default: a new folder under reports/out/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Length of the statistics windows.
        #[arg(long, default_value = "5s")]
        window: firedrill::scenario::Dur,
        /// Evaluate the rules with this engine instead of the scenario's `rules.engine`
        /// (`both`: the embedded engine judges and must agree with a real Prometheus).
        #[arg(long, value_enum)]
        engine: Option<firedrill::scenario::alerts::RuleEngine>,
        /// Also deliver alerts through Alertmanager (`rules.alertmanager`; needs a real
        /// Prometheus: with the embedded engine alone, `--engine both` is implied).
        #[arg(long)]
        alertmanager: bool,
    },
    /// Capacity planning: run the scenario's load at a series of rates (the scenario's
    /// `capacity:` section: given, or found by doubling then bisecting), each step until it is
    /// steady; find the highest rate at which every threshold holds and the knee of latency
    /// against throughput; size the worker pool for target rates with a queueing model, and check
    /// each recommendation by running it on the reference server.
    ///
    /// Writes capacity.json, summary.md, the capacity plots and report.html. Exit 0 with an
    /// answer (and every check within 25%), 1 when no rate held or a check missed, 2 for bad
    /// input, 3 when the target or the harness failed.
    Sweep {
        /// The scenario file.
        scenario: PathBuf,
        /// Output folder (default: a new folder under reports/out/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run these rates (req/s, comma-separated) instead of the scenario's.
        #[arg(long, value_delimiter = ',')]
        rates: Option<Vec<f64>>,
        /// Size the worker pool for these rates (req/s, comma-separated).
        #[arg(long, value_delimiter = ',')]
        size_for: Option<Vec<f64>>,
        /// Do not run the recommended configurations to check the predictions.
        #[arg(long)]
        no_check: bool,
    },
    /// Print the JSON Schema of the scenario format (for editor completion).
    Schema,
    /// Run the fault proxy in front of a target until SIGINT or SIGTERM (then every fault is
    /// reverted). Its control API (the admin fault API) needs the bearer token in the
    /// environment variable FIREDRILL_PROXY_TOKEN.
    Proxy {
        /// The target's base URL, http://host:port.
        #[arg(long)]
        upstream: String,
        /// Where the proxy accepts traffic.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Where the control API listens (loopback only).
        #[arg(long, default_value = "127.0.0.1:0")]
        control_listen: std::net::SocketAddr,
    },
    /// Service level objectives.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
    /// Run PromQL test scripts (Prometheus' promqltest format) against the embedded engine:
    /// prints each failing case, then `N passed, N failed, N skipped`. Exit 0 when nothing
    /// failed, 1 when a case failed, 2 when a file cannot be read or parsed.
    Promqltest {
        /// The .test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run Prometheus rule unit-test files (the format of `promtool test rules`) with the
    /// embedded PromQL engine and rule evaluator.
    ///
    /// Prints `SUCCESS` or the failures of each file, promtool-like, then a summary. Exit 0 when
    /// every test passes, 1 when a test fails (or a rule fails to evaluate), 2 when a test file
    /// or a rule file it names cannot be read or parsed.
    TestRules {
        /// The test files (rule_files are found relative to each).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compare a candidate run with a baseline: per tier p50/p95/p99, error rates and
    /// throughput side by side, with a noise-aware verdict.
    ///
    /// Latency quantiles get a bootstrap interval over the runs' statistics windows; a
    /// regression needs a change beyond the tolerance and an interval that excludes no change.
    /// Prints a Markdown table. Exit 0 without regressions, 1 with one, 2 when a record cannot
    /// be read.
    Compare {
        /// The baseline run's record.json.
        baseline: PathBuf,
        /// The candidate run's record.json.
        candidate: PathBuf,
        /// Relative latency slowdown (and throughput drop) tolerated.
        #[arg(long, default_value_t = 0.1)]
        tolerance: f64,
        /// Absolute error-rate rise tolerated (0.01: one point).
        #[arg(long, default_value_t = 0.01)]
        error_tolerance: f64,
        /// Tiers with fewer requests than this in either run are not judged.
        #[arg(long, default_value_t = 100)]
        min_samples: u64,
    },
    /// Lint Prometheus rule files against what the target exports.
    ///
    /// Finds rules that can never fire (unknown metrics, labels or values), histogram_quantile
    /// without `_bucket`, `le` or rate, rate over gauges, windows under twice the scrape
    /// interval, and templates reading labels the expression drops. Prints findings and a
    /// summary. Exit 0 without errors, 1 with errors, 2 when a file or the record cannot be read.
    Lint {
        /// The rule files, linted together (recorded series of each count as exported).
        #[arg(required = true)]
        rules: Vec<PathBuf>,
        /// Lint against what this run's record scraped instead of the reference server's catalog.
        #[arg(long)]
        record: Option<PathBuf>,
        /// The scrape interval during the run (range windows under twice it are flagged).
        #[arg(long, default_value = "15s")]
        scrape_interval: firedrill::scenario::Dur,
        /// The drill's time_scale: range windows are divided by it before the comparison.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// The reference server's metric_units setting (base or seed_ms), for the catalog.
        #[arg(long, default_value = "base", value_parser = ["base", "seed_ms"])]
        metric_units: String,
    },
    /// Re-render a run's documents from its record alone: summary.md, junit.xml, the plots
    /// (plots/) and report.html. Exit 0 when written, 2 when the record cannot be read, 3 when a
    /// document cannot be written.
    Report {
        /// The run record (record.json).
        record: PathBuf,
        /// Output folder (default: the record's folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the embedded reference server (what `firedrill run` starts as its child process).
    #[command(hide = true)]
    ReferenceServer(reference_server::cli::Args),
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Print the Prometheus recording rules and multi-window burn-rate alerts for an SLO file.
    Rules {
        /// The SLO spec (see dashboards/prometheus/slos.yaml).
        file: PathBuf,
    },
}

/// Exit codes: 0 pass, 1 expectations failed, 2 bad input, 3 target or infrastructure failure.
const BAD_INPUT: u8 = 2;

fn compile(path: &Path) -> Result<(Scenario, Plan), String> {
    let scenario = Scenario::load(path).map_err(|e| e.to_string())?;
    let base = path.parent().unwrap_or(Path::new("."));
    let inputs = read_inputs(&scenario, base).map_err(|e| e.to_string())?;
    let plan = Plan::compile(&scenario, inputs).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((scenario, plan))
}

fn summary(s: &Scenario, p: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let target = match (&s.target.reference_server, &s.target.url) {
        (Some(r), _) => format!(
            "the embedded reference server ({} workers)",
            r.workers.map_or("default".into(), |w| w.to_string())
        ),
        (_, Some(u)) => u.base.clone(),
        _ => "?".into(),
    };
    let _ = writeln!(out, "scenario {:?} is valid (seed {})", s.name, s.seed);
    let _ = writeln!(out, "target: {target}");
    let unit = match p.model {
        LoadModel::Open => "req/s",
        LoadModel::Closed => "users",
    };
    let expected = p.expected_requests();
    let expected = if expected.is_nan() {
        "depends on the target".into()
    } else {
        format!("~{expected:.0}")
    };
    let _ = writeln!(
        out,
        "load: {:?} model, {:?} arrivals, {:.0} s, expected requests {expected}",
        p.model,
        p.arrival,
        p.duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  {:<16} {:<6} {:>8} {:>8} {:>16}",
        "stage", "kind", "start", "length", unit
    );
    for st in &p.stages {
        let values = if st.kind == "spike" {
            format!("{} ^ {}", st.from, st.peak)
        } else if st.from == st.to {
            format!("{}", st.to)
        } else {
            format!("{} -> {}", st.from, st.to)
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<6} {:>7.1}s {:>7.1}s {:>16}",
            st.name, st.kind, st.start_s, st.duration_s, values
        );
    }
    let _ = writeln!(out, "thresholds: {}", s.thresholds.len());
    for t in &s.thresholds {
        let _ = writeln!(out, "  {}", t.name);
    }
    let timeline = firedrill::scenario::faults::timeline(s);
    if !timeline.is_empty() {
        let _ = writeln!(out, "faults: {}", timeline.faults().len());
        for f in timeline.faults() {
            let _ = writeln!(
                out,
                "  {:<16} {:<18} via {:<8} {:>7.1}s -> {:.1}s",
                f.name,
                f.action.kind(),
                f.action.via(),
                f.start.as_secs_f64(),
                f.end().as_secs_f64()
            );
        }
    }
    out
}

/// The binary that runs the reference server (this one) and a runtime for a run or a sweep; the
/// error is printed and its exit code returned.
fn exe_and_runtime() -> Result<(PathBuf, tokio::runtime::Runtime), ExitCode> {
    let infra = || ExitCode::from(firedrill::run::exit::INFRA);
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("firedrill: cannot find my own executable: {e}");
        infra()
    })?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("firedrill: cannot start the runtime: {e}");
        infra()
    })?;
    Ok((exe, rt))
}

fn sweep_command(
    scenario: &Path,
    out: Option<PathBuf>,
    rates: Option<Vec<f64>>,
    size_for: Option<Vec<f64>>,
    no_check: bool,
) -> ExitCode {
    use std::io::Write as _;
    let (server_exe, rt) = match exe_and_runtime() {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = firedrill::capacity::sweep::SweepOptions {
        out_dir: out,
        server_exe,
        rates,
        size_for,
        validate: no_check.then_some(false),
    };
    let outcome = rt.block_on(firedrill::capacity::sweep::sweep(scenario, opts));
    if let Some(e) = &outcome.error {
        let _ = writeln!(std::io::stderr(), "firedrill: {e}");
    }
    let mut stdout = std::io::stdout();
    if let Some(r) = &outcome.record {
        let _ = writeln!(stdout, "{}", r.answer.statement);
    }
    if let Some(dir) = &outcome.out_dir {
        if outcome.record.is_some() {
            let _ = writeln!(stdout, "record: {}", dir.join("capacity.json").display());
            let _ = writeln!(stdout, "report: {}", dir.join("report.html").display());
        }
    }
    ExitCode::from(outcome.exit_code)
}

fn run_command(
    scenario: &Path,
    out: Option<PathBuf>,
    window: std::time::Duration,
    engine: Option<firedrill::scenario::alerts::RuleEngine>,
    alertmanager: bool,
) -> ExitCode {
    let (server_exe, rt) = match exe_and_runtime() {
        Ok(x) => x,
        Err(code) => return code,
    };
    let opts = firedrill::run::RunOptions {
        out_dir: out,
        server_exe,
        send_delay_limit: std::time::Duration::from_millis(10),
        window: window.max(std::time::Duration::from_millis(100)),
        engine,
        alertmanager,
    };
    let outcome = rt.block_on(firedrill::run::run(scenario, opts));
    // Written without panicking: a closed pipe must not turn the run's exit code into 101.
    use std::io::Write as _;
    if let Some(e) = &outcome.error {
        let _ = writeln!(std::io::stderr(), "firedrill: {e}");
    }
    let mut stdout = std::io::stdout();
    if let Some(r) = &outcome.record {
        let _ = writeln!(stdout, "{}", firedrill::run::console_summary(r));
    }
    if let Some(dir) = &outcome.out_dir {
        let _ = writeln!(stdout, "record: {}", dir.join("record.json").display());
        let report = dir.join("report.html");
        if outcome.record.is_some() && report.is_file() {
            let _ = writeln!(stdout, "report: {}", report.display());
        }
    }
    ExitCode::from(outcome.exit_code)
}

/// `firedrill report`: the documents of a run, rendered again from its record.
fn report_command(record: &Path, out: Option<PathBuf>) -> ExitCode {
    use std::io::Write as _;
    let r = match reports::record::RunRecord::read(record) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "firedrill report: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let dir = out.unwrap_or_else(|| match record.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    });
    match reports::write_documents(&r, &dir) {
        Ok(docs) => {
            for w in &docs.warnings {
                let _ = writeln!(std::io::stderr(), "firedrill report: warning: {w}");
            }
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "summary: {}", docs.summary_md.display());
            let _ = writeln!(stdout, "junit: {}", docs.junit_xml.display());
            let _ = writeln!(stdout, "plots: {} files", docs.plots.len());
            let _ = writeln!(stdout, "report: {}", docs.report_html.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "firedrill report: {e}");
            ExitCode::from(firedrill::run::exit::INFRA)
        }
    }
}

/// `firedrill proxy`: the logic lives in `chaos::proxy`.
fn proxy_command(
    upstream: String,
    listen: std::net::SocketAddr,
    control_listen: std::net::SocketAddr,
) -> ExitCode {
    let token = match std::env::var("FIREDRILL_PROXY_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            eprintln!(
                "firedrill proxy: set FIREDRILL_PROXY_TOKEN to the bearer token the control API \
                 will require"
            );
            return ExitCode::from(BAD_INPUT);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("firedrill proxy: cannot start the runtime: {e}");
            return ExitCode::from(firedrill::run::exit::INFRA);
        }
    };
    let proxy = chaos::proxy::Proxy::new(upstream, token)
        .listen(listen)
        .control_listen(control_listen);
    match rt.block_on(chaos::proxy::run_until_signal(proxy)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("firedrill proxy: {e}");
            ExitCode::from(if e.is_bad_input() {
                BAD_INPUT
            } else {
                firedrill::run::exit::INFRA
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { scenario } => match compile(&scenario) {
            Ok((s, p)) => {
                print!("{}", summary(&s, &p));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("firedrill: {e}");
                ExitCode::from(BAD_INPUT)
            }
        },
        Command::ReferenceServer(args) => reference_server::cli::run(args),
        Command::Run {
            scenario,
            out,
            window,
            engine,
            alertmanager,
        } => run_command(&scenario, out, window.0, engine, alertmanager),
        Command::Proxy {
            upstream,
            listen,
            control_listen,
        } => proxy_command(upstream, listen, control_listen),
        Command::Sweep {
            scenario,
            out,
            rates,
            size_for,
            no_check,
        } => sweep_command(&scenario, out, rates, size_for, no_check),
        Command::Slo {
            command: SloCommand::Rules { file },
        } => match firedrill::slo::SloFile::load(&file) {
            Ok(spec) => {
                print!("{}", firedrill::slo::rules::generate(&spec));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("firedrill: {e}");
                ExitCode::from(BAD_INPUT)
            }
        },
        Command::Promqltest { files } => ExitCode::from(firedrill::rules::promqltest::run_cli(
            &files,
            &firedrill::rules::Engine::default(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Compare {
            baseline,
            candidate,
            tolerance,
            error_tolerance,
            min_samples,
        } => {
            let read = |p: &Path| {
                reports::record::RunRecord::read(p).map_err(|e| format!("{}: {e}", p.display()))
            };
            let (b, c) = match (read(&baseline), read(&candidate)) {
                (Ok(b), Ok(c)) => (b, c),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("firedrill compare: {e}");
                    return ExitCode::from(BAD_INPUT);
                }
            };
            let opts = reports::compare::CompareOptions {
                tolerance,
                error_tolerance,
                min_samples,
                ..Default::default()
            };
            match reports::compare::compare(&b, &c, &opts) {
                Ok(cmp) => {
                    print!(
                        "{}",
                        reports::compare::render_markdown(
                            &cmp,
                            &baseline.display().to_string(),
                            &candidate.display().to_string()
                        )
                    );
                    ExitCode::from(if cmp.passed { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("firedrill compare: {e}");
                    ExitCode::from(BAD_INPUT)
                }
            }
        }
        Command::TestRules { files } => ExitCode::from(firedrill::rules::unittest::run_cli(
            &files,
            &firedrill::rules::Engine::default(),
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Command::Lint {
            rules,
            record,
            scrape_interval,
            time_scale,
            metric_units,
        } => {
            use firedrill::rules::lint;
            let units = reference_server::metrics::MetricUnits::ALL
                .into_iter()
                .find(|u| u.as_str() == metric_units)
                .unwrap_or_default();
            let against = match record {
                Some(r) => lint::Against::Record(r),
                None => lint::Against::Catalog(units),
            };
            let opts = lint::LintOptions {
                scrape_interval: scrape_interval.0,
                time_scale,
            };
            ExitCode::from(lint::run_cli(
                &rules,
                &against,
                &opts,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            ))
        }
        Command::Report { record, out } => report_command(&record, out),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json_schema()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
    }
}
