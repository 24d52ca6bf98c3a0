//! Runs the Python package's tests (`python/tests`, pytest) against the extension module this
//! crate builds: `cargo test` builds `deps/libbt_py.so` before this test, which lays it out as
//! `bittensor_rs/_native.abi3.so` next to the package's Python files and runs pytest with the
//! environment `scripts/python-env.sh` makes (NumPy and pytest; `.ci/run` makes it). Without
//! that environment the test says so and passes, unless `BT_REQUIRE_PYTHON=1` (as in CI).
//!
//! The interop with Rust peers is here too: pytest gets a Rust axon to query (`BT_RUST_AXON`),
//! and a Rust dendrite queries a Python axon (`python/tests/serve_axon.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bt_keys::Keypair;
use bt_wire::{
    Axon, AxonConfig, Dendrite, DendriteConfig, FeedForwardExpert, MemoryStakes, Peer, ReturnCode,
    Tensor,
};

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

/// The Python interpreter and a scratch directory holding the package (its Python files and
/// the freshly built module), to put on `PYTHONPATH`; None (the test passes, saying why)
/// without the Python environment, unless CI requires it.
fn package() -> Option<(PathBuf, tempfile::TempDir)> {
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
        return None;
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
    Some((python, scratch))
}

#[test]
fn python_package_tests_pass() {
    let Some((python, scratch)) = package() else {
        return;
    };
    // A Rust axon (the feed-forward expert, width 8) for the Python dendrite to query.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let key = Keypair::from_uri("//Bob//rust-axon").expect("key");
    let expert = Arc::new(FeedForwardExpert::new(8, 32, 0.01, 1));
    let stakes = Arc::new(MemoryStakes::new());
    let axon = Axon::new(key.public(), expert, stakes, AxonConfig::default()).expect("axon");
    let handle = rt
        .block_on(axon.spawn("127.0.0.1:0".parse().expect("addr")))
        .expect("serve");
    let rust_axon = format!("{} {}", key.public(), handle.endpoint());

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
        .env("BT_RUST_AXON", rust_axon)
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

#[test]
fn a_rust_dendrite_is_answered_by_a_python_axon() {
    let Some((python, scratch)) = package() else {
        return;
    };
    let mut child = Command::new(&python)
        .arg(workspace().join("python/tests/serve_axon.py"))
        .env("PYTHONPATH", scratch.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve_axon.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read its address");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"serving"),
        "serve_axon.py said {line:?}"
    );
    let peer = Peer {
        hotkey: bt_keys::PublicKey::from_ss58(words[1]).expect("hotkey"),
        endpoint: format!("http://{}", words[2]),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let caller = Keypair::from_uri("//Alice").expect("key");
    let d = Dendrite::new(caller.clone(), DendriteConfig::default()).expect("dendrite");
    rt.block_on(async {
        let x = Tensor::from_f32(vec![2, 8], &[0.5; 16]).expect("x");
        let r = d.forward(&peer, std::slice::from_ref(&x)).await;
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        assert_eq!(r.outputs[0].to_f32().expect("f32"), vec![1.0; 16]);
        let g = Tensor::from_f32(vec![2, 8], &[1.0; 16]).expect("g");
        let r = d.backward(&peer, std::slice::from_ref(&x), &[g]).await;
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
        assert_eq!(r.outputs[0].to_f32().expect("f32"), vec![2.0; 16]);
        // A Python exception is an `internal` answer naming it, and the axon goes on.
        let neg = Tensor::from_f32(vec![2, 8], &[-1.0; 16]).expect("neg");
        let r = d.forward(&peer, &[neg]).await;
        assert_eq!(r.code, ReturnCode::Internal, "{}", r.message);
        assert!(
            r.message.contains("ValueError: negative input from")
                && r.message.contains(&caller.public().to_string()),
            "{}",
            r.message
        );
        let again = Dendrite::new(
            Keypair::from_uri("//Bob").expect("key"),
            DendriteConfig::default(),
        )
        .expect("dendrite");
        let r = again.forward(&peer, &[x]).await;
        assert_eq!(r.code, ReturnCode::Success, "{}", r.message);
    });
    drop(child.stdin.take());
    let status = child.wait().expect("serve_axon.py ends");
    assert!(status.success(), "serve_axon.py exited with {status}");
}
