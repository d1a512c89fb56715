//! The documents rendered from a record, written together: `summary.md`, `junit.xml`, the plots
//! (under `plots/`) and `report.html`. `firedrill run` calls [`write_documents`] after writing
//! `record.json`, and `firedrill report` calls it on a record alone, so both give the same files.

use crate::html::{self, HtmlPlot, PlotImage};
use crate::plots;
use crate::record::RunRecord;
use std::path::{Path, PathBuf};

/// What [`write_documents`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Documents {
    /// `summary.md`.
    pub summary_md: PathBuf,
    /// `junit.xml`.
    pub junit_xml: PathBuf,
    /// `report.html`.
    pub report_html: PathBuf,
    /// The plot files (SVG and PNG) under `plots/`.
    pub plots: Vec<PathBuf>,
    /// What went wrong without stopping the rest (plots that could not be rendered or read):
    /// the documents were written, without what is named here.
    pub warnings: Vec<String>,
}

/// Renders every document of `record` into `dir` (created when missing).
///
/// A plot failure is a warning in the result, never an error: the summary, the JUnit file and
/// the page (without the plots) are still written. An error means a document could not be
/// written; it names each file that failed, after trying them all.
pub fn write_documents(record: &RunRecord, dir: &Path) -> Result<Documents, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let docs_plots = dir.join("plots");
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let summary_md = dir.join("summary.md");
    let junit_xml = dir.join("junit.xml");
    let report_html = dir.join("report.html");
    // The cheap, essential documents first, so they exist whatever the plots do.
    if let Err(e) = write(&summary_md, &crate::summary::render(record, "report.html")) {
        errors.push(e);
    }
    if let Err(e) = write(&junit_xml, &crate::junit::render(record)) {
        errors.push(e);
    }
    let (plots, plot_files) = match render_plots(|d| plots::render_all(record, d), &docs_plots) {
        Ok((plots, files, mut w)) => {
            warnings.append(&mut w);
            (plots, files)
        }
        Err(e) => {
            warnings.push(format!("plots not rendered: {e}"));
            (Vec::new(), Vec::new())
        }
    };
    if let Err(e) = write(&report_html, &html::render(record, &plots)) {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(Documents {
            summary_md,
            junit_xml,
            report_html,
            plots: plot_files,
            warnings,
        })
    } else {
        Err(errors.join("; "))
    }
}

/// The plots for the page, the files written, and warnings about plots that could not be read.
pub(crate) type Rendered = (Vec<HtmlPlot>, Vec<PathBuf>, Vec<String>);

/// Renders plots into `dir` with `render` and loads them for embedding.
pub(crate) fn render_plots(
    render: impl FnOnce(&Path) -> Result<Vec<plots::PlotFile>, String>,
    dir: &Path,
) -> Result<Rendered, String> {
    // A panic inside a renderer must not take the run down after its record was written: the
    // run's exit code (pass or fail) matters more than a picture.
    let files =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(dir))).map_err(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            format!("the plot renderer failed: {what}")
        })??;
    let mut plots = Vec::new();
    let mut written = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        // SVG scales with the page and stays sharp; PNG is the fallback.
        let image = match std::fs::read_to_string(&f.svg) {
            Ok(svg) => Some(PlotImage::Svg(svg)),
            Err(svg_err) => match std::fs::read(&f.png) {
                Ok(png) => Some(PlotImage::Png(png)),
                Err(png_err) => {
                    warnings.push(format!(
                        "plot {:?} left out: cannot read {} ({svg_err}) or {} ({png_err})",
                        f.name,
                        f.svg.display(),
                        f.png.display()
                    ));
                    None
                }
            },
        };
        for p in [&f.svg, &f.png] {
            if p.is_file() {
                written.push(p.clone());
            }
        }
        if let Some(image) = image {
            plots.push(HtmlPlot {
                title: f.title,
                image,
            });
        }
    }
    Ok((plots, written, warnings))
}

/// Writes `text` to `path` through a temporary file renamed into place, so a reader never sees
/// half a document.
pub(crate) fn write(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort cleanup; the write error is what matters.
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::record;

    #[test]
    fn writes_every_document_into_the_folder() {
        let dir = std::env::temp_dir().join(format!("reports-docs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let docs = write_documents(&record(), &dir).unwrap();
        assert_eq!(docs.report_html, dir.join("report.html"));
        let html = std::fs::read_to_string(&docs.report_html).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        let md = std::fs::read_to_string(&docs.summary_md).unwrap();
        assert!(md.contains("FAIL"));
        let xml = std::fs::read_to_string(&docs.junit_xml).unwrap();
        assert!(xml.contains("<testsuites"));
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_folder_is_an_error_naming_it() {
        let file = std::env::temp_dir().join(format!("reports-docs-file-{}", std::process::id()));
        std::fs::write(&file, "not a folder").unwrap();
        let err = write_documents(&record(), &file.join("sub")).unwrap_err();
        assert!(err.contains("reports-docs-file-"), "{err}");
        let _ = std::fs::remove_file(&file);
    }
}
