//! Times one training step of the candle learner trained alone (`Mode::Alone`: trunk, head,
//! mean cross-entropy, AdamW) on the bundled `moby_dick_a` text, for the side-by-side
//! comparison with the same model in PyTorch (`scripts/neuron-bench.sh`,
//! `bench/neuron/torch_step.py`). A benchmark only; never part of the tests.
//!
//! `cargo run --release -p bt-neuron --example neuron_bench -- --batch 32 --steps 50`
//!
//! Options (defaults in brackets): `--batch B` [8], `--seq T` [64], `--d D` [64],
//! `--layers L` [2], `--hidden H` [256], `--heads N` [2], `--steps S` [50], `--warmup W` [5],
//! `--seed N` [0]. CPU threads come from `RAYON_NUM_THREADS` (candle's matmuls use rayon).
//!
//! Prints one JSON line: `{"impl":"candle","tokens_per_s":..,"ms_per_step":..,"params":..,
//! "final_loss":..}`, where `params` counts the trunk and head (what the step trains) and
//! `learner_params` every parameter of the learner (router and student included).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::exit;
use std::time::Instant;

use bt_neuron::data::TextData;
use bt_neuron::learner::{Learner, Mode, OptimConfig};
use bt_neuron::model::ModelConfig;
use bt_neuron::router::{DataWeight, RouterConfig};
use candle_core::Device;
use rand::SeedableRng;

const USAGE: &str = "usage: neuron_bench [--batch B] [--seq T] [--d D] [--layers L] \
[--hidden H] [--heads N] [--steps S] [--warmup W] [--seed N]";

struct Opts {
    batch: usize,
    seq: usize,
    d: usize,
    layers: usize,
    hidden: usize,
    heads: usize,
    steps: usize,
    warmup: usize,
    seed: u64,
}

fn fail(msg: &str) -> ! {
    eprintln!("neuron_bench: {msg}\n{USAGE}");
    exit(2)
}

fn parse_args() -> Opts {
    let mut o = Opts {
        batch: 8,
        seq: 64,
        d: 64,
        layers: 2,
        hidden: 256,
        heads: 2,
        steps: 50,
        warmup: 5,
        seed: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            exit(0);
        }
        let Some(value) = args.next() else {
            fail(&format!("{flag} needs a value"));
        };
        let num = |min: u64| -> u64 {
            match value.parse::<u64>() {
                Ok(v) if v >= min => v,
                _ => fail(&format!(
                    "{flag} needs a whole number of at least {min}, got {value:?}"
                )),
            }
        };
        match flag.as_str() {
            "--batch" => o.batch = num(1) as usize,
            "--seq" => o.seq = num(2) as usize,
            "--d" => o.d = num(1) as usize,
            "--layers" => o.layers = num(1) as usize,
            "--hidden" => o.hidden = num(1) as usize,
            "--heads" => o.heads = num(1) as usize,
            "--steps" => o.steps = num(1) as usize,
            "--warmup" => o.warmup = num(0) as usize,
            "--seed" => o.seed = num(0),
            _ => fail(&format!("unknown flag {flag:?}")),
        }
    }
    o
}

fn main() {
    #[allow(unsafe_code)]
    // SAFETY: the first statement of `main`: no other thread exists yet.
    unsafe {
        bt_neuron::ops::configure_candle_threads();
    }
    let o = parse_args();
    let cfg = ModelConfig {
        seq: o.seq,
        d: o.d,
        heads: o.heads,
        layers: o.layers,
        hidden: o.hidden,
        ..ModelConfig::default()
    };
    let optim = OptimConfig {
        lr: 3e-3,
        weight_decay: DataWeight::Fixed(0.0),
        ..OptimConfig::default()
    };
    let data =
        TextData::load("bundled:moby_dick_a", None, 0.1, o.seq).expect("the bundled text loads");
    let router = RouterConfig::default().for_data(data.train_len());
    let learner = match Learner::new(&cfg, &router, &optim, &Device::Cpu, o.seed) {
        Ok(l) => l,
        Err(e) => fail(&format!("bad model shape: {e}")),
    };
    let params: usize = learner
        .named_vars()
        .iter()
        .filter(|(n, _)| n.starts_with("trunk.") || n.starts_with("head."))
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed.wrapping_add(1));
    let (b, t) = (o.batch, o.seq);
    let step = |rng: &mut rand_chacha::ChaCha8Rng| -> f32 {
        let batch = data.train_batch(b, t, rng);
        learner
            .train_step(&batch, Mode::Alone, None, &[])
            .expect("a training step runs")
            .loss
    };
    for _ in 0..o.warmup {
        step(&mut rng);
    }
    let start = Instant::now();
    let mut loss = f32::NAN;
    for _ in 0..o.steps {
        loss = step(&mut rng);
    }
    let secs = start.elapsed().as_secs_f64();
    let tokens = (o.steps * b * t) as f64;
    println!(
        "{{\"impl\":\"candle\",\"tokens_per_s\":{:.1},\"ms_per_step\":{:.3},\"params\":{},\"learner_params\":{},\"final_loss\":{:.4},\"batch\":{},\"seq\":{},\"steps\":{}}}",
        tokens / secs,
        secs * 1e3 / o.steps as f64,
        params,
        learner.num_params(),
        loss,
        b,
        t,
        o.steps
    );
}
