//! Serves the feed-forward expert on an axon until killed (or for `--secs`), for clients in
//! other languages: `cargo run --release -p bt-wire --example wire_axon -- --port 50051`.
//!
//! Options: `--port P` (0 = any), `--dim D` (1024), `--hidden H` (4 D), `--uri //Bob`,
//! `--metrics-port P`, `--secs S`, `--model ffn|echo` (echo answers its input: what the wire
//! and the axon cost without a model). Prints `hotkey <ss58> <hex>` and `listening <addr>`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bt_keys::Keypair;
use bt_wire::{
    Axon, AxonConfig, Dim, FeedForwardExpert, MemoryStakes, Synapse, SynapseResult, Tensor,
    TensorSpec, serve_metrics,
};

/// Answers Forward with its input and ignores Backward.
struct Echo {
    dim: usize,
}

impl Synapse for Echo {
    fn input_spec(&self) -> Vec<TensorSpec> {
        vec![TensorSpec::float(vec![Dim::Batch, Dim::Fixed(self.dim)])]
    }

    fn output_spec(&self) -> Vec<TensorSpec> {
        self.input_spec()
    }

    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        Ok(inputs.to_vec())
    }

    fn backward(&self, _: &[Tensor], _: &[Tensor]) -> SynapseResult<Option<Vec<Tensor>>> {
        Ok(None)
    }

    fn batchable(&self) -> bool {
        true
    }
}

fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut dim = 1024usize;
    let mut hidden = None;
    let mut uri = "//Bob".to_string();
    let mut metrics_port = None;
    let mut secs = None;
    let mut model = "ffn".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = val()?.parse()?,
            "--dim" => dim = val()?.parse()?,
            "--hidden" => hidden = Some(val()?.parse()?),
            "--uri" => uri = val()?,
            "--metrics-port" => metrics_port = Some(val()?.parse::<u16>()?),
            "--secs" => secs = Some(val()?.parse::<f64>()?),
            "--model" => model = val()?,
            other => bail!("unknown option {other}"),
        }
    }
    let key = Keypair::from_uri(&uri)?;
    let synapse: Arc<dyn Synapse> = match model.as_str() {
        "ffn" => Arc::new(FeedForwardExpert::new(
            dim,
            hidden.unwrap_or(4 * dim),
            0.0,
            1,
        )),
        "echo" => Arc::new(Echo { dim }),
        other => bail!("--model {other:?} is not ffn or echo"),
    };
    let axon = Axon::new(
        key.public(),
        synapse,
        Arc::new(MemoryStakes::new()),
        AxonConfig::default(),
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let handle = axon
            .clone()
            .spawn(format!("127.0.0.1:{port}").parse()?)
            .await?;
        let hex: String = key
            .public()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("hotkey {} {hex}", key.public());
        println!("listening {}", handle.addr);
        std::io::stdout().flush()?;
        if let Some(p) = metrics_port {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", p)).await?;
            println!("metrics http://{}/metrics", listener.local_addr()?);
            tokio::spawn(serve_metrics(
                listener,
                axon.metrics(),
                std::future::pending(),
            ));
        }
        match secs {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => tokio::signal::ctrl_c().await?,
        }
        handle.shutdown().await?;
        anyhow::Ok(())
    })
}
