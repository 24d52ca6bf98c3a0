//! `bt neuron run` and `bt net up`: each bad argument or configuration is refused with a
//! message naming it, before anything starts; a good neuron trains alone and checkpoints.

use bt_cli::{Cli, run};
use clap::Parser;

fn bt(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bt"];
    all.extend_from_slice(args);
    run(Cli::try_parse_from(all)?)
}

fn error_of(args: &[&str]) -> String {
    format!("{:#}", bt(args).expect_err("refused"))
}

#[test]
fn bad_configurations_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    let missing = dir.path().join("missing.toml");
    let e = error_of(&[
        "neuron",
        "run",
        "--config",
        missing.to_str().expect("utf-8"),
    ]);
    assert!(e.contains("missing.toml"), "{e}");
    let typo = path("typo.toml", "[train]\nstepz = 3\n");
    let e = error_of(&["neuron", "run", "--config", &typo]);
    assert!(
        e.contains("typo.toml") && e.contains("unknown field `stepz`"),
        "{e}"
    );
    let no_keys = path("nokeys.toml", "[train]\nsteps = 3\n");
    let e = error_of(&["neuron", "run", "--config", &no_keys]);
    assert!(
        e.contains("[keys] names neither hotkey_uri nor wallet"),
        "{e}"
    );
    let bad_uri = path("baduri.toml", "[keys]\nhotkey_uri = \"not a uri\"\n");
    let e = error_of(&["neuron", "run", "--config", &bad_uri]);
    assert!(e.contains("keys.hotkey_uri"), "{e}");
    let ok = path("ok.toml", "[keys]\nhotkey_uri = \"//Alice//solo\"\n");
    let e = error_of(&["neuron", "run", "--config", &ok, "--log-every", "0"]);
    assert!(e.contains("--log-every must be at least 1"), "{e}");
}

#[test]
fn a_neuron_without_a_ledger_trains_alone_and_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ckpt = dir.path().join("ckpt");
    let cfg = dir.path().join("solo.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"solo\"\n[keys]\nhotkey_uri = \"//Alice//solo\"\n\
             [train]\nsteps = 4\nbatch = 2\nepoch_steps = 2\neval_batches = 1\ncheckpoint_dir = {:?}\n\
             [model]\nseq = 16\nd = 16\nhidden = 32\nlayers = 1\n",
            ckpt.to_str().expect("utf-8")
        ),
    )
    .expect("write");
    let cfg = cfg.to_str().expect("utf-8");
    bt(&["neuron", "run", "--config", cfg]).expect("trains");
    let file = ckpt.join("neuron.safetensors");
    assert!(file.exists());
    // And resumes from it: `--steps` counts every step, so 6 trains 2 more and 4 none.
    bt(&["neuron", "run", "--config", cfg, "--steps", "6"]).expect("resumes");
    bt(&["neuron", "run", "--config", cfg, "--steps", "4"]).expect("nothing to train");
    // A damaged checkpoint is refused, named, and left in place.
    std::fs::write(&file, b"garbage").expect("write");
    let e = error_of(&["neuron", "run", "--config", cfg]);
    assert!(
        e.contains("neuron.safetensors is damaged") && e.contains("delete it"),
        "{e}"
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"garbage");
}

#[test]
fn net_up_refuses_bad_sizes() {
    let e = error_of(&["net", "up", "--neurons", "2"]);
    assert!(e.contains("--neurons must be in 3..=256"), "{e}");
    assert!(e.contains("got 2"), "{e}");
    let e = error_of(&["net", "up", "--neurons", "17", "--transport", "grpc"]);
    assert!(
        e.contains("--neurons must be in 3..=16 with --transport grpc, got 17"),
        "{e}"
    );
    let e = error_of(&["net", "up", "--blocks-per-step", "0"]);
    assert!(
        e.contains("--blocks-per-step must be in 1..=1000, got 0"),
        "{e}"
    );
    let e = error_of(&["net", "up", "--seeds", "0"]);
    assert!(e.contains("--seeds must be at least 1, got 0"), "{e}");
    for bad in [
        ["--transport", "udp"],
        ["--model", "huge"],
        ["--remote-loss", "much"],
        ["--peer-adapter", "shut"],
        ["--backward", "sideways"],
        ["--local-loss", "some"],
        ["--weight-decay", "lots"],
        ["--rest-unhelpful", "sometimes"],
    ] {
        let mut args = vec!["bt", "net", "up"];
        args.extend(bad);
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?} parses");
    }
    for (flag, value, want) in [
        ("--text-bytes", "10", "--text-bytes must be at least 66"),
        (
            "--eval-batches",
            "0",
            "--eval-batches must be at least 1, got 0",
        ),
        ("--steps", "0", "--steps must be at least 1"),
        (
            "--minutes",
            "0",
            "--minutes must be a positive number, got 0",
        ),
        (
            "--dashboard",
            "192.0.2.1:8080",
            "--dashboard must be a loopback address",
        ),
        ("--epoch-steps", "0", "must be at least 1"),
    ] {
        let e = error_of(&["net", "up", flag, value]);
        assert!(e.contains(want), "{flag} {value}: {e}");
    }
    for (flag, field) in [
        ("remote-loss", "router.w_remote"),
        ("local-loss", "router.w_local"),
        ("weight-decay", "optim.weight_decay"),
    ] {
        for (bad, shown) in [("-1", "-1"), ("nan", "NaN")] {
            let e = error_of(&["net", "up", &format!("--{flag}={bad}")]);
            assert!(
                e.contains(&format!("{field} must be finite and >= 0, got {shown}")),
                "{e}"
            );
        }
    }
    assert!(
        Cli::try_parse_from(["bt", "net", "up", "--dashboard", "nowhere"]).is_err(),
        "a dashboard address that is not ip:port is a parse error"
    );
}
