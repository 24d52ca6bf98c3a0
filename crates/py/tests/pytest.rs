//! Runs the Python package's tests (`python/tests`, pytest) against the extension module this
//! crate builds: `cargo test` builds `deps/libbt_py.so` before this test, which lays it out as
//! `bittensor_rs/_native.abi3.so` next to the package's Python files and runs pytest with the
//! environment `scripts/python-env.sh` makes (NumPy and pytest; `.ci/run` makes it). Without
//! that environment the test says so and passes, unless `BT_REQUIRE_PYTHON=1` (as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/debug`: this test runs from `target/debug/deps`.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

#[test]
fn python_package_tests_pass() {
    let python = std::env::var_os("BT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| build_dir().join("../py-venv/bin/python"));
    if !python.exists() {
        assert!(
            std::env::var("BT_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "no Python environment at {}: run scripts/python-env.sh",
            python.display()
        );
        eprintln!(
            "skipped: no Python environment at {} (scripts/python-env.sh makes it)",
            python.display()
        );
        return;
    }
    // `cargo test` leaves the library it builds in deps/ (only `cargo build` copies it up).
    let lib = build_dir().join("deps/libbt_py.so");
    assert!(
        lib.exists(),
        "the extension module {} was not built",
        lib.display()
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let package = scratch.path().join("bittensor_rs");
    std::fs::create_dir(&package).expect("package dir");
    let source = workspace().join("python/bittensor_rs");
    for entry in std::fs::read_dir(&source).expect("python/bittensor_rs") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::copy(&lib, package.join("_native.abi3.so")).expect("copy the module");

    let out = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        .current_dir(workspace())
        .env("PYTHONPATH", scratch.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{log}");
    assert!(out.status.success(), "pytest failed:\n{log}");
    assert!(log.contains(" passed"), "pytest ran nothing:\n{log}");
}
