//! `report.html` is a page a browser really shows: a short real run against the reference server
//! writes its documents, then headless Chromium, with networking off, screenshots the page and
//! the plot area at its bottom holds drawn, coloured plots rather than blank or broken images.
//!
//! Chromium is Debian's `chromium` package (installed by `.ci/run`). Without it the test fails
//! when `CI` is set and is skipped with a note otherwise.

use reference_server::app::BackgroundServer;
use reference_server::compute::ModelProfile;
use reference_server::config::{Config, DEV_API_KEY};
use reference_server::types::Resolution;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small, fast reference server (tiny model, small images, no rate limit to speak of).
fn server(dir: &Path) -> BackgroundServer {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        weights_cache: Path::new(env!("CARGO_TARGET_TMPDIR")).join("weights"),
        data_dir: dir.join("server-data"),
        ..Config::default()
    };
    c.models = vec![ModelProfile::tiny("sdxl-mini", 11)];
    c.default_resolution = Resolution {
        width: 64,
        height: 64,
    };
    c.workers.count = 1;
    c.api_keys[0].burst = 1000;
    c.api_keys[0].rate_limit_per_second = 1000.0;
    BackgroundServer::start(c).unwrap()
}

/// Runs a 5 s scenario against `base` and returns the run's output folder.
fn run_scenario(dir: &Path, base: &str) -> PathBuf {
    let var = "FIREDRILL_E2E_REPORT_API_KEY";
    std::env::set_var(var, DEV_API_KEY);
    let scenario = dir.join("scenario.yaml");
    // The name is hostile on purpose: the page must show it, escaped, and still render.
    std::fs::write(
        &scenario,
        format!(
            "version: 1\nname: \"report <b>&</b> e2e\"\nseed: 5\ntarget:\n  url:\n    base: {base}\n    api_key_env: {var}\n\
             load:\n  arrival: {{process: poisson}}\n  mix:\n    tiers: {{turbo: 1, fast: 1}}\n    models: {{sdxl-mini: 1}}\n    steps: {{'2': 1}}\n    modes: {{sync: 1}}\n\
             \x20 stages:\n    - {{name: warm, ramp: 8, for: 2s}}\n    - {{name: hold, hold: 8, for: 3s}}\n\
             observe:\n  scrape_interval: 500ms\nthresholds:\n  - name: p95 under 5 s\n    latency: {{percentile: 95, below: 5s}}\n  - name: impossible p50\n    latency: {{percentile: 50, below: 1ms}}\n"
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = rt.block_on(firedrill::run::run(
        &scenario,
        firedrill::run::RunOptions {
            out_dir: Some(out.clone()),
            // Unused: the target is a URL, nothing is spawned.
            server_exe: std::env::current_exe().unwrap(),
            send_delay_limit: Duration::from_millis(50),
            window: Duration::from_secs(1),
            engine: None,
            alertmanager: false,
        },
    ));
    assert_eq!(
        outcome.exit_code, 1,
        "the impossible threshold fails the run: {:?}",
        outcome.error
    );
    out
}

/// The browser, if one is installed.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Screenshots `page` at `width`x`height` with networking off: in an empty network namespace
/// when this user may create one (root), and always with a dead proxy and a resolver that
/// resolves nothing, so no request could leave even outside a namespace.
fn screenshot(browser: &Path, page: &Path, shot: &Path, width: u32, height: u32) {
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(browser);
        c
    } else {
        eprintln!("unshare -n unavailable: networking is off through proxy and resolver flags");
        Command::new(browser)
    };
    let profile = shot.with_extension("profile");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--window-size={width},{height}"))
    .arg(format!("--screenshot={}", shot.display()))
    .arg(format!("file://{}", page.display()));
    let out = cmd.output().expect("running chromium");
    assert!(
        out.status.success() && shot.is_file(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// RGB pixels of a PNG, row-major.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

fn decode(path: &Path) -> Image {
    let bytes = std::fs::read(path).unwrap();
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Indexed => panic!("indexed after normalization"),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let mut rgb = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * info.line_size..][..w * channels];
        for px in row.chunks_exact(channels) {
            rgb.push(if channels >= 3 {
                [px[0], px[1], px[2]]
            } else {
                [px[0]; 3]
            });
        }
    }
    Image {
        width: w,
        height: h,
        rgb,
    }
}

fn is_white(p: [u8; 3]) -> bool {
    p.iter().all(|&c| c >= 245)
}

/// The last row with anything but white on it.
fn last_content_row(img: &Image) -> usize {
    (0..img.height)
        .rev()
        .find(|&y| (0..img.width).any(|x| !is_white(img.rgb[y * img.width + x])))
        .unwrap_or(0)
}

#[test]
fn report_html_shows_the_plots_in_a_browser_without_network() {
    let dir = scratch("shot");
    let srv = server(&dir);
    let out = run_scenario(&dir, &srv.base);
    drop(srv);

    // The run wrote every document; `firedrill report`'s function renders them again from the
    // record alone, into another folder.
    for f in ["record.json", "summary.md", "junit.xml", "report.html"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let record = reports::record::RunRecord::read(&out.join("record.json")).unwrap();
    let again = dir.join("again");
    let docs = reports::write_documents(&record, &again).unwrap();
    assert!(docs.warnings.is_empty(), "{:?}", docs.warnings);
    assert!(
        docs.plots
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "svg")),
        "no plots were written: {:?}",
        docs.plots
    );
    let html = std::fs::read_to_string(&docs.report_html).unwrap();
    assert!(html.contains("report &lt;b&gt;&amp;&lt;/b&gt; e2e"));
    assert!(html.contains("data:image/svg+xml;base64,"));
    assert!(!html.contains("<script"));

    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed (apt-get install chromium; .ci/run installs it)");
        }
        eprintln!("chromium not installed: report screenshot skipped");
        return;
    };

    // The same page without plots shows where the content above the plots ends; everything
    // the plotted page draws below that must be the plots.
    let bare = dir.join("bare.html");
    std::fs::write(&bare, reports::html::render(&record, &[])).unwrap();
    let (width, height) = (1200, 9000);
    let shot = dir.join("report.png");
    let bare_shot = dir.join("bare.png");
    screenshot(&browser, &docs.report_html, &shot, width, height);
    screenshot(&browser, &bare, &bare_shot, width, height);
    let img = decode(&shot);
    let bare_img = decode(&bare_shot);
    assert_eq!((img.width, img.height), (width as usize, height as usize));

    let bare_end = last_content_row(&bare_img);
    let end = last_content_row(&img);
    assert!(
        end > bare_end + 600,
        "the plots add no height to the page: content ends at row {end} with plots, {bare_end} without"
    );
    // Below the plot-less page's end there are only plots (and the short scenario and footer
    // lines that follow them).
    let top = bare_end;
    let mut inked = 0usize;
    let mut colors = std::collections::BTreeSet::new();
    for y in top..=end {
        for x in 0..img.width {
            let p = img.rgb[y * img.width + x];
            if !is_white(p) {
                inked += 1;
            }
            let (max, min) = (*p.iter().max().unwrap_or(&0), *p.iter().min().unwrap_or(&0));
            // Saturated pixels, bucketed coarsely: drawn series, not grey text or grid.
            if max - min > 60 {
                colors.insert([p[0] / 64, p[1] / 64, p[2] / 64]);
            }
        }
    }
    let area = (end + 1 - top) * img.width;
    assert!(
        inked * 100 > area * 3,
        "plot area nearly blank: {inked} of {area} pixels inked"
    );
    assert!(
        colors.len() >= 4,
        "plots lack colour: {} saturated colour buckets ({colors:?})",
        colors.len()
    );
    eprintln!(
        "screenshot {}: plots in rows {top}..{end}, {:.1}% inked, {} colour buckets",
        shot.display(),
        100.0 * inked as f64 / area as f64,
        colors.len()
    );
}
