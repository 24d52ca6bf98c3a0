//! A neuron's configuration file (TOML). Every section and field has a default; unknown
//! fields are refused so that a typo is an error, not a silent default.
//!
//! ```toml
//! [data]
//! source = "bundled:moby_dick_a"   # or a path to a text file
//! limit = 20000                    # keep only the first 20 000 training bytes (optional)
//! tokenizer = "bytes"              # or "gpt2" (with [model] vocab = 50257)
//!
//! [network]
//! ledger = "http://127.0.0.1:7100" # omit to train alone (student fallback, no weights)
//! listen = "127.0.0.1:0"           # the axon's address
//! # advertise = "192.0.2.7:8091"    # what peers dial, when listening on 0.0.0.0 (optional)
//! stake_tao = 100.0                # staked from the coldkey when registering
//!
//! [keys]
//! hotkey_uri = "//Alice//hot"      # or wallet = "default" and hotkey = "default"
//! coldkey_uri = "//Alice"
//!
//! [train]
//! steps = 2000
//! batch = 16
//! epoch_steps = 50                 # weights, evaluation and checkpoints every epoch
//!
//! [weights]
//! rule = "payoff"                  # or "ema", or "self_only"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{Batch, TextData, Tokenizer};
use crate::error::{Error, Result};
use crate::learner::OptimConfig;
use crate::model::ModelConfig;
use crate::router::RouterConfig;
use crate::serve::Behaviour;
use crate::weights::WeightConfig;

/// The training text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `bundled:NAME` or a file path.
    pub source: String,
    /// Keep only this many training bytes.
    pub limit: Option<usize>,
    /// Fraction of the text held out for evaluation.
    pub held_out: f64,
    /// `bytes` (vocabulary 256) or `gpt2` (BPE, vocabulary 50 257: set `model.vocab` to match).
    pub tokenizer: Tokenizer,
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            source: "bundled:moby_dick_a".into(),
            limit: None,
            held_out: 0.1,
            tokenizer: Tokenizer::Bytes,
        }
    }
}

/// Where the neuron serves and which ledger it uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// The ledger node (`http://host:port`), or a replicated ledger's validators,
    /// comma-separated (the first that answers is used, another when it is lost); `None`
    /// trains without a network.
    pub ledger: Option<String>,
    /// The axon's listen address.
    pub listen: String,
    /// The address registered on the ledger for peers to reach (`ip:port`); defaults to the
    /// address the axon bound. Needed when listening on `0.0.0.0` or behind a NAT.
    pub advertise: Option<String>,
    /// TAO staked from the coldkey on the hotkey when registering.
    pub stake_tao: f64,
    /// Whether the axon scales answers by the competitive mask.
    pub mask: bool,
    /// Deadline of a query to a peer, in milliseconds.
    pub timeout_ms: u64,
}

impl NetworkConfig {
    /// The ledger addresses of `ledger`, in order (none without a ledger), each checked.
    pub fn ledger_urls(&self) -> Result<Vec<String>> {
        let Some(list) = &self.ledger else {
            return Ok(Vec::new());
        };
        bt_chain::split_urls(list).map_err(|e| match e {
            bt_chain::Error::BadAddress { url } => Error::Config(format!(
                "network.ledger {url:?} must start with http:// or https://"
            )),
            e => Error::Chain(e),
        })
    }
}

impl Default for NetworkConfig {
    fn default() -> NetworkConfig {
        NetworkConfig {
            ledger: None,
            listen: "127.0.0.1:0".into(),
            advertise: None,
            stake_tao: 0.0,
            mask: true,
            timeout_ms: 3000,
        }
    }
}

/// Which keys the neuron uses: secret URIs, or a wallet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The hotkey as a secret URI (`//Alice//hot`, or a mnemonic with a derivation path).
    pub hotkey_uri: Option<String>,
    /// The coldkey as a secret URI (only needed to stake).
    pub coldkey_uri: Option<String>,
    /// The wallet's name (when no URIs are given).
    pub wallet: Option<String>,
    /// The hotkey's name in the wallet.
    pub hotkey: Option<String>,
    /// The wallet directory.
    pub wallet_dir: Option<PathBuf>,
}

/// The training loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Training steps.
    pub steps: usize,
    /// Rows per batch.
    pub batch: usize,
    /// Steps per epoch (evaluation, weights, checkpoint).
    pub epoch_steps: usize,
    /// Held-out batches per evaluation.
    pub eval_batches: usize,
    /// Seed of parameters, batches and routing noise.
    pub seed: u64,
    /// Write checkpoints here (`<dir>/neuron.safetensors`); resume from it when present.
    pub checkpoint_dir: Option<PathBuf>,
    /// Where the models run: `"cpu"`, or `"cuda"` / `"cuda:N"` in a build with the `cuda`
    /// feature.
    pub device: String,
}

/// Where a neuron's models run, parsed from `train.device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (fused kernels, rayon threads).
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `"cpu"`, `"cuda"` (device 0) or `"cuda:N"`. A CUDA device in a build without the
    /// `cuda` feature is refused here, before anything starts.
    pub fn parse(s: &str) -> Result<DeviceSpec> {
        let spec = match s {
            "cpu" => DeviceSpec::Cpu,
            "cuda" => DeviceSpec::Cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => DeviceSpec::Cuda(n),
                _ => {
                    return Err(Error::Config(format!(
                        "train.device {s:?} is not \"cpu\", \"cuda\" or \"cuda:N\""
                    )));
                }
            },
        };
        if matches!(spec, DeviceSpec::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(Error::Config(format!(
                "train.device {s:?} needs a build with the cuda feature \
                 (cargo build --release -p bt --features cuda)"
            )));
        }
        Ok(spec)
    }

    /// Opens the device.
    pub fn open(self) -> Result<candle_core::Device> {
        match self {
            DeviceSpec::Cpu => Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n)
                .map_err(|e| Error::Config(format!("train.device cuda:{n} cannot be opened: {e}"))),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            steps: 2000,
            batch: 16,
            epoch_steps: 50,
            eval_batches: 4,
            seed: 0,
            checkpoint_dir: None,
            device: "cpu".into(),
        }
    }
}

/// A whole neuron.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NeuronConfig {
    /// A label for logs and reports.
    pub name: String,
    /// How it answers peers.
    pub behaviour: Option<Behaviour>,
    /// Training text.
    pub data: DataConfig,
    /// Network.
    pub network: NetworkConfig,
    /// Keys.
    pub keys: KeysConfig,
    /// Training loop.
    pub train: TrainConfig,
    /// Model shape.
    pub model: ModelConfig,
    /// Router.
    pub router: RouterConfig,
    /// Optimisers.
    pub optim: OptimConfig,
    /// Weight setting.
    pub weights: WeightConfig,
}

impl NeuronConfig {
    /// Loads the training text (`[data]`) and cuts its held-out batches (`train.batch` x
    /// `model.seq`, at most `train.eval_batches`); a held-out part too short for one batch is
    /// [`Error::Data`].
    pub fn load_data(&self) -> Result<(TextData, Vec<Batch>)> {
        let data = TextData::load_with(
            &self.data.source,
            self.data.limit,
            self.data.held_out,
            self.model.seq,
            self.data.tokenizer,
        )?;
        let held_out =
            data.held_out_batches(self.train.batch, self.model.seq, self.train.eval_batches);
        if held_out.is_empty() {
            return Err(Error::Data(format!(
                "{}: held-out part is too short for one batch of {} x {}",
                self.data.source, self.train.batch, self.model.seq
            )));
        }
        Ok((data, held_out))
    }

    /// Parses and checks a TOML text. A syntax or schema error is [`Error::ConfigSyntax`]
    /// with its line and column.
    pub fn from_toml(text: &str) -> Result<NeuronConfig> {
        let cfg: NeuronConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            Error::ConfigSyntax {
                file: None,
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<NeuronConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        NeuronConfig::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            Error::ConfigSyntax {
                line,
                column,
                message,
                ..
            } => Error::ConfigSyntax {
                file: Some(path.display().to_string()),
                line,
                column,
                message,
            },
            e => e,
        })
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.router.validate()?;
        self.weights.validate()?;
        let t = &self.train;
        DeviceSpec::parse(&t.device)?;
        if t.batch == 0 || t.epoch_steps == 0 || t.eval_batches == 0 {
            return Err(Error::Config(format!(
                "train.batch ({}), train.epoch_steps ({}) and train.eval_batches ({}) must be at least 1",
                t.batch, t.epoch_steps, t.eval_batches
            )));
        }
        self.optim.validate()?;
        let n = &self.network;
        if !(n.stake_tao.is_finite() && n.stake_tao >= 0.0) {
            return Err(Error::Config(format!(
                "network.stake_tao must be finite and >= 0, got {}",
                n.stake_tao
            )));
        }
        if n.timeout_ms == 0 {
            return Err(Error::Config(
                "network.timeout_ms must be at least 1".into(),
            ));
        }
        let listen = n.listen.parse::<std::net::SocketAddr>().map_err(|e| {
            Error::Config(format!("network.listen {:?} is not ip:port: {e}", n.listen))
        })?;
        match &n.advertise {
            Some(a) => {
                let adv = a.parse::<std::net::SocketAddr>().map_err(|e| {
                    Error::Config(format!("network.advertise {a:?} is not ip:port: {e}"))
                })?;
                if adv.ip().is_unspecified() || adv.port() == 0 {
                    return Err(Error::Config(format!(
                        "network.advertise {a:?} must name a reachable address and a port"
                    )));
                }
                if listen.port() == 0 {
                    return Err(Error::Config(format!(
                        "network.listen {:?} must name a fixed port when network.advertise is set \
                         (peers dial the advertised port)",
                        n.listen
                    )));
                }
            }
            None if n.ledger.is_some() && listen.ip().is_unspecified() => {
                // The suggestion must pass this check itself: a fixed port on both.
                let example = if listen.port() == 0 {
                    format!(
                        "pick a fixed port and set network.advertise to this machine's address \
                         with it, e.g. listen = \"{}\" and advertise = \"{}\"",
                        std::net::SocketAddr::new(listen.ip(), EXAMPLE_PORT),
                        std::net::SocketAddr::new(EXAMPLE_IP.into(), EXAMPLE_PORT)
                    )
                } else {
                    format!(
                        "set network.advertise to this machine's address and the port, e.g. \
                         advertise = \"{}\"",
                        std::net::SocketAddr::new(EXAMPLE_IP.into(), listen.port())
                    )
                };
                return Err(Error::Config(format!(
                    "network.listen {:?} is not an address peers can reach: {example}",
                    n.listen
                )));
            }
            None => {}
        }
        n.ledger_urls()?;
        let need = self.data.tokenizer.vocab();
        if self.model.vocab < need {
            return Err(Error::Config(format!(
                "data.tokenizer {:?} makes ids up to {}; model.vocab is {}",
                self.data.tokenizer,
                need - 1,
                self.model.vocab
            )));
        }
        if !(self.data.held_out > 0.0 && self.data.held_out < 1.0) {
            return Err(Error::Config(format!(
                "data.held_out must be in (0, 1), got {}",
                self.data.held_out
            )));
        }
        Ok(())
    }
}

/// The address in the advertise suggestion (TEST-NET-1, RFC 5737: documentation only).
const EXAMPLE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 0, 2, 7);
/// The port in the advertise suggestion when the listen port is 0.
const EXAMPLE_PORT: u16 = 8091;

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `key = "value"` out of a message.
    fn suggested<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
        let rest = &msg[msg.find(&format!("{key} = \""))? + key.len() + 4..];
        Some(&rest[..rest.find('"')?])
    }

    #[test]
    fn the_advertise_suggestion_is_accepted() {
        for listen in ["0.0.0.0:0", "0.0.0.0:9000", "[::]:0"] {
            let text = format!("[network]\nledger = \"http://127.0.0.1:1\"\nlisten = \"{listen}\"");
            let msg = NeuronConfig::from_toml(&text).unwrap_err().to_string();
            let advertise = suggested(&msg, "advertise").unwrap_or_else(|| panic!("{msg}"));
            let listen = suggested(&msg, "listen").unwrap_or(listen);
            let fixed = format!(
                "[network]\nledger = \"http://127.0.0.1:1\"\nlisten = \"{listen}\"\nadvertise = \"{advertise}\""
            );
            NeuronConfig::from_toml(&fixed).unwrap_or_else(|e| panic!("{msg}\n{fixed}\n{e}"));
        }
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let text = "name = \"n\"\n[train]\nsteps = 10\nbatch = = 3\n";
        match NeuronConfig::from_toml(text).unwrap_err() {
            Error::ConfigSyntax { line, column, .. } => assert_eq!((line, column), (4, 9)),
            e => panic!("{e}"),
        }
        // Schema errors too: an unknown field, a wrong type.
        match NeuronConfig::from_toml("[train]\n\nbatchh = 3").unwrap_err() {
            Error::ConfigSyntax {
                line,
                column,
                message,
                ..
            } => {
                assert_eq!((line, column), (3, 1));
                assert!(message.contains("unknown field `batchh`"), "{message}");
            }
            e => panic!("{e}"),
        }
        match NeuronConfig::from_toml("[train]\nsteps = \"many\"").unwrap_err() {
            Error::ConfigSyntax { line, .. } => assert_eq!(line, 2),
            e => panic!("{e}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "[network\nlisten = 1").unwrap();
        let e = NeuronConfig::from_file(&path).unwrap_err();
        assert!(
            matches!(
                e,
                Error::ConfigSyntax {
                    line: 1,
                    file: Some(_),
                    ..
                }
            ),
            "{e}"
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}: line 1, column", path.display())),
            "{shown}"
        );
    }

    #[test]
    fn defaults_and_the_documented_example_parse() {
        use crate::router::DataWeight;
        let cfg = NeuronConfig::from_toml("").unwrap();
        assert_eq!(cfg.train.batch, 16);
        assert_eq!(cfg.router.w_remote, DataWeight::Auto);
        assert_eq!(cfg.router.w_local, DataWeight::Auto);
        assert_eq!(cfg.optim.weight_decay, DataWeight::Auto);
        assert_eq!(
            NeuronConfig::from_toml("[optim]\nweight_decay = 0.1")
                .unwrap()
                .optim
                .weight_decay,
            DataWeight::Fixed(0.1)
        );
        assert!(cfg.router.rest_unhelpful);
        assert!(
            !NeuronConfig::from_toml("[router]\nrest_unhelpful = false")
                .unwrap()
                .router
                .rest_unhelpful
        );
        for (text, want) in [
            ("\"auto\"", DataWeight::Auto),
            ("1", DataWeight::Fixed(1.0)),
            ("0.25", DataWeight::Fixed(0.25)),
        ] {
            for field in ["w_remote", "w_local"] {
                let cfg = NeuronConfig::from_toml(&format!("[router]\n{field} = {text}")).unwrap();
                let got = match field {
                    "w_remote" => cfg.router.w_remote,
                    _ => cfg.router.w_local,
                };
                assert_eq!(got, want, "{field} = {text}");
                let written = toml::to_string(&cfg).unwrap();
                assert_eq!(NeuronConfig::from_toml(&written).unwrap(), cfg, "{written}");
            }
        }
        let doc = r#"
[data]
source = "bundled:moby_dick_a"
limit = 20000
[network]
ledger = "http://127.0.0.1:7100"
listen = "127.0.0.1:0"
stake_tao = 100.0
[keys]
hotkey_uri = "//Alice//hot"
coldkey_uri = "//Alice"
[train]
steps = 2000
batch = 16
epoch_steps = 50
[weights]
rule = "payoff"
"#;
        let cfg = NeuronConfig::from_toml(doc).unwrap();
        assert_eq!(cfg.data.limit, Some(20000));
        assert_eq!(cfg.keys.coldkey_uri.as_deref(), Some("//Alice"));
    }

    #[test]
    fn devices_parse_and_cuda_needs_its_feature() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        for (text, n) in [("cuda", 0), ("cuda:1", 1)] {
            let parsed = DeviceSpec::parse(text);
            assert_eq!(parsed.is_ok(), cfg!(feature = "cuda"), "{text}: {parsed:?}");
            match parsed {
                Ok(spec) => assert_eq!(spec, DeviceSpec::Cuda(n)),
                Err(e) => assert!(
                    e.to_string()
                        .contains("needs a build with the cuda feature"),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[train]\nbatchh = 3", "unknown field `batchh`"),
            ("[train]\nbatch = 0", "train.batch (0)"),
            (
                "[network]\nlisten = \"nowhere\"",
                "network.listen \"nowhere\"",
            ),
            (
                "[network]\nledger = \"127.0.0.1:1\"",
                "must start with http://",
            ),
            (
                "[network]\nledger = \"http://127.0.0.1:1,127.0.0.1:2\"",
                "network.ledger \"127.0.0.1:2\" must start with http://",
            ),
            (
                "[network]\nledger = \"http://127.0.0.1:1,\"",
                "network.ledger \"\" must start with http://",
            ),
            (
                "[network]\nledger = \"http://127.0.0.1:1\"\nlisten = \"0.0.0.0:8091\"",
                "set network.advertise",
            ),
            (
                "[network]\nadvertise = \"0.0.0.0:8091\"",
                "must name a reachable address",
            ),
            (
                "[network]\nadvertise = \"here\"",
                "network.advertise \"here\"",
            ),
            ("[network]\nstake_tao = -1.0", "network.stake_tao"),
            ("[model]\nheads = 3", "must divide model.d"),
            ("[router]\nk = 0", "1 <= k_min <= k"),
            ("[weights]\nrule = \"greedy\"", "unknown variant `greedy`"),
            ("[optim]\nlr = -1.0", "optim.lr"),
            (
                "[optim]\nbackward = \"sideways\"",
                "unknown variant `sideways`",
            ),
            ("[router]\nadapter = 1", "expected a boolean"),
            ("[router]\nrest_unhelpful = \"yes\"", "expected a boolean"),
            ("[router]\nw_remote = -1.0", "router.w_remote"),
            (
                "[router]\nw_local = -0.5",
                "router.w_local must be finite and >= 0",
            ),
            (
                "[router]\nw_remote = \"most\"",
                "a weight must be a number or \"auto\", got \"most\"",
            ),
            ("[router]\nw_remote = true", "a weight must be a number or"),
            (
                "[optim]\nweight_decay = -0.5",
                "optim.weight_decay must be finite and >= 0, got -0.5",
            ),
            (
                "[optim]\nweight_decay = \"strong\"",
                "a weight must be a number or \"auto\", got \"strong\"",
            ),
            (
                "[router]\nw_local = \"all\"",
                "a weight must be a number or \"auto\", got \"all\"",
            ),
            (
                "[router]\nadapter_init = \"ones\"",
                "unknown variant `ones`",
            ),
            ("behaviour = \"evil\"", "unknown variant `evil`"),
            ("[data]\nheld_out = 1.0", "data.held_out"),
            ("[data]\ntokenizer = \"gpt2\"", "model.vocab is 256"),
            ("[data]\ntokenizer = \"bpe\"", "unknown variant `bpe`"),
            ("[train]\ndevice = \"tpu\"", "train.device \"tpu\" is not"),
            (
                "[train]\ndevice = \"cuda:x\"",
                "train.device \"cuda:x\" is not",
            ),
        ];
        for (text, want) in cases {
            let e = NeuronConfig::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn command_line_spellings_of_adapter_and_backward() {
        use crate::learner::BackwardUpdate;
        use crate::router::{AdapterInit, DataWeight, PeerAdapter, RouterConfig};
        for (text, adapter, init) in [
            ("on", true, AdapterInit::Zero),
            ("open", true, AdapterInit::Identity),
            ("off", false, AdapterInit::Zero),
        ] {
            let mode: PeerAdapter = text.parse().unwrap();
            let r = RouterConfig::default().with_peer_adapter(mode);
            assert_eq!((r.adapter, r.adapter_init), (adapter, init), "{text}");
            // Written back as it was read.
            assert_eq!(
                (mode.to_string(), r.peer_adapter()),
                (text.to_string(), mode)
            );
        }
        for (text, want) in [
            ("with-own-step", BackwardUpdate::WithOwnStep),
            ("own_optimizer", BackwardUpdate::OwnOptimizer),
        ] {
            assert_eq!(text.parse::<BackwardUpdate>().unwrap(), want);
            assert_eq!(want.to_string().parse::<BackwardUpdate>().unwrap(), want);
        }
        for w in [
            DataWeight::Auto,
            DataWeight::Fixed(0.0),
            DataWeight::Fixed(0.25),
        ] {
            assert_eq!(w.to_string().parse::<DataWeight>().unwrap(), w);
        }
        let e = "closed".parse::<PeerAdapter>().unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("on, open or off")),
            "{e}"
        );
        let e = "sideways".parse::<BackwardUpdate>().unwrap_err();
        assert!(
            matches!(&e, Error::Config(m) if m.contains("\"sideways\"")),
            "{e}"
        );
    }
}
