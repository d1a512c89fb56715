//! `firedrill report`: a record that cannot be read is exit 2 with a message naming the file.
//! (The documents themselves are tested in `reports` and, through a real run and a browser, in
//! `tests/tests/report.rs`.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_firedrill");

#[test]
fn an_unreadable_record_is_exit_2_naming_the_file() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("report-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing").join("record.json");
    let not_a_record = dir.join("other.json");
    std::fs::write(&not_a_record, "{\"x\": 1}\n").unwrap();
    for (path, says) in [
        (&missing, "error reading"),
        (&not_a_record, "not a firedrill run record"),
    ] {
        let o = Command::new(BIN).arg("report").arg(path).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(says), "{err}");
    }
    // Nothing was written beside the bad record.
    assert!(!dir.join("report.html").exists());
}
