//! Command faults: a user's own inject and revert commands, run by `sh -c` with a timeout.

use std::process::Stdio;
use std::time::Duration;

/// Runs `command` with `sh -c`, killing it after `timeout`. `Ok` with the first line of its
/// output when it exits 0; `Err` saying why otherwise (exit status and the tail of its stderr,
/// or the timeout).
pub async fn run_command(command: &str, timeout: Duration) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Its own process group, so a timeout kills what the shell started too, not only the shell.
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
    let pgid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let read = async {
        // Both pipes at once: a command filling one while we wait on the other would block.
        let (o, e) = tokio::join!(read_all(out.as_mut()), read_all(err.as_mut()));
        let status = child.wait().await;
        (status, o, e)
    };
    let (status, o, e) = match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => {
            #[cfg(unix)]
            if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: killpg(2) on the process group we created; no memory is touched.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
            // Dropping the future drops the child too, which kills the shell (kill_on_drop).
            return Err(format!("timed out after {timeout:?} and was killed"));
        }
    };
    let status = status.map_err(|e| format!("cannot wait for it: {e}"))?;
    let tail = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let s = s.trim();
        let start = s.len().saturating_sub(300);
        let start = (start..=s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].to_owned()
    };
    if status.success() {
        Ok(tail(&o).lines().next().unwrap_or("").to_owned())
    } else {
        Err(format!("exited with {status}: {}", tail(&e)))
    }
}

/// Everything a pipe yields until it closes (nothing for a missing pipe).
async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<&mut R>) -> Vec<u8> {
    let mut b = Vec::new();
    if let Some(p) = pipe {
        let _ = tokio::io::AsyncReadExt::read_to_end(p, &mut b).await;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn success_failure_and_timeout_are_told_apart() {
        let t = Duration::from_secs(5);
        assert_eq!(run_command("echo injected", t).await, Ok("injected".into()));
        let e = run_command("echo nope >&2; exit 3", t).await.unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        let started = std::time::Instant::now();
        let e = run_command("sleep 10", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_timeout_kills_what_the_command_started() {
        // The shell starts a background child that would write a file after 1 s.
        let flag = std::env::temp_dir().join(format!("chaos-cmd-{}", std::process::id()));
        let _ = std::fs::remove_file(&flag);
        let cmd = format!("(sleep 1; touch '{}') & wait", flag.display());
        let e = run_command(&cmd, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!flag.exists(), "the command's child outlived its timeout");
    }
}
