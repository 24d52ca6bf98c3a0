//! The ledger state: parameters, accounts, stake positions, neurons with their weight rows,
//! and its canonical encoding and hash.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bt_keys::PublicKey;
use bt_mechanism::Mechanism;

use crate::codec::{Hash, Reader, Writer};
use crate::error::{Error, Result};
use crate::fixed::{Fixed, WEIGHT_ONE};

/// The ledger's parameters, fixed at genesis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Inflation per block at the start (`tau`; a block under `paper` mints
    /// `tau * ||R||_1 / ||R||_2`).
    pub tau: Fixed,
    /// The weight-change bound `epsilon`, in weight units (`2^-31`); an update with
    /// `||W_i_new - W_i_old||_2 >= epsilon` is refused.
    pub epsilon: u64,
    /// The most neurons that may register.
    pub max_neurons: u32,
    /// Milliseconds between blocks (used by the node, not by the state machine).
    pub block_time_ms: u64,
    /// The largest encoded transaction accepted, in bytes.
    pub max_tx_bytes: u32,
    /// Whether `tau` adapts every block toward a sparsity target.
    pub adaptive_tau: bool,
    /// The sparsity target of adaptive tau.
    pub tau_target: Fixed,
    /// The step size of adaptive tau.
    pub tau_eta: Fixed,
    /// The mechanism that ranks neurons and splits what is minted.
    pub mechanism: Mechanism,
    /// Blocks per Yuma epoch (`yuma` runs and mints at every block whose height is a
    /// multiple of it; the paper's two mint every block).
    pub tempo: u64,
    /// Yuma's consensus quantile `kappa`.
    pub kappa: Fixed,
    /// Yuma's bonds moving average (the old bonds keep this share each epoch).
    pub bonds_moving_average: Fixed,
    /// Yuma's bonds penalty `beta`.
    pub bonds_penalty: Fixed,
}

/// The defaults of Yuma's parameters, used when genesis leaves them out: `tempo = 10`,
/// `kappa = 0.5`, `bonds_moving_average = 0.9`, `bonds_penalty = 1`.
pub mod yuma_defaults {
    use crate::fixed::Fixed;
    /// Blocks per epoch.
    pub const TEMPO: u64 = 10;
    /// `kappa = 1/2`.
    pub const KAPPA: Fixed = Fixed::from_bits(1 << 31);
    /// `0.9` as the nearest fixed-point number (what genesis reads `0.9` as).
    pub const BONDS_MOVING_AVERAGE: Fixed = Fixed::from_bits(3_865_470_566);
    /// `beta = 1`.
    pub const BONDS_PENALTY: Fixed = Fixed::ONE;
}

/// A free balance and the next nonce of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// Free balance in rao.
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// A registered neuron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neuron {
    /// Its uid: its index, given in registration order.
    pub uid: u32,
    /// The neuron's identity; signs its weights and endpoint updates.
    pub hotkey: PublicKey,
    /// The owning coldkey, credited with the neuron's inflation.
    pub coldkey: PublicKey,
    /// Where it serves.
    pub endpoint: SocketAddr,
    /// Total stake on the hotkey, in rao (the sum of every staker's position): `S_i`.
    pub stake: u64,
    /// Its rank `R_i` at the last block.
    pub rank: Fixed,
    /// Row `i` of `W`: `(uid, weight)` pairs sorted by uid, weights summing to exactly
    /// [`WEIGHT_ONE`].
    pub row: Vec<(u32, u32)>,
    /// The block it registered in.
    pub registered_at: u64,
    /// The block of its last weight update (0: never).
    pub last_update: u64,
    /// Yuma's consensus `C_i` of the neuron's column at the last epoch (zero otherwise).
    pub consensus: Fixed,
    /// Yuma's trust `T_i`: the share of its row that survived clipping.
    pub trust: Fixed,
    /// Yuma's incentive `I_i`.
    pub incentive: Fixed,
    /// Yuma's dividends `D_i`.
    pub dividends: Fixed,
    /// Yuma's emission share `E_i` at the last epoch.
    pub emission: Fixed,
    /// Row `i` of Yuma's bonds `B`: `(uid, bond)` pairs sorted by uid, each bond in `[0, 1]`
    /// (columns of `B` sum to one). Empty under the paper's mechanisms.
    pub bonds: Vec<(u32, Fixed)>,
}

impl Neuron {
    /// A neuron as registered: no stake, all its weight on itself, no Yuma values.
    pub fn new(
        uid: u32,
        hotkey: PublicKey,
        coldkey: PublicKey,
        endpoint: SocketAddr,
        height: u64,
    ) -> Neuron {
        Neuron {
            uid,
            hotkey,
            coldkey,
            endpoint,
            stake: 0,
            rank: Fixed::ZERO,
            row: vec![(uid, WEIGHT_ONE)],
            registered_at: height,
            last_update: 0,
            consensus: Fixed::ZERO,
            trust: Fixed::ZERO,
            incentive: Fixed::ZERO,
            dividends: Fixed::ZERO,
            emission: Fixed::ZERO,
            bonds: Vec::new(),
        }
    }

    /// Whether every Yuma value is zero (as under the paper's mechanisms).
    fn yuma_is_empty(&self) -> bool {
        self.bonds.is_empty()
            && [
                self.consensus,
                self.trust,
                self.incentive,
                self.dividends,
                self.emission,
            ]
            .iter()
            .all(|x| *x == Fixed::ZERO)
    }
}

/// The whole ledger state after some block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The height of the last applied block (0: genesis).
    pub height: u64,
    /// The hash of the genesis state: the chain's id, signed into every transaction.
    pub genesis: Hash,
    /// The hash of the last block's header (the genesis hash at height 0). Not part of the
    /// state hash, which the header itself carries.
    pub head: Hash,
    /// Parameters.
    pub params: Params,
    /// The current `tau` (changes only with adaptive tau).
    pub tau: Fixed,
    /// Accounts by public key.
    pub accounts: BTreeMap<PublicKey, Account>,
    /// Stake positions: `(coldkey, hotkey) -> rao`.
    pub stakes: BTreeMap<(PublicKey, PublicKey), u64>,
    /// Neurons by uid.
    pub neurons: Vec<Neuron>,
    /// Hotkey to uid; derived from `neurons`, not encoded.
    pub hotkeys: BTreeMap<PublicKey, u32>,
    /// Rao at genesis.
    pub genesis_issuance: u64,
    /// Rao minted by inflation since genesis.
    pub minted: u64,
}

/// The encoding of the paper's mechanism with Yuma's parameters at their defaults (what
/// every state was before mechanisms could be chosen): written whenever it says everything,
/// so such chains keep their state hashes.
const STATE_VERSION_PAPER: u8 = 1;
/// The encoding with the mechanism, Yuma's parameters and every neuron's Yuma values.
const STATE_VERSION: u8 = 2;

impl State {
    /// The nonce the account's next transaction must carry.
    pub fn nonce(&self, account: &PublicKey) -> u64 {
        self.accounts.get(account).map_or(0, |a| a.nonce)
    }

    /// The free balance of an account in rao.
    pub fn balance(&self, account: &PublicKey) -> u64 {
        self.accounts.get(account).map_or(0, |a| a.balance)
    }

    /// The stake of `coldkey` on `hotkey` in rao.
    pub fn stake_of(&self, coldkey: &PublicKey, hotkey: &PublicKey) -> u64 {
        self.stakes.get(&(*coldkey, *hotkey)).copied().unwrap_or(0)
    }

    /// The neuron with this hotkey.
    pub fn neuron_by_hotkey(&self, hotkey: &PublicKey) -> Option<&Neuron> {
        self.hotkeys
            .get(hotkey)
            .and_then(|&uid| self.neurons.get(uid as usize))
    }

    /// Every rao in existence: free balances plus stake positions.
    pub fn total_issuance(&self) -> u128 {
        let free: u128 = self.accounts.values().map(|a| u128::from(a.balance)).sum();
        let staked: u128 = self.stakes.values().map(|&s| u128::from(s)).sum();
        free + staked
    }

    /// The state hash: BLAKE2b-256 of the canonical encoding without `head`.
    pub fn hash(&self) -> Hash {
        let mut w = Writer::with_capacity(self.size_hint());
        self.encode_body(&mut w);
        Hash::of(&w.finish())
    }

    fn size_hint(&self) -> usize {
        let rows: usize = self
            .neurons
            .iter()
            .map(|n| 240 + 8 * n.row.len() + 20 * n.bonds.len())
            .sum();
        256 + 48 * self.accounts.len() + 72 * self.stakes.len() + rows
    }

    /// The canonical encoding, `head` included (what the node stores).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.size_hint() + 32);
        self.encode_body(&mut w);
        w.raw(&self.head.0);
        w.finish()
    }

    /// The encoding and the state hash together, hashing the body once.
    pub fn encode_and_hash(&self) -> (Vec<u8>, Hash) {
        let mut w = Writer::with_capacity(self.size_hint() + 32);
        self.encode_body(&mut w);
        let mut buf = w.finish();
        let hash = Hash::of(&buf);
        buf.extend_from_slice(&self.head.0);
        (buf, hash)
    }

    /// Whether [`STATE_VERSION_PAPER`] holds everything in this state.
    fn paper_encoding(&self) -> bool {
        let p = &self.params;
        p.mechanism == Mechanism::Paper
            && p.tempo == yuma_defaults::TEMPO
            && p.kappa == yuma_defaults::KAPPA
            && p.bonds_moving_average == yuma_defaults::BONDS_MOVING_AVERAGE
            && p.bonds_penalty == yuma_defaults::BONDS_PENALTY
            && self.neurons.iter().all(Neuron::yuma_is_empty)
    }

    fn encode_body(&self, w: &mut Writer) {
        let v2 = !self.paper_encoding();
        w.u8(if v2 {
            STATE_VERSION
        } else {
            STATE_VERSION_PAPER
        });
        w.u64(self.height);
        w.raw(&self.genesis.0);
        let p = &self.params;
        w.i128(p.tau.to_bits());
        w.u64(p.epsilon);
        w.u32(p.max_neurons);
        w.u64(p.block_time_ms);
        w.u32(p.max_tx_bytes);
        w.u8(u8::from(p.adaptive_tau));
        w.i128(p.tau_target.to_bits());
        w.i128(p.tau_eta.to_bits());
        if v2 {
            w.u8(p.mechanism.code());
            w.u64(p.tempo);
            w.i128(p.kappa.to_bits());
            w.i128(p.bonds_moving_average.to_bits());
            w.i128(p.bonds_penalty.to_bits());
        }
        w.i128(self.tau.to_bits());
        w.u64(self.genesis_issuance);
        w.u64(self.minted);
        w.len(self.accounts.len());
        for (k, a) in &self.accounts {
            w.key(k);
            w.u64(a.balance);
            w.u64(a.nonce);
        }
        w.len(self.stakes.len());
        for ((c, h), s) in &self.stakes {
            w.key(c);
            w.key(h);
            w.u64(*s);
        }
        w.len(self.neurons.len());
        for n in &self.neurons {
            w.u32(n.uid);
            w.key(&n.hotkey);
            w.key(&n.coldkey);
            encode_endpoint(w, &n.endpoint);
            w.u64(n.stake);
            w.i128(n.rank.to_bits());
            w.u64(n.registered_at);
            w.u64(n.last_update);
            w.len(n.row.len());
            for &(uid, wt) in &n.row {
                w.u32(uid);
                w.u32(wt);
            }
            if v2 {
                for x in [n.consensus, n.trust, n.incentive, n.dividends, n.emission] {
                    w.i128(x.to_bits());
                }
                w.len(n.bonds.len());
                for &(uid, b) in &n.bonds {
                    w.u32(uid);
                    w.i128(b.to_bits());
                }
            }
        }
    }

    /// Decodes a state written by [`State::encode`], checking its structural invariants
    /// (uids in order, rows sorted and summing to one, unique hotkeys).
    pub fn decode(bytes: &[u8]) -> Result<State> {
        let mut r = Reader::new(bytes, "state");
        let version = r.u8()?;
        if version != STATE_VERSION && version != STATE_VERSION_PAPER {
            return Err(Error::malformed(
                "state",
                format!("version {version}, expected {STATE_VERSION_PAPER} or {STATE_VERSION}"),
            ));
        }
        let v2 = version == STATE_VERSION;
        let height = r.u64()?;
        let genesis = r.hash()?;
        let params = Params {
            tau: Fixed::from_bits(r.i128()?),
            epsilon: r.u64()?,
            max_neurons: r.u32()?,
            block_time_ms: r.u64()?,
            max_tx_bytes: r.u32()?,
            adaptive_tau: match r.u8()? {
                0 => false,
                1 => true,
                b => return Err(Error::malformed("state", format!("flag byte {b}"))),
            },
            tau_target: Fixed::from_bits(r.i128()?),
            tau_eta: Fixed::from_bits(r.i128()?),
            mechanism: Mechanism::Paper,
            tempo: yuma_defaults::TEMPO,
            kappa: yuma_defaults::KAPPA,
            bonds_moving_average: yuma_defaults::BONDS_MOVING_AVERAGE,
            bonds_penalty: yuma_defaults::BONDS_PENALTY,
        };
        let mut params = params;
        if v2 {
            let code = r.u8()?;
            params.mechanism = Mechanism::from_code(code)
                .ok_or_else(|| Error::malformed("state", format!("mechanism code {code}")))?;
            params.tempo = r.u64()?;
            params.kappa = Fixed::from_bits(r.i128()?);
            params.bonds_moving_average = Fixed::from_bits(r.i128()?);
            params.bonds_penalty = Fixed::from_bits(r.i128()?);
            if params.tempo == 0 {
                return Err(Error::malformed("state", "tempo 0"));
            }
        }
        let tau = Fixed::from_bits(r.i128()?);
        let genesis_issuance = r.u64()?;
        let minted = r.u64()?;
        let mut accounts = BTreeMap::new();
        for _ in 0..r.len(48)? {
            let k = r.key()?;
            let a = Account {
                balance: r.u64()?,
                nonce: r.u64()?,
            };
            accounts.insert(k, a);
        }
        let mut stakes = BTreeMap::new();
        for _ in 0..r.len(72)? {
            let c = r.key()?;
            let h = r.key()?;
            stakes.insert((c, h), r.u64()?);
        }
        let count = r.len(100)?;
        let mut neurons = Vec::with_capacity(count);
        let mut hotkeys = BTreeMap::new();
        for i in 0..count {
            let uid = r.u32()?;
            if uid as usize != i {
                return Err(Error::malformed(
                    "state",
                    format!("neuron {i} has uid {uid}"),
                ));
            }
            let hotkey = r.key()?;
            let coldkey = r.key()?;
            let endpoint = decode_endpoint(&mut r)?;
            let stake = r.u64()?;
            let rank = Fixed::from_bits(r.i128()?);
            let registered_at = r.u64()?;
            let last_update = r.u64()?;
            let len = r.len(8)?;
            let mut row = Vec::with_capacity(len);
            for _ in 0..len {
                row.push((r.u32()?, r.u32()?));
            }
            let sum: u64 = row.iter().map(|&(_, w)| u64::from(w)).sum();
            if sum != u64::from(WEIGHT_ONE) || !row.windows(2).all(|p| p[0].0 < p[1].0) {
                return Err(Error::malformed(
                    "state",
                    format!("row of uid {uid} is not normalised"),
                ));
            }
            let mut neuron = Neuron {
                uid,
                hotkey,
                coldkey,
                endpoint,
                stake,
                rank,
                row,
                registered_at,
                last_update,
                consensus: Fixed::ZERO,
                trust: Fixed::ZERO,
                incentive: Fixed::ZERO,
                dividends: Fixed::ZERO,
                emission: Fixed::ZERO,
                bonds: Vec::new(),
            };
            if v2 {
                neuron.consensus = Fixed::from_bits(r.i128()?);
                neuron.trust = Fixed::from_bits(r.i128()?);
                neuron.incentive = Fixed::from_bits(r.i128()?);
                neuron.dividends = Fixed::from_bits(r.i128()?);
                neuron.emission = Fixed::from_bits(r.i128()?);
                let len = r.len(20)?;
                let mut bonds = Vec::with_capacity(len);
                for _ in 0..len {
                    bonds.push((r.u32()?, Fixed::from_bits(r.i128()?)));
                }
                if !bonds.windows(2).all(|p| p[0].0 < p[1].0)
                    || bonds.iter().any(|&(_, b)| b < Fixed::ZERO)
                {
                    return Err(Error::malformed(
                        "state",
                        format!("bonds of uid {uid} are not sorted and non-negative"),
                    ));
                }
                neuron.bonds = bonds;
            }
            if hotkeys.insert(hotkey, uid).is_some() {
                return Err(Error::malformed(
                    "state",
                    format!("hotkey of uid {uid} registered twice"),
                ));
            }
            neurons.push(neuron);
        }
        let head = r.hash()?;
        r.finish()?;
        Ok(State {
            height,
            genesis,
            head,
            params,
            tau,
            accounts,
            stakes,
            neurons,
            hotkeys,
            genesis_issuance,
            minted,
        })
    }
}

/// Encodes an endpoint: a family byte (4 or 6), the address bytes, the port.
pub(crate) fn encode_endpoint(w: &mut Writer, e: &SocketAddr) {
    match e.ip() {
        IpAddr::V4(ip) => {
            w.u8(4);
            w.raw(&ip.octets());
        }
        IpAddr::V6(ip) => {
            w.u8(6);
            w.raw(&ip.octets());
        }
    }
    w.u16(e.port());
}

/// Decodes an endpoint written by [`encode_endpoint`].
pub(crate) fn decode_endpoint(r: &mut Reader<'_>) -> Result<SocketAddr> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.fixed::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.fixed::<16>()?)),
        b => {
            return Err(Error::malformed(
                "endpoint",
                format!("address family byte {b}"),
            ));
        }
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}
