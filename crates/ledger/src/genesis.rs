//! The genesis file (TOML): initial balances and the ledger's parameters.
//!
//! ```toml
//! [params]
//! tau = 1.0              # inflation per block (see below)
//! epsilon = 0.1          # refuse a weight update with ||W_i_new - W_i_old||_2 >= epsilon
//! max_neurons = 4096
//! block_time_ms = 1000
//! max_tx_bytes = 65536   # optional, this default
//!
//! mechanism = "paper"   # optional, this default; or "paper_no_self" or "yuma"
//! tempo = 10             # optional: blocks per Yuma epoch
//! kappa = 0.5            # optional: Yuma's consensus quantile, in [0, 1]
//! bonds_moving_average = 0.9  # optional: in [0, 1]
//! bonds_penalty = 1.0    # optional: in [0, 1]
//!
//! [params.adaptive_tau]  # optional; off when absent
//! enabled = true
//! target = 1.0           # sparsity target
//! eta = 0.01             # step size
//!
//! [[accounts]]
//! address = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
//! balance = 1_000_000_000_000  # rao (1 TAO = 10^9 rao)
//! ```
//!
//! Under `paper` and `paper_no_self` every block adds `tau * R / ||R||_2` to the stakes (the
//! paper's eq. 6), so it mints `tau * ||R||_1 / ||R||_2`: `tau` when one neuron holds all the
//! rank, up to `tau * sqrt(n)` when `n` share it equally. Under `yuma` it mints
//! `tau * tempo` at every block whose height is a multiple of `tempo`, split by Yuma's
//! emission shares. The Yuma parameters are kept (and hashed) under every mechanism.
//!
//! Decimal parameters are read as TOML floats and converted once, with IEEE rounding, to
//! fixed point; everything after genesis is integer arithmetic.

use std::collections::BTreeMap;

use bt_keys::PublicKey;
use bt_mechanism::Mechanism;
use serde::Deserialize;

use crate::codec::Hash;
use crate::error::{Error, Result};
use crate::fixed::{Fixed, WEIGHT_ONE};
use crate::state::{Account, Params, State, yuma_defaults};

/// The default largest transaction, in bytes: room for a dense row of 8,000 weights.
pub const DEFAULT_MAX_TX_BYTES: u32 = 65_536;

/// The genesis file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Parameters.
    pub params: GenesisParams,
    /// Initial balances.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
}

/// `[params]` of the genesis file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisParams {
    /// Inflation per block, in TAO (what a block mints depends on the mechanism: see the
    /// module's docs).
    pub tau: f64,
    /// The weight-change bound.
    pub epsilon: f64,
    /// The most neurons.
    pub max_neurons: u32,
    /// Milliseconds between blocks.
    pub block_time_ms: u64,
    /// The largest transaction in bytes.
    #[serde(default = "default_max_tx_bytes")]
    pub max_tx_bytes: u32,
    /// Adaptive tau.
    #[serde(default)]
    pub adaptive_tau: Option<GenesisAdaptiveTau>,
    /// The mechanism's name (`paper` when absent).
    #[serde(default)]
    pub mechanism: Option<String>,
    /// Blocks per Yuma epoch.
    #[serde(default)]
    pub tempo: Option<u64>,
    /// Yuma's consensus quantile.
    #[serde(default)]
    pub kappa: Option<f64>,
    /// Yuma's bonds moving average.
    #[serde(default)]
    pub bonds_moving_average: Option<f64>,
    /// Yuma's bonds penalty.
    #[serde(default)]
    pub bonds_penalty: Option<f64>,
}

fn default_max_tx_bytes() -> u32 {
    DEFAULT_MAX_TX_BYTES
}

/// `[params.adaptive_tau]` of the genesis file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAdaptiveTau {
    /// On or off.
    pub enabled: bool,
    /// The sparsity target.
    pub target: f64,
    /// The step size.
    pub eta: f64,
}

/// One `[[accounts]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The SS58 address.
    pub address: PublicKey,
    /// Free balance in rao.
    pub balance: u64,
}

impl Genesis {
    /// Parses a genesis file's text.
    pub fn from_toml(text: &str) -> Result<Genesis> {
        toml::from_str(text).map_err(|e| Error::Genesis {
            reason: e.to_string(),
        })
    }

    /// The state at height 0, checking every parameter.
    pub fn into_state(self) -> Result<State> {
        let p = &self.params;
        let bad = |reason: String| Error::Genesis { reason };
        let non_neg = |name: &str, x: f64| {
            Fixed::from_f64(x)
                .filter(|f| *f >= Fixed::ZERO)
                .ok_or_else(|| bad(format!("{name} must be a finite number >= 0, got {x}")))
        };
        let tau = non_neg("tau", p.tau)?;
        if !(p.epsilon > 0.0 && p.epsilon <= 2.0) {
            return Err(bad(format!("epsilon must be in (0, 2], got {}", p.epsilon)));
        }
        // Deterministic: IEEE multiply and round of a parsed decimal.
        let epsilon = (p.epsilon * f64::from(WEIGHT_ONE)).round() as u64;
        if p.max_neurons == 0 {
            return Err(bad("max_neurons must be at least 1".into()));
        }
        if p.block_time_ms == 0 {
            return Err(bad("block_time_ms must be at least 1".into()));
        }
        if p.max_tx_bytes < 256 {
            return Err(bad(format!(
                "max_tx_bytes must be at least 256, got {}",
                p.max_tx_bytes
            )));
        }
        let (adaptive_tau, tau_target, tau_eta) = match &p.adaptive_tau {
            Some(a) => (
                a.enabled,
                non_neg("adaptive_tau.target", a.target)?,
                non_neg("adaptive_tau.eta", a.eta)?,
            ),
            None => (false, Fixed::ONE, Fixed::ZERO),
        };
        let mechanism = match &p.mechanism {
            None => Mechanism::Paper,
            Some(name) => name
                .parse::<Mechanism>()
                .map_err(|_| Error::UnknownMechanism { name: name.clone() })?,
        };
        let tempo = p.tempo.unwrap_or(yuma_defaults::TEMPO);
        if tempo == 0 {
            return Err(Error::BadParameter {
                name: "tempo",
                value: 0.0,
                expected: "at least 1 block",
            });
        }
        let unit = |name: &'static str, x: Option<f64>, default: Fixed| match x {
            None => Ok(default),
            Some(v) => Fixed::from_f64(v)
                .filter(|f| (Fixed::ZERO..=Fixed::ONE).contains(f) && (0.0..=1.0).contains(&v))
                .ok_or(Error::BadParameter {
                    name,
                    value: v,
                    expected: "a number in [0, 1]",
                }),
        };
        let params = Params {
            tau,
            epsilon,
            max_neurons: p.max_neurons,
            block_time_ms: p.block_time_ms,
            max_tx_bytes: p.max_tx_bytes,
            adaptive_tau,
            tau_target,
            tau_eta,
            mechanism,
            tempo,
            kappa: unit("kappa", p.kappa, yuma_defaults::KAPPA)?,
            bonds_moving_average: unit(
                "bonds_moving_average",
                p.bonds_moving_average,
                yuma_defaults::BONDS_MOVING_AVERAGE,
            )?,
            bonds_penalty: unit(
                "bonds_penalty",
                p.bonds_penalty,
                yuma_defaults::BONDS_PENALTY,
            )?,
        };
        let mut accounts = BTreeMap::new();
        let mut issuance: u64 = 0;
        for a in &self.accounts {
            if accounts
                .insert(
                    a.address,
                    Account {
                        balance: a.balance,
                        nonce: 0,
                    },
                )
                .is_some()
            {
                return Err(bad(format!("account {} listed twice", a.address)));
            }
            issuance = issuance
                .checked_add(a.balance)
                .ok_or_else(|| bad("total balance overflows u64 rao".into()))?;
        }
        let mut state = State {
            height: 0,
            genesis: Hash::default(),
            head: Hash::default(),
            params,
            tau,
            accounts,
            stakes: BTreeMap::new(),
            neurons: Vec::new(),
            hotkeys: BTreeMap::new(),
            genesis_issuance: issuance,
            minted: 0,
        };
        // The chain id is the hash of the genesis state with a zero id.
        let id = state.hash();
        state.genesis = id;
        state.head = id;
        Ok(state)
    }
}

/// Parses a genesis file's text into the state at height 0.
pub fn genesis_state(text: &str) -> Result<State> {
    Genesis::from_toml(text)?.into_state()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn text(extra: &str) -> String {
        format!(
            "[params]\ntau = 1.0\nepsilon = 0.5\nmax_neurons = 8\nblock_time_ms = 100\n{extra}\n\
             [[accounts]]\naddress = \"{ALICE}\"\nbalance = 1000\n"
        )
    }

    #[test]
    fn parses_and_hashes_deterministically() {
        let a = genesis_state(&text("")).expect("valid");
        let b = genesis_state(&text("")).expect("valid");
        assert_eq!(a.genesis, b.genesis);
        assert_eq!(a.genesis_issuance, 1000);
        assert_eq!(a.params.epsilon, u64::from(WEIGHT_ONE) / 2);
        let c = genesis_state(&text("max_tx_bytes = 4096")).expect("valid");
        assert_ne!(a.genesis, c.genesis, "parameters are part of the chain id");
    }

    #[test]
    fn mechanism_defaults_to_paper_and_keeps_the_old_chain_id() {
        let old = genesis_state(&text("")).expect("valid");
        assert_eq!(old.params.mechanism, Mechanism::Paper);
        let explicit = genesis_state(&text("mechanism = \"paper\"\ntempo = 10\nkappa = 0.5\nbonds_moving_average = 0.9\nbonds_penalty = 1.0")).expect("valid");
        assert_eq!(
            old.genesis, explicit.genesis,
            "defaults spelled out change nothing"
        );
        let yuma =
            genesis_state(&text("mechanism = \"yuma\"\ntempo = 3\nkappa = 0.6")).expect("valid");
        assert_eq!(yuma.params.mechanism, Mechanism::Yuma);
        assert_eq!(yuma.params.tempo, 3);
        assert_eq!(yuma.params.kappa, Fixed::from_f64(0.6).expect("finite"));
        assert_ne!(old.genesis, yuma.genesis);
        let decoded = State::decode(&yuma.encode()).expect("decodes");
        assert_eq!(decoded, yuma);
        let no_self = genesis_state(&text("mechanism = \"paper_no_self\"")).expect("valid");
        assert_eq!(no_self.params.mechanism, Mechanism::PaperNoSelf);
    }

    #[test]
    fn rejects_bad_parameters() {
        for extra in ["unknown = 1", "max_tx_bytes = 3"] {
            assert!(
                matches!(genesis_state(&text(extra)), Err(Error::Genesis { .. })),
                "{extra}"
            );
        }
        let bad_eps = text("").replace("epsilon = 0.5", "epsilon = 0.0");
        assert!(matches!(
            genesis_state(&bad_eps),
            Err(Error::Genesis { .. })
        ));
        let bad_addr = text("").replace(ALICE, "5Grw");
        assert!(matches!(
            genesis_state(&text("mechanism = \"yuma3\"")),
            Err(Error::UnknownMechanism { name }) if name == "yuma3"
        ));
        for (extra, param) in [
            ("tempo = 0", "tempo"),
            ("kappa = 1.5", "kappa"),
            ("kappa = -0.1", "kappa"),
            ("kappa = nan", "kappa"),
            ("bonds_moving_average = 2.0", "bonds_moving_average"),
            ("bonds_penalty = -1.0", "bonds_penalty"),
            ("bonds_penalty = inf", "bonds_penalty"),
        ] {
            match genesis_state(&text(extra)) {
                Err(Error::BadParameter { name, .. }) => assert_eq!(name, param, "{extra}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
        assert!(matches!(
            genesis_state(&bad_addr),
            Err(Error::Genesis { .. })
        ));
    }
}
