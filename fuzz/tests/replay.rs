//! Replays every fuzz target over its checked-in seeds (`fuzz/seeds/TARGET/`, inputs the fuzzer
//! found that reach deep into the decoders) and over damaged copies of them: each input must run
//! to the end without a panic. This is how `cargo test` builds the fuzz targets, with the same
//! dependencies as the rest of the workspace; `scripts/fuzz.sh TARGET` fuzzes one for real.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The inputs for one target: its seeds, each seed cut short and with its first byte flipped,
/// and a few shapeless ones (empty, every byte value, a run of 0xff).
fn inputs(target: &str, scratch: &Path) -> Vec<PathBuf> {
    let mut blobs: Vec<Vec<u8>> = vec![Vec::new(), (0..=255u8).collect(), vec![0xff; 64]];
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    if let Ok(dir) = std::fs::read_dir(&seeds) {
        let mut paths: Vec<PathBuf> = dir.map(|e| e.expect("seed entry").path()).collect();
        paths.sort();
        for path in paths {
            let seed = std::fs::read(&path).expect("seed file");
            let mut flipped = seed.clone();
            if let Some(b) = flipped.first_mut() {
                *b ^= 0x80;
            }
            blobs.push(seed[..seed.len().saturating_sub(1)].to_vec());
            blobs.push(flipped);
            blobs.push(seed);
        }
    }
    blobs
        .into_iter()
        .enumerate()
        .map(|(i, blob)| {
            let path = scratch.join(format!("{target}-{i:03}"));
            std::fs::write(&path, blob).expect("write input");
            path
        })
        .collect()
}

fn replay(target: &str, exe: &str, min_seeds: usize) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let files = inputs(target, scratch.path());
    assert!(
        files.len() >= 3 + 3 * min_seeds,
        "{target}: expected at least {min_seeds} seeds in fuzz/seeds/{target}"
    );
    // The targets that need files keep them under the temporary directory: this one.
    let out = Command::new(exe)
        .env("TMPDIR", scratch.path())
        .args(&files)
        .output()
        .expect("run the fuzz target");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{target} failed on an input:\n{log}");
    // libFuzzer names each input it ran; every one must have run to the end.
    let ran = log.matches("Executed ").count();
    assert_eq!(
        ran,
        files.len(),
        "{target} ran {ran} of {} inputs:\n{log}",
        files.len()
    );
}

#[test]
fn decode_request_replays() {
    replay("decode_request", env!("CARGO_BIN_EXE_decode_request"), 0);
}

#[test]
fn ledger_decode_replays() {
    replay("ledger_decode", env!("CARGO_BIN_EXE_ledger_decode"), 8);
}

#[test]
fn replica_log_replays() {
    replay("replica_log", env!("CARGO_BIN_EXE_replica_log"), 8);
}

#[test]
fn replica_rpc_replays() {
    replay("replica_rpc", env!("CARGO_BIN_EXE_replica_rpc"), 8);
}

#[test]
fn key_files_replays() {
    replay("key_files", env!("CARGO_BIN_EXE_key_files"), 5);
}

#[test]
fn snapshot_restore_replays() {
    replay(
        "snapshot_restore",
        env!("CARGO_BIN_EXE_snapshot_restore"),
        3,
    );
}
